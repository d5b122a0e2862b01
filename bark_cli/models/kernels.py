"""Which CPU kernel runs each of the model's products and GELUs.

A decode step only streams weights, so on the CPU the kernel behind each product decides a step's
speed, and PyTorch's default choice is the slower one for both float32 and bfloat16 rows. The
figures behind each choice are in README (Performance); `bench/decode_breakdown.py` times them on
the machine at hand. On other devices everything here falls through to PyTorch's own dispatch.
"""

from __future__ import annotations

import platform

import torch
import torch.nn.functional as F
from torch import nn

# Up to this many values, GELU runs PyTorch's own CPU kernel instead of oneDNN's: oneDNN sets up
# its primitive on every call, a fixed cost larger than all the work on a decode step's few
# thousand values (12-24 calls per token). Larger inputs (prefill, the fine stage) gain from it.
NATIVE_GELU_MAX_VALUES = 1 << 16

# float32 CPU linears: PyTorch sends them to MKL, whose one-row product reads weights at about
# half oneDNN's rate on the CPUs measured (README, Performance), and prefill-sized ones are slower
# too; so Linear calls oneDNN's product directly. Only on x86-64, where it was measured (ARM
# builds send linears to other libraries), and only where this PyTorch build has the op.
ONEDNN_LINEAR = (platform.machine().lower() in ("x86_64", "amd64") and torch.backends.mkldnn.is_available()
                 and hasattr(torch.ops.mkldnn, "_linear_pointwise"))

# bfloat16 products of many rows go to oneDNN under PyTorch's default too, exactly where PyTorch
# finds oneDNN's bfloat16 usable (AVX-512 or AMX); calling its op directly fuses the GELU into the
# product instead of a separate pass over the fine stage's activations (README, Performance).
ONEDNN_BF16_LINEAR = ONEDNN_LINEAR and torch.ops.mkldnn._is_mkldnn_bf16_supported()


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
    if x.is_cpu and x.numel() <= NATIVE_GELU_MAX_VALUES:
        return without_onednn(F.gelu, x)
    return F.gelu(x)


class Linear(nn.Linear):
    """nn.Linear (same parameters, same state dict) that can compute a slice of its output
    features and apply the exact GELU in the same call. On the CPU, float32 runs oneDNN's
    product with the GELU fused into it, bfloat16 rows oneDNN's with the GELU fused where
    PyTorch would send them to oneDNN anyway, and a bfloat16 row PyTorch's own kernel: PyTorch sends
    bfloat16 to oneDNN, whose one-row product reads weights at well under half the rate of
    PyTorch's own on the CPUs measured (README, Performance)."""

    def forward(self, x: torch.Tensor, rows: slice | None = None, gelu_out: bool = False) -> torch.Tensor:
        weight, bias = self.weight, self.bias
        if rows is not None:
            weight, bias = weight[rows], None if bias is None else bias[rows]
        if (ONEDNN_LINEAR and x.is_cpu and x.dtype == torch.float32 and weight.dtype == torch.float32
                and not torch.is_grad_enabled() and torch.backends.mkldnn.enabled):
            # oneDNN's op has no backward, hence inference only; "none" selects the erf GELU
            if gelu_out:
                return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "none")
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
        if x.is_cpu and x.dtype == torch.bfloat16 and x.numel() == x.shape[-1]:
            out = without_onednn(F.linear, x, weight, bias)
        elif (ONEDNN_BF16_LINEAR and x.is_cpu and x.dtype == torch.bfloat16 and weight.dtype == torch.bfloat16
              and not torch.is_grad_enabled() and torch.backends.mkldnn.enabled):
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu" if gelu_out else "none", [],
                                                      "none" if gelu_out else "")
        else:
            out = F.linear(x, weight, bias)
        return gelu(out) if gelu_out else out
