"""Find, download and load Bark checkpoints in the Hugging Face layout (bark-spec §7, §9).

A model is a Hub id (`suno/bark-small`, `suno/bark`) or a local folder holding config.json,
generation_config.json, weights (model.safetensors or pytorch_model.bin, either possibly
sharded with an index) and tokenizer files. Only those files are fetched: `suno/bark` also
holds Suno's original .pt files, gigabytes we never read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import nn

from .config import BarkConfig, GenerationConfig
from .errors import CheckpointError
from .models.codec import EncodecDecoder, codec_state_dict
from .models.fine import FineGPT
from .models.gpt import GPT

DEFAULT_MODEL = "suno/bark-small"

# The prefix of each sub-model inside a BarkModel state dict.
PREFIXES = {
    "semantic": "semantic.",
    "coarse": "coarse_acoustics.",
    "fine": "fine_acoustics.",
    "codec": "codec_model.",
}
CONFIG_FILES = ["config.json", "generation_config.json"]
TOKENIZER_FILES = ["tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"]
SAFETENSORS_FILES = ["model.safetensors", "model.safetensors.index.json", "model-*.safetensors"]
BIN_FILES = ["pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*.bin"]
VOICE_MAP_FILE = "speaker_embeddings_path.json"


def is_local_model(model: str | os.PathLike) -> bool:
    return Path(model).expanduser().is_dir()


def resolve_model(
    model: str | os.PathLike = DEFAULT_MODEL,
    revision: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Return a local folder holding the model's files, downloading what is missing.

    Honours HF_HOME / HF_HUB_CACHE and HF_HUB_OFFLINE (through huggingface_hub). Weights are
    taken as safetensors when the repo has them, else as pytorch_model.bin.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    text = str(model)
    if text.startswith((".", "~", os.sep)) or text.count("/") != 1:
        raise CheckpointError(
            f"model {text} is neither a folder nor a Hub id", "give an existing folder or a Hub id like suno/bark-small"
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    def fetch(patterns: list[str]) -> Path:
        return Path(snapshot_download(repo_id=str(model), revision=revision, allow_patterns=patterns))

    try:
        if progress:
            progress(f"fetching {model}")
        folder = fetch(CONFIG_FILES + TOKENIZER_FILES + [VOICE_MAP_FILE] + SAFETENSORS_FILES)
        if not _weight_files(folder, quiet=True):
            folder = fetch(CONFIG_FILES + TOKENIZER_FILES + [VOICE_MAP_FILE] + BIN_FILES)
    except LocalEntryNotFoundError:
        raise CheckpointError(
            f"model {model} is not in the local cache and downloads are off",
            "run once online (`bark models download`) or unset HF_HUB_OFFLINE",
        ) from None
    except (RepositoryNotFoundError, GatedRepoError, HFValidationError):
        raise CheckpointError(f"no Hub model named {model}", "check the id, e.g. suno/bark-small") from None
    except RevisionNotFoundError:
        raise CheckpointError(f"model {model} has no revision {revision}", "check --revision") from None
    except OSError as exc:  # network failures surface as OSError subclasses (requests/httpx)
        raise CheckpointError(
            f"cannot download {model}: {exc}", "check the network, or set HF_HUB_OFFLINE=1 to use the cache"
        ) from None
    return folder


def read_configs(folder: Path) -> tuple[BarkConfig, GenerationConfig]:
    """The model shapes (config.json) and Bark constants (generation_config.json; optional,
    the spec's values stand in for anything it lacks)."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{folder} has no config.json", "point at a Bark model folder in the Hugging Face layout")
    try:
        config = BarkConfig.from_dict(json.loads(config_path.read_text()))
        gen_path = folder / "generation_config.json"
        generation = GenerationConfig.from_dict(json.loads(gen_path.read_text()) if gen_path.is_file() else None)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"cannot read the configs in {folder}: {exc}", "re-download the model") from None
    return config, generation


def _weight_files(folder: Path, quiet: bool = False) -> list[Path]:
    """The weight files to read, safetensors first; shards come from their index."""
    for single, index in (("model.safetensors", "model.safetensors.index.json"),
                          ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        if (folder / single).is_file():
            return [folder / single]
        if (folder / index).is_file():
            weight_map = json.loads((folder / index).read_text())["weight_map"]
            files = [folder / name for name in dict.fromkeys(weight_map.values())]
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise CheckpointError(f"{index} names missing shard {missing[0]}", "re-download the model")
            return files
    if quiet:
        return []
    raise CheckpointError(
        f"{folder} holds no model.safetensors or pytorch_model.bin", "point at a complete Bark model folder"
    )


def load_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint, memory-mapped where the format allows."""
    state: dict[str, torch.Tensor] = {}
    for path in _weight_files(folder):
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                state.update(load_file(str(path)))
            else:
                state.update(torch.load(path, map_location="cpu", weights_only=True, mmap=True))
        except Exception as exc:  # corrupt or truncated files raise many different types
            raise CheckpointError(f"cannot read weights {path.name}: {exc}", "re-download the model") from None
    return state


def split_state_dict(state: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """Split a BarkModel state dict by sub-model, dropping the prefixes."""
    parts: dict[str, dict[str, torch.Tensor]] = {name: {} for name in PREFIXES}
    for key, value in state.items():
        for name, prefix in PREFIXES.items():
            if key.startswith(prefix):
                parts[name][key[len(prefix):]] = value
                break
        else:
            raise CheckpointError(f"unexpected checkpoint key {key}", "this is not a Bark checkpoint in the Hugging Face layout")
    return parts


def _drop_causal_masks(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers stores each causal layer's mask as `layers.N.attn.bias` (bool, 1x1xSxS);
    SDPA builds its own, so the buffer is not loaded. A real attention bias would be 1-D."""
    return {k: v for k, v in state.items() if not (k.endswith("attn.bias") and v.dim() == 4)}


def _fill_tied(state: dict[str, torch.Tensor], tied: dict[str, str]) -> dict[str, torch.Tensor]:
    """Checkpoints store a tied pair once (safetensors keeps the embedding, .bin may keep both)."""
    state = dict(state)
    for head, embedding in tied.items():
        if head in state and embedding not in state:
            state[embedding] = state[head]
        state.pop(head, None)
    return state


def load_module(module: nn.Module, state: dict[str, torch.Tensor], name: str, dtype: torch.dtype,
                ignore: Iterable[str] = ()) -> nn.Module:
    """Copy `state` into `module` (built on the meta device), checking every key and shape."""
    expected = {k: v for k, v in module.state_dict().items() if k not in set(ignore)}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        raise CheckpointError(f"{name} weights lack key {PREFIXES[name]}{missing[0]} ({len(missing)} missing)",
                              "the checkpoint is incomplete or not a Bark model")
    if unexpected:
        raise CheckpointError(f"{name} weights have unexpected key {PREFIXES[name]}{unexpected[0]}",
                              "the checkpoint does not match its config.json")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{name} weight {PREFIXES[name]}{key} has shape {tuple(state[key].shape)}, "
                f"config.json implies {tuple(tensor.shape)}",
                "the checkpoint does not match its config.json",
            )
    cast = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}
    module.load_state_dict(cast, strict=False, assign=True)
    return module.eval().requires_grad_(False)


@dataclass
class BarkWeights:
    """The four sub-models of one checkpoint, on the CPU."""

    semantic: GPT
    coarse: GPT
    fine: FineGPT
    codec: EncodecDecoder
    config: BarkConfig
    generation: GenerationConfig


def load_weights(folder: Path, dtype: torch.dtype = torch.float32) -> BarkWeights:
    """Build the sub-models without allocating random weights, then assign the checkpoint's.

    The GPT stages take `dtype`; the codec stays float32 (it is small, and its LSTM and
    transposed convolutions are where half precision costs audible quality).
    """
    config, generation = read_configs(folder)
    parts = split_state_dict(load_state_dict(folder))
    with torch.device("meta"):
        semantic, coarse = GPT(config.semantic), GPT(config.coarse)
        fine, codec = FineGPT(config.fine), EncodecDecoder(config.codec)
    load_module(semantic, _drop_causal_masks(parts["semantic"]), "semantic", dtype)
    load_module(coarse, _drop_causal_masks(parts["coarse"]), "coarse", dtype)
    tied = FineGPT.tied_keys(config.fine)
    load_module(fine, _fill_tied(parts["fine"], tied), "fine", dtype, ignore=tied)
    fine.tie_weights()  # assign=True replaced the embedding tensors; share them with the heads again
    load_module(codec, codec_state_dict(parts["codec"]), "codec", torch.float32)
    return BarkWeights(semantic, coarse, fine, codec, config, generation)
