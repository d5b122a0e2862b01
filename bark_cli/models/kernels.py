"""Which CPU kernel runs each of the model's products and GELUs.

A decode step only streams weights, so on the CPU the kernel behind each product decides a step's
speed, and PyTorch's default choice was the slower one for both float32 and bfloat16 rows on the
CPUs measured (docs/guide/performance.md). Which one is faster depends on the CPU, so the choice is
measured once per CPU kind (`calibrate`: a fraction of a second) and kept in a small cache file;
a kernel other than PyTorch's default is used only where it measured faster. On other devices
everything here falls through to PyTorch's own dispatch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DeviceError

# Up to this many values, GELU runs PyTorch's own CPU kernel instead of oneDNN's: oneDNN sets up
# its primitive on every call, a fixed cost larger than all the work on a decode step's few
# thousand values (12-24 calls per token). Larger inputs (prefill, the fine stage) gain from it.
NATIVE_GELU_MAX_VALUES = 1 << 16

# float32 CPU linears: PyTorch sends them to MKL, whose one-row product read weights at about
# half oneDNN's rate on the CPUs measured (docs/guide/performance.md), and prefill-sized ones were
# slower too; so Linear may call oneDNN's product directly. A candidate only on x86-64 (ARM
# builds send linears to other libraries) where this PyTorch build has the op.
ONEDNN_LINEAR = (platform.machine().lower() in ("x86_64", "amd64") and torch.backends.mkldnn.is_available()
                 and hasattr(torch.ops.mkldnn, "_linear_pointwise"))

# bfloat16 products of many rows go to oneDNN under PyTorch's default too, exactly where PyTorch
# finds oneDNN's bfloat16 usable (AVX-512 or AMX); calling its op directly fuses the GELU into the
# product instead of a separate pass over the fine stage's activations (docs/guide/performance.md).
ONEDNN_BF16_LINEAR = ONEDNN_LINEAR and torch.ops.mkldnn._is_mkldnn_bf16_supported()


CPU_KERNELS_ENV = "BARK_CPU_KERNELS"  # "auto" (measured), or "pytorch": PyTorch's defaults, nothing measured
# An alternative kernel must beat PyTorch's default by this much to be chosen: a near tie in a
# short measurement on a busy machine is no reason to leave the default.
MARGIN = 0.95


@dataclass(frozen=True)
class CpuKernels:
    """Which kernel each CPU product runs. False everywhere is PyTorch's default dispatch."""

    float32_onednn_row: bool = False  # one-row float32 products on oneDNN (the default: MKL)
    float32_onednn_rows: bool = False  # many-row float32 products on oneDNN (the default: MKL)
    bfloat16_native_row: bool = False  # one-row bfloat16 products on PyTorch's own kernel (default: oneDNN)
    bfloat16_fused_rows: bool = False  # many-row bfloat16 products with the GELU fused, on oneDNN
    native_small_gelu: bool = False  # decode-sized GELUs on PyTorch's own kernel (default: oneDNN)
    how: str = "pytorch"  # "pytorch", "features" (not measured yet), "measured", "cached"

    def describe(self) -> dict:
        return dataclasses.asdict(self)


PYTORCH_DEFAULT = CpuKernels()
# Before a measurement: what the CPUs measured so far preferred, where this build has it.
BY_FEATURES = CpuKernels(ONEDNN_LINEAR, ONEDNN_LINEAR, True, ONEDNN_BF16_LINEAR, True, "features")
chosen = BY_FEATURES


@contextlib.contextmanager
def use(kernels: CpuKernels):
    """Run with these choices (tests and benchmarks compare kernels this way)."""
    global chosen
    saved, chosen = chosen, kernels
    try:
        yield kernels
    finally:
        chosen = saved


def cpu_name() -> str:
    """The CPU's model name (Linux), else what the platform says: every figure names its CPU."""
    with contextlib.suppress(OSError):
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        if match:
            return match.group(1).strip()
    return platform.processor() or platform.machine()


def cpu_kind() -> str:
    """What a measurement holds for: the CPU's name, the instruction sets the kernels choose by
    (virtual machines often report a bare "AMD EPYC" for several generations), PyTorch's build
    and its thread count."""
    flags = ""
    with contextlib.suppress(OSError):
        match = re.search(r"^flags\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        if match:
            wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8")
            flags = " ".join(f for f in wanted if f in match.group(1).split())
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()
    return (f"{cpu_name()} [{flags or platform.machine()}] {capability} torch {torch.__version__} "
            f"threads {torch.get_num_threads()}")


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of `repeats` calls of fn, after one untimed call (oneDNN's primitives,
    page faults)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(hidden: int = 768, rows: int = 64, repeats: int = 7) -> dict[str, float]:
    """Seconds per product of each kernel on this CPU, at bark-small's MLP shape: one row
    against weights larger than the caches (as a decode step reads them), and `rows` rows (a
    prefill). Variants this build lacks are left out; rounds interleave the variants."""
    # Values do not change a product's speed; filling is far quicker than drawing 19M numbers.
    weights = [torch.full((4 * hidden, hidden), 0.01) for _ in range(8)]  # 75 MB at 768: past any L3
    one, many = torch.full((1, hidden), 0.5), torch.full((rows, hidden), 0.5)
    variants: dict[str, tuple[Callable[[], object], int]] = {}  # name -> (call, products per call)

    def each(x, ws, op):
        return (lambda: [op(x, w) for w in ws]), len(ws)

    def onednn(x, w):
        return torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")

    if ONEDNN_LINEAR:
        variants["float32 row, oneDNN"] = each(one, weights, onednn)
        variants["float32 row, default"] = each(one, weights, F.linear)
        variants["float32 rows, oneDNN"] = each(many, weights[:2], onednn)
        variants["float32 rows, default"] = each(many, weights[:2], F.linear)
    if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        halves = [w.bfloat16() for w in weights]
        variants["bfloat16 row, native"] = each(one.bfloat16(), halves, lambda x, w: without_onednn(F.linear, x, w))
        variants["bfloat16 row, default"] = each(one.bfloat16(), halves, F.linear)
    if not variants:
        return {}
    times: dict[str, list[float]] = {name: [] for name in variants}
    with torch.inference_mode():
        for _ in range(3):
            for name, (fn, _) in variants.items():
                times[name].append(median_time(fn, max(1, repeats // 3)))
    return {name: min(times[name]) / count for name, (_, count) in variants.items()}


def decide(seconds: dict[str, float]) -> CpuKernels:
    """The choices measured seconds call for: an alternative only where it beat PyTorch's
    default by MARGIN. Where a pair was not measured, the default stands."""

    def faster(alternative: str, default: str) -> bool:
        if alternative not in seconds or default not in seconds:
            return False
        return seconds[alternative] < MARGIN * seconds[default]

    return CpuKernels(
        float32_onednn_row=faster("float32 row, oneDNN", "float32 row, default"),
        float32_onednn_rows=faster("float32 rows, oneDNN", "float32 rows, default"),
        # Where PyTorch has no oneDNN bfloat16, its default already is its own kernel.
        bfloat16_native_row=faster("bfloat16 row, native", "bfloat16 row, default"),
        # The same oneDNN product PyTorch would run, with the GELU folded in: never slower.
        bfloat16_fused_rows=ONEDNN_BF16_LINEAR,
        # oneDNN sets up its GELU on every call, a fixed cost on every CPU.
        native_small_gelu=True,
        how="measured",
    )


def cache_file() -> Path:
    """$XDG_CACHE_HOME/bark-cli/cpu-kernels.json, else ~/.cache/bark-cli/cpu-kernels.json."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "bark-cli" / "cpu-kernels.json"


def calibrated() -> CpuKernels:
    """The choices for this process, calibrated on first use (Bark calls it for a CPU model)."""
    return calibrate() if chosen is BY_FEATURES else chosen


def calibrate(path: Path | None = None, measure_with: Callable[[], dict[str, float]] | None = None) -> CpuKernels:
    """Choose the CPU kernels for this process: from the cache file where it holds this CPU kind,
    else measured now and added to it. BARK_CPU_KERNELS=pytorch keeps PyTorch's defaults. A cache
    that cannot be read is measured over; one that cannot be written is left alone. Raises
    DeviceError for any other BARK_CPU_KERNELS than auto or pytorch."""
    global chosen
    setting = os.environ.get(CPU_KERNELS_ENV, "").strip().lower()
    if setting not in ("", "auto", "pytorch"):
        raise DeviceError(f"{CPU_KERNELS_ENV}={setting!r} is not auto or pytorch",
                          f"unset {CPU_KERNELS_ENV}, or set it to pytorch for PyTorch's default kernels")
    if setting == "pytorch":
        chosen = PYTORCH_DEFAULT
        return chosen
    path = cache_file() if path is None else path
    kind = cpu_kind()
    known: dict = {}
    with contextlib.suppress(OSError, ValueError):
        known = json.loads(path.read_text())
        if not isinstance(known, dict):
            known = {}
    entry = known.get(kind)
    if isinstance(entry, dict) and isinstance(entry.get("seconds"), dict):
        chosen = dataclasses.replace(decide(entry["seconds"]), how="cached")
        return chosen
    seconds = (measure_with or measure)()
    chosen = decide(seconds)
    known[kind] = {"seconds": seconds}
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f".{path.name}.{os.getpid()}.part")
        part.write_text(json.dumps(known, indent=1, sort_keys=True) + "\n")
        os.replace(part, path)
    return chosen


def without_onednn(op, *args):
    """op(*args) on PyTorch's own CPU kernels, oneDNN switched off for the one call. The switch
    is global: another thread meanwhile may get the other kernel, which computes the same."""
    if not torch.backends.mkldnn.enabled:
        return op(*args)
    torch.backends.mkldnn.enabled = False  # the only switch PyTorch offers between the two
    try:
        return op(*args)
    finally:
        torch.backends.mkldnn.enabled = True


def gelu(x: torch.Tensor) -> torch.Tensor:
    """Exact (erf) GELU, as Bark uses it."""
    if x.is_cpu and x.numel() <= NATIVE_GELU_MAX_VALUES and chosen.native_small_gelu:
        return without_onednn(F.gelu, x)
    return F.gelu(x)


class Linear(nn.Linear):
    """nn.Linear (same parameters, same state dict) that can compute a slice of its output
    features and apply the exact GELU in the same call. On the CPU each product runs the kernel
    `chosen` names for its dtype and row count: oneDNN's float32 product (with the GELU fused),
    PyTorch's own kernel for one bfloat16 row, oneDNN's bfloat16 product with the GELU fused for
    many rows; elsewhere, and where the choice is PyTorch's default, F.linear."""

    def forward(self, x: torch.Tensor, rows: slice | None = None, gelu_out: bool = False) -> torch.Tensor:
        weight, bias = self.weight, self.bias
        if rows is not None:
            weight, bias = weight[rows], None if bias is None else bias[rows]
        if x.is_cpu and not torch.is_grad_enabled() and torch.backends.mkldnn.enabled:
            one_row = x.numel() == x.shape[-1]
            if x.dtype == torch.float32 and weight.dtype == torch.float32 and (
                    chosen.float32_onednn_row if one_row else chosen.float32_onednn_rows):
                # oneDNN's op has no backward, hence inference only; "none" selects the erf GELU
                if gelu_out:
                    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "none")
                return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
            if x.dtype == torch.bfloat16 and one_row and chosen.bfloat16_native_row:
                out = without_onednn(F.linear, x, weight, bias)
                return gelu(out) if gelu_out else out
            if (x.dtype == torch.bfloat16 and weight.dtype == torch.bfloat16 and not one_row
                    and chosen.bfloat16_fused_rows):
                return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu" if gelu_out else "none", [],
                                                          "none" if gelu_out else "")
        out = F.linear(x, weight, bias)
        return gelu(out) if gelu_out else out
