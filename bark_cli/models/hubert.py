"""HuBERT base, up to the layer voice cloning reads: 16 kHz waveform → one 768-wide vector per 20 ms.

The module tree copies transformers' `HubertModel`, so its state-dict keys are the ones
`facebook/hubert-base-ls960` ships (config.json + model.safetensors or pytorch_model.bin):

    feature_extractor.conv_layers.{i}.conv.weight          7 convs, 1 → 512 channels, total stride 320
    feature_extractor.conv_layers.0.layer_norm.*           GroupNorm, one group per channel (first conv only)
    feature_projection.{layer_norm,projection}.*           LayerNorm(512), Linear(512 → 768)
    encoder.pos_conv_embed.conv.{weight_g,weight_v,bias}   grouped conv, weight norm over dim 2
    encoder.layer_norm.*                                   after adding the positions (post-norm model)
    encoder.layers.{i}.attention.{q,k,v,out}_proj.*        self-attention
    encoder.layers.{i}.{layer_norm,final_layer_norm}.*     post-norm: after each residual sum
    encoder.layers.{i}.feed_forward.{intermediate,output}_dense.*

Only `num_layers` transformer layers are built: the cloning quantizers were trained on the output
after the 9th (`hidden_states[9]` in transformers, `output_layer=9` in fairseq), so layers 10..12
would be computed for nothing. The positional conv's weight norm is folded at load.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import CheckpointError

# The transformer layer whose output the published cloning quantizers read (1-based).
QUANTIZER_LAYER = 9


@dataclass
class HubertConfig:
    """HuBERT base as `facebook/hubert-base-ls960`'s config.json names it."""

    conv_dim: list[int] = field(default_factory=lambda: [512] * 7)
    conv_kernel: list[int] = field(default_factory=lambda: [10, 3, 3, 3, 3, 2, 2])
    conv_stride: list[int] = field(default_factory=lambda: [5, 2, 2, 2, 2, 2, 2])
    conv_bias: bool = False
    feat_extract_norm: str = "group"
    feat_proj_layer_norm: bool = True
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    layer_norm_eps: float = 1e-5
    hidden_act: str = "gelu"
    feat_extract_activation: str = "gelu"
    do_stable_layer_norm: bool = False
    conv_pos_batch_norm: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "HubertConfig":
        """Read the keys this model uses (others are ignored) and refuse variants it does not build."""
        if not isinstance(data, dict):
            raise CheckpointError("HuBERT config.json is not an object", "point at a HuBERT model folder")
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        try:
            config = cls(**values)
            convs = len(config.conv_dim)
            ok = (convs == len(config.conv_kernel) == len(config.conv_stride) and convs > 0
                  and all(int(v) > 0 for v in config.conv_dim + config.conv_kernel + config.conv_stride)
                  and config.hidden_size % config.num_attention_heads == 0
                  and config.hidden_size % config.num_conv_pos_embedding_groups == 0
                  and min(config.hidden_size, config.num_hidden_layers, config.intermediate_size,
                          config.num_conv_pos_embeddings) > 0)
        except (TypeError, ValueError, ZeroDivisionError):
            ok = False
        if not ok:
            raise CheckpointError("HuBERT config.json has inconsistent sizes", "download the model again")
        wanted = {"feat_extract_norm": "group", "hidden_act": "gelu", "feat_extract_activation": "gelu",
                  "do_stable_layer_norm": False, "conv_pos_batch_norm": False}
        for name, value in wanted.items():
            if getattr(config, name) != value:
                raise CheckpointError(f"HuBERT {name}={getattr(config, name)!r} is not supported",
                                      "bark-cli runs HuBERT base and large in their original (post-norm) form")
        return config


class FeatureEncoder(nn.Module):
    """The conv stack: (B, T) samples → (B, conv_dim[-1], frames), GELU after each conv."""

    def __init__(self, config: HubertConfig) -> None:
        super().__init__()
        channels = [1, *config.conv_dim]
        self.conv_layers = nn.ModuleList(
            ConvLayer(channels[i], channels[i + 1], config.conv_kernel[i], config.conv_stride[i],
                      config.conv_bias, group_norm=(i == 0))
            for i in range(len(config.conv_dim))
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, None]  # (B, T) -> (B, 1, T)
        for layer in self.conv_layers:
            x = layer(x)
        return x


class ConvLayer(nn.Module):
    """conv → (GroupNorm with one group per channel: each channel normalised over time) → GELU."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, bias: bool, group_norm: bool) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride, bias=bias)
        self.layer_norm = nn.GroupNorm(c_out, c_out) if group_norm else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return F.gelu(x)


class FeatureProjection(nn.Module):
    def __init__(self, config: HubertConfig) -> None:
        super().__init__()
        width = config.conv_dim[-1]
        self.layer_norm = nn.LayerNorm(width, eps=config.layer_norm_eps) if config.feat_proj_layer_norm else None
        self.projection = nn.Linear(width, config.hidden_size)

    def forward(self, x: Tensor) -> Tensor:  # (B, frames, conv_dim) -> (B, frames, hidden)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return self.projection(x)


class PositionalConv(nn.Module):
    """Relative positions as a wide grouped conv (kernel 128, 16 groups) added to the input.

    An even kernel with padding k // 2 gives one frame too many; the last is dropped, as
    transformers' `HubertSamePadLayer` and fairseq's `SamePad` do."""

    def __init__(self, config: HubertConfig) -> None:
        super().__init__()
        k = config.num_conv_pos_embeddings
        self.conv = nn.Conv1d(config.hidden_size, config.hidden_size, k, padding=k // 2,
                              groups=config.num_conv_pos_embedding_groups)
        self.remove = 1 if k % 2 == 0 else 0

    def forward(self, x: Tensor) -> Tensor:  # (B, frames, hidden) -> same
        y = self.conv(x.transpose(1, 2))  # (B, hidden, frames + remove)
        if self.remove:
            y = y[..., : -self.remove]
        return F.gelu(y).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, config: HubertConfig) -> None:
        super().__init__()
        width = config.hidden_size
        self.heads = config.num_attention_heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(width, width) for _ in range(4))

    def forward(self, x: Tensor) -> Tensor:
        b, t, c = x.shape
        q, k, v = (proj(x).view(b, t, self.heads, c // self.heads).transpose(1, 2)  # (B, H, T, D)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))
        y = F.scaled_dot_product_attention(q, k, v)  # bidirectional: no mask, one unpadded input
        return self.out_proj(y.transpose(1, 2).reshape(b, t, c))  # (B, H, T, D) -> (B, T, C)


class FeedForward(nn.Module):
    def __init__(self, config: HubertConfig) -> None:
        super().__init__()
        self.intermediate_dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output_dense = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.output_dense(F.gelu(self.intermediate_dense(x)))


class EncoderLayer(nn.Module):
    """Post-norm: x = LN(x + attn(x)); x = LN'(x + ff(x))."""

    def __init__(self, config: HubertConfig) -> None:
        super().__init__()
        self.attention = Attention(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer_norm(x + self.attention(x))
        return self.final_layer_norm(x + self.feed_forward(x))


class Encoder(nn.Module):
    def __init__(self, config: HubertConfig, num_layers: int) -> None:
        super().__init__()
        self.pos_conv_embed = PositionalConv(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(num_layers))

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer_norm(x + self.pos_conv_embed(x))  # transformers' hidden_states[0]
        for layer in self.layers:
            x = layer(x)
        return x


class HubertFeatures(nn.Module):
    """(B, T) 16 kHz samples → (B, frames, hidden_size), the output of transformer layer `num_layers`.

    frames = the conv stack's output length: 49 for one second (each conv drops k - s samples'
    worth at its end), then one per 320 samples (20 ms)."""

    def __init__(self, config: HubertConfig, num_layers: int = QUANTIZER_LAYER) -> None:
        super().__init__()
        if not 1 <= num_layers <= config.num_hidden_layers:
            raise CheckpointError(f"HuBERT has {config.num_hidden_layers} layers, {num_layers} were asked for",
                                  f"the cloning quantizers read layer {QUANTIZER_LAYER} of HuBERT base")
        self.config = config
        self.num_layers = num_layers
        self.feature_extractor = FeatureEncoder(config)
        self.feature_projection = FeatureProjection(config)
        self.encoder = Encoder(config, num_layers)

    def min_samples(self) -> int:
        """The shortest input that gives one frame."""
        length = 1
        for kernel, stride in reversed(list(zip(self.config.conv_kernel, self.config.conv_stride))):
            length = (length - 1) * stride + kernel
        return length

    @torch.no_grad()
    def forward(self, samples: Tensor) -> Tensor:
        features = self.feature_extractor(samples).transpose(1, 2)  # (B, C, frames) -> (B, frames, C)
        return self.encoder(self.feature_projection(features))


# --- checkpoint mapping -----------------------------------------------------------------------

_POS_CONV = "encoder.pos_conv_embed.conv."
# (g, v) of the positional conv: legacy `weight_norm` names and torch's parametrizations.
_POS_WEIGHT_NORM = (("weight_g", "weight_v"),
                    ("parametrizations.weight.original0", "parametrizations.weight.original1"))


def fold_weight_norm_dim2(g: Tensor, v: Tensor) -> Tensor:
    """w = g · v / ‖v‖ with the norm over dims 0 and 1: HuBERT normalises its positional conv per
    kernel tap (`weight_norm(conv, dim=2)`), so g has shape (1, 1, kernel)."""
    v32 = v.float()
    norm = torch.linalg.vector_norm(v32, dim=(0, 1), keepdim=True)
    return (v32 * (g.float() / norm)).to(v.dtype)


def hubert_state_dict(state: dict[str, Tensor], num_layers: int) -> dict[str, Tensor]:
    """A HubertModel checkpoint's tensors, as `HubertFeatures(num_layers)` holds them: the
    positional conv's weight norm folded, layers past `num_layers` and training-only tensors
    (`masked_spec_embed`) dropped. A `hubert.` prefix (HubertForCTC and the like) is removed."""
    state = {k.removeprefix("hubert."): v for k, v in state.items()}
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.startswith("encoder.layers."):
            if int(key.split(".")[2]) >= num_layers:
                continue
        elif key == "masked_spec_embed" or key.startswith(_POS_CONV):
            continue
        out[key] = value
    for g_name, v_name in _POS_WEIGHT_NORM:
        g, v = state.get(_POS_CONV + g_name), state.get(_POS_CONV + v_name)
        if g is not None and v is not None:
            out[_POS_CONV + "weight"] = fold_weight_norm_dim2(g, v)
    if _POS_CONV + "weight" in state:  # already plain
        out[_POS_CONV + "weight"] = state[_POS_CONV + "weight"]
    if _POS_CONV + "bias" in state:
        out[_POS_CONV + "bias"] = state[_POS_CONV + "bias"]
    return out


def load_hubert(config: HubertConfig, state: dict[str, Tensor], num_layers: int = QUANTIZER_LAYER,
                source: str = "HuBERT") -> HubertFeatures:
    """Build on the meta device and assign the checkpoint's tensors (float32), every key and shape checked."""
    with torch.device("meta"):
        model = HubertFeatures(config, num_layers)
    mapped = hubert_state_dict(state, num_layers)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(mapped))
    unexpected = sorted(set(mapped) - set(expected))
    if missing or unexpected:
        what = f"lack key {missing[0]}" if missing else f"have unexpected key {unexpected[0]}"
        raise CheckpointError(f"{source} weights {what}", "point at a HuBERT model in the Hugging Face layout")
    for key, meta in expected.items():
        if tuple(mapped[key].shape) != tuple(meta.shape):
            raise CheckpointError(f"{source} weight {key} has shape {tuple(mapped[key].shape)}, "
                                  f"config.json implies {tuple(meta.shape)}", "the weights do not match config.json")
    model.load_state_dict({k: v.float() for k, v in mapped.items()}, assign=True)
    return model.eval().requires_grad_(False)
