#!/usr/bin/env python
"""Items per minute of `bark batch`, locally and with --ray on the same cores, and Ray's cost per item.

    python bench/ray_batch.py                       # the tiny random test model, 8 and 16 items
    python bench/ray_batch.py --model DIR --items 12 --tokens 64

Printed with the CPU, its core count and the load average:
- whole commands: `bark batch` and `bark batch --ray` as a user runs them (model load, and Ray's
  start-up, included), items per minute; every item gets 16 semantic tokens (--tokens);
- Ray's costs: its start, and its cost per call of one item (`--batch-size 1`), measured with an
  actor that does no work over C and 5C calls (the difference cancels the actor's start); then
  one real item on Ray, an actor's start and model load included.
No gain is expected on one machine: the local batch already uses every core.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
sys.path.insert(0, str(ROOT / "tests"))

from bark_cli.bench import cpu_name  # noqa: E402


def write_lines(folder: Path, count: int) -> Path:
    path = folder / f"lines-{count}.txt"
    path.write_text("".join(f"Item number {i}, a short sentence to speak.\n" for i in range(count)))
    return path


def whole_commands(model: str, folder: Path, count: int, tokens: int) -> dict[str, float]:
    bark = Path(sys.executable).with_name("bark")
    lines = write_lines(folder, count)
    common = [str(bark), "batch", str(lines), "--model", model, "--device", "cpu", "--seed", "1",
              "--max-semantic-tokens", str(tokens), "-q"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    # One item first: the CPU kernel choice is measured once per machine and cached; not timed.
    subprocess.run([*common[:2], str(write_lines(folder, 1)), *common[3:], "--output-dir", str(folder / "warm")],
                   check=True, env=env)
    rates = {}
    for name, extra in (("local", []), ("ray", ["--ray"])):
        start = time.perf_counter()
        subprocess.run([*common, "--output-dir", str(folder / f"cmd-{name}"), *extra], check=True, env=env)
        rates[name] = count / (time.perf_counter() - start) * 60
    return rates


class Echo:
    """An actor that does no work: what is left of a call is Ray's own cost."""

    def __call__(self, batch: dict) -> dict:
        return {"outcome": list(batch["item"])}


def ray_costs(model: str, folder: Path, tokens: int, calls: int) -> dict[str, float]:
    """Ray's start, an actor's start with its model load, and Ray's cost per call of one item."""
    import ray
    import ray.data

    from bark_cli import batch as runner
    from bark_cli.config import DeviceOptions, SamplingOptions
    from bark_cli.raybatch import Speaking, run_on_ray

    start = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    figures = {"ray start s": time.perf_counter() - start}
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)

    def echo(n: int) -> float:
        dataset = ray.data.from_items([{"item": "{}"}] * n).map_batches(Echo, batch_size=1, num_cpus=1,
                                                        compute=ray.data.ActorPoolStrategy(size=1))
        start = time.perf_counter()
        for _ in dataset.iter_rows():
            pass
        return time.perf_counter() - start

    echo(4)  # Ray Data's own first-use costs
    few, many = echo(calls), echo(5 * calls)  # each starts an actor: the difference is the calls alone
    figures["ray s/call of 1 item"] = (many - few) / (4 * calls)

    speaking = Speaking(model=model, hardware=DeviceOptions(device="cpu"),
                        sampling=SamplingOptions(max_semantic_tokens=tokens), batch_size=1)
    items = runner.assign_seeds(runner.plan_outputs(runner.read_items([str(write_lines(folder, 1))]),
                                                    folder / "one"), 1)
    start = time.perf_counter()
    run_on_ray(items, speaking)
    figures["one item on ray, actor start and model load included, s"] = time.perf_counter() - start
    ray.shutdown()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: a tiny random model written now)")
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--calls", type=int, default=40, help="calls of the empty actor (and 5x as many)")
    parser.add_argument("--costs-only", action="store_true", help="skip the whole commands")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bark-ray-bench-") as tmp:
        folder = Path(tmp)
        os.environ.setdefault("XDG_CACHE_HOME", str(folder / "cache"))
        model = args.model
        if model is None:
            from tiny_bark import write_tiny_checkpoint

            model = str(write_tiny_checkpoint(folder / "tiny", seed=0))
        print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}; "
              f"{args.items} items of {args.tokens} semantic tokens")
        if not args.costs_only:
            rates = whole_commands(model, folder, args.items, args.tokens)
            print(f"whole command, items/minute: local {rates['local']:.1f}, --ray {rates['ray']:.1f}")
        figures = ray_costs(model, folder, args.tokens, args.calls)
        print("ray: " + ", ".join(f"{name} {value:.3f}" for name, value in figures.items()))


if __name__ == "__main__":
    main()
