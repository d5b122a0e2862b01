"""Voice prompts (Bark's "history prompts"): validate, load and save them.

A voice is three integer arrays (bark-spec §10.1): `semantic_prompt` (S,) with semantic ids,
`coarse_prompt` (2, T) and `fine_prompt` (8, T) with EnCodec codes. Real presets store them as
int64, int32 or uint16; we always hand int64 on.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .config import GenerationConfig
from .errors import PresetError

PROMPT_KEYS = ("semantic_prompt", "coarse_prompt", "fine_prompt")


@dataclass(frozen=True)
class VoicePrompt:
    """A validated voice: int64 arrays in the layout Bark's presets use."""

    semantic_prompt: np.ndarray  # (S,) ids 0..semantic_vocab_size-1
    coarse_prompt: np.ndarray  # (n_coarse_codebooks, T) codes 0..codebook_size-1
    fine_prompt: np.ndarray  # (n_fine_codebooks, T) codes 0..codebook_size-1

    def as_dict(self) -> dict[str, np.ndarray]:
        return {key: getattr(self, key) for key in PROMPT_KEYS}


def validate_voice(
    arrays: Mapping[str, Any], source: str = "voice prompt", config: GenerationConfig | None = None
) -> VoicePrompt:
    """Check keys, shapes, dtypes and id ranges of a voice; return it as int64 arrays."""
    config = config or GenerationConfig()
    missing = [key for key in PROMPT_KEYS if key not in arrays]
    if missing:
        raise PresetError(
            f"{source} lacks {', '.join(missing)}",
            f"a voice needs the arrays {', '.join(PROMPT_KEYS)}",
        )
    expected_rows = {
        "semantic_prompt": None,
        "coarse_prompt": config.n_coarse_codebooks,
        "fine_prompt": config.n_fine_codebooks,
    }
    upper = {
        "semantic_prompt": config.semantic_vocab_size,
        "coarse_prompt": config.codebook_size,
        "fine_prompt": config.codebook_size,
    }
    out: dict[str, np.ndarray] = {}
    for key in PROMPT_KEYS:
        value = np.asarray(arrays[key])
        if not (np.issubdtype(value.dtype, np.integer) or value.dtype == np.bool_):
            raise PresetError(
                f"{source}: {key} has dtype {value.dtype}", "voice arrays must hold integers"
            )
        rows = expected_rows[key]
        if rows is None and value.ndim != 1:
            raise PresetError(
                f"{source}: {key} has shape {value.shape}", f"{key} must be 1-D, (S,)"
            )
        if rows is not None and (value.ndim != 2 or value.shape[0] != rows):
            raise PresetError(
                f"{source}: {key} has shape {value.shape}", f"{key} must be ({rows}, T)"
            )
        if value.size == 0:
            raise PresetError(f"{source}: {key} is empty", "a voice needs at least one frame")
        low, high = int(value.min()), int(value.max())
        if low < 0 or high >= upper[key]:
            raise PresetError(
                f"{source}: {key} holds ids {low}..{high}",
                f"{key} ids must lie in 0..{upper[key] - 1}",
            )
        out[key] = value.astype(np.int64)
    if out["coarse_prompt"].shape[1] != out["fine_prompt"].shape[1]:
        raise PresetError(
            f"{source}: coarse_prompt has {out['coarse_prompt'].shape[1]} frames but "
            f"fine_prompt has {out['fine_prompt'].shape[1]}",
            "coarse and fine prompts must cover the same frames",
        )
    return VoicePrompt(**out)


def load_voice_file(path: str | os.PathLike) -> VoicePrompt:
    """Read and validate a voice `.npz`."""
    path = Path(path)
    if not path.is_file():
        raise PresetError(f"voice file {path} does not exist", "give the path of a .npz voice")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise PresetError(
            f"cannot read voice file {path}: {exc}", "give a .npz written by numpy.savez"
        ) from None
    return validate_voice(arrays, source=str(path))


def save_voice(voice: VoicePrompt, path: str | os.PathLike) -> Path:
    """Write a voice `.npz` atomically (temporary file beside the target, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **voice.as_dict())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# --- finding a voice by name ------------------------------------------------------------------

VOICE_MAP_FILE = "speaker_embeddings_path.json"


def read_voice_map(model_folder: Path | None) -> dict[str, dict[str, str]]:
    """The model's preset map (name -> the three .npy paths), as transformers' BarkProcessor reads it."""
    if model_folder is None or not (Path(model_folder) / VOICE_MAP_FILE).is_file():
        return {}
    import json

    try:
        data = json.loads((Path(model_folder) / VOICE_MAP_FILE).read_text())
    except ValueError as exc:
        raise PresetError(f"cannot read {VOICE_MAP_FILE}: {exc}", "re-download the model") from None
    return {k: v for k, v in data.items() if isinstance(v, dict)}


def _fetch_voice_file(rel: str, model_folder: Path | None, model_id: str | None, revision: str | None) -> Path:
    """A preset .npy: beside the model when present, else from the model's Hub repo (cached)."""
    if model_folder is not None and (Path(model_folder) / rel).is_file():
        return Path(model_folder) / rel
    if not model_id or Path(model_id).expanduser().is_dir():
        raise PresetError(f"voice file {rel} is missing from the model folder", "re-download the model")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(model_id, rel, revision=revision))
    except LocalEntryNotFoundError:
        raise PresetError(
            f"voice file {rel} is not cached and downloads are off", "run once online or unset HF_HUB_OFFLINE"
        ) from None
    except OSError as exc:
        raise PresetError(f"cannot download voice file {rel}: {exc}", "check the network") from None


def load_preset(name: str, model_folder: Path | None, model_id: str | None = None,
                revision: str | None = None) -> VoicePrompt:
    """A named Suno preset through the model's speaker_embeddings_path.json."""
    entry = read_voice_map(model_folder).get(name)
    if entry is None:
        raise PresetError(f"unknown voice {name!r}", "see `bark presets list`, or give a .npz path")
    arrays = {}
    for key in PROMPT_KEYS:
        path = _fetch_voice_file(entry[key], model_folder, model_id, revision)
        try:
            arrays[key] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise PresetError(f"cannot read voice file {path}: {exc}", "re-download the model") from None
    return validate_voice(arrays, source=f"voice {name}")


def resolve_voice(spec: str, model_folder: Path | None = None, model_id: str | None = None,
                  revision: str | None = None) -> VoicePrompt:
    """A voice from a `.npz` path or a preset name."""
    if spec.endswith(".npz") or Path(spec).expanduser().is_file():
        return load_voice_file(Path(spec).expanduser())
    return load_preset(spec, model_folder, model_id, revision)
