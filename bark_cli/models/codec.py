"""EnCodec 24 kHz decoder: codes → waveform (bark-spec §8).

The decoding half: the residual vector quantizer's lookup (codec_quantizer.py, shared with the
encoder that cloning uses, codec_encoder.py) and the SEANet decoder. The module tree copies transformers' `EncodecModel` so
that its state-dict keys are the checkpoint's `codec_model.*` keys with the prefix removed
(§8.4):

    quantizer.layers.{n}.codebook.embed          [codebook_size, codebook_dim]
    decoder.layers.{i}.conv.{weight,bias}        convs and transposed convs
    decoder.layers.{i}.lstm.*                    the LSTM (index 1)
    decoder.layers.{i}.block.{1,3}.conv.*        residual block convs (index 0 and 2 are ELUs)
    decoder.layers.{i}.shortcut.conv.*           residual block 1x1 shortcut

Checkpoints store the convs with weight norm (g, v); `codec_state_dict` folds each pair into
one plain weight at load, so this module holds ordinary `nn.Conv1d` / `nn.ConvTranspose1d`.

Layers stack as in Meta's `encodec/modules`: padding helpers → padded conv wrappers →
residual block, LSTM → SEANet decoder → `EncodecDecoder` (quantizer + decoder).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import CodecConfig
from ..errors import CheckpointError, InputError
from .codec_quantizer import ResidualVectorQuantizer

# ---------------------------------------------------------------------------------------------
# Padding arithmetic. Called only from PaddedConv1d / TrimmedConvTranspose1d.forward.
# ---------------------------------------------------------------------------------------------


def extra_padding_for_conv1d(length: int, kernel_size: int, stride: int, padding_total: int) -> int:
    """Right padding that makes the last conv window complete, so no input sample is dropped.

    `kernel_size` is the effective (dilated) kernel. Example: length 5, kernel 4, stride 2,
    padding_total 2: the padded input (7 samples) gives windows at 0, 2 and a last one at 4
    that would need samples 4..7, so 1 extra sample is added on the right:

        p p 0 1 2 3 4 e       (p: left padding, e: extra)
        [-----]
            [-----]
                [-----]

    For stride 1 (every conv in the decoder) this is always 0.
    """
    frames = -(-(length - kernel_size + padding_total) // stride)  # ceil; frames - 1 really
    ideal_length = frames * stride + kernel_size - padding_total
    return ideal_length - length


def pad1d(x: Tensor, left: int, right: int, mode: str) -> Tensor:
    """`F.pad` on the time axis that also reflects an input shorter than the padding.

    Reflect padding needs `length > pad`. A shorter input (a 1-frame code sequence meets a
    kernel-7 conv: 6 samples of left padding) is first zero-extended on the right to
    `pad + 1` samples, reflected, and the zeros cut off again, as EnCodec's `pad1d` does.
    """
    if mode != "reflect":
        return F.pad(x, (left, right), mode)
    length = x.shape[-1]
    zeros = max(0, max(left, right) - length + 1)
    if zeros == 0:  # the usual case; F.pad by (0, 0) would still copy the whole signal
        return F.pad(x, (left, right), mode)
    x = F.pad(x, (0, zeros))
    x = F.pad(x, (left, right), mode)
    return x[..., : x.shape[-1] - zeros]


def unpad1d(x: Tensor, left: int, right: int) -> Tensor:
    """Remove `left` and `right` samples from the time axis."""
    return x[..., left : x.shape[-1] - right]


def split_padding(padding_total: int, causal: bool, right_ratio: float = 1.0) -> tuple[int, int]:
    """(left, right) share of a padding (conv) or a trim (transposed conv).

    Causal: a conv pads everything on the left (right_ratio 0), a transposed conv trims
    `ceil(total · trim_right_ratio)` on the right (1.0 in EnCodec 24 kHz: all of it).
    Non-causal: right gets half rounded down, left the rest (odd strides are asymmetric).
    """
    right = math.ceil(padding_total * right_ratio) if causal else padding_total // 2
    return padding_total - right, right


# ---------------------------------------------------------------------------------------------
# Conv wrappers: the only users of the padding helpers. `.conv` is the checkpoint key level.
# ---------------------------------------------------------------------------------------------


class PaddedConv1d(nn.Module):
    """Conv1d that keeps `T_out = ceil(T_in / stride)` by padding (reflect by default)."""

    def __init__(
        self, config: CodecConfig, in_channels: int, out_channels: int,
        kernel_size: int, stride: int = 1, dilation: int = 1,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride, dilation=dilation)
        self.causal = config.use_causal_conv
        self.pad_mode = config.pad_mode
        self.effective_kernel = (kernel_size - 1) * dilation + 1
        self.stride = stride
        self.padding_total = self.effective_kernel - stride

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, T) -> (B, C_out, ceil(T / stride))
        extra = extra_padding_for_conv1d(
            x.shape[-1], self.effective_kernel, self.stride, self.padding_total
        )
        left, right = split_padding(self.padding_total, self.causal, right_ratio=0.0)
        return self.conv(pad1d(x, left, right + extra, self.pad_mode))


class TrimmedConvTranspose1d(nn.Module):
    """ConvTranspose1d whose output is trimmed to exactly `T_in · stride` samples.

    The plain transposed conv gives `(T − 1)·s + k`; the surplus `k − s` is cut, all from the
    right for a causal model with trim_right_ratio 1.0 (bark-spec §8.3).
    """

    def __init__(
        self, config: CodecConfig, in_channels: int, out_channels: int,
        kernel_size: int, stride: int,
    ) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride)
        self.causal = config.use_causal_conv
        self.trim_right_ratio = config.trim_right_ratio
        self.padding_total = kernel_size - stride

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, T) -> (B, C_out, T · stride)
        left, right = split_padding(self.padding_total, self.causal, self.trim_right_ratio)
        return unpad1d(self.conv(x), left, right)


# ---------------------------------------------------------------------------------------------
# SEANet blocks
# ---------------------------------------------------------------------------------------------


class ResnetBlock(nn.Module):
    """`shortcut(x) + conv_1(ELU(conv_k(ELU(x))))`, the inner width `dim // compress`.

    `block` interleaves ELU and conv ([ELU, conv, ELU, conv]) so the convs sit at the
    checkpoint's indices `block.1` and `block.3`.
    """

    def __init__(self, config: CodecConfig, dim: int, dilations: tuple[int, int]) -> None:
        super().__init__()
        hidden = dim // config.compress
        kernels = (config.residual_kernel_size, 1)
        channels = (dim, hidden, dim)
        block: list[nn.Module] = []
        for i, (kernel, dilation) in enumerate(zip(kernels, dilations)):
            conv = PaddedConv1d(config, channels[i], channels[i + 1], kernel, dilation=dilation)
            block += [nn.ELU(), conv]
        self.block = nn.ModuleList(block)
        self.shortcut = (
            PaddedConv1d(config, dim, dim, 1) if config.use_conv_shortcut else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, dim, T) -> (B, dim, T)
        y = x
        for layer in self.block:
            y = layer(y)
        return self.shortcut(x) + y


class ResidualLSTM(nn.Module):
    """Multi-layer LSTM over time, output added to its input; (B, C, T) in and out."""

    def __init__(self, config: CodecConfig, dim: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, config.num_lstm_layers)

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(2, 0, 1)  # (B, C, T) -> (T, B, C), nn.LSTM's default layout
        x = self.lstm(x)[0] + x
        return x.permute(1, 2, 0)  # (T, B, C) -> (B, C, T)


class SEANetDecoder(nn.Module):
    """Latent (B, hidden_size, T) → audio (B, audio_channels, T · hop_length).

    One flat list, as the checkpoint indexes it (24 kHz: 16 entries, bark-spec §8.3):
    conv, LSTM, then per upsampling ratio r [ELU, transposed conv (k 2r, s r) halving the
    channels, num_residual_layers residual blocks], then ELU, conv. No final activation.
    """

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        channels = config.num_filters * 2 ** len(config.upsampling_ratios)  # 512 for 24 kHz
        layers: list[nn.Module] = [
            PaddedConv1d(config, config.hidden_size, channels, config.kernel_size),
            ResidualLSTM(config, channels),
        ]
        for ratio in config.upsampling_ratios:
            upsample = TrimmedConvTranspose1d(config, channels, channels // 2, 2 * ratio, ratio)
            layers += [nn.ELU(), upsample]
            channels //= 2
            layers += [
                ResnetBlock(config, channels, (config.dilation_growth_rate**j, 1))
                for j in range(config.num_residual_layers)
            ]
        last = PaddedConv1d(config, channels, config.audio_channels, config.last_kernel_size)
        layers += [nn.ELU(), last]
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


# ---------------------------------------------------------------------------------------------
# The decoder Bark uses
# ---------------------------------------------------------------------------------------------


def _check_supported(config: CodecConfig) -> None:
    if config.norm_type != "weight_norm":
        raise CheckpointError(
            f"codec norm_type {config.norm_type!r} is not supported",
            hint="bark-cli decodes EnCodec checkpoints with norm_type 'weight_norm' only",
        )
    if (config.codebook_dim or config.hidden_size) != config.hidden_size:
        raise CheckpointError(
            f"codec codebook_dim {config.codebook_dim} differs from "
            f"hidden_size {config.hidden_size}",
            hint="EnCodec has no projection between codebooks and decoder; the two must be equal",
        )
    if not config.use_causal_conv and config.trim_right_ratio != 1.0:
        raise CheckpointError(
            "codec trim_right_ratio != 1.0 needs use_causal_conv",
            hint="EnCodec only trims asymmetrically in causal models",
        )


class EncodecDecoder(nn.Module):
    """EnCodec codes (B, n_q, T) → waveform (B, T · hop_length); hop 320 at 24 kHz."""

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        _check_supported(config)
        self.config = config
        self.quantizer = ResidualVectorQuantizer(config)
        self.decoder = SEANetDecoder(config)

    @torch.no_grad()
    def decode(self, codes: torch.LongTensor) -> Tensor:
        """Decode codes of `n_q ≤ num_quantizers` codebooks, values in [0, codebook_size).

        Returns (B, T · hop_length) for a mono codec (Bark's); (B, C, T · hop_length) if
        `audio_channels` > 1. Decodes with as many codebooks as `codes` has rows (§8.1).
        """
        n_q = codes.shape[1] if codes.dim() == 3 else 0
        if n_q < 1 or n_q > len(self.quantizer.layers) or codes.shape[-1] < 1:
            raise InputError(
                f"codec codes must be (batch, 1..{len(self.quantizer.layers)}, frames≥1), "
                f"got {tuple(codes.shape)}"
            )
        # Host sync, once per decode: an out-of-range index is a device-side assert on CUDA.
        if codes.min() < 0 or codes.max() >= self.config.codebook_size:
            raise InputError(f"codec codes must lie in [0, {self.config.codebook_size})")
        latent = self.quantizer.decode(codes.long())  # (B, hidden_size, T)
        audio = self.decoder(latent)  # (B, audio_channels, T · hop_length)
        return audio.squeeze(1)  # (B, 1, T·hop) -> (B, T·hop); no-op for stereo

    def forward(self, codes: torch.LongTensor) -> Tensor:
        return self.decode(codes)

    def shortest_padded_frames(self) -> float:
        """Frames from which an item decodes in a right-padded batch exactly as alone.

        A causal decoder's output at a sample reads no later input, so padding on the right
        changes nothing before it, but for one case: a reflect pad longer than its input, which
        reflects over zeros appended to a lone item (pad1d) and over the padding in a batch. Each
        conv's input has frames x (the upsampling so far) samples; from this many frames on,
        every one is longer than its pad. A non-causal decoder reads ahead: no length is safe.
        """
        if not self.config.use_causal_conv:
            return math.inf
        frames, scale = 1, 1
        for layer in self.decoder.layers:
            if isinstance(layer, TrimmedConvTranspose1d):
                scale *= layer.conv.stride[0]
            for conv in layer.modules():
                if isinstance(conv, PaddedConv1d) and conv.pad_mode == "reflect":
                    frames = max(frames, -(-(conv.padding_total + 1) // scale))
        return frames

    @torch.no_grad()
    def decode_items(self, items: list[Tensor], padded: bool = True) -> list[Tensor]:
        """Waveforms of several (n_q, T_i) code arrays, of any lengths: those of at least
        `shortest_padded_frames` in one right-padded batch, each cut to its own T_i · hop; the
        shorter ones (and all under a non-causal decoder) one length at a time. `padded` off:
        each item alone. Stays on the device: the caller moves the results to the host
        together, in one wait."""
        hop = math.prod(self.config.upsampling_ratios)
        shortest = self.shortest_padded_frames() if padded else math.inf
        groups: dict[tuple, list[int]] = {}  # items decoded together
        for i, codes in enumerate(items):
            frames = codes.shape[-1]
            key = ("alone", i) if not padded else ("padded",) if frames >= shortest else ("frames", frames)
            groups.setdefault(key, []).append(i)
        out: list[Tensor | None] = [None] * len(items)
        for members in groups.values():
            width = max(items[i].shape[-1] for i in members)
            first = items[members[0]]
            codes = first.new_zeros((len(members), first.shape[0], width))
            for row, i in enumerate(members):
                codes[row, :, : items[i].shape[-1]] = items[i]
            audio = self.decode(codes)
            for row, i in enumerate(members):
                out[i] = audio[row, ..., : items[i].shape[-1] * hop]
        return out


# Largest error a 16-bit codec may add to float32's waveform (samples in [-1, 1]) and still run.
HALF_TOLERANCE = 1e-3


@torch.no_grad()
def half_precision_error(codec: EncodecDecoder, dtype: torch.dtype, frames: int = 75) -> float:
    """Largest |difference| between the codec's waveform in `dtype` and in float32 over one
    second of fixed pseudo-random codes, on the codec's device. The codec is left in float32."""
    device = next(codec.parameters()).device
    generator = torch.Generator().manual_seed(0)
    codes = torch.randint(0, codec.config.codebook_size, (1, 8, frames), generator=generator).to(device)
    codec.float()
    want = codec.decode(codes)
    try:
        got = codec.to(dtype).decode(codes).float()
    finally:
        codec.float()
    return (got - want).abs().max().item()


def codec_dtype(codec: EncodecDecoder, dtype: torch.dtype, device: torch.device,
                tolerance: float = HALF_TOLERANCE) -> torch.dtype:
    """The dtype the codec runs in: the models' 16-bit dtype on a GPU where it stays within
    `tolerance` of float32 (measured once, `half_precision_error`), float32 elsewhere: on the
    CPU it stays float32."""
    if device.type != "cuda" or dtype not in (torch.float16, torch.bfloat16):
        return torch.float32
    return dtype if half_precision_error(codec, dtype) <= tolerance else torch.float32


# ---------------------------------------------------------------------------------------------
# Checkpoint mapping: weight-norm folding, unused keys
# ---------------------------------------------------------------------------------------------

# (g, v) suffix pairs of a weight-normed `X.weight`: legacy `torch.nn.utils.weight_norm`
# (the 2023 Hub files) and `torch.nn.utils.parametrizations.weight_norm` (current torch).
WEIGHT_NORM_SUFFIXES = (
    (".weight_g", ".weight_v"),
    (".parametrizations.weight.original0", ".parametrizations.weight.original1"),
)


def fold_weight_norm(g: Tensor, v: Tensor) -> Tensor:
    """w = g · v / ‖v‖, the norm over all dims but 0 (PyTorch's default `dim=0`).

    Dim 0 is the output channel of a Conv1d but the *input* channel of a ConvTranspose1d
    (bark-spec §8.3); the formula is the same. Computed in at least float32, returned in v's dtype.
    """
    dtype = torch.promote_types(v.dtype, torch.float32)
    norm = torch.linalg.vector_norm(v.to(dtype), dim=tuple(range(1, v.dim())), keepdim=True)
    return (v.to(dtype) * (g.to(dtype) / norm)).to(v.dtype)


def is_ignorable_codec_key(key: str) -> bool:
    """Codec checkpoint keys (without `codec_model.`) that `EncodecDecoder` has no slot for:
    the encoder (Bark never encodes) and the quantizer's training buffers."""
    if key.startswith("encoder."):
        return True
    return key.startswith("quantizer.") and not key.endswith(".codebook.embed")


def codec_state_dict(hf_codec_sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map a codec checkpoint (keys without the `codec_model.` prefix) to `EncodecDecoder`'s
    state dict: drop ignorable keys, fold every weight-norm pair into `X.weight`.

    Raises CheckpointError naming the key when a pair is half present.
    """
    out: dict[str, Tensor] = {}
    for key, value in hf_codec_sd.items():
        if is_ignorable_codec_key(key):
            continue
        for g_suffix, v_suffix in WEIGHT_NORM_SUFFIXES:
            if key.endswith(g_suffix) or key.endswith(v_suffix):
                is_g = key.endswith(g_suffix)
                prefix = key[: -len(g_suffix if is_g else v_suffix)]
                partner = prefix + (v_suffix if is_g else g_suffix)
                if partner not in hf_codec_sd:
                    raise CheckpointError(
                        f"codec weight-norm key {key!r} has no partner {partner!r}",
                        hint="the checkpoint file is incomplete or corrupt; download it again",
                    )
                if is_g:  # fold once, at the g key
                    out[prefix + ".weight"] = fold_weight_norm(value, hf_codec_sd[partner])
                break
        else:
            out[key] = value
    return out
