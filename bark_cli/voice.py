"""Voice prompts (Bark's "history prompts"): the type, its checks, and a safe `.npz` reader.

A voice is three integer arrays (bark-spec §10.1): `semantic_prompt` (S,) with semantic ids,
`coarse_prompt` (2, T) and `fine_prompt` (8, T) with EnCodec codes. Real presets store them as
int64, int32 or uint16; we always hand int64 on.

This module sits at the bottom of the house beside config and errors: the token loops take a
`VoicePrompt` without knowing where voices are found (presets.py) or fetched (hub.py).
"""

from __future__ import annotations

import math
import os
import tokenize
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .config import GenerationConfig
from .errors import PresetError

PROMPT_KEYS = ("semantic_prompt", "coarse_prompt", "fine_prompt")
# The longest voice read: Bark conditions on at most 256 semantic tokens and 630 coarse / 512
# fine frames, and a saved generation holds at most 768 tokens (about 1150 frames). Checked from
# the .npy header before any array data is read, so a huge or hostile file costs nothing.
MAX_PROMPT_TOKENS = 4096
MAX_PROMPT_FRAMES = 4096
_ROWS = {"semantic_prompt": None, "coarse_prompt": "n_coarse_codebooks", "fine_prompt": "n_fine_codebooks"}


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
    upper = {
        "semantic_prompt": config.semantic_vocab_size,
        "coarse_prompt": config.codebook_size,
        "fine_prompt": config.codebook_size,
    }
    out: dict[str, np.ndarray] = {}
    for key in PROMPT_KEYS:
        value = arrays[key]
        if not isinstance(value, np.ndarray):
            try:
                value = np.asarray(value)
            except (ValueError, TypeError, OverflowError) as exc:
                raise PresetError(f"{source}: {key} is not an array ({exc})", "voice arrays must hold integers") from None
        check_prompt_header(key, value.shape, value.dtype, source, config)
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


def check_prompt_header(key: str, shape: tuple[int, ...], dtype: np.dtype, source: str,
                        config: GenerationConfig | None = None) -> None:
    """Refuse a voice array by what its header says (dtype, rank, size), before it is read."""
    config = config or GenerationConfig()
    if not (dtype.kind in "iu" or dtype == np.bool_) or dtype.fields is not None:
        raise PresetError(f"{source}: {key} has dtype {dtype}", "voice arrays must hold integers")
    rows = getattr(config, _ROWS[key]) if _ROWS[key] else None
    if rows is None and len(shape) != 1:
        raise PresetError(f"{source}: {key} has shape {tuple(shape)}", f"{key} must be 1-D, (S,)")
    if rows is not None and (len(shape) != 2 or shape[0] != rows):
        raise PresetError(f"{source}: {key} has shape {tuple(shape)}", f"{key} must be ({rows}, T)")
    length, limit = shape[-1], MAX_PROMPT_TOKENS if rows is None else MAX_PROMPT_FRAMES
    if length > limit:
        unit = "tokens" if rows is None else "frames"
        raise PresetError(f"{source}: {key} holds {length} {unit}, more than the {limit} a voice may have",
                          "Bark conditions on the last few hundred; trim the voice")


def _read_npy(handle, key: str, source: str, config: GenerationConfig | None) -> np.ndarray:
    """One .npy array from an open binary stream, its header checked before its data is read."""
    from numpy.lib import format as npy

    version = npy.read_magic(handle)
    if version not in ((1, 0), (2, 0)):
        raise ValueError(f"unsupported .npy version {version}")
    try:
        read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, fortran, dtype = read(handle)
    except (SyntaxError, TypeError, KeyError, RecursionError, MemoryError, tokenize.TokenError) as exc:
        # numpy parses the header dictionary with Python's tokenizer: a mangled one raises these.
        raise ValueError(f"{key} has a broken .npy header ({type(exc).__name__})") from None
    check_prompt_header(key, shape, dtype, source, config)
    count = math.prod(shape)
    data = handle.read(count * dtype.itemsize)
    if len(data) != count * dtype.itemsize:
        raise ValueError(f"{key} is cut short")
    array = np.frombuffer(data, dtype=dtype, count=count)
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


def load_voice_file(path: str | os.PathLike) -> VoicePrompt:
    """Read and validate a voice `.npz`."""
    path = Path(path)
    if not path.is_file():
        raise PresetError(f"voice file {path} does not exist", "give the path of a .npz voice")
    # A .npz is a zip archive; anything else (a .npy, text, an empty file) would reach numpy's
    # other readers and fail with messages about pickles or arrays.
    if not zipfile.is_zipfile(path):
        raise PresetError(f"voice file {path} is not a .npz archive",
                          "give a .npz written by numpy.savez with semantic_prompt, coarse_prompt, fine_prompt")
    arrays = {}
    try:
        with zipfile.ZipFile(path) as archive:
            members = {name.removesuffix(".npy"): name for name in archive.namelist()}
            for key in PROMPT_KEYS:  # other members are never read
                if key in members:
                    with archive.open(members[key]) as handle:
                        arrays[key] = _read_npy(handle, key, str(path), None)
    except PresetError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError,
            RuntimeError, zlib.error, KeyError, SyntaxError, TypeError) as exc:
        # Corrupt archives raise many types: bad headers (ValueError, SyntaxError), broken
        # compression (zlib.error), unsupported or encrypted members (NotImplementedError, RuntimeError).
        raise PresetError(
            f"cannot read voice file {path}: {exc}", "give a .npz written by numpy.savez"
        ) from None
    return validate_voice(arrays, source=str(path))


def load_npy_voice(files: Mapping[str, Path], name: str) -> VoicePrompt:
    """A voice kept as one .npy file per array (as the Hub's Bark repos keep presets), each
    checked from its header before its data is read."""
    arrays = {}
    for key, path in files.items():
        try:
            with open(path, "rb") as handle:
                arrays[key] = _read_npy(handle, key, f"voice {name}", None)
        except PresetError:
            raise
        except (OSError, ValueError, EOFError, SyntaxError, TypeError) as exc:
            raise PresetError(f"cannot read voice file {path}: {exc}", "re-download the model") from None
    return validate_voice(arrays, source=f"voice {name}")


def save_voice(voice: VoicePrompt, path: str | os.PathLike) -> Path:
    """Write a voice `.npz` atomically (temporary file beside the target, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:  # a file object: np.savez would append .npz to a name
            np.savez(handle, **voice.as_dict())

    from .audio import replace_atomically  # audio loads soundfile: only when a voice is written

    replace_atomically(path, write)
    return path
