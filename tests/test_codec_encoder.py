"""EncodecEncoder vs transformers' EncodecModel.encode (the oracle) at 6 kbps, on seeded random weights."""

from __future__ import annotations

import functools
import sys
import types

import pytest
import torch

from bark_cli.config import CodecConfig
from bark_cli.errors import CheckpointError
from bark_cli.models.codec import EncodecDecoder, codec_state_dict
from bark_cli.models.codec_encoder import (EncodecEncoder, codebooks_for, encoder_state_dict, is_encoder_key,
                                           load_encoder)

transformers = pytest.importorskip("transformers")

from test_codec import CONFIGS, _hf_model, _legacy  # noqa: E402


@functools.cache
def _oracle(name: str):
    hf = _hf_model(CONFIGS[name], seed=5)
    return hf, hf.state_dict()


def _audio(batch: int, seconds: float, seed: int) -> torch.Tensor:
    """Noise shaped like speech in level: a few tenths of full scale, with loud and quiet stretches."""
    gen = torch.Generator().manual_seed(seed)
    length = int(24_000 * seconds)
    envelope = torch.sin(torch.linspace(0, 12, length)).abs()[None] + 0.1
    return 0.3 * envelope * torch.randn(batch, length, generator=gen)


@pytest.mark.parametrize("layout", ["parametrizations", "legacy"])
@pytest.mark.parametrize("name", ["tiny", "odd"])
def test_codes_equal_transformers_and_decode_alike(name, layout):
    """Bark's 6 kbps on the tiny codec; "odd" (hop 12, other branches) at its 240 kbps: 12 codebooks."""
    hf, sd = _oracle(name)
    kbps = 6.0 if name == "tiny" else 240.0
    if layout == "legacy":
        sd = _legacy(sd)
    config = CodecConfig.from_dict(CONFIGS[name])
    ours = load_encoder(config, sd)
    decoder = EncodecDecoder(config).eval()
    decoder.load_state_dict(codec_state_dict(sd), strict=True)
    # odd's hop of 12 gives 2000 frames a second: shorter clips keep it quick
    cases = ((1, 1.0, 0), (2, 0.37, 1), (1, 2.5, 2)) if name == "tiny" else ((1, 0.3, 0), (2, 0.05, 1))
    for batch, seconds, seed in cases:
        audio = _audio(batch, seconds, seed)
        with torch.no_grad():
            want = hf.encode(audio[:, None], bandwidth=kbps).audio_codes[0]  # (chunks=1, B, n_q, T) -> (B, n_q, T)
        got = ours.encode(audio, kbps)
        assert got.shape == want.shape == (batch, codebooks_for(config, kbps), -(-audio.shape[1] // config.hop_length))
        assert torch.equal(got, want)
        with torch.no_grad():
            want_audio = hf.decode(want[None], [None]).audio_values[:, 0]
        torch.testing.assert_close(decoder.decode(got), want_audio, atol=1e-4, rtol=0)


def test_six_kbps_is_eight_codebooks_at_24_khz():
    assert codebooks_for(CodecConfig(), 6.0) == 8
    assert codebooks_for(CodecConfig(), 1.5) == 2
    assert CodecConfig().num_quantizers == 32


def test_keys_are_the_encoder_half_of_transformers():
    hf, sd = _oracle("tiny")
    with torch.device("meta"):
        ours = EncodecEncoder(CodecConfig.from_dict(CONFIGS["tiny"]))
    folded = {k.replace(".parametrizations.weight.original0", ".weight") for k in sd if is_encoder_key(k)
              and not k.endswith("original1")}
    assert set(ours.state_dict()) == folded
    assert set(encoder_state_dict(sd)) == folded
    assert all(k.startswith(("encoder.", "quantizer.")) for k in folded)


def import_encodec(monkeypatch):
    """Meta's encodec package (installed by `make install` without its dependencies). It imports
    torchaudio at the top for file I/O and its training discriminator, neither of which encoding
    touches, and torchaudio has no wheel for the pinned torch: an empty module stands in for it."""
    try:
        import torchaudio  # noqa: F401
    except ImportError:
        monkeypatch.setitem(sys.modules, "torchaudio", types.ModuleType("torchaudio"))
    return pytest.importorskip("encodec", reason="the encodec package is not installed (make install adds it)")


@pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated:FutureWarning")  # encodec's own
def test_against_the_encodec_package(monkeypatch):
    encodec = import_encodec(monkeypatch)
    model = encodec.EncodecModel.encodec_model_24khz(pretrained=False).eval()
    model.set_target_bandwidth(6.0)
    with torch.no_grad():
        for name, b in model.named_buffers():
            if name.endswith("embed"):
                b.copy_(torch.randn_like(b))
    from bark_cli.suno import codec_from_encodec

    ours = load_encoder(CodecConfig(), codec_from_encodec(model.state_dict()))
    audio = _audio(1, 1.0, 3)
    want = model.encode(audio[:, None])[0][0]
    assert torch.equal(ours.encode(audio), want)


def test_a_decoder_only_codec_is_refused():
    _, sd = _oracle("tiny")
    decoder_only = {k: v for k, v in sd.items() if not k.startswith("encoder.")}
    with pytest.raises(CheckpointError, match="lack the encoder key"):
        load_encoder(CodecConfig.from_dict(CONFIGS["tiny"]), decoder_only)
    half = {k: v for k, v in sd.items() if not k.endswith("original1")}
    with pytest.raises(CheckpointError, match="no partner"):
        encoder_state_dict(half)
