#!/usr/bin/env python
"""GPU decode-step figures: cold start, kernels per step, ms per graphed step with its sampling.

    python bench/cuda_steps.py --figures OUT/steps.figures.json      # bark, float16, cuda

Random weights. Cold start: Bark.from_weights (weights to the GPU, the codec's dtype probe)
plus Bark.prepare_graphs for batch 1 (every bucket of both stages captured). Kernels per step:
the CUDA kernels a profiler trace records in one replay of a semantic and of a coarse step's
graph (layers, LM head, greedy pick). ms per step: the median of 3 rounds of --steps replays.
A voice-prompt run: 100 semantic tokens in a voice with a long history, whose coarse windows
each prefill again and step up to about position 950 (median of 3 after a warm-up).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from bark_cli.bench import FixedTokenizer, bark_config
from bark_cli.config import DeviceOptions, GenerationConfig, Sampling, SamplingOptions
from bark_cli.decoding import kv_cache, step_key
from bark_cli.generation import coarse_rows, semantic_pick
from bark_cli.pipeline import Bark
from bark_cli.sampling import Pick
from bark_cli.weights import random_weights


def kernels_in(fn) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as trace:
        fn()
        torch.cuda.synchronize()
    return sum(1 for event in trace.events() if event.device_type == torch.autograd.DeviceType.CUDA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="bark")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--figures", help="write the figures here, for bench/cuda_report.py")
    args = parser.parse_args()
    torch.cuda.synchronize()
    start = time.perf_counter()
    weights = random_weights(bark_config(args.size), GenerationConfig(), seed=0, dtype=torch.float16)
    bark = Bark.from_weights(weights, FixedTokenizer(), DeviceOptions(args.device, "float16", cuda_graphs=True))
    bark.prepare_graphs((1,), SamplingOptions(temperature=0.0, min_eos_p=0))
    torch.cuda.synchronize()
    figures = {"cold start s": time.perf_counter() - start}
    cfg = bark.config
    stages = {"semantic": (semantic_pick(cfg, Sampling(0.0), None), None, 300),
              "coarse": (Pick(Sampling(0.0)), coarse_rows(0, cfg), 400)}
    with torch.inference_mode():
        for name, (pick, rows, position) in stages.items():
            model = getattr(bark.weights, name)
            ids = torch.zeros(1, 1, dtype=torch.long, device=bark.device)
            with kv_cache(model, 1, bark.graphs, [step_key(position, model.config.block_size, rows, pick)]) as step:
                step.pick(ids, position, rows, pick)
                key = step_key(position, model.config.block_size, rows, pick)
                graph = step.graphs[key.end][key]
                figures[f"kernels per {name} step"] = kernels_in(graph.replay)
                rounds = []
                for _ in range(3):
                    torch.cuda.synchronize()
                    begin = time.perf_counter()
                    for i in range(args.steps):
                        step.pick(ids, position, rows, pick)  # the same bucket: the same graph
                    torch.cuda.synchronize()
                    rounds.append((time.perf_counter() - begin) / args.steps * 1e3)
                figures[f"{name} pick step ms"] = statistics.median(rounds)
    # A voice whose long history re-prefills every coarse window (positions up to about 950).
    rng = np.random.default_rng(0)
    voice = {"semantic_prompt": rng.integers(0, 10_000, 700), "coarse_prompt": rng.integers(0, 1024, (2, 1050)),
             "fine_prompt": rng.integers(0, 1024, (8, 1050))}
    runs = []
    for _ in range(4):  # the first one warms up
        made = bark.generate("voice", voice=voice, seed=1, allow_early_stop=False,
                             sampling=SamplingOptions(temperature=0.0, max_semantic_tokens=100, min_eos_p=0))
        runs.append(made.seconds)
    figures["bark fp16 voice graphs total s"] = statistics.median(sum(r.values()) for r in runs[1:])
    figures["bark fp16 voice graphs coarse s"] = statistics.median(r["coarse"] for r in runs[1:])
    print(json.dumps(figures, indent=1))
    if args.figures:
        with open(args.figures, "w") as out:
            json.dump({"figures": figures}, out)


if __name__ == "__main__":
    main()
