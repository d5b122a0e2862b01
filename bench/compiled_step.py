#!/usr/bin/env python
"""One decode step eager against torch.compile(fullgraph=True) of the same static step, on the CPU.

    python bench/compiled_step.py                      # bark-small semantic shape, float32 and bfloat16
    python bench/compiled_step.py --dtypes float32 --steps 20

The step is GraphStep's: GPT's static step over its bucket, LM head and a greedy semantic pick
(decoding.GraphStep._run), so the compiled graph holds all a loop's step does. Inductor builds
it with the system C++ compiler; `--gemm-template` also lets it try its C++ GEMM template
(max_autotune_gemm_backends "CPP,ATEN") for the one-row products. Printed: the CPU, the
compile (warm-up) seconds, ms per step of each variant (median, timed interleaved), and whether
float32 greedy tokens of --check-steps steps are identical to the eager step's.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bark_cli.weights import random_weights
from bark_cli.bench import bark_config
from bark_cli.config import GenerationConfig, Sampling
from bark_cli.decoding import GraphStep, step_key
from bark_cli.generation import semantic_pick
from bark_cli.models import kernels
from bark_cli.models.kernels import cpu_kind


def build(dtype: torch.dtype):
    weights = random_weights(bark_config("bark-small"), GenerationConfig(), seed=0, dtype=dtype)
    return weights.semantic.eval(), GenerationConfig()


def run_steps(step: GraphStep, key, positions, fn) -> tuple[list[float], list[int]]:
    times, tokens = [], []
    ids = torch.zeros(1, 1, dtype=torch.long)
    for position in positions:
        step.ids.copy_(ids)
        step.position.fill_(position)
        start = time.perf_counter()
        token, fed, _ = fn(key)
        times.append(time.perf_counter() - start)
        tokens.append(int(token[0]))
        ids = fed[:, None]
    return times, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gemm-template", action="store_true")
    args = parser.parse_args()
    kernels.calibrated()
    print(f"compiled decode step, bark-small semantic, batch 1, {cpu_kind()}")
    if args.gemm_template:
        import torch._inductor.config as inductor

        inductor.max_autotune = True
        inductor.max_autotune_gemm_backends = "CPP,ATEN"
    for name in args.dtypes:
        dtype = getattr(torch, name)
        model, gen = build(dtype)
        pick = semantic_pick(gen, Sampling(0.0), None, allow_early_stop=True)
        with torch.inference_mode():
            step = GraphStep(model, 1)
            model(ids=torch.zeros(1, 300, dtype=torch.long), start=0)  # a prefill: positions 0..299
            key = step_key(300, model.config.block_size, None, pick)
            # Inductor lowers F.linear (packing the weights itself), not the oneDNN op the
            # calibrated eager step may call, so the compiled step traces PyTorch's defaults.
            inner = torch.compile(step._run, fullgraph=True, dynamic=False)

            def compiled(key):
                with kernels.use(kernels.PYTORCH_DEFAULT):
                    return inner(key)

            start = time.perf_counter()
            compiled(key)
            warm = time.perf_counter() - start
            positions = range(300, 300 + args.steps)
            eager_times, compiled_times = [], []
            for _ in range(args.rounds):  # interleaved
                t, eager_tokens = run_steps(step, key, positions, step._run)
                eager_times += t
                t, compiled_tokens = run_steps(step, key, positions, compiled)
                compiled_times += t
        same = eager_tokens == compiled_tokens
        print(f"  {name}: compile {warm:.1f} s; eager {statistics.median(eager_times) * 1e3:.1f} ms/step, "
              f"compiled {statistics.median(compiled_times) * 1e3:.1f} ms/step; greedy tokens identical: {same}")


if __name__ == "__main__":
    main()
