"""int8 weight-only quantization: close to the float model, same greedy decisions on the fixture."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bark_cli import Bark
from bark_cli.config import DeviceOptions, SamplingOptions
from bark_cli.errors import DeviceError
from bark_cli.models.quantize import Int8Linear, quantize_int8


@pytest.mark.parametrize("rows", [1, 3, 40])  # the fused kernel and the dequantized GEMM
def test_int8_linear_matches_the_rounded_weights(rows):
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 96)
    q = Int8Linear(linear, torch.bfloat16)
    x = torch.randn(2, rows, 64).bfloat16()
    expected = torch.nn.functional.linear(x.float(), q.weight.float() * q.scales.float()[:, None], linear.bias)
    torch.testing.assert_close(q(x).float(), expected, rtol=2e-2, atol=2e-2)
    assert (q.weight.float() * q.scales.float()[:, None] - linear.weight).abs().max() <= q.scales.max() / 2 + 1e-3
    torch.testing.assert_close(q(x, rows=slice(10, 20)), q(x)[..., 10:20], rtol=0, atol=0)
    # float32 activations: the product still runs in the scales' dtype, the result comes back float32
    out = q(x.float())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, q(x).float(), rtol=1e-2, atol=1e-2)
    # the MLP's first projection asks for the erf GELU on its output
    y = q(x).double()
    torch.testing.assert_close(q(x, gelu_out=True).double(), y * 0.5 * (1 + torch.erf(y / 2**0.5)),
                               rtol=2e-2, atol=2e-2)


def test_quantize_swaps_every_linear():
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Sequential(torch.nn.Linear(8, 4)))
    quantize_int8(model)
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())


def test_int8_generation_agrees_with_float32(tiny_checkpoint):
    full = Bark.load(tiny_checkpoint, DeviceOptions(device="cpu", dtype="float32"))
    small = Bark.load(tiny_checkpoint, DeviceOptions(device="cpu", quantize="int8"))
    assert small.dtype == torch.bfloat16
    options = dict(sampling=SamplingOptions(temperature=0.0, max_semantic_tokens=32, min_eos_p=0))
    a = full.generate("Hello there, my friend!", **options)
    b = small.generate("Hello there, my friend!", **options)
    agreement = np.mean(a.semantic_tokens == b.semantic_tokens)
    assert agreement >= 0.5, agreement  # reduced precision may drift, but not to noise
    assert b.audio.shape == a.audio.shape and np.isfinite(b.audio).all()


def test_int8_needs_reduced_precision_activations(tiny_checkpoint):
    with pytest.raises(DeviceError, match="bfloat16"):
        Bark.load(tiny_checkpoint, DeviceOptions(device="cpu", dtype="float32", quantize="int8"))
    with pytest.raises(DeviceError, match="quantization"):
        Bark.load(tiny_checkpoint, DeviceOptions(device="cpu", quantize="int4"))
