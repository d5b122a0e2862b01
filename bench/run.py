#!/usr/bin/env python
"""bark-cli against transformers' BarkModel: same weights, same token counts, one process.

    python bench/run.py --config bark-small --tokens 150 300 --compare-transformers
    python bench/run.py --config bark-small --tokens 150 --batch-size 8 --compare-transformers
    python bench/run.py --config suno/bark-small --dtype bfloat16 --json results.json
    python bench/run.py --config bark-small --dtype bfloat16 --quantize int8 --tokens 150 --compare-transformers
    python bench/run.py --config bark --device cuda --dtype float16 --offload --cuda-graphs --tokens 100

Prints a table per token count (seconds and rates per stage, real-time factor, peak memory,
speedup = transformers seconds / bark-cli seconds) and the bandwidth floor of a decode step.
Progress goes to stderr. The measuring code is bark_cli/bench.py (also `bark bench`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from bark_cli.bench import SIZES, BenchOptions, format_report, run_benchmark  # noqa: E402
from bark_cli.errors import BarkError  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="bark-small",
                   help=f"random weights at a size ({', '.join(SIZES)}) or a model folder / Hub id")
    p.add_argument("--tokens", type=int, nargs="+", default=[150], help="exact semantic tokens per item (several: one run each)")
    p.add_argument("--batch-size", type=int, default=1,
                   help="items in one bark-cli batch; transformers generates them one by one")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--dtype", default="float32", help="bark-cli's GPT stages: float32, bfloat16, float16")
    p.add_argument("--quantize", default=None, choices=["int8"], help="int8 weights for bark-cli's semantic and coarse stages")
    p.add_argument("--attention", default="auto", help="auto, sdpa, flash or math")
    p.add_argument("--cuda-graphs", action="store_true", help="bark-cli's decode steps as replayed CUDA graphs")
    p.add_argument("--offload", action="store_true", help="bark-cli keeps idle sub-models on the CPU (GPU memory)")
    p.add_argument("--compare-transformers", action="store_true", help="also run transformers' BarkModel")
    p.add_argument("--transformers-dtype", default=None, help="default: float32 on the CPU, else --dtype")
    p.add_argument("--transformers-batched", action="store_true",
                   help="with --batch-size: transformers runs the whole batch in one call too")
    p.add_argument("--transformers-runs", type=int, default=None,
                   help="with --batch-size: measure only this many sequential transformers runs and scale")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--no-warmup", dest="warmup", action="store_false", help="skip the untimed warm-up runs")
    p.add_argument("--warmup-tokens", type=int, default=16)
    p.add_argument("--repeats", type=int, default=1, help="timed runs per token count (median kept)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--text", default=None, help="text to speak (real models only)")
    p.add_argument("--bandwidth-mb", type=int, default=512, help="copy size for the bandwidth (0: skip)")
    p.add_argument("--decode-steps", type=int, default=32, help="decode steps timed directly (0: skip)")
    p.add_argument("--json", metavar="PATH", default=None, help="also write the report as JSON ('-': stdout only)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fields = dict(vars(args))
    json_path, quiet = fields.pop("json"), fields.pop("quiet")
    if fields["text"] is None:
        fields.pop("text")
    options = BenchOptions(**fields)
    start = time.perf_counter()

    def status(message: str) -> None:
        if not quiet:
            print(f"[{time.perf_counter() - start:7.1f}s] {message}", file=sys.stderr, flush=True)

    try:
        report = run_benchmark(options, status=status)
    except BarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if json_path == "-":
        print(report.to_json())
        return 0
    print("\n".join(format_report(report)))
    if json_path:
        Path(json_path).write_text(report.to_json() + "\n")
        status(f"wrote {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
