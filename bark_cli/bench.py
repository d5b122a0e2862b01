"""Speed and memory of bark-cli, side by side with transformers' `BarkModel` (issue 5).

    from bark_cli.bench import BenchOptions, run_benchmark, format_report
    report = run_benchmark(BenchOptions(config="bark-small", tokens=[150, 300], compare_transformers=True))
    print("\\n".join(format_report(report)))
    report.to_json()

Both implementations run in this process on the very same weights and the very same token counts:
EOS is held off (ours: `allow_early_stop=False`; transformers: `semantic_min_new_tokens` =
`semantic_max_new_tokens` = N), and the semantic token count and the coarse and fine frame counts
of both runs are checked to be equal. Weights are random at the real sizes of a config
(`bark-small`, `bark`; `tiny` for tests), or a real model (a folder or a Hub id). Random weights
for a comparison are made by transformers (its own init, seeded) and handed to bark-cli as a
state dict, through the same key handling as `checkpoint.load_weights`.

Everything bark-cli runs goes first, then everything transformers runs, so a process-wide
memory peak can never charge transformers' memory to bark-cli. On Linux the peak RSS is reset
before every run (`/proc/self/clear_refs`), so each run's peak is its own.

This module never prints; `format_report` returns text lines and `BenchReport.to_json` the JSON.
transformers is imported only for a comparison (it is a test extra, not a dependency).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
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

from . import checkpoint, generation
from .config import BarkConfig, CodecConfig, FineConfig, GenerationConfig, GPTConfig
from .errors import BarkError, DeviceError, GenerationError, InputError
from .models.codec import EncodecDecoder, codec_state_dict
from .models.fine import FineGPT
from .models.gpt import GPT

# Widths of the published checkpoints (config.json of suno/bark-small and suno/bark; the three
# GPT stages share them, block size 1024, no biases). Vocabulary sizes and the codec are the
# defaults of bark_cli.config. `tiny` is for tests.
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
    model folder / Hub id (real weights)."""

    config: str = "bark-small"
    tokens: Sequence[int] = (150,)  # exact semantic tokens per item, one measurement each
    batch_size: int = 1  # items per bark-cli batch; transformers runs them one by one
    device: str = "cpu"
    dtype: str = "float32"  # bark-cli's GPT stages (the codec stays float32); "auto" as in Bark.load
    quantize: str | None = None  # "int8": bark-cli's semantic and coarse weights as int8 (as Bark.load)
    attention: str = "auto"
    cuda_graphs: bool = False  # bark-cli's decode steps as replayed CUDA graphs (as Bark.load)
    offload: bool = False  # bark-cli keeps idle sub-models on the CPU (as Bark.load; a GPU's peak memory)
    compare_transformers: bool = False
    transformers_dtype: str | None = None  # None: float32 on the CPU, else the same as ours
    transformers_batched: bool = False  # batch > 1: transformers runs the batch in one call
    transformers_runs: int | None = None  # sequential runs measured (None: batch_size); fewer are scaled up
    threads: int | None = None  # torch.set_num_threads
    warmup: bool = True  # one short untimed run per implementation first
    warmup_tokens: int = 16
    repeats: int = 1  # timed runs per token count; the report keeps the median per stage
    seed: int = 0
    text: str = DEFAULT_TEXT  # real models only
    bandwidth_mb: int = 512  # size of the copy that measures memory bandwidth (0: skip)
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
        if self.transformers_runs is not None and self.transformers_runs < 1:
            raise InputError("transformers runs must be at least 1", "or leave it unset for one run per item")
        if self.warmup_tokens < 1:
            raise InputError("warm-up tokens must be at least 1", "or turn the warm-up off")


@dataclass
class RunResult:
    """One implementation at one token count: median seconds per stage over the repeats."""

    implementation: str  # "bark-cli" or "transformers"
    dtype: str
    batch_size: int  # items generated (transformers one by one: the items of all its runs)
    semantic_tokens: int  # per item, exact
    coarse_frames: int  # per item (2 coarse tokens each)
    fine_frames: int  # per item
    fine_windows: int  # per item; each window is 6 passes of the fine model over 1024 frames
    audio_samples: int  # per item
    sample_rate: int
    seconds: dict[str, float]  # semantic, coarse, fine, decode, total (median of the repeats)
    runs: list[dict[str, float]] = field(default_factory=list)  # every repeat's seconds
    calls: int = 1  # generate calls the items take (transformers one by one: batch_size)
    scaled_from: int | None = None  # one by one: only this many calls were timed, times scaled to `calls`
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
        s = self.seconds
        b = self.batch_size
        return {
            "semantic_tokens_per_s": b * self.semantic_tokens / s["semantic"],
            "coarse_tokens_per_s": b * 2 * self.coarse_frames / s["coarse"],
            "fine_windows_per_s": b * self.fine_windows / s["fine"],
            "fine_seconds_per_window": s["fine"] / (b * self.fine_windows),
            "audio_seconds_per_s": self.audio_seconds / s["decode"] if s["decode"] > 0 else math.inf,
            "real_time_factor": self.audio_seconds / s["total"],  # > 1: faster than real time
            "x_slower_than_real_time": s["total"] / self.audio_seconds,
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
class Comparison:
    """Both implementations at one token count."""

    tokens: int
    ours: RunResult
    transformers: RunResult | None = None

    def speedup(self) -> dict[str, float] | None:
        """Per stage and end to end: transformers' seconds / ours for the same items (> 1: ours
        is faster; for a batch, the throughput ratio)."""
        if self.transformers is None:
            return None
        return {k: _ratio(self.transformers.seconds[k], self.ours.seconds[k]) for k in (*STAGES, "total")}

    def time_ratio(self) -> dict[str, float] | None:
        """Per stage and end to end: ours / transformers' seconds (< 1: ours is faster)."""
        if self.transformers is None:
            return None
        return {k: _ratio(self.ours.seconds[k], self.transformers.seconds[k]) for k in (*STAGES, "total")}

    def to_dict(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens,
            "bark_cli": self.ours.to_dict(),
            "transformers": self.transformers.to_dict() if self.transformers else None,
            "speedup": self.speedup(),
            "time_ratio_ours_over_transformers": self.time_ratio(),
        }


@dataclass
class DecodeFloor:
    """The bandwidth floor of one decode step of a GPT stage, against the measured step."""

    stage: str  # semantic or coarse
    batch_size: int
    weight_bytes: int  # every weight a step reads: all but the token table, one position row
    kv_bytes: int  # KV cache a step reads at `position` (not part of the floor)
    position: int
    bandwidth_bytes_per_s: float
    copy_bytes_per_s: float  # the measure: a copy's rate, counting the bytes read
    measured_seconds: float | None = None  # one step (forward only), timed directly: the median
    best_seconds: float | None = None  # the fastest of those steps (other processes only add time)
    error: str | None = None  # why it could not be measured

    @property
    def floor_seconds(self) -> float:
        return self.weight_bytes / self.bandwidth_bytes_per_s

    @property
    def ratio(self) -> float | None:
        """Measured step / floor (1.0 is the bandwidth limit)."""
        return None if self.measured_seconds is None else self.measured_seconds / self.floor_seconds

    @property
    def best_ratio(self) -> float | None:
        """Fastest step / floor: best against best, as the floor's bandwidth is the best seen."""
        return None if self.best_seconds is None else self.best_seconds / self.floor_seconds

    @property
    def copy_floor_seconds(self) -> float:
        """The weights at the copy rate: the floor as the issue sized it (not a true lower bound
        where reads alone run faster than a copy's)."""
        return self.weight_bytes / self.copy_bytes_per_s

    @property
    def copy_ratio(self) -> float | None:
        return None if self.measured_seconds is None else self.measured_seconds / self.copy_floor_seconds

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["floor_seconds"] = self.floor_seconds
        out["floor_with_kv_seconds"] = (self.weight_bytes + self.kv_bytes) / self.bandwidth_bytes_per_s
        out["ratio"] = self.ratio
        out["best_ratio"] = self.best_ratio
        out["copy_floor_seconds"] = self.copy_floor_seconds
        out["copy_ratio"] = self.copy_ratio
        return out


@dataclass
class BenchReport:
    options: BenchOptions
    environment: dict[str, Any]
    model: dict[str, Any]
    bandwidth: Bandwidth | None
    floors: list[DecodeFloor]
    results: list[Comparison]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        options = asdict(self.options)
        options["tokens"] = list(self.options.tokens)
        return {
            "options": options,
            "environment": self.environment,
            "model": self.model,
            "bandwidth": None if self.bandwidth is None else {
                **asdict(self.bandwidth), "floor_bytes_per_s": self.bandwidth.floor_bytes_per_s},
            "decode_floor": [f.to_dict() for f in self.floors],
            "results": [r.to_dict() for r in self.results],
            "notes": list(self.notes),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=_json_default, allow_nan=False)


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.inf


# --- model shapes and weights --------------------------------------------------------------


def bark_config(size: str) -> BarkConfig:
    """bark-cli's shapes for a named size, at the real vocabulary sizes."""
    if size not in SIZES:
        raise InputError(f"unknown size {size!r}", f"use one of {', '.join(SIZES)}, a model folder or a Hub id")
    width = dict(SIZES[size], block_size=1024, bias=False)
    return BarkConfig(
        semantic=GPTConfig(**width),
        coarse=GPTConfig(input_vocab_size=12_096, output_vocab_size=12_096, **width),
        fine=FineConfig(**width),
        codec=CodecConfig(**TINY_CODEC) if size == "tiny" else CodecConfig(),
    )


def transformers_config(config: BarkConfig):
    """transformers' BarkConfig with the same shapes."""
    return import_transformers().BarkConfig(
        semantic_config=asdict(config.semantic),
        coarse_acoustics_config=asdict(config.coarse),
        fine_acoustics_config=asdict(config.fine),
        codec_config=asdict(config.codec),
    )


def transformers_generation_config(gen: GenerationConfig):
    """A BarkGenerationConfig with the Hub's values (generation_config.json of suno/bark-small,
    built in code from bark-cli's GenerationConfig): sampling on, temperatures 0.7 / 0.7 / 0.5,
    top-k 50 for the semantic and coarse stages."""
    BarkGenerationConfig = bark_generation_configs()["BarkGenerationConfig"]

    semantic = dict(
        do_sample=True, renormalize_logits=True, temperature=gen.semantic_temperature, top_k=gen.semantic_top_k,
        top_p=gen.semantic_top_p if gen.semantic_top_p is not None else 1.0, eos_token_id=gen.semantic_eos_token,
        max_new_tokens=gen.max_new_tokens, max_input_semantic_length=gen.max_input_semantic_length,
        semantic_infer_token=gen.semantic_infer_token, semantic_pad_token=gen.semantic_pad_token,
        semantic_rate_hz=gen.semantic_rate_hz, semantic_vocab_size=gen.semantic_vocab_size,
        text_encoding_offset=gen.text_encoding_offset, text_pad_token=gen.text_pad_token, use_cache=True,
    )
    coarse = dict(
        do_sample=True, renormalize_logits=True, temperature=gen.coarse_temperature, top_k=gen.coarse_top_k,
        top_p=gen.coarse_top_p if gen.coarse_top_p is not None else 1.0,
        coarse_infer_token=gen.coarse_infer_token, coarse_rate_hz=gen.coarse_rate_hz,
        coarse_semantic_pad_token=gen.coarse_semantic_pad_token, max_coarse_history=gen.max_coarse_history,
        max_coarse_input_length=gen.max_coarse_input_length, n_coarse_codebooks=gen.n_coarse_codebooks,
        sliding_window_len=gen.sliding_window_len, use_cache=True,
    )
    fine = dict(
        do_sample=False, temperature=gen.fine_temperature, top_k=50, top_p=1.0,
        max_fine_history_length=gen.max_fine_history_length, max_fine_input_length=gen.max_fine_input_length,
        n_fine_codebooks=gen.n_fine_codebooks, use_cache=True,
    )
    return BarkGenerationConfig(semantic_config=semantic, coarse_acoustics_config=coarse,
                                fine_acoustics_config=fine, sample_rate=gen.sample_rate,
                                codebook_size=gen.codebook_size)


def import_transformers():
    """transformers, or a clear error. It is an optional (test) dependency that only
    --compare-transformers loads, at run time, as the reference to measure against; every use
    in bark-cli goes through here."""
    try:
        transformers = importlib.import_module("transformers")
        transformers.BarkModel  # noqa: B018 - fails early on a transformers without Bark
    except (ImportError, AttributeError):
        raise BarkError(
            "--compare-transformers needs the transformers package, which is not installed",
            "pip install 'transformers>=4.45' (or install bark-cli with the [test] extra)",
        ) from None
    return transformers


def bark_generation_configs() -> dict[str, type]:
    """transformers' Bark generation-config classes (not exported at its top level)."""
    import_transformers()
    module = importlib.import_module("transformers.models.bark.generation_configuration_bark")
    return {name: getattr(module, name) for name in (
        "BarkGenerationConfig", "BarkSemanticGenerationConfig", "BarkCoarseGenerationConfig", "BarkFineGenerationConfig")}


@torch.no_grad()
def random_transformers_model(config: BarkConfig, seed: int = 0):
    """transformers' BarkModel at `config`'s shapes with its own random init (seeded), float32."""
    torch.manual_seed(seed)
    model = import_transformers().BarkModel(transformers_config(config)).eval()
    # EnCodec's quantizer tables start as zeros; give the decoder some signal.
    gen = torch.Generator().manual_seed(seed)
    for name, buffer in model.codec_model.named_buffers():
        if name.endswith("codebook.embed"):
            buffer.copy_(torch.randn(buffer.shape, generator=gen))
    return model


def weights_from_state_dict(state: dict[str, torch.Tensor], config: BarkConfig, gen: GenerationConfig,
                            dtype: torch.dtype = torch.float32) -> checkpoint.BarkWeights:
    """bark-cli's sub-models from a BarkModel state dict, with `checkpoint.load_weights`' key
    handling. Float32 tensors are shared with the state dict, not copied."""
    parts = checkpoint.split_state_dict(state)
    with torch.device("meta"):
        semantic, coarse = GPT(config.semantic), GPT(config.coarse)
        fine, codec = FineGPT(config.fine), EncodecDecoder(config.codec)
    checkpoint.load_module(semantic, checkpoint._drop_causal_masks(parts["semantic"]), "semantic", dtype)
    checkpoint.load_module(coarse, checkpoint._drop_causal_masks(parts["coarse"]), "coarse", dtype)
    tied = FineGPT.tied_keys(config.fine)
    checkpoint.load_module(fine, checkpoint._fill_tied(parts["fine"], tied), "fine", dtype, ignore=tied)
    fine.tie_weights()
    checkpoint.load_module(codec, codec_state_dict(parts["codec"]), "codec", torch.float32)
    return checkpoint.BarkWeights(semantic, coarse, fine, codec, config, gen)


@torch.no_grad()
def random_weights(config: BarkConfig, gen: GenerationConfig, dtype: torch.dtype = torch.float32,
                   seed: int = 0) -> checkpoint.BarkWeights:
    """bark-cli's sub-models with random weights (transformers' init: normal, std 0.02), no
    transformers needed."""
    torch.manual_seed(seed)
    semantic, coarse, fine = GPT(config.semantic), GPT(config.coarse), FineGPT(config.fine)
    codec = EncodecDecoder(config.codec)
    for module in (semantic, coarse, fine):
        for name, param in module.named_parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 0.02)
        module.to(dtype).eval().requires_grad_(False)
    for name, buffer in codec.named_buffers():
        if name.endswith("codebook.embed"):
            buffer.normal_()
    codec.eval().requires_grad_(False)
    return checkpoint.BarkWeights(semantic, coarse, fine, codec, config, gen)


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


# --- measuring helpers ---------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _proc_status(key: str) -> int | None:
    try:
        match = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None


def _reset_peak_rss() -> bool:
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
        self.start_rss: int | None = None
        self.start_cuda: int | None = None
        self.process_wide = False

    def start(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_cuda = torch.cuda.memory_allocated(self.device)
        self.process_wide = not _reset_peak_rss()
        self.start_rss = _proc_status("VmRSS")
        self.start_cpu = time.process_time()
        self.start_wall = time.perf_counter()

    def stop(self) -> dict[str, Any]:
        out = {"rss_peak_bytes": _peak_rss(), "rss_start_bytes": self.start_rss,
               "rss_peak_is_process_wide": self.process_wide,
               "cpu_seconds": time.process_time() - self.start_cpu, "wall_seconds": time.perf_counter() - self.start_wall,
               "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            out["cuda_peak_bytes"] = torch.cuda.max_memory_allocated(self.device)
            out["cuda_start_bytes"] = self.start_cuda
        return out


def _merge_memory(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The largest peak over repeats (with that run's start)."""
    best = max(runs, key=lambda m: m.get("rss_peak_bytes") or 0)
    out = dict(best)
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


@dataclass
class Bandwidth:
    """Memory bandwidth measured on a float32 tensor of `megabytes`, best of several tries.

    `copy`: the issue's measure, `dst.copy_(src)`, counting the bytes read (the tensor's size);
    a copy also writes as much, so it understates what reads alone reach. `sum`: a reduction,
    which only reads. `matvec`: one row times the tensor seen as a (N, 1024) weight matrix, which
    is what a decode step does with its weights (on the CPU here it reads fastest). The floor of
    a decode step uses the highest rate memory was seen to move at, so that it is a true lower
    bound.
    """

    megabytes: int
    copy_bytes_per_s: float
    sum_bytes_per_s: float
    matvec_bytes_per_s: float

    @property
    def floor_bytes_per_s(self) -> float:
        return max(self.sum_bytes_per_s, self.matvec_bytes_per_s, 2 * self.copy_bytes_per_s)


@torch.inference_mode()
def measure_bandwidth(device: torch.device, megabytes: int = 512, repeats: int = 5) -> Bandwidth:
    """Copy, sum and matrix-vector bandwidth on `device` (see Bandwidth)."""
    n = max(1024, megabytes * 2**20 // 4 // 1024 * 1024)
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)  # touch every page first
    matrix, row = src.view(-1, 1024), torch.ones(1, 1024, device=device)

    def best(fn) -> float:
        fn()
        fastest = math.inf
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            fastest = min(fastest, time.perf_counter() - start)
        return fastest

    copy = best(lambda: dst.copy_(src))
    total = best(lambda: src.sum())
    matvec = best(lambda: torch.nn.functional.linear(row, matrix))
    return Bandwidth(megabytes, n * 4 / copy, n * 4 / total, n * 4 / matvec)


def decode_step_bytes(model: GPT) -> int:
    """Bytes of weights one decode step reads: every parameter and buffer except the token
    embedding table (a step only indexes one row of it) and all but one row of the position
    table; the LM head is read whole. Shared tensors count once."""
    token_table = model.input_embeds_layer.weight
    position_table = model.position_embeds_layer.weight
    seen, total = set(), 0
    for t in (*model.parameters(), *model.buffers()):
        if id(t) in seen:
            continue
        seen.add(id(t))
        if t is token_table:
            continue
        if t is position_table:
            total += t.shape[1] * t.element_size()
            continue
        total += t.numel() * t.element_size()
    return total


def kv_step_bytes(model: GPT, batch: int, position: int) -> int:
    """KV cache a decode step at `position` reads (keys and values of every earlier position)."""
    c = model.config
    return 2 * c.num_layers * batch * position * c.hidden_size * model.cache_dtype.itemsize


@torch.inference_mode()
def time_decode_steps(model: GPT, batch: int, position: int, steps: int, device: torch.device,
                      cuda_graph: bool = False) -> tuple[float, float]:
    """Seconds of one decode step (a one-token forward with the KV cache) at `position`: the
    median and the fastest of `steps` steps timed one by one after a prefill of `position`
    tokens (the median shrugs off a step that another process slowed down). The step is
    generation's own, so a CUDA graph is timed as generation replays it."""
    steps = max(1, min(steps, model.config.block_size - position - 4))
    with generation.kv_cache(model, batch, cuda_graph) as decode:
        prompt = torch.zeros(batch, position, dtype=torch.long, device=device)
        model(ids=prompt, start=0)
        token = torch.zeros(batch, 1, dtype=torch.long, device=device)
        for i in range(3):  # warm-up steps (and the graph's capture)
            decode(token, position + i)
        times = []
        for i in range(steps):
            _sync(device)
            start = time.perf_counter()
            decode(token, position + 3 + i)
            _sync(device)
            times.append(time.perf_counter() - start)
        return statistics.median(times), min(times)


def _median_step(stamps: list[float]) -> float | None:
    deltas = np.diff(stamps)
    return float(np.median(deltas)) if len(deltas) else None


def fine_windows(frames: int, gen: GenerationConfig, n_history: int = 0) -> int:
    """Fine windows for `frames` frames (no voice: no history), as bark-cli and transformers count them."""
    loops = math.ceil((frames - (gen.max_fine_input_length - n_history)) / gen.max_fine_history_length)
    return max(0, loops) + 1


# --- the two implementations ---------------------------------------------------------------


def _run_ours(bark, text: str, n_tokens: int, batch: int, seed: int) -> dict[str, Any]:
    stamps: list[float] = []

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "semantic":
            stamps.append(time.perf_counter())

    start = time.perf_counter()
    gens = bark.generate_batch([text] * batch, seed=seed, max_semantic_tokens=n_tokens,
                               allow_early_stop=False, min_eos_p=0, progress=progress)
    _sync(bark.device)
    total = time.perf_counter() - start
    g = gens[0]
    counts = dict(semantic_tokens=len(g.semantic_tokens), coarse_frames=g.coarse_tokens.shape[1],
                  fine_frames=g.fine_tokens.shape[1], audio_samples=len(g.audio))
    for other in gens[1:]:
        got = dict(semantic_tokens=len(other.semantic_tokens), coarse_frames=other.coarse_tokens.shape[1],
                   fine_frames=other.fine_tokens.shape[1], audio_samples=len(other.audio))
        if got != counts:
            raise GenerationError(f"bark-cli batch items differ in length: {got} vs {counts}")
    if counts["semantic_tokens"] != n_tokens:
        raise GenerationError(f"bark-cli made {counts['semantic_tokens']} semantic tokens, not {n_tokens}",
                              "EOS was not held off")
    seconds = {k: float(g.seconds[k]) for k in STAGES}
    seconds["total"] = total
    return dict(counts=counts, seconds=seconds, step=_median_step(stamps), sample_rate=g.sample_rate)


class _StepStamps:
    """A transformers StoppingCriteria that never stops and notes the time of every step."""

    def __init__(self):
        self.stamps: list[float] = []

    def __call__(self, input_ids, scores, **kwargs):
        self.stamps.append(time.perf_counter())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


@torch.no_grad()
def _run_transformers(hf, text_ids: list[int], n_tokens: int, batch: int, seed: int,
                      device: torch.device) -> dict[str, Any]:
    """BarkModel.generate's chain (semantic, coarse, fine, codec_decode), each stage timed, with
    EOS held off for exactly `n_tokens` semantic tokens."""
    transformers = import_transformers()
    StoppingCriteria, StoppingCriteriaList = transformers.StoppingCriteria, transformers.StoppingCriteriaList
    configs = bark_generation_configs()
    BarkSemanticGenerationConfig = configs["BarkSemanticGenerationConfig"]
    BarkCoarseGenerationConfig = configs["BarkCoarseGenerationConfig"]
    BarkFineGenerationConfig = configs["BarkFineGenerationConfig"]

    gen = hf.generation_config

    def sub(cls, value):  # a sub-config object, or the dict a loaded file leaves there
        return value if isinstance(value, cls) else cls(**value)

    semantic_cfg = sub(BarkSemanticGenerationConfig, gen.semantic_config)
    coarse_cfg = sub(BarkCoarseGenerationConfig, gen.coarse_acoustics_config)
    fine_cfg = sub(BarkFineGenerationConfig, gen.fine_acoustics_config)
    length = semantic_cfg.max_input_semantic_length
    ids = torch.zeros(batch, length, dtype=torch.long)
    ids[:, : len(text_ids)] = torch.tensor(text_ids[:length])
    mask = (torch.arange(length) < len(text_ids)).long()[None].repeat(batch, 1)
    ids, mask = ids.to(device), mask.to(device)

    stamper = _StepStamps()

    class Stamp(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return stamper(input_ids, scores, **kwargs)

    torch.manual_seed(seed)
    seconds: dict[str, float] = {}
    _sync(device)
    begin = start = time.perf_counter()
    semantic = hf.semantic.generate(
        ids, attention_mask=mask, history_prompt=None, semantic_generation_config=semantic_cfg,
        min_eos_p=None, min_new_tokens=n_tokens, max_new_tokens=n_tokens,
        stopping_criteria=StoppingCriteriaList([Stamp()]),
    )
    _sync(device)
    seconds["semantic"] = time.perf_counter() - start
    n_semantic = semantic.shape[1]
    has_eos = bool((semantic == semantic_cfg.eos_token_id).any())

    start = time.perf_counter()
    coarse = hf.coarse_acoustics.generate(
        semantic, history_prompt=None, semantic_generation_config=semantic_cfg,
        coarse_generation_config=coarse_cfg, codebook_size=gen.codebook_size,
    )
    _sync(device)
    seconds["coarse"] = time.perf_counter() - start

    start = time.perf_counter()
    fine = hf.fine_acoustics.generate(
        coarse, history_prompt=None, semantic_generation_config=semantic_cfg, coarse_generation_config=coarse_cfg,
        fine_generation_config=fine_cfg, codebook_size=gen.codebook_size,
    )
    _sync(device)
    seconds["fine"] = time.perf_counter() - start

    start = time.perf_counter()
    audio = hf.codec_decode(fine)
    _sync(device)
    seconds["decode"] = time.perf_counter() - start
    seconds["total"] = time.perf_counter() - begin
    if has_eos or n_semantic != n_tokens:
        raise GenerationError(f"transformers made {n_semantic} semantic tokens (EOS inside: {has_eos}), not {n_tokens}")
    counts = dict(semantic_tokens=n_semantic, coarse_frames=coarse.shape[1] // coarse_cfg.n_coarse_codebooks,
                  fine_frames=fine.shape[-1], audio_samples=audio.shape[-1])
    return dict(counts=counts, seconds=seconds, step=_median_step(stamper.stamps), sample_rate=gen.sample_rate)


@contextlib.contextmanager
def _quiet_transformers(active: bool):
    """transformers' generation warnings (unused sampling flags and the like) off while it runs."""
    if not active:
        yield
        return
    transformers = import_transformers()
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)


def _summarize(name: str, dtype: str, batch: int, runs: list[dict[str, Any]], memory: list[dict[str, Any]],
               gen: GenerationConfig, calls: int = 1, scale: float = 1.0,
               scaled_from: int | None = None) -> RunResult:
    counts = runs[0]["counts"]
    seconds = {k: scale * statistics.median(r["seconds"][k] for r in runs) for k in (*STAGES, "total")}
    steps = [r["step"] for r in runs if r.get("step") is not None]
    return RunResult(
        implementation=name, dtype=dtype, batch_size=batch, fine_windows=fine_windows(counts["fine_frames"], gen),
        sample_rate=runs[0]["sample_rate"], seconds=seconds, runs=[r["seconds"] for r in runs], calls=calls,
        scaled_from=scaled_from, semantic_step_seconds=statistics.median(steps) if steps else None,
        **counts, **_merge_memory(memory),
    )


# --- the benchmark -------------------------------------------------------------------------


def _environment(device: torch.device, transformers_version: str | None) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        if match:
            cpu = match.group(1).strip()
    env = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers_version,
        "python": platform.python_version(),
        "platform": platform.platform(),
        # Other processes on the machine skew every figure: worth a look when numbers surprise.
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
    return env


def _model_info(name: str, weights: checkpoint.BarkWeights, random: bool) -> dict[str, Any]:
    c = weights.config
    return {
        "config": name,
        "weights": "random" if random else "checkpoint",
        "stages": {
            stage: {"num_layers": sub.num_layers, "num_heads": sub.num_heads, "hidden_size": sub.hidden_size,
                    "parameters": count_parameters(module)}
            for stage, sub, module in (("semantic", c.semantic, weights.semantic), ("coarse", c.coarse, weights.coarse),
                                       ("fine", c.fine, weights.fine))
        } | {"codec": {"parameters": count_parameters(weights.codec)}},
        "weights_bytes": weights_bytes(weights),
    }


def _to(weights: checkpoint.BarkWeights, device: torch.device | str) -> None:
    for module in (weights.semantic, weights.coarse, weights.fine, weights.codec):
        module.to(device)


def run_benchmark(options: BenchOptions, status: Status | None = None) -> BenchReport:
    """Run the benchmark. `status` receives one line per step (for a spinner or a log); nothing
    is printed. Raises InputError / DeviceError / CheckpointError / GenerationError / BarkError."""
    options.validate()
    threads = torch.get_num_threads()
    if options.threads:
        torch.set_num_threads(options.threads)
    try:
        return _run(options, status or (lambda message: None))
    finally:
        torch.set_num_threads(threads)


def _run(options: BenchOptions, say: Status) -> BenchReport:
    from .pipeline import DTYPES, QUANTIZATIONS, Bark, check_attention, check_cuda_graphs, pick_device, pick_dtype

    device = pick_device(options.device)
    if options.quantize not in QUANTIZATIONS:
        raise DeviceError(f"unknown quantization {options.quantize!r}", "use int8, or leave it out")
    requested = options.dtype
    if options.quantize and requested == "auto" and device.type == "cpu":
        requested = "bfloat16"  # as Bark.load
    dtype = pick_dtype(requested, device)
    if options.quantize and dtype == torch.float32:
        raise DeviceError("int8 weights need bfloat16 or float16 activations", "add --dtype bfloat16")
    check_attention(options.attention, device, dtype)
    check_cuda_graphs(options.cuda_graphs, device)
    dtype_name = next(k for k, v in DTYPES.items() if v == dtype)
    hf_dtype_name = options.transformers_dtype or ("float32" if device.type == "cpu" else dtype_name)
    if hf_dtype_name not in DTYPES:
        raise DeviceError(f"unknown transformers dtype {hf_dtype_name!r}", "use float32, float16 or bfloat16")
    hf_dtype = DTYPES[hf_dtype_name]
    tokens = [int(n) for n in options.tokens]
    batch = options.batch_size
    notes: list[str] = []

    transformers_version = None
    if options.compare_transformers:
        transformers_version = import_transformers().__version__

    bandwidth = None

    # Weights: one set, shared by both implementations.
    random = options.config in SIZES
    hf = None
    if random:
        config = bark_config(options.config)
        gen = GenerationConfig()
        tokenizer = FixedTokenizer()
        folder = Path(f"<random {options.config}>")
        if options.compare_transformers:
            say(f"building transformers BarkModel ({options.config}, random weights)")
            hf = random_transformers_model(config, options.seed)
            hf.generation_config = transformers_generation_config(gen)
            say("handing the same weights to bark-cli")
            weights = weights_from_state_dict(hf.state_dict(), config, gen, dtype)
        else:
            say(f"building bark-cli models ({options.config}, random weights)")
            weights = random_weights(config, gen, dtype, options.seed)
    else:
        from .text import load_tokenizer

        folder = checkpoint.resolve_model(options.config, progress=say)
        say(f"loading {options.config} into bark-cli")
        weights = checkpoint.load_weights(folder, dtype)
        config, gen = weights.config, weights.generation
        tokenizer = load_tokenizer(folder)
        if options.compare_transformers:
            say(f"loading {options.config} into transformers")
            hf = import_transformers().BarkModel.from_pretrained(folder, dtype=torch.float32).eval()
            hf.generation_config = transformers_generation_config(gen)
    if hf is not None:
        # transformers' Bark has eager and flash-attention-2 paths, no SDPA one
        impl = getattr(hf.semantic.config, "_attn_implementation", None) or "unknown"
        notes.append(f"transformers' BarkModel attention: {impl}")
    if options.quantize == "int8":
        from .models.quantize import quantize_int8

        say("quantizing bark-cli's semantic and coarse weights to int8")
        quantize_int8(weights.semantic, dtype)
        quantize_int8(weights.coarse, dtype)
    text = options.text
    text_ids = list(tokenizer.encode(text))

    model_info = _model_info(options.config, weights, random)
    model_info["dtype"] = dtype_name
    model_info["quantize"] = options.quantize
    model_info["cuda_graphs"] = options.cuda_graphs
    bark = Bark(weights, tokenizer, folder, device, dtype, offload=options.offload, attention=options.attention,
                model_id=options.config, cuda_graphs=options.cuda_graphs)
    model_info["offload"] = bark.offload  # a no-op on the CPU

    # On the CPU, with a per-run peak RSS, each bark-cli run is followed by its transformers run,
    # so both see the same load from other processes. Elsewhere bark-cli runs first, every token
    # count, then transformers (the device holds one implementation at a time, and a
    # process-wide peak can never charge transformers' memory to bark-cli).
    interleave = hf is not None and device.type == "cpu" and _reset_peak_rss()
    hf_batch = batch if options.transformers_batched else 1
    sequential = hf is not None and not options.transformers_batched and batch > 1
    calls = min(options.transformers_runs or batch, batch) if sequential else 1

    def ours_once(n: int, r: int):
        say(f"bark-cli: {n} tokens, batch {batch}, run {r + 1}/{options.repeats}")
        probe = MemoryProbe(device)
        probe.start()
        run = _run_ours(bark, text, n, batch, options.seed + r)
        return run, probe.stop()

    def hf_once(n: int, r: int):
        probe = MemoryProbe(device)
        probe.start()
        parts = []
        for c in range(calls):
            say(f"transformers: {n} tokens, batch {hf_batch}, run {r + 1}/{options.repeats}"
                + (f", item {c + 1}/{calls}" if calls > 1 else ""))
            parts.append(_run_transformers(hf, text_ids, n, hf_batch, options.seed + r * calls + c, device))
        memory = probe.stop()
        summed = dict(parts[0])
        summed["seconds"] = {k: sum(p["seconds"][k] for p in parts) for k in (*STAGES, "total")}
        steps = [p["step"] for p in parts if p["step"] is not None]
        summed["step"] = statistics.median(steps) if steps else None
        return summed, memory

    def ours_warmup():
        say(f"bark-cli warm-up ({options.warmup_tokens} tokens, batch {batch})")
        _run_ours(bark, text, options.warmup_tokens, batch, options.seed)

    def hf_warmup():
        say(f"transformers warm-up ({options.warmup_tokens} tokens, batch {hf_batch})")
        _run_transformers(hf, text_ids, options.warmup_tokens, hf_batch, options.seed, device)

    floors: list[DecodeFloor] = []

    def time_floors() -> None:
        """Memory bandwidth, the floor of a decode step it implies, and the step timed directly,
        per GPT stage; right before the timed runs, after the warm-ups."""
        nonlocal bandwidth
        if options.bandwidth_mb <= 0:
            return
        say(f"measuring memory bandwidth ({options.bandwidth_mb} MB)")
        bandwidth = measure_bandwidth(device, options.bandwidth_mb)
        longest = max(tokens)
        coarse_tokens = generation.coarse_steps(longest, gen)
        positions = {
            # the middle of the semantic run: 257 context positions, then the new tokens
            "semantic": gen.max_input_semantic_length + 1 + longest // 2,
            # the middle of a coarse window with the history it has on average
            "coarse": gen.max_coarse_input_length + 1 + min(gen.max_coarse_history, coarse_tokens // 2)
            + gen.sliding_window_len // 2,
        }
        for stage in ("semantic", "coarse"):
            model = getattr(weights, stage)
            position = min(positions[stage], model.config.block_size - 8)
            floor = DecodeFloor(stage, batch, decode_step_bytes(model), kv_step_bytes(model, batch, position),
                                position, bandwidth.floor_bytes_per_s, bandwidth.copy_bytes_per_s)
            if options.decode_steps > 0:
                say(f"timing {options.decode_steps} {stage} decode steps")
                try:
                    with bark._attention(), bark._on_device(model):
                        floor.measured_seconds, floor.best_seconds = time_decode_steps(
                            model, batch, position, options.decode_steps, device, options.cuda_graphs)
                except Exception as exc:  # the model API moved under us: report it, keep benchmarking
                    floor.error = f"{type(exc).__name__}: {exc}"
                    notes.append(f"{stage} decode step not timed: {floor.error}")
            floors.append(floor)

    measured: dict[tuple[str, int], list] = {}

    def measure(name: str, n: int, r: int) -> None:
        measured.setdefault((name, n), []).append((ours_once if name == "ours" else hf_once)(n, r))

    with _quiet_transformers(hf is not None):
        if interleave:
            hf.to(dtype=hf_dtype)
            if options.warmup:
                ours_warmup()
                hf_warmup()
            time_floors()
            for n in tokens:
                for r in range(options.repeats):
                    measure("ours", n, r)
                    measure("hf", n, r)
        else:
            if options.warmup:
                ours_warmup()
            time_floors()
            for n in tokens:
                for r in range(options.repeats):
                    measure("ours", n, r)
            if hf is not None:
                if device.type != "cpu":
                    _to(weights, "cpu")  # give the device to transformers
                hf.to(device=device, dtype=hf_dtype)
                try:
                    if options.warmup:
                        hf_warmup()
                    for n in tokens:
                        for r in range(options.repeats):
                            measure("hf", n, r)
                finally:
                    if device.type != "cpu":
                        hf.to("cpu")
                        if not bark.offload:
                            _to(weights, device)

    ours_results: dict[int, RunResult] = {}
    hf_results: dict[int, RunResult] = {}
    for n in tokens:
        runs, memory = zip(*measured[("ours", n)])
        label = (dtype_name + (f"+{options.quantize}" if options.quantize else "")
                 + ("+graphs" if options.cuda_graphs else ""))
        ours_results[n] = _summarize("bark-cli", label, batch, list(runs), list(memory), gen)
        if hf is None:
            continue
        runs, memory = zip(*measured[("hf", n)])
        hf_results[n] = _summarize(
            "transformers", hf_dtype_name, batch, list(runs), list(memory), gen, calls=batch if sequential else 1,
            scale=batch / calls if sequential else 1.0, scaled_from=calls if sequential and calls < batch else None)
        if sequential and calls < batch:
            notes.append(f"transformers at {n} tokens: {calls} of {batch} sequential runs timed, times scaled "
                         f"to {batch} items")
    order = "interleaved (bark-cli run, then its transformers run)" if interleave else "bark-cli first, then transformers"
    if hf is not None:
        notes.append(f"run order: {order}")

    results = []
    for n in tokens:
        ours, theirs = ours_results[n], hf_results.get(n)
        if theirs is not None:
            mine = (ours.semantic_tokens, ours.coarse_frames, ours.fine_frames, ours.audio_samples)
            other = (theirs.semantic_tokens, theirs.coarse_frames, theirs.fine_frames, theirs.audio_samples)
            if mine != other:
                raise GenerationError(
                    f"token counts differ at {n} tokens: bark-cli (semantic, coarse frames, fine frames, samples) "
                    f"{mine}, transformers {other}")
        results.append(Comparison(n, ours, theirs))

    if random and hf is not None and dtype == torch.float32:
        notes.append("bark-cli and transformers share the same float32 weight tensors")
    if any(r.ours.rss_peak_is_process_wide for r in results):
        notes.append("peak RSS could not be reset per run: it is the process-wide peak so far")
    env = _environment(device, transformers_version)
    return BenchReport(options=replace(options, tokens=list(tokens)), environment=env, model=model_info,
                       bandwidth=bandwidth, floors=floors, results=results, notes=notes)


# --- text ----------------------------------------------------------------------------------


def _gib(n: int | None) -> str:
    return "-" if n is None else f"{n / GiB:.2f} GiB"


def _ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1000:.1f} ms"


def _fmt_s(s: float) -> str:
    return f"{s:.2f} s" if s >= 0.1 else f"{s * 1000:.0f} ms"


def _memory_line(run: RunResult) -> str:
    text = f"RSS {_gib(run.rss_peak_bytes)}"
    if run.rss_delta_bytes is not None:
        text += f" (+{run.rss_delta_bytes / GiB:.2f})"
    if run.cuda_peak_bytes is not None:
        text += f", CUDA {_gib(run.cuda_peak_bytes)}"
        if run.cuda_start_bytes is not None:
            text += f" (+{(run.cuda_peak_bytes - run.cuda_start_bytes) / GiB:.2f})"
    return text


def format_report(report: BenchReport) -> list[str]:
    """The report as text lines: a header, one table per token count, the decode-step floor."""
    o, env, m = report.options, report.environment, report.model
    lines = []
    threads = f"{env['torch_threads']} thread(s)" if env["device"] == "cpu" else env["device_name"]
    lines.append(f"bark bench: {m['config']} ({m['weights']} weights, {m['weights_bytes'] / GiB:.2f} GiB), "
                 f"{env['device']} {m.get('dtype', o.dtype)}" + (f" + {o.quantize} weights" if o.quantize else "")
                 + (" + CUDA graphs" if o.cuda_graphs else "") + (" + offload" if m.get("offload") else "")
                 + f", {threads}, batch {o.batch_size}")
    lines.append(f"  {env['device_name']}; torch {env['torch']}"
                 + (f", transformers {env['transformers']}" if env.get("transformers") else ""))
    if report.bandwidth:
        bw = report.bandwidth
        lines.append(f"  memory bandwidth: copy {bw.copy_bytes_per_s / 1e9:.1f} GB/s (bytes read), "
                     f"sum {bw.sum_bytes_per_s / 1e9:.1f} GB/s, matvec {bw.matvec_bytes_per_s / 1e9:.1f} GB/s; "
                     f"the floor uses {bw.floor_bytes_per_s / 1e9:.1f} GB/s")

    for comp in report.results:
        ours, theirs = comp.ours, comp.transformers
        lines.append("")
        lines.append(
            f"{comp.tokens} semantic tokens x {ours.batch_size}: {ours.coarse_frames} coarse frames, "
            f"{ours.fine_frames} fine frames, {ours.fine_windows} fine window(s), "
            f"{ours.audio_seconds:.2f} s of audio"
            + (" (same counts in both)" if theirs else ""))
        header = f"  {'stage':<9}{'bark-cli':>10}  {'rate':<16}"
        if theirs:
            tag = "transformers"
            if theirs.calls > 1:
                tag += (f" ({theirs.calls} runs)" if not theirs.scaled_from
                        else f" ({theirs.calls} runs, {theirs.scaled_from} timed)")
            header += f"{tag:>22}  {'rate':<16}{'speedup':>8}"
        lines.append(header)
        rates_ours = ours.rates()
        rates_theirs = theirs.rates() if theirs else None
        speed = comp.speedup()

        def rate(r: dict[str, float], stage: str) -> str:
            return {
                "semantic": f"{r['semantic_tokens_per_s']:.1f} tok/s",
                "coarse": f"{r['coarse_tokens_per_s']:.1f} tok/s",
                "fine": f"{r['fine_seconds_per_window']:.2f} s/window",
                "decode": f"{r['audio_seconds_per_s']:.1f}x real time",
                "total": f"{r['x_slower_than_real_time']:.1f}x slower" if r["x_slower_than_real_time"] >= 1
                else f"{r['real_time_factor']:.1f}x real time",
            }[stage]

        for stage in (*STAGES, "total"):
            row = f"  {stage:<9}{_fmt_s(ours.seconds[stage]):>10}  {rate(rates_ours, stage):<16}"
            if theirs:
                row += f"{_fmt_s(theirs.seconds[stage]):>22}  {rate(rates_theirs, stage):<16}{speed[stage]:>7.2f}x"
            lines.append(row)
        lines.append(f"  real-time factor {rates_ours['real_time_factor']:.3f}"
                     + (f" vs {rates_theirs['real_time_factor']:.3f}" if theirs else "")
                     + " (audio seconds per wall second)")
        lines.append(f"  semantic step in run: {_ms(ours.semantic_step_seconds)}"
                     + (f" vs {_ms(theirs.semantic_step_seconds)}" if theirs else ""))
        lines.append(f"  peak memory: bark-cli {_memory_line(ours)}"
                     + (f"; transformers {_memory_line(theirs)}" if theirs else ""))
        if env["device"] == "cpu" and ours.cpu_cores_used is not None:
            line = (f"  CPU cores used: {ours.cpu_cores_used:.2f}"
                    + (f" vs {theirs.cpu_cores_used:.2f}" if theirs else "") + f" of {env['torch_threads']} thread(s)")
            if ours.load_average is not None:
                line += f"; load average {ours.load_average:.2f}" + (f" / {theirs.load_average:.2f}" if theirs else "")
            lines.append(line)

    if report.floors:
        lines.append("")
        lines.append(f"decode step vs bandwidth floor (batch {o.batch_size}, {m.get('dtype', o.dtype)}"
                     + (f" + {o.quantize}" if o.quantize else "") + "):")
        lines.append(f"  {'stage':<9}{'weights read':>13}{'floor':>10}{'median':>9}{'ratio':>8}{'best':>9}"
                     f"{'ratio':>8}{'position':>10}{'+KV floor':>11}{'copy floor':>12}{'ratio':>8}")
        for f in report.floors:
            ratio = "-" if f.ratio is None else f"{f.ratio:.2f}x"
            best_ratio = "-" if f.best_ratio is None else f"{f.best_ratio:.2f}x"
            copy_ratio = "-" if f.copy_ratio is None else f"{f.copy_ratio:.2f}x"
            kv_floor = (f.weight_bytes + f.kv_bytes) / f.bandwidth_bytes_per_s
            lines.append(f"  {f.stage:<9}{f.weight_bytes / 1e6:>10.0f} MB{_ms(f.floor_seconds):>10}"
                         f"{_ms(f.measured_seconds):>9}{ratio:>8}{_ms(f.best_seconds):>9}{best_ratio:>8}"
                         f"{f.position:>10}{_ms(kv_floor):>11}{_ms(f.copy_floor_seconds):>12}{copy_ratio:>8}")
    for note in report.notes:
        lines.append(f"note: {note}")
    return [line.rstrip() for line in lines]
