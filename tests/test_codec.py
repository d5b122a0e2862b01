"""EncodecDecoder vs transformers' EncodecModel (the oracle) on seeded random weights."""

from __future__ import annotations

import functools

import pytest
import torch

from bark_cli.config import CodecConfig
from bark_cli.errors import CheckpointError, InputError
from bark_cli.models.codec import (
    EncodecDecoder,
    PaddedConv1d,
    codec_state_dict,
    fold_weight_norm,
    is_ignorable_codec_key,
)

transformers = pytest.importorskip("transformers")

# facebook/encodec_24khz as Bark's config.json carries it (bark-spec §8.1).
REAL = dict(
    sampling_rate=24_000, audio_channels=1, hidden_size=128, num_filters=32,
    num_residual_layers=1, upsampling_ratios=[8, 5, 4, 2], kernel_size=7, last_kernel_size=7,
    residual_kernel_size=3, dilation_growth_rate=2, use_causal_conv=True, pad_mode="reflect",
    compress=2, num_lstm_layers=2, trim_right_ratio=1.0, codebook_size=1024, codebook_dim=128,
    use_conv_shortcut=True, norm_type="weight_norm", target_bandwidths=[1.5, 3.0, 6.0, 12.0, 24.0],
)
TINY = {**REAL, "hidden_size": 32, "num_filters": 8, "codebook_dim": None}
# Exercises derived layer indices and the other branches: 2 residual layers per stage, identity
# shortcut, non-causal padding, fewer ratios, compress 4.
ODD = {
    **TINY, "upsampling_ratios": [4, 3], "num_residual_layers": 2, "use_conv_shortcut": False,
    "use_causal_conv": False, "compress": 4, "num_lstm_layers": 1, "kernel_size": 5,
    "target_bandwidths": [1.5, 240.0],  # hop 12 → 2000 frames/s; 12 codebooks at 240 kbps
}
CONFIGS = {"real": REAL, "tiny": TINY, "odd": ODD}


def _hf_model(values: dict, seed: int = 0):
    torch.manual_seed(seed)
    model = transformers.EncodecModel(transformers.EncodecConfig(**values)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            # Weight-norm g off its init value (= ‖v‖). Scaled up: at init the output barely
            # depends on the codes (their share ≈ 0.005 of a bias-dominated 0.6), which would
            # make a 1e-4 tolerance weak; with g × U(1, 2) it is ≈ 0.2 of ≈ 1.
            if name.endswith("original0"):
                p.mul_(torch.empty_like(p).uniform_(1.0, 2.0))
            elif name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
        for name, b in model.named_buffers():
            if name.endswith("codebook.embed"):  # zeros at init
                b.copy_(torch.randn_like(b))
    return model


def _legacy(sd: dict) -> dict:
    """The parametrizations layout renamed to legacy `weight_g` / `weight_v`."""
    renames = {".parametrizations.weight.original0": ".weight_g",
               ".parametrizations.weight.original1": ".weight_v"}
    out = {}
    for key, value in sd.items():
        for old, new in renames.items():
            key = key.replace(old, new)
        out[key] = value
    return out


@functools.cache
def _oracle(name: str):
    """(config values, HF model, its state dict), built once per config for the whole file."""
    values = CONFIGS[name]
    hf = _hf_model(values)
    return values, hf, hf.state_dict()


@functools.cache
def _expected(name: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(codes, HF audio) for 8 codebooks and (batch, frames) in T=1, 2, 75 (+13 if cheap)."""
    values, hf, _ = _oracle(name)
    shapes = [(1, 1), (2, 2), (2, 75)] + ([] if name == "real" else [(1, 13)])
    gen = torch.Generator().manual_seed(1)
    out = []
    for batch, frames in shapes:
        codes = torch.randint(0, values["codebook_size"], (batch, 8, frames), generator=gen)
        with torch.no_grad():
            # HF takes (chunks=1, B, n_q, T) and one scale per chunk; returns (B, 1, T·hop).
            out.append((codes, hf.decode(codes[None], [None]).audio_values))
    return out


@pytest.mark.parametrize("layout", ["parametrizations", "legacy"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_decode_matches_transformers(name, layout):
    values, _, sd = _oracle(name)
    if layout == "legacy":
        sd = _legacy(sd)
        assert any(k.endswith(".weight_g") for k in sd)
    ours = EncodecDecoder(CodecConfig.from_dict(values)).eval()
    ours.load_state_dict(codec_state_dict(sd), strict=True)

    hop = CodecConfig.from_dict(values).hop_length
    for codes, want in _expected(name):
        batch, _, frames = codes.shape
        got = ours.decode(codes)
        assert got.shape == (batch, frames * hop)
        assert want.shape == (batch, 1, frames * hop)
        diff = (got - want[:, 0]).abs().max().item()
        print(f"{name}/{layout} B={batch} T={frames}: max|diff|={diff:.2e} "
              f"(|want|max={want.abs().max().item():.2e})")
        torch.testing.assert_close(got, want[:, 0], atol=1e-4, rtol=0)


def test_fewer_codebooks_and_all_codebooks():
    values, hf, sd = _oracle("tiny")
    cfg = CodecConfig.from_dict(values)
    ours = EncodecDecoder(cfg).eval()
    ours.load_state_dict(codec_state_dict(sd), strict=True)
    for n_q in (1, 2, cfg.num_quantizers):
        codes = torch.randint(0, cfg.codebook_size, (1, n_q, 5))
        with torch.no_grad():
            want = hf.decode(codes[None], [None]).audio_values[:, 0]
        torch.testing.assert_close(ours.decode(codes), want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_state_dict_keys_are_hf_decoder_and_codebook_keys(name):
    values, hf, sd = _oracle(name)
    ours = EncodecDecoder(CodecConfig.from_dict(values))
    hf_keys = {
        k.replace(".parametrizations.weight.original0", ".weight")
        for k in sd
        if k.startswith("decoder.") or k.endswith(".codebook.embed")
    } - {k for k in sd if k.endswith("original1")}
    assert set(ours.state_dict()) == hf_keys
    assert {k for k in sd if is_ignorable_codec_key(k)} == set(sd) - {
        k for k in sd if k.startswith("decoder.") or k.endswith(".codebook.embed")
    }


def test_meta_build_and_assign_load():
    """The loader's path: build on meta, load with assign=True (the LSTM must pick it up)."""
    values, hf, sd = _oracle("tiny")
    cfg = CodecConfig.from_dict(values)
    with torch.device("meta"):
        ours = EncodecDecoder(cfg)
    ours.load_state_dict(codec_state_dict(sd), strict=True, assign=True)
    codes = torch.randint(0, cfg.codebook_size, (1, 8, 4))
    with torch.no_grad():
        want = hf.decode(codes[None], [None]).audio_values[:, 0]
    torch.testing.assert_close(ours.eval().decode(codes), want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("causal", [True, False])
def test_strided_dilated_conv_matches_transformers(causal):
    """The decoder's convs all have stride 1; the padding helpers also cover stride/dilation."""
    from transformers.models.encodec.modeling_encodec import EncodecConv1d

    values = {**TINY, "use_causal_conv": causal}
    torch.manual_seed(0)
    for kernel, stride, dilation in ((4, 2, 1), (5, 3, 1), (3, 1, 3), (8, 4, 1)):
        hf = EncodecConv1d(transformers.EncodecConfig(**values), 3, 2, kernel, stride, dilation)
        ours = PaddedConv1d(CodecConfig.from_dict(values), 3, 2, kernel, stride, dilation)
        ours.load_state_dict(codec_state_dict(hf.state_dict()))
        for length in range(1, 13):
            x = torch.randn(1, 3, length)
            with torch.no_grad():
                torch.testing.assert_close(ours(x), hf(x), atol=1e-5, rtol=0)


def test_real_config_shapes():
    """bark-spec §6.4/§8: 32 codebooks of 1024 × 128, hop 320, and a decoder of 7 426 018
    parameters counted with weight norm, i.e. 7 423 345 folded + 2 673 g entries (one per
    dim-0 channel of each conv)."""
    model = EncodecDecoder(CodecConfig.from_dict(REAL))
    convs = (torch.nn.Conv1d, torch.nn.ConvTranspose1d)
    g_entries = sum(m.weight.shape[0] for m in model.decoder.modules() if isinstance(m, convs))
    assert g_entries == 2_673
    assert sum(p.numel() for p in model.decoder.parameters()) + g_entries == 7_426_018
    assert model.config.hop_length == 320
    assert len(model.quantizer.layers) == 32
    assert model.quantizer.layers[31].codebook.embed.shape == (1024, 128)


def test_codec_state_dict_drops_encoder_and_training_buffers():
    sd = {
        "encoder.layers.0.conv.weight_g": torch.ones(2, 1, 1),  # half pair: ignored with encoder
        "encoder.layers.0.conv.bias": torch.zeros(2),
        "quantizer.layers.0.codebook.inited": torch.ones(1),
        "quantizer.layers.0.codebook.cluster_size": torch.zeros(4),
        "quantizer.layers.0.codebook.embed_avg": torch.zeros(4, 3),
        "quantizer.layers.0.codebook.embed": torch.ones(4, 3),
        "decoder.layers.0.conv.bias": torch.zeros(2),
    }
    out = codec_state_dict(sd)
    assert set(out) == {"quantizer.layers.0.codebook.embed", "decoder.layers.0.conv.bias"}


@pytest.mark.parametrize(
    "present",
    ["decoder.layers.3.conv.weight_g", "decoder.layers.3.conv.weight_v",
     "decoder.layers.0.conv.parametrizations.weight.original0",
     "decoder.layers.0.conv.parametrizations.weight.original1"],
)
def test_half_weight_norm_pair_raises(present):
    sd = {present: torch.ones(2, 3, 4), "decoder.layers.0.conv.bias": torch.zeros(2)}
    with pytest.raises(CheckpointError, match=present.replace(".", r"\.")):
        codec_state_dict(sd)


def test_fold_weight_norm_matches_torch():
    torch.manual_seed(0)
    for module in (torch.nn.Conv1d(3, 5, 4), torch.nn.ConvTranspose1d(5, 3, 4, 2)):
        wn = torch.nn.utils.parametrizations.weight_norm(module)
        with torch.no_grad():
            wn.parametrizations.weight.original0.mul_(2.5)
        g = wn.parametrizations.weight.original0
        v = wn.parametrizations.weight.original1
        assert g.shape == (v.shape[0], 1, 1)  # dim 0: out for conv, in for transposed conv
        torch.testing.assert_close(fold_weight_norm(g, v), wn.weight, atol=1e-6, rtol=1e-6)


def test_bad_codes_raise():
    model = EncodecDecoder(CodecConfig.from_dict(TINY))
    for codes in (torch.zeros(8, 4, dtype=torch.long), torch.zeros(1, 0, 4, dtype=torch.long),
                  torch.zeros(1, model.config.num_quantizers + 1, 4, dtype=torch.long),
                  torch.full((1, 8, 4), 1024), torch.full((1, 8, 4), -1)):
        with pytest.raises(InputError):
            model.decode(codes)


def test_unsupported_config_raises():
    with pytest.raises(CheckpointError, match="norm_type"):
        EncodecDecoder(CodecConfig.from_dict({**TINY, "norm_type": "time_group_norm"}))
    with pytest.raises(CheckpointError, match="codebook_dim"):
        EncodecDecoder(CodecConfig.from_dict({**TINY, "codebook_dim": 16}))
