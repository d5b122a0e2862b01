"""What `bark bench` measures with and what it finds: the options, one timed call, a run's
medians, the bandwidth and its decode-step floors, the GEMM peak and a stage's roofline, and the
report that holds them all (`to_dict` / `to_json` give `bark bench --json`)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from ..config import DeviceOptions
from ..errors import InputError

STAGES = ("semantic", "coarse", "fine", "decode")
DEFAULT_TEXT = "Hello, my name is Suno. And, uh, I like pizza. [laughs] But I also have other interests."
# The GEMM that measures a dtype's peak: the fine stage's shape (1024 frames) at its widest product.
GEMM_SHAPE = (1024, 1024, 4096)

Status = Callable[[str], None]


def cpu_only() -> DeviceOptions:
    """The benchmark's default placement: the CPU, everything else as `Bark.load` chooses."""
    return DeviceOptions(device="cpu")


@dataclass
class BenchOptions:
    """What to measure. `config` is a size (`bark-small`, `bark`, `tiny`: random weights) or a
    model folder / Hub id (real weights). `hardware` is where and how the model runs, as for
    `Bark.load` (its `threads`: torch's thread count for the run)."""

    config: str = "bark-small"
    tokens: Sequence[int] = (150,)  # exact semantic tokens per item, one measurement each
    batch_size: int = 1  # items per generate_batch call
    hardware: DeviceOptions = field(default_factory=cpu_only)
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
    """bark-cli at one token count: median seconds per stage over the repeats."""

    implementation: ClassVar[str] = "bark-cli"  # the JSON names who ran (bench/compare.py: transformers too)
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
        out = {"implementation": self.implementation} | asdict(self)
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
        return {
            "options": options_dict(self.options),
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

def options_dict(options: BenchOptions) -> dict[str, Any]:
    """The options as `bark bench --json` has always given them: flat, the device settings in place."""
    o, h = options, options.hardware
    return dict(config=o.config, tokens=list(o.tokens), batch_size=o.batch_size, device=h.device, dtype=h.dtype,
                quantize=h.quantize, attention=h.attention, cuda_graphs=h.cuda_graphs, offload=h.offload,
                threads=h.threads, warmup=o.warmup, warmup_tokens=o.warmup_tokens, repeats=o.repeats, seed=o.seed,
                text=o.text, bandwidth_mb=o.bandwidth_mb, decode_steps=o.decode_steps)


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


