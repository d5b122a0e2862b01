"""The roofline: a GEMM's peak per dtype, each GPT stage's FLOPs and bytes counted from the
model's config and a run's counts, and the least time each stage could take on this machine."""

from __future__ import annotations

import contextlib
import math
import re
import time
from pathlib import Path
from typing import Sequence

import torch

from ..config import BarkConfig, GenerationConfig
from ..models.kernels import ONEDNN_LINEAR
from ..pipeline import Bark
from ..runtime import Runtime
from .probes import step_positions
from .results import GEMM_SHAPE, Bandwidth, GemmPeak, RunResult, StageRoofline, Status


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
        if device.type == "cpu" and ONEDNN_LINEAR:
            kernels.append(lambda: torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], ""))
    best = math.inf
    for i, kernel in enumerate(kernels):
        try:
            kernel()
        except RuntimeError:
            # oneDNN's linear has no bfloat16 primitive on some CPUs (AVX2 without AVX512-BF16):
            # the peak is then torch.mm's alone.
            if i == 0:
                raise
            continue
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
