#!/usr/bin/env python
"""Start-up time of the `bark` commands that need no model: whole processes, as a user runs them.

    python bench/startup.py            # median of 5 runs per command
    python bench/startup.py --runs 9 --json

Each command runs as its own process through the installed `bark` script (the one beside this
Python), with HF_HUB_OFFLINE=1 so that no network wait enters the figures. A completion request
is what a shell sends on TAB. Prints one line per command: median, fastest and slowest seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from bark_cli.bench import cpu_name  # noqa: E402

COMMANDS: dict[str, tuple[list[str], dict[str, str]]] = {
    "bark --version": (["--version"], {}),
    "bark --help": (["--help"], {}),
    "bark say --help": (["say", "--help"], {}),
    "bark presets list": (["presets", "list"], {}),
    "bark models list": (["models", "list"], {}),
    "completion (bark sa<TAB>)": ([], {"_BARK_COMPLETE": "complete_bash", "COMP_WORDS": "bark sa", "COMP_CWORD": "1"}),
}


def bark_script() -> str:
    beside = Path(sys.executable).with_name("bark")
    found = str(beside) if beside.exists() else shutil.which("bark")
    if not found:
        sys.exit("error: no installed bark script (pip install -e . first)")
    return found


def time_command(script: str, args: list[str], extra_env: dict[str, str], runs: int, env: dict[str, str]) -> list[float]:
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run([script, *args], env={**env, **extra_env}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        seconds.append(time.perf_counter() - start)
        if done.returncode != 0:
            sys.exit(f"error: bark {' '.join(args)} exited {done.returncode}: {done.stderr.strip()[:300]}")
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="processes per command (the median is kept)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    options = parser.parse_args(argv)
    script = bark_script()
    with tempfile.TemporaryDirectory() as home:
        # An empty voices folder and Hub cache: the figures do not depend on this machine's files.
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "BARK_VOICES_DIR": str(Path(home, "voices")),
               "HF_HOME": str(Path(home, "hf"))}
        time_command(script, ["--version"], {}, 1, env)  # first run warms the file cache
        results = {name: time_command(script, args, extra, options.runs, env)
                   for name, (args, extra) in COMMANDS.items()}
    cpu = cpu_name()
    if options.json:
        print(json.dumps({"cpu": cpu, "python": platform.python_version(), "runs": options.runs,
                          "seconds": {k: {"median": statistics.median(v), "min": min(v), "max": max(v)}
                                      for k, v in results.items()}}))
        return
    print(f"start-up, whole processes, median of {options.runs} ({cpu}, Python {platform.python_version()})")
    width = max(map(len, results))
    for name, seconds in results.items():
        print(f"{name:<{width}}  {statistics.median(seconds):6.3f} s  (min {min(seconds):.3f}, max {max(seconds):.3f})")


if __name__ == "__main__":
    main()
