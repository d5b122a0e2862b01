"""What GET /metrics shows, in Prometheus' text format: one registry per server, so that two
servers in one process (tests) never share counters."""

from __future__ import annotations


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("bark_requests", "Speech requests answered, by HTTP status.", ["status"],
                                registry=self.registry)
        self.queue_depth = Gauge("bark_queue_depth", "Requests waiting or being spoken.", registry=self.registry)
        self.batch_size = Histogram("bark_batch_size", "Segments per generation batch.",
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=self.registry)
        self.segments = Counter("bark_segments", "Segments generated.", registry=self.registry)
        self.dropped = Counter("bark_segments_dropped", "Segments not generated: their request was cancelled.",
                               registry=self.registry)
        self.audio_seconds = Counter("bark_audio_seconds", "Seconds of audio generated.", registry=self.registry)
        self.real_time_factor = Histogram(
            "bark_real_time_factor", "Audio seconds per second of generation, per batch.",
            buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64), registry=self.registry)

    def batch(self, size: int, audio_seconds: float, seconds: float) -> None:
        """One generation batch: its size, the audio it made and the time it took."""
        self.batch_size.observe(size)
        self.segments.inc(size)
        self.audio_seconds.inc(audio_seconds)
        if seconds > 0 and audio_seconds > 0:
            self.real_time_factor.observe(audio_seconds / seconds)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
