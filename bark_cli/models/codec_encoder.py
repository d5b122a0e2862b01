"""EnCodec 24 kHz encoder: waveform → codes, the other half of `codec.py` (used to clone a voice).

The SEANet encoder mirrors the decoder with the same blocks (`PaddedConv1d`, `ResnetBlock`,
`ResidualLSTM` from codec.py), and the residual vector quantizer encodes by nearest codebook
row, each codebook quantizing what the ones before it left over. Keys are transformers'
`EncodecModel`'s (the `codec_model.*` keys of a Bark checkpoint without the prefix):

    encoder.layers.{i}.conv.*                   convs: first, per-ratio downsampling, last
    encoder.layers.{i}.block.{1,3}.conv.*       residual blocks (before each downsampling conv)
    encoder.layers.{i}.shortcut.conv.*
    encoder.layers.{i}.lstm.*
    quantizer.layers.{n}.codebook.embed

Weight norm is folded at load, bit for bit as PyTorch computes it (`fold_weight_norm_exactly`).
At 6 kbps (Bark's setting) the quantizer uses 8 codebooks: `fine_prompt` is all 8, `coarse_prompt` the first 2.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..config import CodecConfig
from ..errors import CheckpointError
from .codec import WEIGHT_NORM_SUFFIXES, PaddedConv1d, ResidualLSTM, ResnetBlock, _check_supported
from .codec_quantizer import ResidualVectorQuantizer

# Bark's codes: EnCodec 24 kHz at 6 kbps (bark-spec §8.2).
BANDWIDTH_KBPS = 6.0


class SEANetEncoder(nn.Module):
    """Audio (B, audio_channels, T) → latent (B, hidden_size, ceil(T / hop_length)).

    One flat list, as the checkpoint indexes it (24 kHz: 15 entries): conv, then per ratio in
    reverse order [residual blocks, ELU, conv (k 2r, s r) doubling the channels], LSTM, ELU, conv.
    """

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        channels = config.num_filters
        layers: list[nn.Module] = [PaddedConv1d(config, config.audio_channels, channels, config.kernel_size)]
        for ratio in reversed(config.upsampling_ratios):
            layers += [ResnetBlock(config, channels, (config.dilation_growth_rate**j, 1))
                       for j in range(config.num_residual_layers)]
            layers += [nn.ELU(), PaddedConv1d(config, channels, channels * 2, 2 * ratio, stride=ratio)]
            channels *= 2
        layers += [ResidualLSTM(config, channels), nn.ELU(),
                   PaddedConv1d(config, channels, config.hidden_size, config.last_kernel_size)]
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def codebooks_for(config: CodecConfig, bandwidth_kbps: float) -> int:
    """Codebooks at a bandwidth: kbps · 1000 / (bits per code · frames per second); 8 at 6 kbps."""
    per_codebook = math.log2(config.codebook_size) * config.frame_rate
    return max(1, math.floor(bandwidth_kbps * 1000 / per_codebook))


class EncodecEncoder(nn.Module):
    """Waveform (B, T) at the codec's rate → codes (B, n_q, ceil(T / hop_length))."""

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        _check_supported(config)
        self.config = config
        self.encoder = SEANetEncoder(config)
        self.quantizer = ResidualVectorQuantizer(config)

    @torch.no_grad()
    def encode(self, audio: Tensor, bandwidth_kbps: float = BANDWIDTH_KBPS) -> Tensor:
        n_q = min(codebooks_for(self.config, bandwidth_kbps), len(self.quantizer.layers))
        latent = self.encoder(audio.reshape(audio.shape[0], self.config.audio_channels, -1))
        return self.quantizer.encode(latent, n_q)


def is_encoder_key(key: str) -> bool:
    """The keys of a codec checkpoint (without `codec_model.`) that `EncodecEncoder` holds."""
    return key.startswith("encoder.") or (key.startswith("quantizer.") and key.endswith(".codebook.embed"))


def fold_weight_norm_exactly(g: Tensor, v: Tensor) -> Tensor:
    """w = g · v / ‖v‖ (norm over all dims but 0), computed by the very kernel PyTorch's weight norm
    runs in EnCodec and in transformers, so that the folded weight is bit for bit theirs. A code is
    an argmax over distances: a last-bit difference in the latent can flip a near tie, and the
    codes are to equal the reference's exactly, not nearly."""
    return torch._weight_norm(v.float(), g.float(), 0)


def encoder_state_dict(codec_sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map a codec checkpoint to `EncodecEncoder`'s state dict: the encoder's and the codebooks'
    tensors, every weight-norm pair folded into `X.weight` (both key layouts, as for the decoder)."""
    out: dict[str, Tensor] = {}
    for key, value in codec_sd.items():
        if not is_encoder_key(key):
            continue
        for g_suffix, v_suffix in WEIGHT_NORM_SUFFIXES:
            if key.endswith(g_suffix) or key.endswith(v_suffix):
                is_g = key.endswith(g_suffix)
                prefix = key[: -len(g_suffix if is_g else v_suffix)]
                partner = prefix + (v_suffix if is_g else g_suffix)
                if partner not in codec_sd:
                    raise CheckpointError(f"codec weight-norm key {key!r} has no partner {partner!r}",
                                          "the checkpoint file is incomplete or corrupt; download it again")
                if is_g:
                    out[prefix + ".weight"] = fold_weight_norm_exactly(value, codec_sd[partner])
                break
        else:
            out[key] = value
    return out


def load_encoder(config: CodecConfig, codec_sd: dict[str, Tensor]) -> EncodecEncoder:
    """Build on the meta device and assign a codec checkpoint's encoder tensors (float32), checked."""
    with torch.device("meta"):
        model = EncodecEncoder(config)
    state = encoder_state_dict(codec_sd)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise CheckpointError(f"the codec weights lack the encoder key codec_model.{missing[0]}",
                              "this model's codec cannot encode; use a Bark model that ships EnCodec whole "
                              "(suno/bark-small, suno/bark)")
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise CheckpointError(f"the codec weights have unexpected key codec_model.{unexpected[0]}",
                              "the checkpoint does not match its config.json")
    for key, meta in expected.items():
        if tuple(state[key].shape) != tuple(meta.shape):
            raise CheckpointError(f"codec weight codec_model.{key} has shape {tuple(state[key].shape)}, "
                                  f"config.json implies {tuple(meta.shape)}",
                                  "the checkpoint does not match its config.json")
    model.load_state_dict({k: v.float() for k, v in state.items()}, assign=True)
    return model.eval().requires_grad_(False)
