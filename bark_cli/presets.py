"""Where voices come from: Suno's catalog, the user's own voices, and one resolver for `--voice`.

A `--voice` resolves in this order: an existing `.npz` path, a voice of the user's own (kept in
`user_voices_dir()`, `BARK_VOICES_DIR` overrides), then a preset named in the model repo's
speaker_embeddings_path.json (Suno's library, `suno_catalog()`), fetched into the Hugging Face
cache on first use. The voice itself, its checks and its files are voice.py's.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from . import hub
from .catalog import SUNO_LANGUAGES, is_suno_name, suno_catalog
from .errors import OutputError, PresetError
from .voice import PROMPT_KEYS, VoicePrompt, load_npy_voice, load_voice_file, save_voice


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


@dataclass(frozen=True)
class FoundVoice:
    """A resolved `--voice`: the prompt, where it came from ("file", "user" or "suno"), its files."""

    prompt: VoicePrompt
    source: str
    files: tuple[Path, ...]


def find_voice(spec: str, model: str | os.PathLike | None = None, revision: str | None = None, *,
               folder: str | os.PathLike | None = None, fetch: bool = True) -> FoundVoice | None:
    """Resolve `--voice`: a `.npz` path, else a user voice, else a preset of `model` (a Hub id or
    a model folder; `folder`: the model's files already on disk, when its caller has them).

    A preset is looked up in the model's voice map and its arrays read from the model folder,
    else fetched from the model's Hub repo into the cache (only the map and the preset's files,
    never the weights). A Hub repo's map holds the catalog's names, so any other name is refused
    before anything is fetched. With `fetch` off nothing is downloaded: a preset that would need
    the Hub is checked by name and None comes back (the model supplies it once loaded).
    Raises PresetError for an unknown name (with the closest known one) or a preset the model
    lacks, and the errors of hub.snapshot for a failed download.
    """
    path = Path(spec).expanduser()
    if spec.endswith(".npz") or path.is_file():
        return FoundVoice(load_voice_file(path), "file", (path,))
    user = user_voice_path(spec)
    if user is not None:
        return FoundVoice(load_voice_file(user), "user", (user,))
    on_hub = model is not None and not hub.is_local_model(model)
    if folder is None and model is not None and not on_hub:
        folder = model
    folder = Path(folder).expanduser() if folder is not None else None
    if folder is None and on_hub:
        if not is_suno_name(spec):
            raise _not_a_voice(spec, None, model)
        if not fetch:
            return None
        folder = hub.snapshot(str(model), revision, [hub.VOICE_MAP_FILE], what=f"the voice list of {model}")
    entry = read_voice_map(folder).get(spec)
    if entry is None:
        raise _not_a_voice(spec, folder, model)
    rels = [entry[key] for key in PROMPT_KEYS]
    missing = [rel for rel in rels if not (folder / rel).is_file()]
    if missing and not on_hub:
        raise PresetError(f"voice file {missing[0]} is missing from the model folder", "re-download the model")
    if missing and not fetch:
        return None
    if missing:
        folder = hub.snapshot(str(model), revision, rels, what=f"voice file {rels[0]}")
    files = dict(zip(PROMPT_KEYS, (folder / rel for rel in rels)))
    return FoundVoice(load_npy_voice(files, spec), "suno", tuple(files.values()))


def read_voice_map(model_folder: Path | None) -> dict[str, dict[str, str]]:
    """The model's preset map (name -> the three .npy paths), as transformers' BarkProcessor reads it."""
    if model_folder is None or not (Path(model_folder) / hub.VOICE_MAP_FILE).is_file():
        return {}
    try:
        data = json.loads((Path(model_folder) / hub.VOICE_MAP_FILE).read_text())
    except ValueError as exc:
        raise PresetError(f"cannot read {hub.VOICE_MAP_FILE}: {exc}", "re-download the model") from None
    return {k: v for k, v in data.items() if isinstance(v, dict)}


def _not_a_voice(name: str, model_folder: Path | None, model: str | os.PathLike | None) -> PresetError:
    """The error for a name the model has no preset for: a catalog name the model lacks says so
    (suggesting that very name back would not help); anything else is unknown, with the closest
    known name."""
    if is_suno_name(name):
        return PresetError(f"model {model or model_folder} has no files for Suno preset {name!r}",
                           "use --model suno/bark-small, whose Hub repo has every Suno preset, or import "
                           "the voice's .npz with `bark presets import`")
    known = [e.name for e in suno_catalog()] + list(read_voice_map(model_folder))
    known += [n for n, _ in list_user_voices()]
    return PresetError(f"unknown voice {name!r}", _suggest(name, known, "or give a .npz path"))


# --- listing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VoiceEntry:
    """One row of `bark presets list`."""

    name: str
    language: str | None  # None for user voices
    source: str  # "suno" or "user"
    on_disk: bool  # the arrays are on this machine (no download needed)
    path: Path | None = None  # a user voice's file


def default_voice_files(name: str) -> dict[str, str]:
    """Where the Hub's Bark repos keep a preset's arrays (used when the map is not at hand)."""
    return {key: f"speaker_embeddings/{name}_{key}.npy" for key in PROMPT_KEYS}


def suno_on_disk(model: str | os.PathLike, revision: str | None = None) -> dict[str, bool]:
    """Which Suno presets have all three arrays on disk for `model` (a folder or a Hub id):
    in the folder, or in the Hugging Face cache. Never touches the network."""
    if hub.is_local_model(model):
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

        map_file = cached(hub.VOICE_MAP_FILE)
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
