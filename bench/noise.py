#!/usr/bin/env python
"""What per-item random streams cost a batch: each item drawing from generators of its own (so
that it repeats alone) against one generator shared by the batch, on random weights.

    python bench/noise.py                                   # bark-small, batch 8, 150 tokens
    python bench/noise.py --dtype float32 --rounds 2

Two measurements. The draws alone: `sampling.draw` on each stage's batch shape, per-row
generators against one generator, many repetitions (the part that differs, measured where the
machine's noise is small). Then whole runs of `Bark.generate_batch`, the two ways in turns
(shared, per-item, per-item, shared, ...), so that a change in the machine's load reaches both.
The shared way swaps `pipeline.item_generators` for one generator per stage: what a batch drew
before each item had its own streams.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time

import torch

from bark_cli import pipeline
from bark_cli.weights import random_weights
from bark_cli.bench import FixedTokenizer, bark_config, cpu_name
from bark_cli.config import DeviceOptions, GenerationConfig, SamplingOptions
from bark_cli.generation import coarse_steps
from bark_cli.sampling import draw
from bark_cli.models.kernels import median_time


@contextlib.contextmanager
def shared_generator():
    """One generator per stage for the whole batch, seeded from the first item's seed."""
    original = pipeline.item_generators

    def one(seeds, stage, device):
        return torch.Generator(device).manual_seed(pipeline.stage_seed(seeds[0], stage))

    pipeline.item_generators = one
    try:
        yield
    finally:
        pipeline.item_generators = original


def draw_costs(batch: int, tokens: int, config: GenerationConfig) -> list[dict]:
    """Per stage: draws per run, and seconds per draw with per-row generators and with one."""
    coarse = coarse_steps(tokens, config)
    frames = coarse // config.n_coarse_codebooks
    stages = [  # (stage, one draw's shape, draws per run, repetitions to time)
        ("semantic", (batch, config.semantic_vocab_size + 1), tokens, 200),
        ("coarse", (batch, config.codebook_size), coarse, 400),
        ("fine", (batch, config.max_fine_input_length, config.codebook_size),
         (config.n_fine_codebooks - config.n_coarse_codebooks) * max(1, -(-frames // config.max_fine_history_length)), 5),
    ]
    rows = []
    for stage, shape, draws, repeats in stages:
        probs = torch.rand(shape, generator=torch.Generator().manual_seed(0)).softmax(-1)
        one = torch.Generator().manual_seed(1)
        per_row = [torch.Generator().manual_seed(i) for i in range(batch)]
        shared_s = median_time(lambda: draw(probs, one), repeats)
        own_s = median_time(lambda: draw(probs, per_row), repeats)
        rows.append({"stage": stage, "shape": list(shape), "draws": draws, "shared_s": shared_s, "per_item_s": own_s,
                     "extra_per_run_s": (own_s - shared_s) * draws})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="bark-small", choices=["tiny", "bark-small", "bark"])
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=150, help="semantic tokens an item (exact: no early stop)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of four whole runs (shared, per-item twice, shared)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    if options.threads:
        torch.set_num_threads(options.threads)

    config = GenerationConfig()
    costs = draw_costs(options.batch_size, options.tokens, config)
    weights = random_weights(bark_config(options.size), config, seed=0)
    bark = pipeline.Bark.from_weights(weights, FixedTokenizer(), DeviceOptions("cpu", options.dtype),
                                      model_id=options.size)
    texts = [f"Item {i}." for i in range(options.batch_size)]
    settings = dict(sampling=SamplingOptions(max_semantic_tokens=options.tokens), allow_early_stop=False,
                    seeds=list(range(1, options.batch_size + 1)))

    def run(shared: bool) -> float:
        with shared_generator() if shared else contextlib.nullcontext():
            start = time.perf_counter()
            bark.generate_batch(texts, **settings)
            return time.perf_counter() - start

    with shared_generator():  # warm-up, untimed
        bark.generate_batch(texts, sampling=SamplingOptions(max_semantic_tokens=16), allow_early_stop=False, seed=0)
    shared, per_item = [], []
    for _ in range(options.rounds):
        for way in (True, False, False, True):
            (shared if way else per_item).append(run(way))
    extra = sum(row["extra_per_run_s"] for row in costs)
    figures = {
        "cpu": cpu_name(), "threads": torch.get_num_threads(), "size": options.size, "dtype": options.dtype,
        "batch_size": options.batch_size, "tokens": options.tokens, "draws": costs,
        "draws_extra_per_run_s": extra,
        "runs": {"shared_s": shared, "per_item_s": per_item},
        "whole_run_ratio": statistics.median(per_item) / statistics.median(shared),
    }
    if options.json:
        print(json.dumps(figures))
        return
    print(f"CPU: {figures['cpu']} ({figures['threads']} threads); random {options.size}, {options.dtype}, "
          f"batch {options.batch_size}, {options.tokens} semantic tokens an item")
    for row in costs:
        print(f"  {row['stage']:8} draw {tuple(row['shape'])}: shared {row['shared_s'] * 1e3:8.3f} ms, "
              f"per item {row['per_item_s'] * 1e3:8.3f} ms, x {row['draws']} draws = "
              f"{row['extra_per_run_s'] * 1e3:+.1f} ms a run")
    print(f"draws: {extra * 1e3:+.1f} ms a run with per-item streams")
    print(f"whole runs, shared:   {', '.join(f'{s:.2f}' for s in shared)} s")
    print(f"whole runs, per item: {', '.join(f'{s:.2f}' for s in per_item)} s")
    print(f"per item / shared (medians): {figures['whole_run_ratio']:.3f}")


if __name__ == "__main__":
    main()
