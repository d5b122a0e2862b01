"""Bark checkpoints in the Hugging Face layout (bark-spec §7, §9): configs, weight files and
shards, key and shape checks, random weights at a checkpoint's sizes, tensor headers, and a
model folder written whole (for converted models).

A model folder holds config.json, generation_config.json (optional) and weights:
model.safetensors or pytorch_model.bin, either possibly sharded with an index. hub.py finds or
downloads the folder; suno.py maps Suno's original files onto this layout.

torch and the models are imported inside the functions that build or read tensors, so reading
configs and headers (`bark models info`) starts without loading torch.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from .config import BarkConfig, GenerationConfig
from .errors import CheckpointError, OutputError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .models.codec import EncodecDecoder
    from .models.fine import FineGPT
    from .models.gpt import GPT

# The prefix of each sub-model inside a BarkModel state dict.
PREFIXES = {
    "semantic": "semantic.",
    "coarse": "coarse_acoustics.",
    "fine": "fine_acoustics.",
    "codec": "codec_model.",
}


def read_configs(folder: Path) -> tuple[BarkConfig, GenerationConfig]:
    """The model shapes (config.json) and Bark constants (generation_config.json; optional,
    the spec's values stand in for anything it lacks)."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{folder} has no config.json", "point at a Bark model folder in the Hugging Face layout")
    gen_path = folder / "generation_config.json"
    config = _read_config(config_path, BarkConfig.from_dict)
    generation = _read_config(gen_path, GenerationConfig.from_dict) if gen_path.is_file() else GenerationConfig()
    return config, generation


def _read_config(path: Path, parse: Callable):
    """One config file, parsed and checked: bad JSON, wrong types and impossible values raise
    CheckpointError naming the file and the key."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}", "re-download the model") from None
    try:
        return parse(data)
    except CheckpointError as exc:
        raise CheckpointError(f"{path.name}: {exc.message}", exc.hint) from None


def config_json(config: BarkConfig) -> dict[str, Any]:
    """A config.json in the Hub's sections that `read_configs` reads back to `config`."""
    return {
        "architectures": ["BarkModel"], "model_type": "bark", "torch_dtype": "float32",
        "semantic_config": asdict(config.semantic), "coarse_acoustics_config": asdict(config.coarse),
        "fine_acoustics_config": asdict(config.fine), "codec_config": asdict(config.codec),
    }


def generation_json(gen: GenerationConfig) -> dict[str, Any]:
    """A generation_config.json in the Hub's sections that GenerationConfig.from_dict reads back to `gen`."""
    semantic = ["text_encoding_offset", "text_pad_token", "semantic_infer_token", "semantic_pad_token",
                "semantic_vocab_size", "max_input_semantic_length", "max_new_tokens", "semantic_rate_hz", "min_eos_p"]
    coarse = ["coarse_semantic_pad_token", "coarse_infer_token", "coarse_rate_hz", "n_coarse_codebooks",
              "max_coarse_history", "max_coarse_input_length", "sliding_window_len"]
    fine = ["n_fine_codebooks", "max_fine_history_length", "max_fine_input_length"]

    def section(names: list[str], stage: str, sampling: bool) -> dict[str, Any]:
        out = {name: getattr(gen, name) for name in names}
        out["temperature"] = getattr(gen, f"{stage}_temperature")
        if sampling:
            out.update(top_k=getattr(gen, f"{stage}_top_k"), top_p=getattr(gen, f"{stage}_top_p"))
        return out

    return {
        "model_type": "bark", "sample_rate": gen.sample_rate, "codebook_size": gen.codebook_size,
        "semantic_config": {**section(semantic, "semantic", True), "eos_token_id": gen.semantic_pad_token},
        "coarse_acoustics_config": section(coarse, "coarse", True),
        "fine_acoustics_config": section(fine, "fine", False),
    }


def save_folder(target: Path, config: BarkConfig, generation: GenerationConfig,
                parts: dict[str, dict[str, torch.Tensor]], extra: Iterable[Path] = ()) -> Path:
    """Write a model folder in this layout: config.json, generation_config.json, one
    model.safetensors of `parts` (a state dict per sub-model, as `split_state_dict` gives them)
    and copies of the `extra` files. It is built beside `target` and renamed into place, so it
    appears whole or not at all; an empty folder at `target` is replaced."""
    from safetensors.torch import save_file

    state = {PREFIXES[name] + key: value.contiguous() for name, part in parts.items() for key, value in part.items()}
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}", "pick a folder you can write to") from None
    try:
        (staging / "config.json").write_text(json.dumps(config_json(config), indent=2) + "\n")
        (staging / "generation_config.json").write_text(json.dumps(generation_json(generation), indent=2) + "\n")
        save_file(state, str(staging / "model.safetensors"), metadata={"format": "pt"})
        for path in extra:
            shutil.copyfile(path, staging / path.name)
        if target.exists():
            target.rmdir()
        os.replace(staging, target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}", "pick a folder you can write to") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def weight_files(folder: Path) -> list[Path]:
    """The weight files to read, safetensors first; shards come from their index."""
    for single, index in (("model.safetensors", "model.safetensors.index.json"),
                          ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        if (folder / single).is_file():
            return [folder / single]
        if (folder / index).is_file():
            files = _shards(folder, index)
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise CheckpointError(f"{index} names missing shard {missing[0]}", "re-download the model")
            return files
    raise CheckpointError(
        f"{folder} holds no model.safetensors or pytorch_model.bin", "point at a complete Bark model folder"
    )


def _shards(folder: Path, index: str) -> list[Path]:
    """The shard files a sharded checkpoint's index names, each a plain file name or a relative
    path that stays inside `folder`; anything else raises CheckpointError naming the key."""
    try:
        data = json.loads((folder / index).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"cannot read {index}: {exc}", "re-download the model") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index}: weight_map is missing or not an object of tensor -> shard file",
                              "re-download the model")
    root = folder.resolve()
    files = []
    for key, name in weight_map.items():
        if not isinstance(name, str) or not name:
            raise CheckpointError(f"{index}: weight_map[{key!r}] is not a file name", "re-download the model")
        relative = Path(name)
        target = (root / relative).resolve()
        if relative.is_absolute() or ".." in relative.parts or "\0" in name or not target.is_relative_to(root):
            raise CheckpointError(f"{index}: weight_map[{key!r}] names {name!r}, outside the model folder",
                                  "a shard must be a file inside the model folder")
        files.append(folder / relative)
    return list(dict.fromkeys(files))


def load_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint, memory-mapped where the format allows."""
    import torch

    state: dict[str, torch.Tensor] = {}
    for path in weight_files(folder):
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


def load_weights(folder: Path, dtype: torch.dtype | None = None) -> BarkWeights:
    """Build the sub-models without allocating random weights, then assign the checkpoint's.

    The GPT stages take `dtype` (default float32); the codec stays float32 (it is small, and its
    LSTM and transposed convolutions are where half precision costs audible quality). Suno's
    original .pt files are suno.load_weights'.
    """
    config, generation = read_configs(folder)
    return assemble(config, generation, split_state_dict(load_state_dict(folder)), dtype)


def assemble(config: BarkConfig, generation: GenerationConfig, parts: dict[str, dict[str, torch.Tensor]],
             dtype: torch.dtype | None = None) -> BarkWeights:
    """The sub-models from a state dict per sub-model under the Hugging Face layout's keys (as
    `split_state_dict` gives them), finished as every checkpoint is: causal-mask buffers dropped,
    the fine heads' tied pairs filled, the codec's keys mapped."""
    from .models.codec import codec_state_dict
    from .models.fine import FineGPT

    states = {
        "semantic": _drop_causal_masks(parts["semantic"]),
        "coarse": _drop_causal_masks(parts["coarse"]),
        "fine": _fill_tied(parts["fine"], FineGPT.tied_keys(config.fine)),
        "codec": codec_state_dict(parts["codec"]),
    }
    return _assemble(config, generation, lambda name, _module: states[name], dtype)


def random_weights(config: BarkConfig, generation: GenerationConfig, seed: int = 0,
                   dtype: torch.dtype | None = None) -> BarkWeights:
    """Sub-models at `config`'s sizes with seeded random weights, finished as `load_weights`
    finishes a checkpoint's (GPT stages in `dtype`, codec float32, eval mode, fine heads tied):
    for measuring speed and memory without a download.

    The init is transformers' for Bark: GPT weights normal with std 0.02, LayerNorm scales 1,
    biases 0. The codec gets PyTorch's default scale (uniform within ±1/sqrt(fan_in)) and
    unit-normal codebooks, which EnCodec would leave at zero. All values come from one generator
    seeded with `seed`: the same seed gives the same weights, and the global RNG is untouched.
    """
    import torch

    from .models.fine import FineGPT

    gen = torch.Generator().manual_seed(seed)
    tied = FineGPT.tied_keys(config.fine)

    def state(name: str, module: nn.Module) -> dict[str, torch.Tensor]:
        return {key: _random_tensor(key, tuple(meta.shape), meta.dtype, name == "codec", gen)
                for key, meta in module.state_dict().items() if not (name == "fine" and key in tied)}

    return _assemble(config, generation, state, dtype)


def _random_tensor(key: str, shape: tuple[int, ...], dtype: torch.dtype, codec: bool,
                   gen: torch.Generator) -> torch.Tensor:
    import torch

    if not dtype.is_floating_point:
        return torch.zeros(shape, dtype=dtype)
    if key.endswith("codebook.embed"):
        return torch.randn(shape, generator=gen, dtype=torch.float32)
    if len(shape) < 2:  # LayerNorm scales, biases
        return torch.ones(shape) if key.endswith(".weight") else torch.zeros(shape)
    if codec:
        bound = math.prod(shape[1:]) ** -0.5  # fan_in as nn.Conv1d and nn.ConvTranspose1d count it
        return torch.empty(shape, dtype=torch.float32).uniform_(-bound, bound, generator=gen)
    return torch.empty(shape, dtype=torch.float32).normal_(0.0, 0.02, generator=gen)


def _assemble(config: BarkConfig, generation: GenerationConfig,
              state_of: Callable[..., dict[str, torch.Tensor]], dtype: torch.dtype | None) -> BarkWeights:
    """Build the four sub-models on the meta device (shapes, no storage), then assign each its
    state, `state_of(name, module)`. States are asked for one at a time, so a state made on the
    fly (random_weights) is freed before the next is made."""
    import torch

    from .models.codec import EncodecDecoder
    from .models.fine import FineGPT
    from .models.gpt import GPT

    dtype = torch.float32 if dtype is None else dtype
    with torch.device("meta"):
        models: dict[str, nn.Module] = {
            "semantic": GPT(config.semantic), "coarse": GPT(config.coarse),
            "fine": FineGPT(config.fine), "codec": EncodecDecoder(config.codec),
        }
    tied = FineGPT.tied_keys(config.fine)
    for name, module in models.items():
        load_module(module, state_of(name, module), name, torch.float32 if name == "codec" else dtype,
                    ignore=tied if name == "fine" else ())
    models["fine"].tie_weights()  # assign=True replaced the embedding tensors; share them with the heads again
    return BarkWeights(**models, config=config, generation=generation)


# --- tensor headers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorInfo:
    """One stored tensor, as its file's header describes it."""

    shape: tuple[int, ...]
    dtype_name: str  # torch's name: "float32", "bfloat16", "bool", ...
    nbytes: int


# safetensors' dtype codes under torch's names
_SAFETENSORS_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
    "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool",
}


def tensor_headers(folder: Path) -> dict[str, TensorInfo]:
    """Every stored tensor of a checkpoint (key as stored -> shape, dtype, bytes), from the weight
    files `load_weights` would read. safetensors files are described by their JSON header alone,
    without reading tensor data or importing torch; a pytorch_model.bin is memory-mapped."""
    tensors: dict[str, TensorInfo] = {}
    for path in weight_files(Path(folder)):
        try:
            tensors.update(_safetensors_header(path) if path.suffix == ".safetensors" else _bin_header(path))
        except Exception as exc:  # corrupt or truncated files raise many different types
            raise CheckpointError(f"cannot read weights {path.name}: {exc}", "re-download the model") from None
    return tensors


def _safetensors_header(path: Path) -> dict[str, TensorInfo]:
    # The format: 8 bytes little-endian header length, then the JSON header,
    # {key: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}}.
    with open(path, "rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        if length > path.stat().st_size - 8:
            raise ValueError(f"header length {length} exceeds the file")
        header = json.loads(handle.read(length))
    out = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        code = entry["dtype"]
        out[key] = TensorInfo(tuple(int(d) for d in entry["shape"]), _SAFETENSORS_DTYPES.get(code, code.lower()),
                              end - begin)
    return out


def _bin_header(path: Path) -> dict[str, TensorInfo]:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return {key: TensorInfo(tuple(t.shape), str(t.dtype).removeprefix("torch."), t.numel() * t.element_size())
            for key, t in state.items()}
