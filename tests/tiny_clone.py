"""Tiny random models in the layouts voice cloning reads: a HuBERT Hub folder written by
transformers' `HubertModel.save_pretrained`, and quantizer `.pth` files written as the published
ones are (`torch.save` of the state dict, then a `NAME/.info` JSON appended to the zip)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import torch
from torch import nn

# HuBERT base's real conv stack (strides 5·2⁶ = 320 at 16 kHz), narrow everywhere else; ten
# layers, so that the layer the quantizers read (9) is not the last.
TINY_HUBERT = dict(hidden_size=32, num_hidden_layers=10, num_attention_heads=2, intermediate_size=64,
                   conv_dim=[16] * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)


def hubert_model(seed: int = 0, **overrides):
    import transformers

    torch.manual_seed(seed)
    model = transformers.HubertModel(transformers.HubertConfig(**{**TINY_HUBERT, **overrides})).eval()
    with torch.no_grad():  # biases and norm scales off their init values, so that each one counts
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def legacy_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Parametrized weight norm renamed as the 2021 Hub files store it (weight_g / weight_v)."""
    return {k.replace("parametrizations.weight.original0", "weight_g")
             .replace("parametrizations.weight.original1", "weight_v"): v for k, v in state.items()}


def write_hubert_folder(folder: Path, seed: int = 0, legacy: bool = False, **overrides) -> Path:
    """A HuBERT folder as on the Hub: config.json and model.safetensors (or, legacy, a
    pytorch_model.bin with weight_g / weight_v keys)."""
    model = hubert_model(seed, **overrides)
    model.save_pretrained(folder)
    if legacy:
        (folder / "model.safetensors").unlink()
        torch.save(legacy_weight_norm(model.state_dict()), folder / "pytorch_model.bin")
    return folder


class Reference(nn.Module):
    """The published quantizer's layers, built from torch.nn as its authors built them."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int, version: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, 2, batch_first=True)
        if version == 1:
            self.intermediate = nn.Linear(hidden_size, 4096)
        self.fc = nn.Linear(4096 if version == 1 else hidden_size, output_size)
        self.version = version

    @torch.no_grad()
    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(T, input_size) → (T,), as its `get_token`: an unbatched LSTM, LogSoftmax, argmax."""
        y, _ = self.lstm(x)
        if self.version == 1:
            y = self.intermediate(y)
        return torch.argmax(nn.LogSoftmax(dim=1)(self.fc(y)), dim=1)


def write_quantizer(path: Path, input_size: int = 32, hidden_size: int = 24, output_size: int = 10_000,
                    version: int = 1, info: bool = True, seed: int = 0) -> Reference:
    """A quantizer file as the published ones are written; returns the module it holds."""
    torch.manual_seed(seed)
    model = Reference(input_size, hidden_size, output_size, version).eval()
    with torch.no_grad():  # livelier LSTM gates and unit-variance linear outputs, so that the argmax differs from frame to frame
        for name, weight in model.lstm.named_parameters():
            if name.startswith("weight"):
                weight.mul_(4.0)
        for layer in (model.fc, getattr(model, "intermediate", None)):
            if layer is not None:
                layer.weight.normal_(0.0, 2.0 / layer.weight.shape[1] ** 0.5)
                layer.bias.mul_(0.1)
    torch.save(model.state_dict(), path)
    if info:
        member = ".".join(path.name.split(".")[:-1]) + "/.info"
        data = {"input_size": input_size, "hidden_size": hidden_size, "output_size": output_size, "version": version}
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr(member, json.dumps(data))
    return model
