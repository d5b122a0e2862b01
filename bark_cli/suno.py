"""Suno's original Bark checkpoints: find them, read them safely, and map them to the Hugging
Face layout the rest of bark-cli loads (bark-spec §7.2, §8.4, §9.5).

Suno's `bark` package downloads three pickled files per model size into
$XDG_CACHE_HOME/suno/bark_v0 (default ~/.cache/suno/bark_v0): `text_2.pt`, `coarse_2.pt`,
`fine_2.pt` (large) or `text.pt`, `coarse.pt`, `fine.pt` (small: no suffix). Each is a dict:

    model_args      n_layer, n_head, n_embd, block_size, bias, dropout, input_vocab_size and
                    output_vocab_size (older files: one vocab_size), fine: n_codes_total/given
    model           the state dict, nanoGPT names under torch.compile's `_orig_mod.` prefix
    iter_num, best_val_loss (a NumPy scalar), and possibly optimizer state, never read

The codec is EnCodec's own 24 kHz checkpoint (`encodec_24khz-d7cc33bc.th`, in torch hub's cache
where the `encodec` package puts it), named as the encodec package names its modules; the
Hugging Face port `facebook/encodec_24khz` serves as well. The text tokenizer is
bert-base-multilingual-cased, which Suno's files do not carry: `tokenizer_folder` finds one.

Downloads go through hub.snapshot, so its errors and offline rules apply; the state dicts are
finished by weights.assemble, as a Hugging Face-layout folder's are.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import hub, weights
from .config import BarkConfig, CodecConfig, FineConfig, GenerationConfig, GPTConfig
from .errors import CheckpointError, HubUnreachableError, NotCachedError, OutputError

if TYPE_CHECKING:
    import torch

ORIGINAL = hub.ORIGINAL  # the --model name of Suno's own cache folder
STAGES = ("semantic", "coarse", "fine")
SIZES = {  # no suffix = small, `_2` = large (bark-spec §9.5)
    "large": {"semantic": "text_2.pt", "coarse": "coarse_2.pt", "fine": "fine_2.pt"},
    "small": {"semantic": "text.pt", "coarse": "coarse.pt", "fine": "fine.pt"},
}
CODEC_FILE = "encodec_24khz-d7cc33bc.th"
CODEC_URL = f"https://dl.fbaipublicfiles.com/encodec/v0/{CODEC_FILE}"
CODEC_REPO = "facebook/encodec_24khz"
TOKENIZER_REPO = "suno/bark-small"
TOKENIZER_ENV = "BARK_TOKENIZER"

# Suno's sampling defaults (bark-spec §3.3, §11.3) are bark-cli's (temperatures 0.7, 0.7, 0.5,
# min_eos_p 0.2) but for top-k: Suno's code filters nothing, where the Hub files say 50. A top-k
# of the whole output vocabulary keeps every token, and a generation_config.json can say it
# (null there means "the default").

NOT_SUNO = "give the text, coarse and fine .pt files of Suno's bark"


# --- where the files are ----------------------------------------------------------------------


def _cache_home() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg).expanduser() if xdg else Path.home() / ".cache"


def torch_hub_checkpoints() -> Path:
    """torch.hub's download folder, by its rule ($TORCH_HOME, else $XDG_CACHE_HOME/torch, else
    ~/.cache/torch; then hub/checkpoints), where the encodec package keeps its weights."""
    home = os.environ.get("TORCH_HOME")
    return (Path(home).expanduser() if home else _cache_home() / "torch") / "hub" / "checkpoints"


def is_suno_folder(folder: str | os.PathLike) -> bool:
    """A folder holding any of Suno's checkpoint names and no config.json (a folder with both
    is read as the Hugging Face layout, which needs no pickle)."""
    folder = Path(folder).expanduser()
    names = {name for files in SIZES.values() for name in files.values()}
    return folder.is_dir() and not (folder / "config.json").is_file() and any(
        (folder / name).is_file() for name in names)


def stage_files(folder: str | os.PathLike) -> dict[str, Path]:
    """The three files of the model in `folder`: large when all of text_2.pt, coarse_2.pt and
    fine_2.pt are there, else small. Raises CheckpointError naming what an incomplete set lacks."""
    folder = Path(folder).expanduser()
    for size, files in SIZES.items():
        if all((folder / name).is_file() for name in files.values()):
            return {stage: folder / name for stage, name in files.items()}
    count = {size: sum((folder / n).is_file() for n in files.values()) for size, files in SIZES.items()}
    size = max(SIZES, key=lambda s: count[s])  # the larger set on a tie
    if count[size] == 0:
        raise CheckpointError(f"{folder} holds none of Suno's Bark checkpoints",
                              "expected text_2.pt, coarse_2.pt and fine_2.pt (or text.pt, coarse.pt, fine.pt)")
    missing = [name for name in SIZES[size].values() if not (folder / name).is_file()]
    raise CheckpointError(f"{folder} lacks {', '.join(missing)} of Suno's {size} Bark model",
                          f"Suno's {size} model is {', '.join(SIZES[size].values())}, from the suno/bark Hub repo")


def original_folder() -> Path:
    """Suno's cache folder, checked to hold one complete model (`--model suno-original`)."""
    folder = hub.resolve_model(ORIGINAL)
    stage_files(folder)
    return folder


# --- safe reading -----------------------------------------------------------------------------


def _numpy_globals() -> list[Any]:
    """What Suno's files pickle besides tensors: `best_val_loss`, a NumPy scalar, is rebuilt by
    `numpy.core.multiarray.scalar` (`numpy._core` since NumPy 2) from a `numpy.dtype`."""
    import numpy as np

    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    dtypes = {type(np.dtype(code)) for code in ("f2", "f4", "f8", "i4", "i8", "?")}
    return [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"), np.dtype, *dtypes]


def safe_load(path: Path) -> Any:
    """`torch.load` with weights_only: tensors, containers, numbers and the NumPy scalar types of
    `_numpy_globals` (allowed for this call only). Any other pickled global is refused before it
    is called, so a hostile file runs nothing."""
    import pickle

    import torch

    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            # mmap reads tensors on use: the optimizer state Suno's files may carry is never read.
            return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc)) or re.search(r"got <class '([^']+)'>", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointError(f"{path.name} holds a pickled object bark-cli will not load{what}",
                              "only tensors and numbers are read; get the file from its source again") from None
    except Exception as exc:  # corrupt or truncated files raise many different types
        raise CheckpointError(f"cannot read {path.name}: {exc}", "download the file again") from None


# --- key names --------------------------------------------------------------------------------

_FIELDS = {"i": r"\d+", "j": r"\d+", "p": r"weight|bias", "part": r"encoder|decoder", "rest": r"[\w.]+"}

# Suno's GPT keys (after `_orig_mod.`) -> ours; {i} a layer, {j} a codebook (bark-spec §7.2).
GPT_KEYS = [
    ("transformer.wte.weight", "input_embeds_layer.weight"),
    ("transformer.wtes.{j}.weight", "input_embeds_layers.{j}.weight"),
    ("transformer.wpe.weight", "position_embeds_layer.weight"),
    ("transformer.h.{i}.ln_1.{p}", "layers.{i}.layernorm_1.{p}"),
    ("transformer.h.{i}.attn.c_attn.{p}", "layers.{i}.attn.att_proj.{p}"),
    ("transformer.h.{i}.attn.c_proj.{p}", "layers.{i}.attn.out_proj.{p}"),
    ("transformer.h.{i}.ln_2.{p}", "layers.{i}.layernorm_2.{p}"),
    ("transformer.h.{i}.mlp.c_fc.{p}", "layers.{i}.mlp.in_proj.{p}"),
    ("transformer.h.{i}.mlp.c_proj.{p}", "layers.{i}.mlp.out_proj.{p}"),
    ("transformer.ln_f.{p}", "layernorm_final.{p}"),
    ("lm_head.weight", "lm_head.weight"),
    ("lm_heads.{j}.weight", "lm_heads.{j}.weight"),
]
# The causal mask nanoGPT registers when SDPA is missing: a buffer, not a weight.
_MASK = re.compile(r"transformer\.h\.\d+\.attn\.bias")

# The encodec package's keys -> the Hugging Face port's (bark-spec §8.4). Each conv sits one
# level deeper there (SConv1d.conv -> NormConv1d.conv); weight_g/weight_v pass through as they are.
CODEC_KEYS = [
    ("{part}.model.{i}.conv.conv.{rest}", "{part}.layers.{i}.conv.{rest}"),
    ("{part}.model.{i}.convtr.convtr.{rest}", "{part}.layers.{i}.conv.{rest}"),
    ("{part}.model.{i}.lstm.{rest}", "{part}.layers.{i}.lstm.{rest}"),
    ("{part}.model.{i}.block.{j}.conv.conv.{rest}", "{part}.layers.{i}.block.{j}.conv.{rest}"),
    ("{part}.model.{i}.shortcut.conv.conv.{rest}", "{part}.layers.{i}.shortcut.conv.{rest}"),
    ("quantizer.vq.layers.{i}._codebook.{rest}", "quantizer.layers.{i}.codebook.{rest}"),
]


def _compile(template: str) -> re.Pattern[str]:
    pieces = re.split(r"\{(\w+)\}", template)  # literal, field, literal, field, ...
    return re.compile("".join(re.escape(p) if k % 2 == 0 else f"(?P<{p}>{_FIELDS[p]})"
                              for k, p in enumerate(pieces)))


def _table(pairs: list[tuple[str, str]], reverse: bool = False) -> list[tuple[re.Pattern[str], str]]:
    return [(_compile(b if reverse else a), a if reverse else b) for a, b in pairs]


_GPT_FORWARD, _GPT_BACKWARD = _table(GPT_KEYS), _table(GPT_KEYS, reverse=True)
_CODEC_FORWARD = _table(CODEC_KEYS)


def _rename(key: str, table: list[tuple[re.Pattern[str], str]]) -> str | None:
    for pattern, template in table:
        match = pattern.fullmatch(key)
        if match:
            return template.format(**match.groupdict())
    return None


def suno_key(key: str) -> str:
    """Our key's name in Suno's files, `_orig_mod.` included (for error messages)."""
    return "_orig_mod." + (_rename(key, _GPT_BACKWARD) or key)


def codec_from_encodec(state: dict[str, torch.Tensor], source: str = CODEC_FILE) -> dict[str, torch.Tensor]:
    """An encodec-package state dict (`decoder.model.N.conv.conv.weight_g`, ...) with the Hugging
    Face port's keys (`decoder.layers.N.conv.weight_g`, ...), which models.codec.codec_state_dict
    reads. Raises CheckpointError naming a key it does not know."""
    out = {}
    for key, value in state.items():
        ours = _rename(key, _CODEC_FORWARD)
        if ours is None:
            raise CheckpointError(f"{source} has unexpected key {key}", "this is not EnCodec's 24 kHz checkpoint")
        out[ours] = value
    return out


# --- one stage --------------------------------------------------------------------------------


def stage_config(args: dict[str, Any], stage: str, source: str) -> GPTConfig:
    """A stage's shapes from its file's model_args; absent fields take the defaults of Suno's
    GPTConfig (block 1024, vocabularies 10 048, bias on), an older single vocab_size both vocabularies."""
    try:
        shapes: dict[str, Any] = {
            "num_layers": int(args["n_layer"]), "num_heads": int(args["n_head"]), "hidden_size": int(args["n_embd"]),
            "block_size": int(args.get("block_size", 1024)), "bias": bool(args.get("bias", True)),
            "dropout": float(args.get("dropout", 0.0)),
        }
        vocab = args.get("vocab_size", 10_048)
        shapes["input_vocab_size"] = int(args.get("input_vocab_size", vocab))
        shapes["output_vocab_size"] = int(args.get("output_vocab_size", vocab))
        if stage == "fine":
            config: GPTConfig = FineConfig(**shapes, n_codes_total=int(args.get("n_codes_total", 8)),
                                           n_codes_given=int(args.get("n_codes_given", 1)))
        else:
            config = GPTConfig(**shapes)
    except KeyError as exc:
        raise CheckpointError(f"{source}: model_args lack {exc.args[0]}", NOT_SUNO) from None
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: unreadable model_args ({exc})", NOT_SUNO) from None
    return config.validate(f"{source}: model_args ")  # sizes no model can be built with, named


def read_stage(path: Path, stage: str) -> tuple[GPTConfig, dict[str, torch.Tensor]]:
    """One of Suno's files as (config, state dict under our key names). Every key must map and
    every weight be present with the shape model_args imply; errors name Suno's key."""
    import torch

    from .models.fine import FineGPT
    from .models.gpt import GPT

    data = safe_load(path)
    if not (isinstance(data, dict) and isinstance(data.get("model_args"), dict)
            and isinstance(data.get("model"), dict)):
        raise CheckpointError(f"{path.name} is not one of Suno's Bark checkpoints (no model_args and model)", NOT_SUNO)
    config = stage_config(data["model_args"], stage, path.name)
    state: dict[str, torch.Tensor] = {}
    for key, value in data["model"].items():
        bare = key.removeprefix("_orig_mod.")
        if _MASK.fullmatch(bare):
            continue
        ours = _rename(bare, _GPT_FORWARD)
        if ours is None or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path.name} has unexpected key {key}", f"this is not Suno's {stage} model")
        state[ours] = value
    with torch.device("meta"):
        module = FineGPT(config) if stage == "fine" else GPT(config)
    expected = module.state_dict()
    tied = FineGPT.tied_keys(config) if stage == "fine" else {}
    partner = {**tied, **{v: k for k, v in tied.items()}}  # a tied pair needs either name
    missing = [k for k in expected if k not in state and partner.get(k) not in state]
    if missing:
        raise CheckpointError(f"{path.name} lacks key {suno_key(missing[0])} ({len(missing)} missing)",
                              "the file is incomplete or not Suno's model")
    for key, value in state.items():
        if key not in expected:
            raise CheckpointError(f"{path.name} has unexpected key {suno_key(key)}",
                                  "the weights do not match the file's model_args")
        if tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(f"{path.name}: {suno_key(key)} has shape {tuple(value.shape)}, "
                                  f"model_args imply {tuple(expected[key].shape)}",
                                  "the weights do not match the file's model_args")
    # A tied pair is kept once, under the embedding, as the Hub's safetensors files keep it.
    return config, {k: v for k, v in state.items() if not (k in tied and tied[k] in state)}


# --- the codec --------------------------------------------------------------------------------


def _conv_weight(state: dict[str, torch.Tensor], prefix: str) -> torch.Tensor | None:
    for suffix in (".weight_v", ".parametrizations.weight.original1", ".weight"):
        if prefix + suffix in state:
            return state[prefix + suffix]
    return None


def codec_config_of(state: dict[str, torch.Tensor]) -> CodecConfig:
    """EnCodec's .th carries no config: the widths come from its tensors (24 kHz: hidden 128,
    32 filters), all else is EnCodec 24 kHz's. A tensor that does not fit is named at load."""
    config = CodecConfig()
    first = _conv_weight(state, "decoder.layers.0.conv")  # (num_filters · 2^ratios, hidden, k)
    embed = state.get("quantizer.layers.0.codebook.embed")  # (codebook_size, codebook_dim)
    if first is not None and first.dim() == 3:
        config.hidden_size = int(first.shape[1])
        config.num_filters = int(first.shape[0]) // 2 ** len(config.upsampling_ratios)
    if embed is not None and embed.dim() == 2:
        config.codebook_size, config.codebook_dim = int(embed.shape[0]), int(embed.shape[1])
    return config.validate(f"{CODEC_FILE}: ")


def _codec_hint() -> str:
    return (f"put {CODEC_FILE} ({CODEC_URL}) in {torch_hub_checkpoints()} or beside Suno's files, "
            f"or fetch {CODEC_REPO} once online (`hf download {CODEC_REPO}`)")


def local_codec(folder: Path) -> Path | None:
    """EnCodec's own file beside Suno's, else in torch hub's cache; None when in neither."""
    return next((p for p in (folder / CODEC_FILE, torch_hub_checkpoints() / CODEC_FILE) if p.is_file()), None)


def read_codec(folder: Path, download: bool = True) -> tuple[CodecConfig, dict[str, torch.Tensor]]:
    """EnCodec 24 kHz under the Hugging Face port's keys: EnCodec's own file beside Suno's, then
    in torch hub's cache, then (with `download`) `facebook/encodec_24khz` from the Hub, cached or fetched."""
    path = local_codec(folder)
    if path is not None:
        data = safe_load(path)
        if not isinstance(data, dict):
            raise CheckpointError(f"{path} is not a state dict", "download EnCodec's checkpoint again")
        state = codec_from_encodec(data, path.name)
        return codec_config_of(state), state
    if not download:
        raise CheckpointError("EnCodec's 24 kHz weights are not on this machine", _codec_hint())

    def weights(names: list[str]) -> list[str]:
        return ["model.safetensors"] if "model.safetensors" in names else ["pytorch_model.bin"]

    try:
        snapshot = hub.snapshot(CODEC_REPO, None, ["config.json"], weights, what=f"the codec {CODEC_REPO}")
    except (NotCachedError, HubUnreachableError) as exc:
        raise type(exc)(exc.message, _codec_hint()) from None
    try:
        config = CodecConfig.from_dict(json.loads((snapshot / "config.json").read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise CheckpointError(f"cannot read {CODEC_REPO}'s config.json: {exc}", "download it again") from None
    if (snapshot / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return config, load_file(str(snapshot / "model.safetensors"))
    if (snapshot / "pytorch_model.bin").is_file():
        return config, safe_load(snapshot / "pytorch_model.bin")
    raise CheckpointError(f"{CODEC_REPO} in {snapshot} has no weights", _codec_hint())


# --- the whole model --------------------------------------------------------------------------


def generation_config(config: BarkConfig) -> GenerationConfig:
    """Bark's constants with Suno's sampling defaults for a model of `config`'s vocabularies,
    read through the JSON a converted folder gets, so the two cannot differ."""
    suno_sampling = GenerationConfig(semantic_top_k=config.semantic.output_vocab_size, semantic_top_p=1.0,
                                     coarse_top_k=config.coarse.output_vocab_size, coarse_top_p=1.0)
    return GenerationConfig.from_dict(weights.generation_json(suno_sampling))


def read_folder(folder: str | os.PathLike, codec: bool = True
                ) -> tuple[BarkConfig, GenerationConfig, dict[str, dict[str, torch.Tensor]]]:
    """Suno's three files and EnCodec's as (config, constants, state dict per sub-model under the
    Hugging Face layout's keys): what `load_weights` assembles. With `codec` off, the
    codec is read only when it is on this machine (`bark models info`)."""
    folder = Path(folder).expanduser()
    files = stage_files(folder)
    configs: dict[str, Any] = {}
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for stage in STAGES:
        configs[stage], parts[stage] = read_stage(files[stage], stage)
    if codec or local_codec(folder) is not None:
        configs["codec"], parts["codec"] = read_codec(folder)
    else:
        configs["codec"], parts["codec"] = CodecConfig(), {}
    config = BarkConfig(**configs)
    return config, generation_config(config), parts


def load_weights(folder: str | os.PathLike, dtype: torch.dtype | None = None) -> weights.BarkWeights:
    """Suno's model in `folder` as weights.load_weights gives a Hugging Face-layout folder's."""
    return weights.assemble(*read_folder(folder), dtype)


def load_folder(folder: Path, dtype: torch.dtype | None = None) -> weights.BarkWeights:
    """The weights of a model folder in either layout: Suno's files, else the Hugging Face layout."""
    return (load_weights if is_suno_folder(folder) else weights.load_weights)(folder, dtype)


def _has_tokenizer(folder: Path) -> bool:
    return (folder / "vocab.txt").is_file() or (folder / "tokenizer.json").is_file()


def tokenizer_folder(folder: str | os.PathLike) -> Path:
    """Where a model's tokenizer files are. A Hub-layout folder holds its own; for Suno's files:
    the folder $BARK_TOKENIZER names, else tokenizer files beside them, else suno/bark-small's
    (bert-base-multilingual-cased, as Suno's) from the Hub or its cache."""
    folder = Path(folder).expanduser()
    if not is_suno_folder(folder):
        return folder
    named = os.environ.get(TOKENIZER_ENV)
    if named:
        path = Path(named).expanduser()
        if not _has_tokenizer(path):
            raise CheckpointError(f"{TOKENIZER_ENV}={named} holds no vocab.txt or tokenizer.json",
                                  "name a folder with bert-base-multilingual-cased's tokenizer files")
        return path
    if _has_tokenizer(folder):
        return folder
    try:
        return hub.snapshot(TOKENIZER_REPO, None, ["vocab.txt"],
                            lambda names: [n for n in names if n in hub.TOKENIZER_FILES],
                            what=f"the tokenizer of {TOKENIZER_REPO}")
    except (NotCachedError, HubUnreachableError) as exc:
        raise type(exc)(exc.message, f"Suno's files carry no tokenizer: set {TOKENIZER_ENV} to a folder holding "
                                     f"bert-base-multilingual-cased's vocab.txt, or run once online") from None


# --- converting -------------------------------------------------------------------------------


def convert(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Write Suno's model in `source` as a Hugging Face-layout folder `target` (config.json,
    generation_config.json, model.safetensors, tokenizer files), which later loads without
    unpickling anything. `target` must not exist or be empty; it appears whole or not at all."""
    target = Path(target).expanduser()
    if target.exists() and not (target.is_dir() and not any(target.iterdir())):
        raise OutputError(f"{target} already exists", "give a new folder for the converted model")
    config, generation, parts = read_folder(source)
    tokenizer = tokenizer_folder(source)
    extra = [tokenizer / name for name in hub.TOKENIZER_FILES if (tokenizer / name).is_file()]
    return weights.save_folder(target, config, generation, parts, extra)
