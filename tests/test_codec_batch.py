"""The codec decodes a batch of items of different lengths at once (right padding, each item
cut to its length) as it decodes each alone; the 16-bit codec is chosen only where it stays
close to float32."""

from __future__ import annotations

import pytest
import torch

from bark_cli.config import CodecConfig
from bark_cli.models.codec import EncodecDecoder, codec_dtype, half_precision_error

# facebook/encodec_24khz's layout at a small width (as tests/test_codec.py's TINY), and a
# non-causal variant whose convs read ahead.
TINY = dict(
    sampling_rate=24_000, audio_channels=1, hidden_size=32, num_filters=8, num_residual_layers=1,
    upsampling_ratios=[8, 5, 4, 2], kernel_size=7, last_kernel_size=7, residual_kernel_size=3,
    dilation_growth_rate=2, use_causal_conv=True, pad_mode="reflect", compress=2, num_lstm_layers=2,
    trim_right_ratio=1.0, codebook_size=1024, codebook_dim=None, use_conv_shortcut=True,
    norm_type="weight_norm", target_bandwidths=[1.5, 3.0, 6.0, 12.0, 24.0],
)
NON_CAUSAL = {**TINY, "use_causal_conv": False, "upsampling_ratios": [4, 3], "target_bandwidths": [1.5, 240.0]}


def codec(values: dict) -> EncodecDecoder:
    torch.manual_seed(0)
    model = EncodecDecoder(CodecConfig.from_dict(values)).eval()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("codebook.embed"):  # zeros at init: codes would not matter
                tensor.copy_(torch.randn_like(tensor))
            elif name.endswith("bias"):
                tensor.add_(0.1 * torch.randn_like(tensor))
    return model


def items(lengths, n_q: int = 8) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randint(0, 1024, (n_q, n), generator=gen) for n in lengths]


def test_the_shortest_padded_length_is_the_first_convs_reach():
    # The first conv (kernel 7, reflect) pads 6 samples at the frame rate: an item needs 7
    # frames; later convs run on 8 or more samples a frame and pad at most 6.
    assert codec(TINY).shortest_padded_frames() == 7
    assert codec({**TINY, "kernel_size": 5}).shortest_padded_frames() == 5
    assert codec(NON_CAUSAL).shortest_padded_frames() == float("inf")


@pytest.mark.parametrize("values", [TINY, NON_CAUSAL], ids=["causal", "non-causal"])
def test_a_batch_decodes_as_each_item_alone(values):
    model = codec(values)
    hop = model.config.hop_length
    codes = items([20, 7, 1, 30, 6, 2])
    alone = [model.decode(c[None])[0] for c in codes]
    together = model.decode_items(codes)
    for c, a, b in zip(codes, alone, together):
        assert b.shape == (c.shape[-1] * hop,)
        torch.testing.assert_close(b, a, atol=1e-4, rtol=0)


def test_short_items_would_differ_in_a_padded_batch():
    """Why items under shortest_padded_frames decode apart: padded, a 6-frame item's first
    reflect pad reads the padding instead of zeros."""
    model = codec(TINY)
    short, long = items([6, 40])
    padded = torch.zeros(2, 8, 40, dtype=torch.long)
    padded[0, :, :6], padded[1] = short, long
    alone = model.decode(short[None])[0]
    assert (model.decode(padded)[0, : alone.shape[-1]] - alone).abs().max() > 1e-3
    torch.testing.assert_close(model.decode_items([short, long])[0], alone, atol=1e-4, rtol=0)


def test_the_16_bit_codec_only_where_close_to_float32():
    model = codec(TINY)
    error = half_precision_error(model, torch.bfloat16)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the probe leaves it float32
    # the same measurement by hand
    codes = torch.randint(0, 1024, (1, 8, 75), generator=torch.Generator().manual_seed(0))
    want = model.decode(codes)
    got = model.to(torch.bfloat16).decode(codes).float()
    model.float()
    # bfloat16 CPU kernels may split their sums differently from run to run
    assert error == pytest.approx((got - want).abs().max().item(), rel=0.1)
    assert error > 0
    cuda = torch.device("cuda")  # only the policy: the probe runs where the codec is
    assert codec_dtype(model, torch.bfloat16, cuda, tolerance=2 * error) == torch.bfloat16
    assert codec_dtype(model, torch.bfloat16, cuda, tolerance=error / 2) == torch.float32
    assert codec_dtype(model, torch.float32, cuda) == torch.float32
    assert codec_dtype(model, torch.bfloat16, torch.device("cpu"), tolerance=1.0) == torch.float32


def test_items_decoded_one_by_one_are_cut_the_same():
    model = codec(TINY)
    codes = items([3, 9])
    for a, b in zip(model.decode_items(codes, padded=False), model.decode_items(codes)):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
