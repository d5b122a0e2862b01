"""Voice prompts (Bark's "history prompts"): validate, load and save them.

A voice is three integer arrays (bark-spec §10.1): `semantic_prompt` (S,) with semantic ids,
`coarse_prompt` (2, T) and `fine_prompt` (8, T) with EnCodec codes. Real presets store them as
int64, int32 or uint16; we always hand int64 on.

A `--voice` resolves in this order: an existing `.npz` path, a voice of the user's own (kept in
`user_voices_dir()`, `BARK_VOICES_DIR` overrides), then a preset named in the model repo's
speaker_embeddings_path.json (Suno's library, `suno_catalog()`), fetched into the Hugging Face
cache on first use.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import sys
import tokenize
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .audio import replace_atomically
from .checkpoint import VOICE_MAP_FILE, hub_snapshot, is_local_model
from .config import GenerationConfig
from .errors import OutputError, PresetError

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


def save_voice(voice: VoicePrompt, path: str | os.PathLike) -> Path:
    """Write a voice `.npz` atomically (temporary file beside the target, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:  # a file object: np.savez would append .npz to a name
            np.savez(handle, **voice.as_dict())

    replace_atomically(path, write)
    return path


# --- the Suno voice library -------------------------------------------------------------------

# Suno's library (bark-spec §10.2): `announcer`, and ten speakers per language in two
# generations, `{lang}_speaker_{n}` (v1) and `v2/{lang}_speaker_{n}`. presets/suno.json holds the
# same list as a file (catalog_json); a test keeps the two equal.
SUNO_LANGUAGES = {
    "en": "English", "de": "German", "es": "Spanish", "fr": "French", "hi": "Hindi",
    "it": "Italian", "ja": "Japanese", "ko": "Korean", "pl": "Polish", "pt": "Portuguese",
    "ru": "Russian", "tr": "Turkish", "zh": "Chinese",
}
SPEAKERS_PER_LANGUAGE = 10


@dataclass(frozen=True)
class CatalogEntry:
    """A Suno preset: its name (as speaker_embeddings_path.json keys it) and language code."""

    name: str
    language: str


def suno_catalog() -> list[CatalogEntry]:
    """The 261 Suno presets: announcer (English), then v2 and v1 speakers per language."""
    entries = [CatalogEntry("announcer", "en")]
    for prefix in ("v2/", ""):
        for lang in SUNO_LANGUAGES:
            entries += [CatalogEntry(f"{prefix}{lang}_speaker_{n}", lang) for n in range(SPEAKERS_PER_LANGUAGE)]
    return entries


def catalog_json() -> str:
    """The catalog as presets/suno.json stores it."""
    rows = ",\n".join(f'    {{"name": "{e.name}", "language": "{e.language}"}}' for e in suno_catalog())
    return (
        "{\n"
        '  "source": "https://github.com/suno-ai/bark/tree/main/bark/assets/prompts (MIT, Suno, Inc)",\n'
        f'  "languages": {json.dumps(SUNO_LANGUAGES)},\n'
        f'  "presets": [\n{rows}\n  ]\n'
        "}\n"
    )


def is_suno_name(name: str) -> bool:
    return name in {e.name for e in suno_catalog()}


# --- the user's own voices --------------------------------------------------------------------

VOICES_DIR_ENV = "BARK_VOICES_DIR"
_USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def user_voices_dir() -> Path:
    """Where `bark presets add` keeps voices: $BARK_VOICES_DIR, else the platform's user data
    folder (~/.local/share/bark-cli/voices on Linux, ~/Library/Application Support/bark-cli/voices
    on macOS, %LOCALAPPDATA%\\bark-cli\\voices on Windows)."""
    if os.environ.get(VOICES_DIR_ENV):
        return Path(os.environ[VOICES_DIR_ENV]).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        xdg = os.environ.get("XDG_DATA_HOME", "")
        base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "bark-cli" / "voices"


def check_user_name(name: str) -> str:
    """A user voice name: letters, digits, `_.-`, no path parts, and not a Suno name."""
    if not _USER_NAME.fullmatch(name) or name.lower().endswith(".npz"):
        raise PresetError(
            f"{name!r} is not a usable voice name",
            "use letters, digits, '_', '.' or '-' (at most 64, no .npz ending)",
        )
    if is_suno_name(name):
        raise PresetError(f"{name} is a Suno preset name", "pick another name for your voice")
    return name


def user_voice_path(name: str) -> Path | None:
    """The file of a user voice, or None when there is no such voice."""
    if not _USER_NAME.fullmatch(name):
        return None
    path = user_voices_dir() / f"{name}.npz"
    return path if path.is_file() else None


def list_user_voices() -> list[tuple[str, Path]]:
    folder = user_voices_dir()
    if not folder.is_dir():
        return []
    return [(p.stem, p) for p in sorted(folder.glob("*.npz")) if _USER_NAME.fullmatch(p.stem)]


def add_user_voice(file: str | os.PathLike, name: str | None = None, overwrite: bool = False) -> Path:
    """Validate a voice `.npz` and store it under `name` (default: the file's stem)."""
    voice = load_voice_file(file)
    name = check_user_name(name if name is not None else Path(file).stem)
    target = user_voices_dir() / f"{name}.npz"
    if target.exists() and not overwrite:
        raise PresetError(f"you already have a voice named {name}",
                          "pass --overwrite to replace it, or remove it first")
    try:
        return save_voice(voice, target)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}",
                          f"check {VOICES_DIR_ENV} or the folder's permissions") from None


def remove_user_voice(name: str) -> Path:
    path = user_voice_path(name)
    if path is None:
        if is_suno_name(name):
            raise PresetError(f"{name} is a Suno preset", "only your own voices (`bark presets list`) can be removed")
        raise PresetError(f"you have no voice named {name!r}", _suggest(name, [n for n, _ in list_user_voices()]))
    try:
        path.unlink()
    except OSError as exc:
        raise OutputError(f"cannot remove {path}: {exc.strerror or exc}", "check the folder's permissions") from None
    return path


# --- finding a voice by name ------------------------------------------------------------------

def read_voice_map(model_folder: Path | None) -> dict[str, dict[str, str]]:
    """The model's preset map (name -> the three .npy paths), as transformers' BarkProcessor reads it."""
    if model_folder is None or not (Path(model_folder) / VOICE_MAP_FILE).is_file():
        return {}
    try:
        data = json.loads((Path(model_folder) / VOICE_MAP_FILE).read_text())
    except ValueError as exc:
        raise PresetError(f"cannot read {VOICE_MAP_FILE}: {exc}", "re-download the model") from None
    return {k: v for k, v in data.items() if isinstance(v, dict)}


def default_voice_files(name: str) -> dict[str, str]:
    """Where the Hub's Bark repos keep a preset's arrays (used when the map is not at hand)."""
    return {key: f"speaker_embeddings/{name}_{key}.npy" for key in PROMPT_KEYS}


def _fetch_voice_files(rels: list[str], model_folder: Path | None, model_id: str | None,
                       revision: str | None) -> list[Path]:
    """A preset's .npy files: beside the model when present, else from the model's Hub repo
    (cached). Download failures raise checkpoint.hub_snapshot's errors."""
    if model_folder is not None and all((Path(model_folder) / rel).is_file() for rel in rels):
        return [Path(model_folder) / rel for rel in rels]
    if not model_id or is_local_model(model_id):
        missing = next(rel for rel in rels if model_folder is None or not (Path(model_folder) / rel).is_file())
        raise PresetError(f"voice file {missing} is missing from the model folder", "re-download the model")
    folder = hub_snapshot(str(model_id), revision, rels, what=f"voice file {rels[0]}")
    return [folder / rel for rel in rels]


def voice_map_folder(model: str | os.PathLike, revision: str | None = None) -> Path:
    """The folder holding a model's speaker_embeddings_path.json, without fetching its weights:
    a local model folder itself, or the Hub snapshot folder (the map alone is fetched if needed)."""
    if is_local_model(model):
        return Path(model).expanduser()
    return hub_snapshot(str(model), revision, [VOICE_MAP_FILE], what=f"the voice list of {model}")


def preset_files(name: str, model_folder: Path | None, model_id: str | None = None,
                 revision: str | None = None) -> dict[str, Path]:
    """The three .npy files of a named preset, fetched into the Hub cache on first use."""
    entry = read_voice_map(model_folder).get(name)
    if entry is None:
        raise _not_a_voice(name, model_folder, model_id)
    return dict(zip(PROMPT_KEYS, _fetch_voice_files([entry[key] for key in PROMPT_KEYS], model_folder,
                                                    model_id, revision)))


def _read_preset(name: str, files: Mapping[str, Path]) -> VoicePrompt:
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


@dataclass(frozen=True)
class FoundVoice:
    """A resolved `--voice`: the prompt, where it came from ("file", "user" or "suno"), its files."""

    prompt: VoicePrompt
    source: str
    files: tuple[Path, ...]


def _not_a_voice(name: str, model_folder: Path | None, model_id: str | None) -> PresetError:
    """The error for a name the model has no preset for: a catalog name the model lacks says so
    (suggesting that very name back would not help); anything else is unknown, with the closest
    known name."""
    if is_suno_name(name):
        model = model_id or model_folder
        return PresetError(f"model {model} has no files for Suno preset {name!r}",
                           "use --model suno/bark-small, whose Hub repo has every Suno preset, or import "
                           "the voice's .npz with `bark presets import`")
    known = [e.name for e in suno_catalog()] + list(read_voice_map(model_folder))
    known += [n for n, _ in list_user_voices()]
    return PresetError(f"unknown voice {name!r}", _suggest(name, known, "or give a .npz path"))


def check_voice(spec: str, model: str | os.PathLike, revision: str | None = None) -> FoundVoice | None:
    """What `--voice` can be told before the model loads: a `.npz` or user voice comes back
    whole; a preset name is checked against the Suno catalog, or a local model folder's own
    voice map, and refused at once when no source knows it. None: a preset the model supplies
    once loaded. A Hub model's map holds the catalog's names, so its presets need no download
    here."""
    found = find_local_voice(spec)
    if found is not None:
        return found
    if is_local_model(model):
        folder = Path(model).expanduser()
        if spec not in read_voice_map(folder):
            raise _not_a_voice(spec, folder, str(model))
    elif not is_suno_name(spec):
        raise _not_a_voice(spec, None, str(model))
    return None


def find_local_voice(spec: str) -> FoundVoice | None:
    """A voice that needs no model: an existing `.npz` path, then a user voice name. None when
    `spec` can only be a preset name."""
    path = Path(spec).expanduser()
    if spec.endswith(".npz") or path.is_file():
        return FoundVoice(load_voice_file(path), "file", (path,))
    user = user_voice_path(spec)
    if user is not None:
        return FoundVoice(load_voice_file(user), "user", (user,))
    return None


def find_voice(spec: str, model_folder: Path | None = None, model_id: str | None = None,
               revision: str | None = None) -> FoundVoice:
    """Resolve `--voice`: a `.npz` path, else a user voice, else a preset of the model."""
    found = find_local_voice(spec)
    if found is not None:
        return found
    files = preset_files(spec, model_folder, model_id, revision)
    return FoundVoice(_read_preset(spec, files), "suno", tuple(files.values()))


def find_model_voice(spec: str, model: str | os.PathLike, revision: str | None = None) -> FoundVoice:
    """`find_voice` for a model named by Hub id or folder, without its weights: only the voice
    map and the preset's own files are fetched (for `bark presets show`)."""
    found = find_local_voice(spec)
    if found is not None:
        return found
    if not is_suno_name(spec) and not is_local_model(model):
        preset_files(spec, None)  # a Hub repo's map holds Suno's names only: unknown, with suggestions
    return find_voice(spec, voice_map_folder(model, revision), str(model), revision)


def resolve_voice(spec: str, model_folder: Path | None = None, model_id: str | None = None,
                  revision: str | None = None) -> VoicePrompt:
    """A voice from a `.npz` path, a user voice name or a preset name (in that order)."""
    return find_voice(spec, model_folder, model_id, revision).prompt


# --- listing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VoiceEntry:
    """One row of `bark presets list`."""

    name: str
    language: str | None  # None for user voices
    source: str  # "suno" or "user"
    on_disk: bool  # the arrays are on this machine (no download needed)
    path: Path | None = None  # a user voice's file


def suno_on_disk(model: str | os.PathLike, revision: str | None = None) -> dict[str, bool]:
    """Which Suno presets have all three arrays on disk for `model` (a folder or a Hub id):
    in the folder, or in the Hugging Face cache. Never touches the network."""
    if is_local_model(model):
        folder = Path(model).expanduser()
        voice_map = read_voice_map(folder)

        def exists(rel: str) -> bool:
            return (folder / rel).is_file()
    else:
        from huggingface_hub import try_to_load_from_cache

        def cached(rel: str) -> str | None:
            try:
                hit = try_to_load_from_cache(str(model), rel, revision=revision)
            except ValueError:  # not a valid repo id (HFValidationError)
                return None
            return hit if isinstance(hit, str) else None

        def exists(rel: str) -> bool:
            return cached(rel) is not None

        map_file = cached(VOICE_MAP_FILE)
        voice_map = read_voice_map(Path(map_file).parent) if map_file else {}
    return {
        e.name: all(exists(rel) for rel in (voice_map.get(e.name) or default_voice_files(e.name)).values())
        for e in suno_catalog()
    }


def list_voices(model: str | os.PathLike, revision: str | None = None, language: str | None = None) -> list[VoiceEntry]:
    """Suno's library (with whether each is on disk for `model`), then the user's voices.
    With `language`, only Suno presets of that language."""
    if language is not None and language not in SUNO_LANGUAGES:
        raise PresetError(f"no voices for language {language!r}", f"use one of {', '.join(SUNO_LANGUAGES)}")
    on_disk = suno_on_disk(model, revision)
    entries = [VoiceEntry(e.name, e.language, "suno", on_disk[e.name]) for e in suno_catalog()
               if language is None or e.language == language]
    if language is None:
        entries += [VoiceEntry(name, None, "user", True, path) for name, path in list_user_voices()]
    return entries


def _suggest(name: str, known: list[str], tail: str = "") -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    hint = f"did you mean {close[0]}? " if close else ""
    return hint + "see `bark presets list`" + (f", {tail}" if tail else "")


# --- importing Suno-format voices -------------------------------------------------------------

IMPORT_PREFIX = "suno"


def import_voices(source: str | os.PathLike, prefix: str = IMPORT_PREFIX,
                  overwrite: bool = False) -> list[tuple[str, Path]]:
    """Copy Suno-format voices into the user's voices folder: one `.npz`, or every `.npz` under a
    folder (Suno's bark/assets/prompts, a model folder's speaker_embeddings/). Each name is the
    file's path under the folder, parts joined by dots after `prefix`: v2/en_speaker_6.npz becomes
    `suno.v2.en_speaker_6`. Suno's preset names hold no dot, so an import never shadows one.

    Every file is read and validated before anything is written; returns (name, path) pairs.
    """
    source = Path(source).expanduser()
    if source.is_dir():
        files = sorted(source.rglob("*.npz"))
        if not files:
            raise PresetError(f"{source} holds no .npz voices", "give a voice .npz or a folder of them")
        parts = [f.relative_to(source).with_suffix("").parts for f in files]
    elif source.is_file():
        files, parts = [source], [(source.stem,)]
    else:
        raise PresetError(f"{source} does not exist", "give a voice .npz or a folder of them")
    if not _USER_NAME.fullmatch(prefix):
        raise PresetError(f"{prefix!r} is not a usable prefix", "use letters, digits, '_', '.' or '-'")
    voices: dict[str, tuple[Path, VoicePrompt]] = {}
    for file, pieces in zip(files, parts):
        name = ".".join((prefix, *pieces))
        if not _USER_NAME.fullmatch(name):
            raise PresetError(f"{file} would be named {name!r}, not a usable voice name",
                              "rename the file: letters, digits, '_', '.' or '-', at most 64 in all")
        if name in voices:
            raise PresetError(f"{file} and {voices[name][0]} would both be named {name}", "rename one of them")
        voices[name] = (file, load_voice_file(file))
    folder = user_voices_dir()
    taken = [name for name in voices if (folder / f"{name}.npz").exists()]
    if taken and not overwrite:
        raise PresetError(f"you already have a voice named {taken[0]} ({len(taken)} of {len(voices)} taken)",
                          "pass --overwrite to replace them, or pick another --prefix")
    written = []
    for name, (_, voice) in voices.items():
        try:
            written.append((name, save_voice(voice, folder / f"{name}.npz")))
        except OSError as exc:
            raise OutputError(f"cannot write {folder / name}.npz: {exc.strerror or exc}",
                              f"check {VOICES_DIR_ENV} or the folder's permissions") from None
    return written
