"""The timed runs: generate calls with EOS held off, their medians, and the benchmark that puts
the model, the probes, the runs and the roofline together into one report."""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import replace
from typing import Any, Sequence

import numpy as np
import torch

from ..config import SamplingOptions
from ..errors import GenerationError
from ..pipeline import Bark
from .model import dtype_label, environment, load_model, model_info
from .probes import measure_floors, measured, merge_memory
from .results import STAGES, BenchOptions, BenchReport, DecodeFloor, RunResult, Status, Timing
from .roofline import measure_peaks, stage_rooflines


def median_step(stamps: list[float]) -> float | None:
    deltas = np.diff(stamps)
    return float(np.median(deltas)) if len(deltas) else None


def run_bark(bark: Bark, text: str, n_tokens: int, batch: int, seed: int) -> Timing:
    """One generate_batch call of `batch` copies of `text`, exactly `n_tokens` semantic tokens each."""
    stamps: list[float] = []
    windows: list[int] = []

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "semantic":
            stamps.append(time.perf_counter())
        elif stage == "fine":
            windows.append(total)

    start = time.perf_counter()
    made = bark.generate_batch([text] * batch, seed=seed, allow_early_stop=False, progress=progress,
                               sampling=SamplingOptions(max_semantic_tokens=n_tokens))
    bark.runtime.sync()
    total = time.perf_counter() - start
    counts = [dict(semantic_tokens=len(g.semantic_tokens), coarse_frames=g.coarse_tokens.shape[1],
                   fine_frames=g.fine_tokens.shape[1], audio_samples=len(g.audio)) for g in made]
    if any(c != counts[0] for c in counts):
        raise GenerationError(f"bark-cli batch items differ in length: {counts}")
    if counts[0]["semantic_tokens"] != n_tokens:
        raise GenerationError(f"bark-cli made {counts[0]['semantic_tokens']} semantic tokens, not {n_tokens}",
                              "EOS was not held off")
    seconds = {k: float(made[0].seconds[k]) for k in STAGES} | {"total": total}
    return Timing(counts[0], seconds, median_step(stamps), made[0].sample_rate, windows[-1] if windows else None)


def warm_up(bark: Bark, options: BenchOptions, say: Status) -> None:
    say(f"bark-cli warm-up ({options.warmup_tokens} tokens, batch {options.batch_size})")
    run_bark(bark, options.text, options.warmup_tokens, options.batch_size, options.seed)


def timed_run(bark: Bark, options: BenchOptions, n_tokens: int, repeat: int,
              say: Status) -> tuple[Timing, dict[str, Any]]:
    say(f"bark-cli: {n_tokens} tokens, batch {options.batch_size}, run {repeat + 1}/{options.repeats}")
    return measured(bark.device, lambda: run_bark(bark, options.text, n_tokens, options.batch_size,
                                                  options.seed + repeat))


def summarize(dtype: str, batch: int, runs: Sequence[tuple[Timing, dict[str, Any]]]) -> RunResult:
    """The repeats at one token count: median seconds per stage and the largest memory peak."""
    timings = [t for t, _ in runs]
    first = timings[0]
    seconds = {k: statistics.median(t.seconds[k] for t in timings) for k in (*STAGES, "total")}
    steps = [t.step for t in timings if t.step is not None]
    return RunResult(
        dtype=dtype, batch_size=batch, fine_windows=first.fine_windows, sample_rate=first.sample_rate,
        seconds=seconds, runs=[t.seconds for t in timings],
        semantic_step_seconds=statistics.median(steps) if steps else None,
        **first.counts, **merge_memory([m for _, m in runs]),
    )


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """torch's thread count set for a block, restored afterwards."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def report_notes(results: Sequence[RunResult], floors: Sequence[DecodeFloor]) -> list[str]:
    notes = [f"{f.stage} decode step not timed: {f.error}" for f in floors if f.error]
    if any(r.rss_peak_is_process_wide for r in results):
        notes.append("peak RSS could not be reset per run: it is the process-wide peak so far")
    return notes


def run_benchmark(options: BenchOptions, status: Status | None = None) -> BenchReport:
    """Run the benchmark. `status` receives one line per step (for a spinner or a log); nothing
    is printed. Raises InputError / DeviceError / CheckpointError / GenerationError."""
    options.validate()
    say = status or (lambda message: None)
    with torch_threads(options.hardware.threads):
        bark = load_model(options, say)
        if options.warmup:
            warm_up(bark, options, say)
        bandwidth, floors = measure_floors(bark, options, say)
        tokens = [int(n) for n in options.tokens]
        label = dtype_label(bark)
        peaks = measure_peaks(bark, say) if bandwidth else []
        results = [summarize(label, options.batch_size,
                             [timed_run(bark, options, n, r, say) for r in range(options.repeats)])
                   for n in tokens]
        rooflines = [stage_rooflines(bark, run, bandwidth, peaks) for run in results] if peaks else []
        return BenchReport(options=replace(options, tokens=tokens), environment=environment(bark.device),
                           model=model_info(bark, options), bandwidth=bandwidth, floors=floors, results=results,
                           notes=report_notes(results, floors), peaks=peaks, rooflines=rooflines)
