"""The cloning quantizer: HuBERT features (T, 768) → Bark semantic ids (T,).

A 2-layer LSTM (768 → 1024), in version 1 a Linear(1024 → 4096), then a Linear to the 10 000
semantic ids and an argmax over the log-softmax (the argmax of the logits, up to ties the
subtraction of one constant can only create). The published files are `torch.save`d state
dicts, keys as the module tree names them:

    lstm.{weight_ih,weight_hh,bias_ih,bias_hh}_l{0,1}
    intermediate.{weight,bias}          version 1 only
    fc.{weight,bias}

Newer files carry a JSON member `NAME/.info` in the torch zip ({"input_size", "hidden_size",
"output_size", "version"}); older ones have none and are version 0 at the default sizes. The
sizes are read from the tensors' shapes either way and checked against `.info` when it is there.
Only `torch.load(weights_only=True)` reads them: a file that would run code when unpickled is
refused before any of it runs.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import CheckpointError


@dataclass(frozen=True)
class QuantizerConfig:
    input_size: int = 768
    hidden_size: int = 1024
    output_size: int = 10_000
    version: int = 0  # 1: an extra 4096-wide Linear between the LSTM and the output layer

    intermediate_size = 4096


class SemanticQuantizer(nn.Module):
    def __init__(self, config: QuantizerConfig) -> None:
        super().__init__()
        self.config = config
        self.lstm = nn.LSTM(config.input_size, config.hidden_size, 2, batch_first=True)
        width = config.hidden_size
        self.intermediate = nn.Linear(width, config.intermediate_size) if config.version == 1 else None
        if self.intermediate is not None:
            width = config.intermediate_size
        self.fc = nn.Linear(width, config.output_size)

    @torch.no_grad()
    def forward(self, features: Tensor) -> Tensor:
        """(T, input_size) features of one recording → (T,) int64 ids."""
        x = self.lstm(features[None])[0][0]  # (1, T, C) -> (T, hidden), batch_first
        if self.intermediate is not None:
            x = self.intermediate(x)
        return torch.log_softmax(self.fc(x), dim=-1).argmax(dim=-1)


def _read_info(path: Path) -> dict | None:
    """The `NAME/.info` JSON of a quantizer zip, or None when there is none."""
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.endswith("/.info")]
        if not names:
            return None
        info = archive.read(names[0])
    try:
        data = json.loads(info.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CheckpointError(f"quantizer {path.name}: its .info is not JSON", "download the file again") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"quantizer {path.name}: its .info is not a JSON object", "download the file again")
    return data


def _config_from_state(state: dict[str, Tensor], source: str) -> QuantizerConfig:
    try:
        hidden4, inputs = state["lstm.weight_ih_l0"].shape
        outputs, width = state["fc.weight"].shape
    except (KeyError, ValueError):
        raise CheckpointError(f"{source} is not a cloning quantizer (no lstm.weight_ih_l0 / fc.weight)",
                              "give a HuBERT quantizer .pth such as quantifier_hubert_base_ls960_14.pth") from None
    version = 1 if "intermediate.weight" in state else 0
    config = QuantizerConfig(int(inputs), int(hidden4) // 4, int(outputs), version)
    if width != (config.intermediate_size if version == 1 else config.hidden_size):
        raise CheckpointError(f"{source}: fc.weight has shape {tuple(state['fc.weight'].shape)}, "
                              "which fits neither quantizer version", "download the file again")
    return config


def read_quantizer(path: str | Path) -> SemanticQuantizer:
    """Load a published quantizer `.pth` (a torch zip), safely. Raises CheckpointError for a file
    that is not one, is cut short, holds code, or does not match its `.info`."""
    path = Path(path)
    source = f"quantizer {path.name}"
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{source} is not a torch zip file",
                              "give a HuBERT quantizer .pth such as quantifier_hubert_base_ls960_14.pth")
    try:
        info = _read_info(path)
        state = torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{source} holds more than tensors and was not run ({first[:160]})",
                              "use a quantizer from a source you trust, saved as a plain state dict") from None
    except Exception as exc:  # cut short, corrupt: many types
        raise CheckpointError(f"cannot read {source}: {exc}", "download the file again") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise CheckpointError(f"{source} is not a state dict of tensors", "download the file again")
    config = _config_from_state(state, source)
    if info is not None:
        for name in ("input_size", "hidden_size", "output_size", "version"):
            if name in info and info[name] != getattr(config, name):
                raise CheckpointError(f"{source}: .info says {name}={info[name]!r}, the weights "
                                      f"{getattr(config, name)}", "download the file again")
    with torch.device("meta"):
        model = SemanticQuantizer(config)
    expected = model.state_dict()
    if set(state) != set(expected):
        odd = sorted(set(state) ^ set(expected))[0]
        raise CheckpointError(f"{source}: unexpected or missing key {odd}", "download the file again")
    for key, meta in expected.items():
        if tuple(state[key].shape) != tuple(meta.shape):
            raise CheckpointError(f"{source}: {key} has shape {tuple(state[key].shape)}, expected "
                                  f"{tuple(meta.shape)}", "download the file again")
    model.load_state_dict({k: v.float() for k, v in state.items()}, assign=True)
    model.lstm.flatten_parameters()
    return model.eval().requires_grad_(False)
