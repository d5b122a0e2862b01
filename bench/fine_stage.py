#!/usr/bin/env python
"""The fine stage's six codebook passes over one 1024-frame window: this release's kernels and
head against the previous ones, interleaved, with the share of the GEMM peak each reaches.

    python bench/fine_stage.py                         # bark-small, float32 and bfloat16, batch 1
    python bench/fine_stage.py --batch-size 8 --passes 1 --dtypes bfloat16   # one pass of the six

`before` computes the whole 1056-row head and takes the first 1024 columns, with PyTorch's
default bfloat16 product and a separate GELU; `after` is the model as
generation runs it. Both run on the same random weights, round by round, so that a slow moment of
the machine hits both alike; the median of each is printed. The logit error is the largest and
mean |logit - float32 logit| over the float32 logits' std, as bench/precision.py reports it.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bark_cli import bench  # noqa: E402
from bark_cli.config import DeviceOptions  # noqa: E402
from bark_cli.models import kernels  # noqa: E402
from bark_cli.models.fine import FineGPT  # noqa: E402
from bark_cli.runtime import Runtime  # noqa: E402

WINDOW, KEPT = 1024, 1024


def previous_kernels():
    """PyTorch's default bfloat16 product and a separate GELU, as the previous release ran them."""
    return kernels.use(dataclasses.replace(kernels.chosen, bfloat16_fused_rows=False))


def passes(model: FineGPT, codes: torch.Tensor, before: bool, count: int = 6) -> list[torch.Tensor]:
    """The first `count` of the six codebook passes; logits of the kept rows."""
    out = []
    for book in range(2, 2 + count):
        if before:
            with previous_kernels():
                out.append(model(book, codes)[:, :, :KEPT])
        else:
            out.append(model(book, codes, rows=slice(0, KEPT)))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="bark-small", choices=list(bench.SIZES))
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--passes", type=int, default=6, choices=range(1, 7), help="codebook passes timed (all alike)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    kernels.calibrated()  # the CPU kernels the product would run here
    torch.manual_seed(0)
    config = bench.bark_config(args.config).fine
    reference = FineGPT(config).eval()
    codes = torch.randint(0, 1024, (args.batch_size, WINDOW, 8), generator=torch.Generator().manual_seed(1))
    cpu = bench.environment(torch.device("cpu"))["cpu"]
    n = args.passes
    flops = n * bench.fine_pass_counts(config, WINDOW, KEPT, args.batch_size, 4)[0]
    print(f"{args.config} fine stage, one window ({n} passes x {WINDOW} frames), batch {args.batch_size}, "
          f"{cpu}, {torch.get_num_threads()} thread(s), torch {torch.__version__}; {flops / 1e9:.0f} GFLOP")
    with torch.inference_mode():
        exact = passes(reference, codes, before=False, count=n)
        for name in args.dtypes.split(","):
            dtype = getattr(torch, name)
            runtime = Runtime.choose(DeviceOptions("cpu", "float32"))
            peak = bench.measure_gemm_peak(runtime, dtype).flops_per_s
            model = FineGPT(config).eval()
            model.load_state_dict(reference.state_dict())
            model = model.to(dtype)
            times = {"before": [], "after": []}
            passes(model, codes, True, n), passes(model, codes, False, n)  # warm-up
            for _ in range(args.rounds):
                for variant in times:
                    start = time.perf_counter()
                    passes(model, codes, variant == "before", n)
                    times[variant].append(time.perf_counter() - start)
            before, after = (statistics.median(times[v]) for v in ("before", "after"))
            std = torch.cat([t.flatten() for t in exact]).float().std()
            diffs = [(a.float() - e).abs() for a, e in zip(passes(model, codes, False, n), exact)]
            worst = max(d.max() for d in diffs) / std
            mean = sum(d.mean() for d in diffs) / len(diffs) / std
            print(f"  {name:<9} before {before:6.2f} s  after {after:6.2f} s  ({before / after:.2f}x)  "
                  f"{flops / after / 1e9:5.0f} GFLOP/s = {flops / after / peak:.0%} of the {name} GEMM peak "
                  f"({peak / 1e9:.0f} GFLOP/s); logits vs float32: max {worst:.3f}, mean {mean:.4f} of the std")
    return 0


if __name__ == "__main__":
    sys.exit(main())
