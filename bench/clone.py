#!/usr/bin/env python
"""How long cloning a voice takes once the models are loaded: real-size random weights (HuBERT
base up to layer 9, the version-1 quantizer, EnCodec 24 kHz's encoder), 10 s of speech-like audio
at 44.1 kHz stereo (so mixing and both resamplings are in the figure).

    python bench/clone.py                     # all cores torch uses
    python bench/clone.py --threads 2 --seconds 10 --rounds 3

Prints the median of `--rounds` clones after one warm-up, and each part's share (resampling,
HuBERT, quantizer, codec encoder) from one more run. Random weights cost what trained ones do.
`cpu_s` is the CPU time the clone took over all threads: on a machine other programs keep busy
the wall time says little, and the CPU time over the thread count bounds what an idle machine
would take.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from bark_cli import cloning
from bark_cli.bench import cpu_name
from bark_cli.config import CodecConfig, GenerationConfig
from bark_cli.models.codec_encoder import EncodecEncoder
from bark_cli.models.hubert import HubertConfig, HubertFeatures
from bark_cli.models.semantic_quantizer import QuantizerConfig, SemanticQuantizer


def random_cloner(version: int) -> cloning.Cloner:
    torch.manual_seed(0)
    codec = EncodecEncoder(CodecConfig()).eval()
    with torch.no_grad():
        for layer in codec.quantizer.layers:
            layer.codebook.embed.normal_()
    return cloning.Cloner(HubertFeatures(HubertConfig()).eval(), SemanticQuantizer(QuantizerConfig(version=version)).eval(),
                          codec, GenerationConfig())


def speech_like(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(140 + 30 * np.sin(2 * np.pi * 0.7 * t)) / rate
    mono = 0.25 * (0.2 + 0.8 * np.abs(np.sin(2 * np.pi * 2.5 * t))) * sum(np.sin(k * phase) / k for k in range(1, 6))
    return np.stack([mono, 0.9 * mono], axis=1).astype(np.float32)


def parts(cloner: cloning.Cloner, samples: np.ndarray, rate: int) -> dict[str, float]:
    """Seconds of each step of one clone."""
    out, start = {}, time.perf_counter()

    def lap(name: str) -> None:
        nonlocal start
        now = time.perf_counter()
        out[name] = round(now - start, 3)
        start = now

    mono = cloning.prepare(samples, rate)
    s16 = torch.from_numpy(cloning.resample(mono, rate, 16_000))
    s24 = torch.from_numpy(cloning.resample(mono, rate, 24_000))
    lap("prepare+resample")
    features = cloner.hubert(s16[None])[0]
    lap("hubert")
    cloner.quantizer(features)
    lap("quantizer")
    cloner.codec.encode(s24[None])
    lap("codec")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--version", type=int, default=1, choices=(0, 1), help="quantizer version")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rate = 44_100
    samples = speech_like(args.seconds, rate)
    cloner = random_cloner(args.version)
    cloner.clone(samples, rate)  # warm-up: first-call allocations and kernel choices
    times, cpu = [], []
    for _ in range(args.rounds):
        start, start_cpu = time.perf_counter(), time.process_time()
        voice = cloner.clone(samples, rate)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    print(json.dumps({
        "cpu": cpu_name(), "threads": torch.get_num_threads(), "audio_s": args.seconds,
        "quantizer_version": args.version, "median_s": round(statistics.median(times), 3),
        "runs_s": [round(t, 3) for t in times], "cpu_s": round(statistics.median(cpu), 3), "parts_s": parts(cloner, samples, rate),
        "semantic_tokens": int(voice.semantic_prompt.size), "frames": int(voice.fine_prompt.shape[1]),
    }))


if __name__ == "__main__":
    main()
