#!/usr/bin/env python
"""bark serve under N concurrent clients, against the same requests one at a time, on random weights.

    python bench/serve.py                                  # tiny, 8 clients, 1 segment each, CPU
    python bench/serve.py --size bark-small --tokens 50 --clients 8
    python bench/serve.py --size bark --device cuda --clients 16 --tokens 100
    python bench/serve.py --segments 5                      # TTFB of 5-segment texts under load
    python bench/serve.py --segments 5 --stagger 0.5        # clients landing 0.5 s apart

The server is bark_cli.server's app and scheduler, run by uvicorn in a process of its own, over
random weights of the chosen size (EOS held off: every segment has exactly --tokens semantic
tokens) and a random voice. Printed: audio seconds per second concurrent and one at a time, p50
and p95 time to first byte (TTFB) under load, the server's peak memory, and yardsticks measured
in this process on the same weights: one batch of N segments through Bark.generate_batch (what
`bark bench --batch-size N` times), one segment alone, and one request's text through
longform.speak (what `bark say` runs). TTFB is set against one segment alone and against the
batch of N: when N clients send at once, some client's first audio needs all N first segments
made, so where a batch costs N times one segment (a small CPU) that batch is the floor.
`--stagger S` starts client i after i*S seconds instead, so that requests land while others'
later segments are being made. `--figures FILE` also writes the seconds that bench/cuda.sh
holds against its baseline.
Targets: CPU concurrent throughput within 10% of the batch yardstick, one request alone at most
1.05x speak; CUDA 16 concurrent >= 6x one at a time; 5-segment p95 TTFB <= 2x one segment.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

SEGMENT = "Here is one sentence of a story."


def build(options):
    """The Bark every side of the comparison uses: random weights, a fixed tokenizer."""
    import torch

    from bark_cli.bench import FixedTokenizer, bark_config
    from bark_cli.config import DeviceOptions, GenerationConfig
    from bark_cli.pipeline import Bark
    from bark_cli.weights import random_weights

    class Tokenizer(FixedTokenizer):
        def count_tokens(self, text: str) -> int:
            return len(self.encode(text))

    if options.threads:
        torch.set_num_threads(options.threads)
    weights = random_weights(bark_config(options.size), GenerationConfig(), seed=0)
    return Bark.from_weights(weights, Tokenizer(), DeviceOptions(options.device, options.dtype, threads=options.threads),
                             model_id=options.size)


def random_voice():
    """The voice every request and yardstick speaks in (the server maps "alloy" to it)."""
    from bark_cli import voice

    rng = np.random.default_rng(0)
    return voice.VoicePrompt(semantic_prompt=rng.integers(0, 10_000, 200), coarse_prompt=rng.integers(0, 1024, (2, 300)),
                             fine_prompt=rng.integers(0, 1024, (8, 300)))


def serve(options) -> None:
    """The server side: the app over random weights on a free port, written to --serve's file."""
    import socket

    import uvicorn

    from bark_cli.config import SamplingOptions
    from bark_cli.server.app import Settings, create_app
    from bark_cli.server.metrics import Metrics
    from bark_cli.server.scheduler import Scheduler

    from bark_cli.voice import save_voice

    voice = Path(options.serve).with_suffix(".npz")
    save_voice(random_voice(), voice)
    metrics = Metrics()
    scheduler = Scheduler(lambda: build(options), max_batch=options.max_batch or options.clients,
                          max_queue=10_000, metrics=metrics)
    settings = Settings(model_id=options.size, voice_map={"alloy": str(voice)}, max_segment_chars=40,
                        sampling=SamplingOptions(max_semantic_tokens=options.tokens, min_eos_p=0), log=lambda _: None)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(settings, scheduler, metrics), log_level="warning"))

    def announce() -> None:
        scheduler.ready.wait()
        Path(options.serve).write_text(str(sock.getsockname()[1]))

    threading.Thread(target=announce, daemon=True).start()
    server.run(sockets=[sock])


def request(url: str, text: str, seed: int) -> tuple[float, float, float]:
    """(TTFB, total seconds, audio seconds) of one streamed pcm request."""
    import httpx

    start = time.perf_counter()
    first, size = None, 0
    with httpx.stream("POST", f"{url}/v1/audio/speech", timeout=3600, json={
            "model": "tts-1", "input": text, "voice": "alloy", "response_format": "pcm", "seed": seed}) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            if first is None and chunk:
                first = time.perf_counter() - start
            size += len(chunk)
    return first, time.perf_counter() - start, size / 2 / 24_000


def together(url: str, texts: list[str], stagger: float = 0.0) -> tuple[list[tuple[float, float, float]], float]:
    results: list = [None] * len(texts)

    def one(i: int) -> None:
        time.sleep(i * stagger)
        results[i] = request(url, texts[i], 1000 + i)

    start = time.perf_counter()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, time.perf_counter() - start


def one_by_one(url: str, texts: list[str]) -> tuple[list[tuple[float, float, float]], float]:
    start = time.perf_counter()
    results = [request(url, text, 1000 + i) for i, text in enumerate(texts)]
    return results, time.perf_counter() - start


def seconds(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def yardsticks(options, text: str, served) -> dict[str, float]:
    """Measured in this process while the server idles: one generate_batch of N segments, one
    segment alone, and `speak(text)` in turns with `served()` (one request alone through the
    server, its seconds), three of each, so that a shared machine's drift hits both sides."""
    from bark_cli.config import SamplingOptions
    from bark_cli.longform import speak

    bark = build(options)
    fast = dict(voice=random_voice(), sampling=SamplingOptions(max_semantic_tokens=options.tokens, min_eos_p=0))
    made = bark.generate_batch([SEGMENT] * options.clients, seed=1, **fast)  # warm-up
    batch_s = seconds(lambda: bark.generate_batch([SEGMENT] * options.clients, seed=1, **fast))
    segment_s = statistics.median(seconds(lambda: bark.generate_batch([SEGMENT], seed=1, **fast)) for _ in range(3))

    def said() -> None:
        speak(bark, text, seed=1, max_segment_chars=40, **fast)

    said()  # warm-up
    turns = [(served(), seconds(said)) for _ in range(options.turns)]
    return {"batch_audio_s_per_s": sum(g.duration for g in made) / batch_s, "batch_s": batch_s,
            "segment_s": segment_s, "served_s": statistics.median(t[0] for t in turns),
            "speak_s": statistics.median(t[1] for t in turns), "turn_ratios": [t[0] / t[1] for t in turns]}


def peak_memory(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny", choices=["tiny", "bark-small", "bark"])
    parser.add_argument("--tokens", type=int, default=40, help="semantic tokens a segment")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--segments", type=int, default=1, help="segments a request")
    parser.add_argument("--stagger", type=float, default=0.0, help="seconds between clients' starts")
    parser.add_argument("--max-batch", type=int, default=None, help="the server's (default: --clients)")
    parser.add_argument("--turns", type=int, default=5, help="served/speak pairs timed in turns")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--figures", help="also write the lower-is-better figures to this file, for bench/cuda_report.py")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        return serve(options)
    text = " ".join([SEGMENT] * options.segments)
    texts = [text] * options.clients
    # A SIGTERM (bench/cuda.sh's timeout) unwinds through the `finally` below, which stops the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(f"{Path(__file__).name}: stopped by SIGTERM"))
    port_file = Path(tempfile.mkdtemp(prefix="bark-bench-serve-")) / "port"
    server = subprocess.Popen([sys.executable, __file__, *sys.argv[1:], "--serve", str(port_file)],
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    try:
        while not port_file.exists():
            if server.poll() is not None:
                sys.exit("the server did not start")
            time.sleep(0.2)
        url = f"http://127.0.0.1:{port_file.read_text()}"
        # Warm-up: the batch shapes of both runs (under CUDA graphs, each batch size's first run captures).
        together(url, texts, options.stagger)
        request(url, text, 999)
        alone, alone_s = one_by_one(url, texts)
        load, load_s = together(url, texts, options.stagger)
        peak = peak_memory(server.pid)
        marks = yardsticks(options, text, lambda: request(url, text, 1000)[1])
    finally:
        server.terminate()
        server.wait(60)
    batch_rate, batch_s, segment_s = marks["batch_audio_s_per_s"], marks["batch_s"], marks["segment_s"]
    from bark_cli.bench import cpu_name

    audio_s = sum(r[2] for r in load)
    ttfb = sorted(r[0] for r in load)
    figures = {
        "cpu": cpu_name(), "size": options.size, "device": options.device, "clients": options.clients,
        "segments": options.segments, "stagger_s": options.stagger,
        "tokens_per_segment": options.tokens, "audio_s": round(audio_s, 2),
        "concurrent_audio_s_per_s": round(audio_s / load_s, 3),
        "one_at_a_time_audio_s_per_s": round(sum(r[2] for r in alone) / alone_s, 3),
        "ttfb_s": [round(t, 3) for t in (r[0] for r in load)],  # client by client, in start order
        # p95 by nearest rank: the slowest client of up to 20.
        "ttfb_p50_s": round(statistics.median(ttfb), 3), "ttfb_p95_s": round(ttfb[math.ceil(0.95 * len(ttfb)) - 1], 3),
        "one_request_alone_s": round(marks["served_s"], 3), "speak_s": round(marks["speak_s"], 3),
        "generate_batch_audio_s_per_s": round(batch_rate, 3), "generate_batch_s": round(batch_s, 3),
        "one_segment_s": round(segment_s, 3),
        "server_peak_rss_bytes": peak,
    }
    figures["concurrent_over_batch"] = round(figures["concurrent_audio_s_per_s"] / batch_rate, 3)
    figures["alone_over_speak_turns"] = [round(r, 3) for r in marks["turn_ratios"]]
    figures["alone_over_speak"] = round(statistics.median(marks["turn_ratios"]), 3)
    figures["ttfb_p95_over_one_segment"] = round(figures["ttfb_p95_s"] / segment_s, 3)
    figures["ttfb_p95_over_batch_of_n"] = round(figures["ttfb_p95_s"] / batch_s, 3)
    figures["concurrent_over_one_at_a_time"] = round(
        figures["concurrent_audio_s_per_s"] / figures["one_at_a_time_audio_s_per_s"], 3)
    if options.figures:
        # Seconds only, named by the case, so that bench/cuda_report.py can hold them against a baseline.
        case = f"serve {options.size} {options.clients}x{options.segments}"
        Path(options.figures).write_text(json.dumps({"figures": {
            f"{case} concurrent s": round(load_s, 3), f"{case} one at a time s": round(alone_s, 3),
            f"{case} ttfb p95 s": figures["ttfb_p95_s"], f"{case} one request alone s": figures["one_request_alone_s"],
        }}))
    print(json.dumps(figures, indent=None if options.json else 2))


if __name__ == "__main__":
    main()
