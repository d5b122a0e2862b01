"""Find, download and load Bark checkpoints in the Hugging Face layout (bark-spec §7, §9).

A model is a Hub id (`suno/bark-small`, `suno/bark`) or a local folder holding config.json,
generation_config.json, weights (model.safetensors or pytorch_model.bin, either possibly
sharded with an index) and tokenizer files. Only those files are fetched: `suno/bark` also
holds Suno's original .pt files, gigabytes we never read.

torch and the models are imported inside the functions that build or read tensors, so listing,
resolving and reading headers (`bark models`, `bark presets`) start without loading torch.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable
from urllib.parse import urlparse

from .config import BarkConfig, GenerationConfig
from .errors import (
    BarkError,
    CheckpointError,
    DownloadIncompleteError,
    HubAccessError,
    HubUnreachableError,
    ModelNotFoundError,
    NotCachedError,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .models.codec import EncodecDecoder
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

    Honours HF_HOME / HF_HUB_CACHE, HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE (through
    huggingface_hub). Weights are taken as safetensors when the repo has them, else as
    pytorch_model.bin. Download failures raise the errors of `hub_snapshot`.
    """
    from . import suno

    path = Path(model).expanduser()
    if path.is_dir():
        return path
    text = str(model)
    if text == suno.ORIGINAL:  # Suno's own download folder (suno.py)
        return suno.original_folder()
    if text.startswith((".", "~", os.sep)) or text.count("/") != 1:
        raise CheckpointError(
            f"model {text} is neither a folder nor a Hub id", "give an existing folder or a Hub id like suno/bark-small"
        )
    if progress:
        progress(f"fetching {model}")
    return hub_snapshot(text, revision, ["config.json"], _model_files, what=f"model {text}",
                        not_cached="is not in the local cache")


def _model_files(names: list[str]) -> list[str]:
    """The files of a Hub listing that a Bark model needs: configs, tokenizer, voice map and one
    weight format (`suno/bark` also holds Suno's original .pt files, gigabytes we never read)."""
    weights = SAFETENSORS_FILES if any(_matches(n, SAFETENSORS_FILES) for n in names) else BIN_FILES
    return [n for n in names if _matches(n, CONFIG_FILES + TOKENIZER_FILES + [VOICE_MAP_FILE] + weights)]


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


# --- the Hub ----------------------------------------------------------------------------------

# huggingface_hub waits up to 10 s for an answer and then retries with back-off, which leaves a
# user with no network staring at retry warnings for half a minute. One request with this
# timeout decides whether the Hub is there; HF_HUB_ETAG_TIMEOUT, when set, wins.
HUB_TIMEOUT_S = 5.0


def hub_timeout() -> float:
    try:
        return float(os.environ["HF_HUB_ETAG_TIMEOUT"])
    except (KeyError, ValueError):
        return HUB_TIMEOUT_S


def hub_snapshot(repo_id: str, revision: str | None, required: list[str],
                 choose: Callable[[list[str]], list[str]] | None = None, *, what: str,
                 not_cached: str = "is not cached") -> Path:
    """The local snapshot folder of `repo_id` at `revision`, holding the files `required` names
    and, when online, those `choose` picks from the repository's listing.

    Online, one metadata request (`hub_timeout()`) asks the Hub for the revision's commit and file
    list; files already cached for that commit are not fetched again. Offline (HF_HUB_OFFLINE),
    or when the Hub cannot be reached, the cache alone answers for `required`. Raises, naming
    `what` (e.g. "model suno/bark"): ModelNotFoundError (no such repository or revision),
    HubAccessError (gated or private), HubUnreachableError (network, timeout, server failure),
    DownloadIncompleteError (a transfer cut short), NotCachedError (offline, not in the cache),
    CheckpointError (the repository lacks a required file).
    """
    from huggingface_hub import HfApi, constants, hf_hub_download

    with _hub_errors(repo_id, revision, what, not_cached):
        if constants.is_offline_mode():
            return _cached_snapshot(repo_id, revision, required, what, not_cached, unreachable=None)
        endpoint = constants.ENDPOINT
        try:
            info = HfApi(endpoint=endpoint).model_info(repo_id, revision=revision, timeout=hub_timeout())
        except Exception as exc:
            if _cause(exc) != "unreachable":
                raise
            # As huggingface_hub does: a copy in the cache still serves when the Hub does not answer.
            return _cached_snapshot(repo_id, revision, required, what, not_cached, unreachable=exc)
        names = [s.rfilename for s in info.siblings or []]
        missing = [name for name in required if name not in names]
        if missing:
            raise CheckpointError(f"{what} has no file {missing[0]}",
                                  "check the id: this is not a Bark model in the Hugging Face layout")
        wanted = list(dict.fromkeys(required + (choose(names) if choose else [])))
        paths = [hf_hub_download(repo_id, name, revision=info.sha, endpoint=endpoint,
                                 etag_timeout=hub_timeout()) for name in wanted]
    return _snapshot_of(paths[0], wanted[0])


def _snapshot_of(path: str | Path, name: str) -> Path:
    """The snapshot folder that holds `path`, the cached copy of the repo file `name`."""
    return Path(path).parents[len(Path(name).parts) - 1]


def _cached_snapshot(repo_id: str, revision: str | None, required: list[str], what: str, not_cached: str,
                     unreachable: BaseException | None) -> Path:
    from huggingface_hub import try_to_load_from_cache

    for name in required:
        hit = try_to_load_from_cache(repo_id, name, revision=revision)
        if not isinstance(hit, str):
            if unreachable is not None:
                raise unreachable
            raise NotCachedError(f"{what} {not_cached} and downloads are off",
                                 "run once online (`bark models download`), or unset HF_HUB_OFFLINE")
    return _snapshot_of(hit, required[-1])


# Failures of the HTTP stack, by class name: huggingface_hub has used requests, httpx and httpx2,
# and their exceptions share names but no base class.
_CUT_SHORT = {"RemoteProtocolError", "ChunkedEncodingError", "IncompleteRead", "ReadError"}
_UNREACHABLE = {"ConnectError", "ConnectTimeout", "ConnectionError", "TimeoutException", "Timeout",
                "TimeoutError", "NetworkError", "TransportError", "gaierror", "ProxyError"}


def _cause(exc: BaseException) -> str | None:
    """"unreachable", "cut short" or None, for a failure anywhere in `exc`'s chain."""
    seen = exc
    while seen is not None:
        names = {cls.__name__ for cls in type(seen).__mro__}
        status = getattr(getattr(seen, "response", None), "status_code", None)
        if names & _CUT_SHORT or "Consistency check failed" in str(seen):
            return "cut short"
        if names & _UNREACHABLE or (isinstance(status, int) and status >= 500):
            return "unreachable"
        seen = seen.__cause__ or seen.__context__
    return None


@contextmanager
def _hub_errors(repo_id: str, revision: str | None, what: str, not_cached: str):
    """Turn huggingface_hub's failures into ours, and keep its retry warnings off stderr (the
    error we raise says all they would)."""
    import logging

    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.utils import logging as hf_logging

    logger = hf_logging.get_logger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    host = urlparse(constants.ENDPOINT).netloc or constants.ENDPOINT
    token_hint = "accept its terms on the model page if it is gated, then set HF_TOKEN or run `hf auth login`"
    try:
        yield
    except BarkError:
        raise
    except HFValidationError:
        raise ModelNotFoundError(f"{repo_id} is not a valid Hub id", "give a Hub id like suno/bark-small") from None
    except RevisionNotFoundError:
        raise ModelNotFoundError(f"{what} has no revision {revision}", "check --revision") from None
    except GatedRepoError:
        raise HubAccessError(f"{what} is gated and this machine has no access", token_hint) from None
    except RepositoryNotFoundError:
        raise ModelNotFoundError(f"no Hub model named {repo_id}",
                                 "check the id, e.g. suno/bark-small (a private model needs HF_TOKEN)") from None
    except LocalEntryNotFoundError:
        raise NotCachedError(f"{what} {not_cached} and downloads are off",
                             "run once online (`bark models download`), or unset HF_HUB_OFFLINE") from None
    except Exception as exc:
        status = exc.response.status_code if isinstance(exc, HfHubHTTPError) and exc.response is not None else None
        if status in (401, 403):
            raise HubAccessError(f"{what}: the Hub refused access (HTTP {status})", token_hint) from None
        cause = _cause(exc)
        if cause == "cut short":
            raise DownloadIncompleteError(f"the download of {what} was cut short",
                                          "run the command again: the download resumes") from None
        if cause == "unreachable":
            reason = f"answered HTTP {status}" if status else "could not be reached"
            raise HubUnreachableError(
                f"the Hub ({host}) {reason} to fetch {what}",
                "check the network, or use a local model folder, or HF_HUB_OFFLINE=1 with a cached model",
            ) from None
        if isinstance(exc, (HfHubHTTPError, OSError)):
            raise CheckpointError(f"cannot download {what}: {exc}", "run the command again") from None
        raise
    finally:
        logger.setLevel(level)


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


def _weight_files(folder: Path, quiet: bool = False) -> list[Path]:
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
    if quiet:
        return []
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


def load_weights(folder: Path, dtype: torch.dtype | None = None) -> BarkWeights:
    """Build the sub-models without allocating random weights, then assign the checkpoint's.

    The GPT stages take `dtype` (default float32); the codec stays float32 (it is small, and its
    LSTM and transposed convolutions are where half precision costs audible quality).
    """
    from .models.codec import codec_state_dict
    from .models.fine import FineGPT

    from . import suno

    if suno.is_suno_folder(folder):  # Suno's original .pt files, mapped to this layout's keys
        config, generation, parts = suno.read_folder(folder, hub_snapshot)
    else:
        config, generation = read_configs(folder)
        parts = split_state_dict(load_state_dict(folder))
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

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


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
    for path in _weight_files(Path(folder)):
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
