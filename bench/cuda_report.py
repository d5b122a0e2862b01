#!/usr/bin/env python
"""The GPU report's figures from the JSON files `bench/cuda.sh` leaves, against a baseline.

    python bench/cuda_report.py bench-cuda                      # print the figures
    python bench/cuda_report.py bench-cuda --baseline bench/cuda-baseline.json   # exit 1 on a regression

Every figure is lower-better (seconds, milliseconds, bytes, kernels). A figure regresses where
it exceeds its baseline by more than --tolerance (25%); a figure the baseline holds as null, or
that this run did not produce, is shown and not compared. `--write FILE` saves this run's
figures in the baseline's layout, to commit as the next baseline.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TOLERANCE = 0.25

# bench/cuda.sh's `bark bench` reports: (file stem, figure prefix)
BENCH_REPORTS = {
    "bark-fp16": "bark fp16 eager",
    "bark-fp16-graphs": "bark fp16 graphs",
    "bark-fp16-offload": "bark fp16 offload eager",
    "bark-fp16-offload-graphs": "bark fp16 offload graphs",
    "bark-fp16-batch16-eager": "bark fp16 batch16 eager",
    "bark-fp16-batch16": "bark fp16 batch16 graphs",
    "bark-bf16-graphs": "bark bf16 graphs",
    "bark-small-fp16-graphs": "bark-small fp16 graphs",
    "bark-fp16-voice-graphs": "bark fp16 voice graphs",
}


def bench_figures(report: dict, prefix: str) -> dict[str, float | None]:
    """Seconds per stage and in total, the GPU peak, and each decode step against its floor."""
    out: dict[str, float | None] = {}
    for result in report.get("results", [])[:1]:
        run = result.get("bark_cli") or {}
        for stage in ("semantic", "coarse", "total"):
            out[f"{prefix} {stage} s"] = run.get("seconds", {}).get(stage)
        peak = run.get("cuda_peak_bytes")
        out[f"{prefix} gpu peak GiB"] = None if peak is None else peak / 2**30
    for floor in report.get("decode_floor", []):
        if floor.get("measured_seconds") is not None:
            out[f"{prefix} {floor['stage']} step ms"] = floor["measured_seconds"] * 1e3
            out[f"{prefix} {floor['stage']} step / strict floor"] = floor.get("strict_ratio")
    return out


def collect(folder: Path) -> dict[str, float | None]:
    """Every figure found in `folder`: the bench reports above, and any `*.figures.json` file
    ({"figures": {name: value}}, as bench/cuda_steps.py and bench/stream.py --json write)."""
    figures: dict[str, float | None] = {}
    for stem, prefix in BENCH_REPORTS.items():
        path = folder / f"{stem}.json"
        if path.is_file():
            try:
                figures.update(bench_figures(json.loads(path.read_text()), prefix))
            except ValueError:
                continue
    for path in sorted(folder.glob("*.figures.json")):
        try:
            figures.update(json.loads(path.read_text()).get("figures", {}))
        except ValueError:
            continue
    return figures


def compare(current: dict[str, float | None], baseline: dict[str, float | None],
            tolerance: float = TOLERANCE) -> list[str]:
    """The figures that regressed: above baseline x (1 + tolerance), every figure lower-better."""
    regressed = []
    for name, base in baseline.items():
        now = current.get(name)
        if base is None or now is None:
            continue
        if now > base * (1 + tolerance):
            regressed.append(f"{name}: {now:.4g} against {base:.4g} (+{now / base - 1:.0%})")
    return regressed


def table(current: dict[str, float | None], baseline: dict[str, float | None]) -> str:
    lines = []
    for name in sorted(set(current) | set(baseline)):
        now, base = current.get(name), baseline.get(name)
        shown = "-" if now is None else f"{now:.4g}"
        against = "" if base is None else f"  (baseline {base:.4g})"
        lines.append(f"  {name:48} {shown:>10}{against}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--baseline", type=Path)
    parser.add_argument("--tolerance", type=float, default=TOLERANCE)
    parser.add_argument("--write", type=Path, help="save this run's figures in the baseline's layout")
    args = parser.parse_args(argv)
    current = collect(args.folder)
    baseline = json.loads(args.baseline.read_text())["figures"] if args.baseline else {}
    print(table(current, baseline))
    if args.write:
        args.write.write_text(json.dumps({"figures": current}, indent=1, sort_keys=True) + "\n")
    regressed = compare(current, baseline, args.tolerance)
    for line in regressed:
        print(f"regressed: {line}", file=sys.stderr)
    return 1 if regressed else 0


if __name__ == "__main__":
    sys.exit(main())
