"""A real `bark serve` process for the tests: started on 127.0.0.1 and a free port with the tiny
checkpoint, read until it says it is ready, stopped with SIGTERM."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

# Each segment is 8 semantic tokens: 12 EnCodec frames of 320 samples (see test_stream.py).
SEGMENT_SAMPLES = 12 * 320
GAP = 0.1
GAP_SAMPLES = int(GAP * 24_000)
# One thread: the tests compare with audio made in the test process on one thread (CPU sums
# may round differently on two), and a busy machine's cores are not the server's alone.
SERVE_FAST = ["--device", "cpu", "--threads", "1", "--dtype", "float32", "--max-semantic-tokens", "8",
              "--min-eos-p", "0", "--max-segment-chars", "30", "--gap", str(GAP)]
READY_SECONDS = 180


class Server:
    def __init__(self, model: Path, *args: str, env: dict | None = None):
        command = [sys.executable, "-m", "bark_cli", "serve", "--model", str(model), "--port", "0", *SERVE_FAST, *args]
        # SIGINT at its default, as a foreground run has it (a background test runner has it ignored).
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, **(env or {})},
                                        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.lines: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def wait(self) -> "Server":
        """Wait until it is ready (several servers may start meanwhile); its URL is then `url`."""
        if not self._ready.wait(READY_SECONDS) or self.process.poll() is not None:
            self.stop()
            raise RuntimeError("bark serve did not start:\n" + self.stderr)
        self.url = re.search(r"ready: (http://\S+)/ ", "\n".join(self.lines)).group(1)
        return self

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)
            if line.startswith("ready:"):
                self._ready.set()
        self._ready.set()

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def expected_samples(segments: int) -> int:
    return segments * SEGMENT_SAMPLES + (segments - 1) * GAP_SAMPLES


def decode(data: bytes, fmt: str) -> tuple[np.ndarray, int, int]:
    """(float samples, sample rate, channels) of a response body, decoded independently of the
    server: pcm by hand, wav by libsndfile, the rest by FFmpeg (PyAV): libsndfile cannot read a
    streamed FLAC, whose header leaves the length unset."""
    if fmt == "pcm":
        return np.frombuffer(data, "<i2").astype(np.float32) / 32768, 24_000, 1
    if fmt == "wav":
        import soundfile as sf

        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        return samples[:, 0], rate, samples.shape[1]
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        frames = [frame.to_ndarray() for frame in container.decode(stream)]
        channels = stream.codec_context.channels
        rate = stream.codec_context.sample_rate
    return np.concatenate([f.reshape(channels, -1)[0] for f in frames]), rate, channels


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def wait_for(condition, seconds: float = 60, step: float = 0.1):
    """Poll `condition` until it returns a true value (then return it) or `seconds` pass (None)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(step)
    return None
