"""Weight-only int8 quantization of the causal GPT stages (gpt-fast's approach).

A decode step reads every weight once and is bound by memory bandwidth; int8 weights read a
quarter of float32's bytes. Each `nn.Linear` is swapped for `Int8Linear` (per-output-channel
scales); the model code does not change.

A CPU path: PyTorch's fused int8-weight kernel (`_weight_int8pack_mm`) has no CUDA version, and
the fallback below dequantizes a whole weight per call, so Runtime.choose refuses int8 on CUDA.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .kernels import gelu

# Up to this many rows, PyTorch's fused CPU kernel (int8 weights, no dequantized copy) is the
# fastest; above it (prefill), dequantizing once and running a GEMM is.
FUSED_MAX_ROWS = 8


class Int8Linear(nn.Module):
    def __init__(self, linear: nn.Linear, dtype: torch.dtype):
        super().__init__()
        weight = linear.weight.detach().float()
        scales = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", torch.round(weight / scales[:, None]).to(torch.int8))
        self.register_buffer("scales", scales.to(dtype))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().to(dtype))

    def forward(self, x: torch.Tensor, rows: slice | None = None, gelu_out: bool = False) -> torch.Tensor:
        """x @ W.T (+ b); `rows` computes only those output features; `gelu_out` applies the GELU."""
        weight, scales, bias = self.weight, self.scales, self.bias
        if rows is not None:
            weight, scales = weight[rows], scales[rows]
            bias = None if bias is None else bias[rows]
        # The product runs in the scales' dtype; the activations around it may be float32.
        flat = x.reshape(-1, self.in_features)
        if flat.dtype != scales.dtype:
            flat = flat.to(scales.dtype)
        # A decode step calls this ~50 times per token, and each tensor call costs microseconds
        # on a slow host, so the common case (contiguous, CPU, no bias) makes only the one call.
        if flat.shape[0] <= FUSED_MAX_ROWS and flat.is_cpu:
            if rows is not None:
                weight, scales = weight.contiguous(), scales.contiguous()
            out = torch._weight_int8pack_mm(flat.contiguous(), weight, scales)
        else:
            out = F.linear(flat, weight.to(flat.dtype)) * scales
        if bias is not None:
            out = out + bias
        out = out.view(x.shape[:-1] + (out.shape[-1],))
        if gelu_out:
            out = gelu(out)
        return out if out.dtype == x.dtype else out.to(x.dtype)


def quantize_int8(model: nn.Module, dtype: torch.dtype = torch.bfloat16) -> nn.Module:
    """Replace every nn.Linear of `model` in place; activations run in `dtype`."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Linear):
            setattr(model, name, Int8Linear(child, dtype))
        else:
            quantize_int8(child, dtype)
    return model
