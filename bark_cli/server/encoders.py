"""Audio out as it is made: one encoder per response, fed segment by segment, each call returning
the bytes ready so far.

mp3, opus (in Ogg), aac (ADTS) and flac go through PyAV (FFmpeg's encoders and muxers) into one
continuous stream: one header at the start, frames after, nothing per segment. The muxer writes
to a sink that cannot seek, so what it would go back to fill in (FLAC's total length) stays
unset, as in any streamed FLAC (an unstreamed FLAC has it). wav is the 44-byte header with
unknown sizes that `bark say -o -` writes on a pipe, then 16-bit samples; pcm is the bare samples
(s16le, 24 kHz, mono). An unstreamed response is the same bytes gathered, but for the sizes a
WAV or FLAC header then knows.

`speed` other than 1 changes tempo, not pitch, through FFmpeg's `atempo` filter, which takes
0.5..2 per instance: a chain of them covers 0.25..4.
"""

from __future__ import annotations

import io
import math

import numpy as np

from .. import audio

FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
MEDIA_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac",
               "wav": "audio/wav", "pcm": "audio/pcm"}
# format -> (container, codec, options): FFmpeg's names.
_AV = {
    "mp3": ("mp3", "libmp3lame", {}),
    # One Ogg page per 20 ms packet: a page waits for nothing, so each segment leaves at once.
    "opus": ("ogg", "libopus", {"page_duration": "20000"}),
    "aac": ("adts", "aac", {}),
    "flac": ("flac", "flac", {}),
}
MIN_SPEED, MAX_SPEED = 0.25, 4.0


class _Sink:
    """A write-only, unseekable file for PyAV's muxer: it keeps what it is given until taken."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self.chunks = b"".join(self.chunks), []
        return data


class Encoder:
    """`feed(samples) -> bytes` for each piece of float32 audio, then `finish() -> bytes` once."""

    def __init__(self, fmt: str, sample_rate: int, speed: float = 1.0, whole: bool = False):
        """`whole`: the bytes are wanted only at the end, so the muxer may go back and fill in
        what a stream leaves unset (FLAC's length); `feed` then returns nothing."""
        self.fmt, self.sample_rate = fmt, sample_rate
        self.tempo = Tempo(sample_rate, speed) if speed != 1 else None
        self._started = False
        if fmt in _AV:
            import av

            container, codec, options = _AV[fmt]
            self._sink = io.BytesIO() if whole else _Sink()
            self._container = av.open(self._sink, "w", format=container, options=options)
            self._stream = self._container.add_stream(codec, rate=sample_rate)
            self._stream.layout = "mono"
            self._av = av

    def feed(self, samples: np.ndarray) -> bytes:
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if self.tempo is not None:
            samples = self.tempo.feed(samples)
        return self._encode(samples)

    def finish(self) -> bytes:
        data = self._encode(self.tempo.finish()) if self.tempo is not None else b""
        if self.fmt in _AV:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            data += self._sink.getvalue() if isinstance(self._sink, io.BytesIO) else self._sink.take()
        elif not self._started and self.fmt == "wav":
            data += audio.wav_header(self.sample_rate)
        return data

    def _encode(self, samples: np.ndarray) -> bytes:
        if self.fmt in ("wav", "pcm"):
            data = audio.pcm(samples, self.sample_rate) if len(samples) else b""
            if self.fmt == "wav" and not self._started:
                data = audio.wav_header(self.sample_rate) + data
            self._started = True
            return data
        if len(samples):
            frame = self._av.AudioFrame.from_ndarray(samples[None], format="flt", layout="mono")
            frame.sample_rate = self.sample_rate
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        return b"" if isinstance(self._sink, io.BytesIO) else self._sink.take()


class Tempo:
    """Audio played `speed` times faster at the same pitch: FFmpeg's atempo, chained."""

    def __init__(self, sample_rate: int, speed: float):
        import av.filter

        self.sample_rate = sample_rate
        self.graph = av.filter.Graph()
        source = self.graph.add_abuffer(sample_rate=sample_rate, format="flt", layout="mono", channels=1)
        node = source
        for factor in tempo_factors(speed):
            step = self.graph.add("atempo", f"{factor:.6f}")
            node.link_to(step)
            node = step
        sink = self.graph.add("abuffersink")
        node.link_to(sink)
        self.graph.configure()
        self._av = av

    def feed(self, samples: np.ndarray) -> np.ndarray:
        if len(samples):
            frame = self._av.AudioFrame.from_ndarray(samples[None], format="flt", layout="mono")
            frame.sample_rate = self.sample_rate
            self.graph.push(frame)
        return self._drain()

    def finish(self) -> np.ndarray:
        self.graph.push(None)
        return self._drain()

    def _drain(self) -> np.ndarray:
        out = []
        while True:
            try:
                frame = self.graph.pull()
            except (self._av.error.BlockingIOError, self._av.error.EOFError):
                break
            out.append(frame.to_ndarray().reshape(-1).astype(np.float32))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def tempo_factors(speed: float) -> list[float]:
    """atempo steps whose product is `speed`, each within 0.5..2: 4 -> [2, 2]; 0.3 -> [0.5476, 0.5476]."""
    count = max(1, math.ceil(abs(math.log(speed, 2)) - 1e-9))
    return [speed ** (1 / count)] * count
