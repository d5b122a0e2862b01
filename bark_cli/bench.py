"""`bark bench`: what each of bark-cli's stages takes on this machine, to size hardware with.

    from bark_cli.bench import BenchOptions, run_benchmark, format_report
    report = run_benchmark(BenchOptions(config="bark-small", tokens=[150, 300]))
    print("\\n".join(format_report(report)))
    report.to_json()

Weights are random at the real sizes of a checkpoint (`bark-small`, `bark`; `tiny` for tests) or
a real model (a folder or a Hub id). EOS is held off, so every run makes exactly the semantic
tokens asked for. Per token count the report gives seconds and rates per stage, the real-time
factor (processing seconds per audio second: below 1 is faster than real time), peak memory,
and the decode step of each GPT stage against two memory-bandwidth floors.

Everything runs through the library's public API (`Bark.load`, `Bark.from_weights`,
`generate_batch`, `decoding.kv_cache`), so the figures are those of bark-cli as users run it.
The pieces are public too: bench/compare.py runs transformers beside them. This module never
prints: `format_report` returns text lines and `BenchReport.to_json` the JSON.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import platform
import re
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from . import checkpoint, decoding, generation
from .config import BarkConfig, CodecConfig, GenerationConfig, SamplingOptions
from .errors import GenerationError, InputError
from .models.gpt import GPT
from .models import kernels as cpu_kernels
from .models.kernels import ONEDNN_BF16_LINEAR, ONEDNN_LINEAR, cpu_name
from .pipeline import Bark
from .runtime import Runtime

# Widths of the published checkpoints (config.json of suno/bark-small and suno/bark; the three
# GPT stages share them). Everything else is bark_cli.config's defaults. `tiny` is for tests.
SIZES: dict[str, dict[str, int]] = {
    "bark-small": dict(num_layers=12, num_heads=12, hidden_size=768),
    "bark": dict(num_layers=24, num_heads=16, hidden_size=1024),
    "tiny": dict(num_layers=2, num_heads=2, hidden_size=32),
}
TINY_CODEC = dict(hidden_size=32, num_filters=8, codebook_dim=32)
STAGES = ("semantic", "coarse", "fine", "decode")
DEFAULT_TEXT = "Hello, my name is Suno. And, uh, I like pizza. [laughs] But I also have other interests."
# Random weights need no tokenizer: the text only fills the 256-slot context, whose length is fixed.
FIXED_TEXT_IDS = list(range(2000, 2024))
GiB = 2**30

Status = Callable[[str], None]


class FixedTokenizer:
    """Stands in for the BERT tokenizer with random weights: every text is the same ids
    (timing does not depend on the text: the semantic context is always 256 slots)."""

    def __init__(self, ids: Sequence[int] = FIXED_TEXT_IDS):
        self.ids = list(ids)

    def encode(self, text: str) -> list[int]:
        return list(self.ids)


# --- options and results -------------------------------------------------------------------


@dataclass
class BenchOptions:
    """What to measure. `config` is a size (`bark-small`, `bark`, `tiny`: random weights) or a
    model folder / Hub id (real weights). Device options mean what they mean to `Bark.load`."""

    config: str = "bark-small"
    tokens: Sequence[int] = (150,)  # exact semantic tokens per item, one measurement each
    batch_size: int = 1  # items per generate_batch call
    device: str = "cpu"
    dtype: str = "auto"
    quantize: str | None = None
    attention: str = "auto"
    cuda_graphs: bool | None = None  # None: on where the device is CUDA
    offload: bool = False
    threads: int | None = None  # torch.set_num_threads for the run
    warmup: bool = True  # one short untimed run first
    warmup_tokens: int = 16
    repeats: int = 1  # timed runs per token count; the report keeps the median per stage
    seed: int = 0
    text: str = DEFAULT_TEXT  # real models only
    bandwidth_mb: int = 512  # size of the tensor that measures memory bandwidth (0: skip)
    decode_steps: int = 32  # decode steps timed directly per GPT stage (0: skip)

    def validate(self) -> None:
        if not self.tokens or any(int(n) < 1 for n in self.tokens):
            raise InputError("token counts must be positive", "e.g. --tokens 150")
        if self.batch_size < 1:
            raise InputError(f"batch size {self.batch_size} is below 1", "use a positive batch size")
        if self.repeats < 1:
            raise InputError(f"repeats {self.repeats} is below 1", "use at least 1")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"threads {self.threads} is below 1", "use a positive thread count")
        if self.warmup_tokens < 1:
            raise InputError("warm-up tokens must be at least 1", "or turn the warm-up off")


@dataclass
class Timing:
    """One timed generate call: counts per item, seconds per stage and in all."""

    counts: dict[str, int]  # semantic_tokens, coarse_frames, fine_frames, audio_samples
    seconds: dict[str, float]  # semantic, coarse, fine, decode, total
    step: float | None  # median semantic decode step inside the call
    sample_rate: int
    fine_windows: int | None = None  # per item, as the fine stage reported it


@dataclass
class RunResult:
    """One implementation at one token count: median seconds per stage over the repeats."""

    implementation: str  # "bark-cli" (bench/compare.py adds "transformers")
    dtype: str
    batch_size: int  # items generated
    semantic_tokens: int  # per item, exact
    coarse_frames: int  # per item (2 coarse tokens each)
    fine_frames: int  # per item
    fine_windows: int  # per item; each window is 6 passes of the fine model over 1024 frames
    audio_samples: int  # per item
    sample_rate: int
    seconds: dict[str, float]  # semantic, coarse, fine, decode, total (median of the repeats)
    runs: list[dict[str, float]] = field(default_factory=list)  # every repeat's seconds
    calls: int = 1  # generate calls the items take
    scaled_from: int | None = None  # only this many calls were timed, times scaled to `calls`
    semantic_step_seconds: float | None = None  # median decode step inside the real run
    rss_peak_bytes: int | None = None
    rss_start_bytes: int | None = None
    rss_peak_is_process_wide: bool = False  # the peak could not be reset before the run
    cuda_peak_bytes: int | None = None
    cuda_start_bytes: int | None = None
    cpu_cores_used: float | None = None  # process CPU seconds / wall seconds; below the threads: contention
    load_average: float | None = None  # the machine's 1-minute load average after a run (highest)

    @property
    def audio_seconds(self) -> float:
        """Audio of all items."""
        return self.batch_size * self.audio_samples / self.sample_rate

    def rates(self) -> dict[str, float]:
        s, b = self.seconds, self.batch_size
        return {
            "semantic_tokens_per_s": b * self.semantic_tokens / s["semantic"],
            "coarse_tokens_per_s": b * 2 * self.coarse_frames / s["coarse"],
            "fine_windows_per_s": b * self.fine_windows / s["fine"],
            "fine_seconds_per_window": s["fine"] / (b * self.fine_windows),
            "decode_real_time_factor": s["decode"] / self.audio_seconds,
            # processing seconds per audio second: below 1 is faster than real time
            "real_time_factor": s["total"] / self.audio_seconds,
            "x_faster_than_real_time": self.audio_seconds / s["total"],
        }

    @property
    def rss_delta_bytes(self) -> int | None:
        if self.rss_peak_bytes is None or self.rss_start_bytes is None:
            return None
        return self.rss_peak_bytes - self.rss_start_bytes

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["audio_seconds"] = self.audio_seconds
        out["rss_delta_bytes"] = self.rss_delta_bytes
        out.update(self.rates())
        return out


@dataclass
class Bandwidth:
    """Memory bandwidth measured on a float32 tensor of `megabytes`, best of several tries.

    `copy`: `dst.copy_(src)`, counting the bytes read (the tensor's size); a copy also writes as
    much, so it understates what reads alone reach. `sum`: a reduction, which only reads.
    `matvec`: one row times the tensor seen as a (N, 1024) weight matrix, which is what a decode
    step does with its weights. The strict floor uses the highest rate memory was seen to move
    at, so that it is a true lower bound.
    """

    megabytes: int
    copy_bytes_per_s: float
    sum_bytes_per_s: float
    matvec_bytes_per_s: float

    @property
    def strict_bytes_per_s(self) -> float:
        return max(self.sum_bytes_per_s, self.matvec_bytes_per_s, 2 * self.copy_bytes_per_s)


@dataclass
class DecodeFloor:
    """One decode step of a GPT stage against two floors: the weights it reads at the copy rate
    (the copy floor) and at the fastest rate seen (the strict floor, a true lower bound)."""

    stage: str  # semantic or coarse
    batch_size: int
    weight_bytes: int  # every weight a step reads: all but the token table, one position row
    kv_bytes: int  # KV cache a step reads at `position` (not part of the floors)
    position: int
    strict_bytes_per_s: float
    copy_bytes_per_s: float  # a copy's rate, counting the bytes read
    measured_seconds: float | None = None  # one step (forward only), timed directly: the median
    best_seconds: float | None = None  # the fastest of those steps (other processes only add time)
    error: str | None = None  # why it could not be measured

    @property
    def strict_floor_seconds(self) -> float:
        return self.weight_bytes / self.strict_bytes_per_s

    @property
    def copy_floor_seconds(self) -> float:
        """Not a true lower bound where reads alone run faster than a copy's."""
        return self.weight_bytes / self.copy_bytes_per_s

    @property
    def strict_ratio(self) -> float | None:
        """Median step / strict floor (1.0 is the bandwidth limit)."""
        return None if self.measured_seconds is None else self.measured_seconds / self.strict_floor_seconds

    @property
    def best_strict_ratio(self) -> float | None:
        """Fastest step / strict floor: best against best, as the floor's bandwidth is the best seen."""
        return None if self.best_seconds is None else self.best_seconds / self.strict_floor_seconds

    @property
    def copy_ratio(self) -> float | None:
        return None if self.measured_seconds is None else self.measured_seconds / self.copy_floor_seconds

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(strict_floor_seconds=self.strict_floor_seconds,
                   strict_floor_with_kv_seconds=(self.weight_bytes + self.kv_bytes) / self.strict_bytes_per_s,
                   strict_ratio=self.strict_ratio, best_strict_ratio=self.best_strict_ratio,
                   copy_floor_seconds=self.copy_floor_seconds, copy_ratio=self.copy_ratio)
        return out


@dataclass
class BenchReport:
    options: BenchOptions
    environment: dict[str, Any]
    model: dict[str, Any]
    bandwidth: Bandwidth | None
    floors: list[DecodeFloor]
    results: list[RunResult]  # one per token count
    notes: list[str] = field(default_factory=list)
    peaks: list[GemmPeak] = field(default_factory=list)  # GEMM peak per dtype (empty: not measured)
    rooflines: list[list[StageRoofline]] = field(default_factory=list)  # per result, per GPT stage

    def to_dict(self) -> dict[str, Any]:
        options = asdict(self.options)
        options["tokens"] = list(self.options.tokens)
        return {
            "options": options,
            "environment": self.environment,
            "model": self.model,
            "bandwidth": None if self.bandwidth is None else {
                **asdict(self.bandwidth), "strict_bytes_per_s": self.bandwidth.strict_bytes_per_s},
            "decode_floor": [f.to_dict() for f in self.floors],
            "results": [{"tokens": r.semantic_tokens, "bark_cli": r.to_dict()}
                        | ({"roofline": [s.to_dict() for s in self.rooflines[i]]} if self.rooflines else {})
                        for i, r in enumerate(self.results)],
            "gemm_peak": [asdict(p) for p in self.peaks],
            "notes": list(self.notes),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return to_json(self.to_dict(), indent)


def to_json(data: dict[str, Any], indent: int | None = 2) -> str:
    return json.dumps(data, indent=indent, default=_json_default, allow_nan=False)


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


# --- the model -----------------------------------------------------------------------------


def bark_config(size: str) -> BarkConfig:
    """The shapes of a named size, at the real vocabulary sizes."""
    if size not in SIZES:
        raise InputError(f"unknown size {size!r}", f"use one of {', '.join(SIZES)}, a model folder or a Hub id")
    base, width = BarkConfig(), SIZES[size]
    return BarkConfig(
        semantic=replace(base.semantic, **width),
        coarse=replace(base.coarse, **width),
        fine=replace(base.fine, **width),
        codec=CodecConfig(**TINY_CODEC) if size == "tiny" else base.codec,
    )


def is_random(options: BenchOptions) -> bool:
    return options.config in SIZES


def load_model(options: BenchOptions, say: Status) -> Bark:
    """Random weights at a size, or a real model, placed as `options` asks."""
    device = dict(device=options.device, dtype=options.dtype, offload=options.offload,
                  attention=options.attention, quantize=options.quantize, cuda_graphs=options.cuda_graphs)
    if not is_random(options):
        return Bark.load(options.config, progress=say, **device)
    # Check the device options before building weights (seconds for `bark`).
    runtime = Runtime.choose(**device)
    say(f"building random weights ({options.config})")
    weights = checkpoint.random_weights(bark_config(options.config), GenerationConfig(), seed=options.seed,
                                        dtype=runtime.dtype)
    return Bark.from_weights(weights, FixedTokenizer(), model_id=f"random {options.config}", **device)


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())  # tied parameters are yielded once


def weights_bytes(weights: checkpoint.BarkWeights) -> int:
    seen, total = set(), 0
    for module in (weights.semantic, weights.coarse, weights.fine, weights.codec):
        for t in (*module.parameters(), *module.buffers()):
            if id(t) not in seen:
                seen.add(id(t))
                total += t.numel() * t.element_size()
    return total


def dtype_label(bark: Bark) -> str:
    """The dtype with what changes a step's kernels, e.g. `bfloat16+int8+graphs`."""
    runtime = bark.runtime
    return (runtime.dtype_name + (f"+{runtime.quantize}" if runtime.quantize else "")
            + ("+graphs" if runtime.cuda_graphs else ""))


def model_info(bark: Bark, options: BenchOptions) -> dict[str, Any]:
    w, c = bark.weights, bark.weights.config
    stages = {
        name: {"num_layers": sub.num_layers, "num_heads": sub.num_heads, "hidden_size": sub.hidden_size,
               "parameters": count_parameters(module)}
        for name, sub, module in (("semantic", c.semantic, w.semantic), ("coarse", c.coarse, w.coarse),
                                  ("fine", c.fine, w.fine))
    }
    return {
        "config": options.config,
        "weights": "random" if is_random(options) else "checkpoint",
        "stages": stages | {"codec": {"parameters": count_parameters(w.codec)}},
        "weights_bytes": weights_bytes(w),
        "dtype": bark.runtime.dtype_name,
        "quantize": bark.runtime.quantize,
        "cuda_graphs": bark.runtime.cuda_graphs,
        "offload": bark.runtime.offload,  # off on the CPU, where there is nothing to offload to
        "attention": bark.runtime.attention,
        # The SDPA kernel PyTorch picks for the GPT stages' shapes (theirs are the same).
        "sdpa_backends": bark.runtime.sdpa_backends(c.semantic, options.batch_size),
        # Which CPU kernel runs each product here (models.kernels.calibrate).
        "cpu_kernels": cpu_kernels.chosen.describe() if bark.device.type == "cpu" else None,
    }


def environment(device: torch.device) -> dict[str, Any]:
    cpu = cpu_name()
    env = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        # Other processes on the machine skew every figure: worth a look when numbers surprise.
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
    return env


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


def _merge_memory(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
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


# --- roofline ------------------------------------------------------------------------------

# The GEMM that measures a dtype's peak: the fine stage's shape (1024 frames) at its widest product.
GEMM_SHAPE = (1024, 1024, 4096)


@dataclass
class GemmPeak:
    """Floating-point (or int8) operations per second of one (m x k) @ (k x n) product, best of a
    few, through the fastest of torch.mm and the kernel the model's linears call for that dtype."""

    dtype: str
    flops_per_s: float
    shape: tuple[int, int, int] = GEMM_SHAPE


@dataclass
class StageRoofline:
    """One stage's work against the machine's roofline: `flops` at the GEMM peak or `bytes` at the
    strict bandwidth, whichever takes longer, is the least time the stage could take."""

    stage: str
    flops: float
    bytes: float
    seconds: float  # the stage as measured in the run
    peak_flops_per_s: float
    peak_dtype: str
    bytes_per_s: float

    @property
    def compute_seconds(self) -> float:
        return self.flops / self.peak_flops_per_s

    @property
    def memory_seconds(self) -> float:
        return self.bytes / self.bytes_per_s

    @property
    def bound(self) -> str:
        return "compute" if self.compute_seconds >= self.memory_seconds else "memory"

    @property
    def roof_seconds(self) -> float:
        return max(self.compute_seconds, self.memory_seconds)

    @property
    def fraction(self) -> float:
        """Share of the roofline reached: the least possible time over the measured one."""
        return self.roof_seconds / self.seconds

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | dict(compute_seconds=self.compute_seconds, memory_seconds=self.memory_seconds,
                                   bound=self.bound, roof_seconds=self.roof_seconds, fraction=self.fraction)


def cpu_flags() -> set[str]:
    with contextlib.suppress(OSError):
        match = re.search(r"^flags\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        if match:
            return set(match.group(1).split())
    return set()


def has_int8_dot(flags: set[str]) -> bool:
    """Whether the CPU has int8 dot-product instructions (VNNI or AMX), where int8 GEMMs gain."""
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


@torch.inference_mode()
def measure_gemm_peak(runtime: Runtime, dtype: torch.dtype, shape: tuple[int, int, int] = GEMM_SHAPE,
                      repeats: int = 3) -> GemmPeak:
    m, k, n = shape
    device = runtime.device
    if dtype == torch.int8:
        a = torch.randint(-127, 128, (m, k), dtype=dtype, device=device)
        b = torch.randint(-127, 128, (k, n), dtype=dtype, device=device)
        kernels = [lambda: torch._int_mm(a, b)]
    else:
        a = torch.randn(m, k, device=device).to(dtype)
        b = torch.randn(n, k, device=device).to(dtype)  # (out, in), as a linear's weight
        kernels = [lambda: torch.mm(a, b.t())]
        # oneDNN's bfloat16 product only where PyTorch finds it usable (AVX-512 or AMX): elsewhere it fails.
        if device.type == "cpu" and (ONEDNN_BF16_LINEAR if dtype == torch.bfloat16 else ONEDNN_LINEAR):
            kernels.append(lambda: torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], ""))
    best = math.inf
    for kernel in kernels:
        kernel()
        for _ in range(repeats):
            runtime.sync()
            start = time.perf_counter()
            kernel()
            runtime.sync()
            best = min(best, time.perf_counter() - start)
    return GemmPeak(str(dtype).removeprefix("torch."), 2 * m * k * n / best, shape)


def peak_dtypes(runtime: Runtime, flags: set[str] | None = None) -> list[torch.dtype]:
    """float32 and the run's dtype everywhere; on the CPU bfloat16 too, and int8 where the CPU
    has int8 dot products and this PyTorch its int8 GEMM."""
    dtypes = [torch.float32]
    if runtime.device.type == "cpu":
        dtypes.append(torch.bfloat16)
        if has_int8_dot(cpu_flags() if flags is None else flags) and hasattr(torch, "_int_mm"):
            dtypes.append(torch.int8)
    if runtime.dtype not in dtypes:
        dtypes.append(runtime.dtype)
    return dtypes


def block_matrix_params(config) -> int:
    """Weights of one transformer block's four matrices (biases and norms left out)."""
    return 12 * config.hidden_size ** 2


def gpt_step_counts(config, head_rows: int, position: int, batch: int, weight_bytes: int,
                    kv_bytes: int) -> tuple[float, float]:
    """FLOPs and bytes of one decode step at `position` (tokens already cached) for `batch` rows:
    2 per weight per row for the matrices and the head's rows computed, 4 * position * width per
    layer and row for attention (scores and the weighted sum); the matrices read once, the KV
    cache once per row. Element sizes in bytes."""
    c = config
    params = c.num_layers * block_matrix_params(c) + head_rows * c.hidden_size
    kv_values = 2 * c.num_layers * (position + 1) * c.hidden_size
    flops = batch * (2 * params + 2 * kv_values)
    return float(flops), float(params * weight_bytes + batch * kv_values * kv_bytes)


def fine_pass_counts(config, frames: int, head_rows: int, batch: int, weight_bytes: int) -> tuple[float, float]:
    """FLOPs and bytes of one codebook pass of the fine model over `frames` positions for `batch`
    items: 2 per weight per frame, bidirectional attention 4 * frames^2 * width per layer; the
    weights read once per pass (activations left out: the stage is compute-bound)."""
    c = config
    params = c.num_layers * block_matrix_params(c) + head_rows * c.hidden_size
    flops = batch * (2 * params * frames + 4 * c.num_layers * frames ** 2 * c.hidden_size)
    return float(flops), float(params * weight_bytes)


def stage_counts(config: BarkConfig, gen: GenerationConfig, run: RunResult, weight_bytes: dict[str, int],
                 kv_bytes: int) -> dict[str, tuple[float, float]]:
    """FLOPs and bytes per GPT stage of a run, every decode step counted at the stage's middle
    position (prefills left out: they are a few percent of the steps' work)."""
    positions = step_positions(run.semantic_tokens, gen)
    coarse_steps = 2 * run.coarse_frames
    passes = gen.n_fine_codebooks - gen.n_coarse_codebooks  # the codebooks the fine stage predicts
    out = {}
    flops, nbytes = gpt_step_counts(config.semantic, config.semantic.output_vocab_size, positions["semantic"],
                                    run.batch_size, weight_bytes["semantic"], kv_bytes)
    out["semantic"] = (run.semantic_tokens * flops, run.semantic_tokens * nbytes)
    flops, nbytes = gpt_step_counts(config.coarse, gen.codebook_size, positions["coarse"], run.batch_size,
                                    weight_bytes["coarse"], kv_bytes)
    out["coarse"] = (coarse_steps * flops, coarse_steps * nbytes)
    flops, nbytes = fine_pass_counts(config.fine, gen.max_fine_input_length, gen.codebook_size, run.batch_size,
                                     weight_bytes["fine"])
    out["fine"] = (run.fine_windows * passes * flops, run.fine_windows * passes * nbytes)
    return out


def measure_peaks(bark: Bark, say: Status) -> list[GemmPeak]:
    dtypes = peak_dtypes(bark.runtime)
    say("measuring the GEMM peak (" + ", ".join(str(d).removeprefix("torch.") for d in dtypes) + ")")
    return [measure_gemm_peak(bark.runtime, dtype) for dtype in dtypes]


def stage_rooflines(bark: Bark, run: RunResult, bandwidth: Bandwidth,
                    peaks: Sequence[GemmPeak]) -> list[StageRoofline]:
    runtime = bark.runtime
    by_dtype = {p.dtype: p for p in peaks}
    peak = by_dtype.get(runtime.dtype_name) or by_dtype["float32"]
    itemsize = runtime.dtype.itemsize
    quantized = 1 if runtime.quantize == "int8" else itemsize
    weight_bytes = {"semantic": quantized, "coarse": quantized, "fine": itemsize}
    counts = stage_counts(bark.weights.config, bark.config, run, weight_bytes,
                          bark.weights.semantic.cache_dtype.itemsize)
    return [StageRoofline(stage, flops, nbytes, run.seconds[stage], peak.flops_per_s, peak.dtype,
                          bandwidth.strict_bytes_per_s) for stage, (flops, nbytes) in counts.items()]


# --- generate calls ------------------------------------------------------------------------


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


def summarize(name: str, dtype: str, batch: int, runs: Sequence[tuple[Timing, dict[str, Any]]],
              fine_windows: int | None = None, calls: int = 1, scale: float = 1.0,
              scaled_from: int | None = None) -> RunResult:
    """The repeats of one implementation at one token count: median seconds per stage, times
    `scale` (a few timed calls standing for `calls`), and the largest memory peak."""
    timings = [t for t, _ in runs]
    first = timings[0]
    seconds = {k: scale * statistics.median(t.seconds[k] for t in timings) for k in (*STAGES, "total")}
    steps = [t.step for t in timings if t.step is not None]
    windows = fine_windows if fine_windows is not None else first.fine_windows
    return RunResult(
        implementation=name, dtype=dtype, batch_size=batch, fine_windows=windows, sample_rate=first.sample_rate,
        seconds=seconds, runs=[t.seconds for t in timings], calls=calls, scaled_from=scaled_from,
        semantic_step_seconds=statistics.median(steps) if steps else None,
        **first.counts, **_merge_memory([m for _, m in runs]),
    )


# --- the benchmark -------------------------------------------------------------------------


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
    with torch_threads(options.threads):
        bark = load_model(options, say)
        if options.warmup:
            warm_up(bark, options, say)
        bandwidth, floors = measure_floors(bark, options, say)
        tokens = [int(n) for n in options.tokens]
        label = dtype_label(bark)
        peaks = measure_peaks(bark, say) if bandwidth else []
        results = [summarize("bark-cli", label, options.batch_size,
                             [timed_run(bark, options, n, r, say) for r in range(options.repeats)])
                   for n in tokens]
        rooflines = [stage_rooflines(bark, run, bandwidth, peaks) for run in results] if peaks else []
        return BenchReport(options=replace(options, tokens=tokens), environment=environment(bark.device),
                           model=model_info(bark, options), bandwidth=bandwidth, floors=floors, results=results,
                           notes=report_notes(results, floors), peaks=peaks, rooflines=rooflines)


# --- text ----------------------------------------------------------------------------------


def _gib(n: int | None) -> str:
    return "-" if n is None else f"{n / GiB:.2f} GiB"


def ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1000:.1f} ms"


def seconds_text(s: float) -> str:
    return f"{s:.2f} s" if s >= 0.1 else f"{s * 1000:.0f} ms"


def memory_text(run: RunResult) -> str:
    text = f"RSS {_gib(run.rss_peak_bytes)}"
    if run.rss_delta_bytes is not None:
        text += f" (+{run.rss_delta_bytes / GiB:.2f})"
    if run.cuda_peak_bytes is not None:
        text += f", CUDA {_gib(run.cuda_peak_bytes)}"
        if run.cuda_start_bytes is not None:
            text += f" (+{(run.cuda_peak_bytes - run.cuda_start_bytes) / GiB:.2f})"
    return text


def rate_text(run: RunResult, stage: str) -> str:
    r = run.rates()
    return {
        "semantic": f"{r['semantic_tokens_per_s']:.1f} tok/s",
        "coarse": f"{r['coarse_tokens_per_s']:.1f} tok/s",
        "fine": f"{r['fine_seconds_per_window']:.2f} s/window",
        "decode": f"RTF {r['decode_real_time_factor']:.3f}",
        "total": f"RTF {r['real_time_factor']:.2f}",
    }[stage]


Column = tuple[str, RunResult]  # a heading and its run


def _each(columns: Sequence[Column], text: Callable[[RunResult], str]) -> str:
    """One figure per column: bare for one column, else named and joined."""
    if len(columns) == 1:
        return text(columns[0][1])
    return "; ".join(f"{name} {text(run)}" for name, run in columns)


def run_lines(columns: Sequence[Column], env: dict[str, Any],
              extra: tuple[str, dict[str, float]] | None = None) -> list[str]:
    """One token count: a table of stages (seconds and rate per column, and an optional column
    of ratios such as a speedup), then the real-time factor, the in-run step, memory and CPU."""
    first = columns[0][1]
    same = {1: "", 2: " (same counts in both)"}.get(len(columns), " (same counts in all)")
    lines = ["", f"{first.semantic_tokens} semantic tokens x {first.batch_size}: {first.coarse_frames} coarse "
                 f"frames, {first.fine_frames} fine frames, {first.fine_windows} fine window(s), "
                 f"{first.audio_seconds:.2f} s of audio{same}"]
    widths = [max(10, len(name)) for name, _ in columns]
    lines.append(f"  {'stage':<9}" + "".join(f"{name:>{w}}  {'rate':<16}" for (name, _), w in zip(columns, widths))
                 + (f"{extra[0]:>8}" if extra else ""))
    for stage in (*STAGES, "total"):
        lines.append(f"  {stage:<9}" + "".join(f"{seconds_text(run.seconds[stage]):>{w}}  {rate_text(run, stage):<16}"
                                               for (_, run), w in zip(columns, widths))
                     + (f"{extra[1][stage]:>7.2f}x" if extra else ""))
    lines.append("  real-time factor (processing seconds per audio second): " + _each(
        columns, lambda r: f"{r.rates()['real_time_factor']:.3f} ({r.rates()['x_faster_than_real_time']:.2f}x "
                           "faster than real time)"))
    lines.append("  semantic step in run: " + _each(columns, lambda r: ms(r.semantic_step_seconds)))
    lines.append("  peak memory: " + "; ".join(f"{name} {memory_text(run)}" for name, run in columns))
    if env["device"] == "cpu" and first.cpu_cores_used is not None:
        lines.append("  CPU cores used: " + _each(columns, lambda r: f"{r.cpu_cores_used:.2f}")
                     + f" of {env['torch_threads']} thread(s); load average "
                     + _each(columns, lambda r: "-" if r.load_average is None else f"{r.load_average:.2f}"))
    return lines


def header_lines(report: BenchReport, title: str = "bark bench") -> list[str]:
    o, env, m = report.options, report.environment, report.model
    where = f"{env['torch_threads']} thread(s)" if env["device"] == "cpu" else env["device_name"]
    lines = [f"{title}: {m['config']} ({m['weights']} weights, {m['weights_bytes'] / GiB:.2f} GiB), "
             f"{env['device']} {m['dtype']}" + (f" + {m['quantize']} weights" if m["quantize"] else "")
             + (" + CUDA graphs" if m["cuda_graphs"] else "") + (" + offload" if m["offload"] else "")
             + f", {where}, batch {o.batch_size}",
             f"  {env['device_name']}; torch {env['torch']}"
             + (f", transformers {env['transformers']}" if env.get("transformers") else "")]
    if m.get("sdpa_backends"):
        kernels = m["sdpa_backends"]
        lines.append(f"  attention {m['attention']}: SDPA kernel {kernels['prefill']} for the prefill, "
                     f"{kernels['step']} for a decode step")
    if m.get("cpu_kernels"):
        k = m["cpu_kernels"]
        lines.append(f"  CPU products ({k['how']}): float32 one row {'oneDNN' if k['float32_onednn_row'] else 'default'}, "
                     f"many rows {'oneDNN' if k['float32_onednn_rows'] else 'default'}; bfloat16 one row "
                     f"{'PyTorch own' if k['bfloat16_native_row'] else 'default'}")
    if report.bandwidth:
        bw = report.bandwidth
        lines.append(f"  memory bandwidth: copy {bw.copy_bytes_per_s / 1e9:.1f} GB/s (bytes read), "
                     f"sum {bw.sum_bytes_per_s / 1e9:.1f} GB/s, matvec {bw.matvec_bytes_per_s / 1e9:.1f} GB/s; "
                     f"the strict floor uses {bw.strict_bytes_per_s / 1e9:.1f} GB/s")
    return lines


def floor_lines(report: BenchReport) -> list[str]:
    if not report.floors:
        return []
    m = report.model

    def ratio(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}x"

    lines = ["", f"decode step vs bandwidth floors (batch {report.options.batch_size}, {m['dtype']}"
                 + (f" + {m['quantize']}" if m["quantize"] else "") + "):",
             f"  {'stage':<9}{'weights read':>13}{'median':>9}{'best':>9}{'position':>10}"
             f"{'copy floor':>12}{'ratio':>8}{'strict floor':>14}{'ratio':>8}{'best':>8}{'+KV':>10}"]
    for f in report.floors:
        with_kv = (f.weight_bytes + f.kv_bytes) / f.strict_bytes_per_s
        lines.append(f"  {f.stage:<9}{f.weight_bytes / 1e6:>10.0f} MB{ms(f.measured_seconds):>9}"
                     f"{ms(f.best_seconds):>9}{f.position:>10}{ms(f.copy_floor_seconds):>12}{ratio(f.copy_ratio):>8}"
                     f"{ms(f.strict_floor_seconds):>14}{ratio(f.strict_ratio):>8}{ratio(f.best_strict_ratio):>8}"
                     f"{ms(with_kv):>10}")
    return lines


def roofline_lines(report: BenchReport) -> list[str]:
    """The GEMM peaks and, per token count, each GPT stage against the roofline."""
    if not report.peaks:
        return []
    m, k, n = report.peaks[0].shape
    lines = ["", f"roofline: GEMM peak ({m} x {k}) @ ({k} x {n}): "
             + ", ".join(f"{p.dtype} {p.flops_per_s / 1e9:.0f} GFLOP/s" for p in report.peaks)
             + (f"; bandwidth {report.bandwidth.strict_bytes_per_s / 1e9:.1f} GB/s (strict)"
                if report.bandwidth else "")]
    for run, stages in zip(report.results, report.rooflines):
        lines.append(f"  {run.semantic_tokens} tokens x {run.batch_size} (decode steps at the stage's middle "
                     "position, prefills left out):")
        lines.append(f"  {'stage':<9}{'GFLOP':>10}{'GB':>9}{'bound':>9}{'roof':>10}{'measured':>10}{'reached':>9}")
        for s in stages:
            lines.append(f"  {s.stage:<9}{s.flops / 1e9:>10.1f}{s.bytes / 1e9:>9.2f}{s.bound:>9}"
                         f"{seconds_text(s.roof_seconds):>10}{seconds_text(s.seconds):>10}{s.fraction:>8.0%}")
    return lines


def format_report(report: BenchReport) -> list[str]:
    """The report as text lines: a header, one table per token count, the decode-step floors."""
    lines = header_lines(report)
    for run in report.results:
        lines += run_lines([("bark-cli", run)], report.environment)
    lines += floor_lines(report)
    lines += roofline_lines(report)
    lines += [f"note: {note}" for note in report.notes]
    return [line.rstrip() for line in lines]
