"""Probes: the process's memory (through /proc where Linux has it), memory bandwidth, and one
GPT decode step timed directly against the floors that bandwidth implies."""

from __future__ import annotations

import gc
import os
import re
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .. import decoding, generation
from ..config import GenerationConfig
from ..models.gpt import GPT
from ..pipeline import Bark
from ..runtime import Runtime
from .results import Bandwidth, BenchOptions, DecodeFloor, Status, Timing


# --- memory --------------------------------------------------------------------------------


def _proc_status(key: str) -> int | None:
    try:
        match = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None


def reset_peak_rss() -> bool:
    """Reset the process's peak RSS (Linux >= 4.0: VmHWM). False where it cannot be."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss() -> int | None:
    peak = _proc_status("VmHWM")
    if peak is not None:
        return peak
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024


class MemoryProbe:
    """Peak RSS (reset per run where Linux allows) and, on CUDA, peak allocated memory; also the
    process's CPU time over the run, which shows when other processes took the cores."""

    def __init__(self, device: torch.device):
        self.device = device

    def start(self) -> None:
        gc.collect()
        self.start_cuda = None
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_cuda = torch.cuda.memory_allocated(self.device)
        self.process_wide = not reset_peak_rss()
        self.start_rss = _proc_status("VmRSS")
        self.start_cpu = time.process_time()
        self.start_wall = time.perf_counter()

    def stop(self) -> dict[str, Any]:
        # The kernel folds each thread's RSS count into VmHWM only now and then, so a fresh
        # VmHWM can read below an earlier VmRSS: the peak is the largest of all three readings.
        readings = [r for r in (_peak_rss(), _proc_status("VmRSS"), self.start_rss) if r is not None]
        out = {"rss_peak_bytes": max(readings, default=None), "rss_start_bytes": self.start_rss,
               "rss_peak_is_process_wide": self.process_wide,
               "cpu_seconds": time.process_time() - self.start_cpu, "wall_seconds": time.perf_counter() - self.start_wall,
               "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            out["cuda_peak_bytes"] = torch.cuda.max_memory_allocated(self.device)
            out["cuda_start_bytes"] = self.start_cuda
        return out


def measured(device: torch.device, run: Callable[[], Timing]) -> tuple[Timing, dict[str, Any]]:
    """`run()`'s timing and the memory it took."""
    probe = MemoryProbe(device)
    probe.start()
    timing = run()
    return timing, probe.stop()


def merge_memory(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The largest peak over repeats (with that run's start)."""
    out = dict(max(runs, key=lambda m: m.get("rss_peak_bytes") or 0))
    cuda = [m for m in runs if m.get("cuda_peak_bytes") is not None]
    if cuda:
        top = max(cuda, key=lambda m: m["cuda_peak_bytes"])
        out["cuda_peak_bytes"], out["cuda_start_bytes"] = top["cuda_peak_bytes"], top["cuda_start_bytes"]
    out["rss_peak_is_process_wide"] = any(m.get("rss_peak_is_process_wide") for m in runs)
    # CPU time over wall time, in cores (at most the thread count when nothing else ran)
    out["cpu_cores_used"] = sum(m["cpu_seconds"] for m in runs) / sum(m["wall_seconds"] for m in runs)
    out.pop("cpu_seconds"), out.pop("wall_seconds")
    loads = [m["load_average"] for m in runs if m.get("load_average") is not None]
    out["load_average"] = max(loads) if loads else None
    return out


# --- bandwidth and the decode step ---------------------------------------------------------


@torch.inference_mode()
def measure_bandwidth(runtime: Runtime, megabytes: int = 512, repeats: int = 5) -> Bandwidth:
    """Copy, sum and matrix-vector bandwidth on the runtime's device (see Bandwidth)."""
    n = max(1024, megabytes * 2**20 // 4 // 1024 * 1024)
    src = torch.ones(n, dtype=torch.float32, device=runtime.device)
    dst = torch.empty_like(src)
    dst.copy_(src)  # touch every page first
    matrix, row = src.view(-1, 1024), torch.ones(1, 1024, device=runtime.device)

    def fastest(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            runtime.sync()
            start = time.perf_counter()
            fn()
            runtime.sync()
            times.append(time.perf_counter() - start)
        return min(times)

    copy = fastest(lambda: dst.copy_(src))
    total = fastest(lambda: src.sum())
    matvec = fastest(lambda: torch.nn.functional.linear(row, matrix))
    return Bandwidth(megabytes, n * 4 / copy, n * 4 / total, n * 4 / matvec)


def decode_step_bytes(model: GPT) -> int:
    """Bytes of weights one decode step reads: every parameter and buffer except the token
    embedding table (a step only indexes one row of it) and all but one row of the position
    table; the LM head is read whole. Shared tensors count once."""
    token_table = model.input_embeds_layer.weight
    position_table = model.position_embeds_layer.weight
    seen, total = set(), 0
    for t in (*model.parameters(), *model.buffers()):
        if id(t) in seen or t is token_table:
            continue
        seen.add(id(t))
        total += (t.shape[1] if t is position_table else t.numel()) * t.element_size()
    return total


def kv_step_bytes(model: GPT, batch: int, position: int) -> int:
    """KV cache a decode step at `position` reads (keys and values of every earlier position)."""
    c = model.config
    return 2 * c.num_layers * batch * position * c.hidden_size * model.cache_dtype.itemsize


@torch.inference_mode()
def time_decode_steps(model: GPT, runtime: Runtime, batch: int, position: int, steps: int) -> tuple[float, float]:
    """Seconds of one decode step (a one-token forward with the KV cache) at `position`: the
    median and the fastest of `steps` steps timed one by one after a prefill of `position`
    tokens (the median shrugs off a step that another process slowed down). The step is
    generation's own, so a CUDA graph is timed as generation replays it."""
    steps = max(1, min(steps, model.config.block_size - position - 4))
    device = runtime.device
    with decoding.kv_cache(model, batch, runtime.cuda_graphs) as step:
        model(ids=torch.zeros(batch, position, dtype=torch.long, device=device), start=0)
        token = torch.zeros(batch, 1, dtype=torch.long, device=device)
        for i in range(3):  # warm-up steps (and the graph's capture)
            step(token, position + i)
        times = []
        for i in range(steps):
            runtime.sync()
            start = time.perf_counter()
            step(token, position + 3 + i)
            runtime.sync()
            times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def step_positions(longest: int, gen: GenerationConfig) -> dict[str, int]:
    """Where a decode step is timed: the middle of the semantic run and of a coarse window."""
    coarse_tokens = generation.coarse_steps(longest, gen)
    return {
        # the text context and its infer token, then half the new tokens
        "semantic": gen.max_input_semantic_length + 1 + longest // 2,
        # a coarse window's context with the history it has on average, then half a window
        "coarse": gen.max_coarse_input_length + 1 + min(gen.max_coarse_history, coarse_tokens // 2)
        + gen.sliding_window_len // 2,
    }


def decode_floor(bark: Bark, stage: str, position: int, bandwidth: Bandwidth, options: BenchOptions,
                 say: Status) -> DecodeFloor:
    """One GPT stage's decode step against both floors, the step timed unless `decode_steps` is 0."""
    model: GPT = getattr(bark.weights, stage)
    position = min(position, model.config.block_size - 8)
    batch = options.batch_size
    floor = DecodeFloor(stage, batch, decode_step_bytes(model), kv_step_bytes(model, batch, position), position,
                        bandwidth.strict_bytes_per_s, bandwidth.copy_bytes_per_s)
    if options.decode_steps > 0:
        say(f"timing {options.decode_steps} {stage} decode steps")
        try:
            with bark.stage(stage):  # placed and attending as generation runs it
                floor.measured_seconds, floor.best_seconds = time_decode_steps(
                    model, bark.runtime, batch, position, options.decode_steps)
        except Exception as exc:  # e.g. out of device memory: the floor stands without it
            floor.error = f"{type(exc).__name__}: {exc}"
    return floor


def measure_floors(bark: Bark, options: BenchOptions, say: Status) -> tuple[Bandwidth | None, list[DecodeFloor]]:
    """Memory bandwidth and each GPT stage's decode step against the floors it implies."""
    if options.bandwidth_mb <= 0:
        return None, []
    say(f"measuring memory bandwidth ({options.bandwidth_mb} MB)")
    bandwidth = measure_bandwidth(bark.runtime, options.bandwidth_mb)
    positions = step_positions(max(options.tokens), bark.config)
    return bandwidth, [decode_floor(bark, stage, positions[stage], bandwidth, options, say)
                       for stage in ("semantic", "coarse")]
