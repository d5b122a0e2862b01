"""`bark presets`: Suno's voice library and the user's own voices."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from .. import catalog, presets
from ..config import GenerationConfig
from .options import DEFAULT_MODEL, JsonOpt, ModelOpt, OverwriteOpt, QuietOpt, RevisionOpt
from .output import Output, examples, table

presets_app = typer.Typer(help="Voices: Suno's library and your own.", no_args_is_help=True,
                          epilog="Example: bark presets list --language de")

Language = Enum("Language", {code: code for code in catalog.SUNO_LANGUAGES}, type=str)


@presets_app.command("list", epilog=examples(
    "bark presets list", "bark presets list --language de", "bark presets list --json | jq -r '.voices[].name'"))
def presets_list(
    language: Annotated[Language | None, typer.Option(
        "--language", "-l", case_sensitive=False, help="Only Suno presets of this language (any case).",
        show_default=False)] = None,
    model: ModelOpt = DEFAULT_MODEL,
    revision: RevisionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List Suno's voice library and your own voices.

    ON DISK tells whether a voice's arrays are already on this machine (for a Suno preset: in
    --model's folder or in the Hugging Face cache), so that it needs no download.
    """
    out = Output(as_json=as_json)
    entries = presets.list_voices(model, revision, language.value if language else None)
    if as_json:
        out.data({
            "model": model,
            "voices_dir": str(presets.user_voices_dir()),
            "voices": [{"name": e.name, "language": e.language, "source": e.source, "on_disk": e.on_disk,
                        "path": str(e.path) if e.path else None} for e in entries],
        })
        return
    rows = [(e.name, e.language or "-", e.source, "yes" if e.on_disk else "no") for e in entries]
    out.result(table(("NAME", "LANGUAGE", "SOURCE", "ON DISK"), rows))


@presets_app.command("show", epilog=examples(
    "bark presets show v2/en_speaker_6", "bark presets show ./voice.npz --json"))
def presets_show(
    name: Annotated[str, typer.Argument(help="A Suno preset, a voice of yours, or a .npz path.")],
    model: ModelOpt = DEFAULT_MODEL,
    revision: RevisionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a voice: its source, prompt lengths and files (a Suno preset is fetched if needed)."""
    out = Output(as_json=as_json)
    found = presets.find_voice(name, model, revision)
    prompt = found.prompt
    frames = int(prompt.coarse_prompt.shape[1])
    seconds = frames / GenerationConfig().coarse_rate_hz
    info = {
        "name": name,
        "source": found.source,
        "language": next((e.language for e in catalog.suno_catalog() if e.name == name), None),
        "semantic_tokens": int(prompt.semantic_prompt.shape[0]),
        "frames": frames,
        "seconds": round(seconds, 2),
        "files": [str(p) for p in found.files],
    }
    if as_json:
        out.data(info)
        return
    rows = [("name", name), ("source", found.source), ("language", info["language"] or "-"),
            ("semantic", f"{info['semantic_tokens']} tokens"),
            ("coarse", f"{prompt.coarse_prompt.shape[0]} x {frames} frames ({seconds:.2f} s)"),
            ("fine", f"{prompt.fine_prompt.shape[0]} x {frames} frames")]
    rows += [("files" if i == 0 else "", str(p)) for i, p in enumerate(found.files)]
    out.result(table(None, rows))


@presets_app.command("add", epilog=examples(
    "bark say \"Hi.\" --save-voice me.npz -o hi.wav && bark presets add me.npz --name me",
    "bark say \"Hello again.\" --voice me -o again.wav"))
def presets_add(
    file: Annotated[Path, typer.Argument(help="A voice .npz: semantic_prompt, coarse_prompt, fine_prompt.",
                                         dir_okay=False)],
    name: Annotated[str | None, typer.Option(
        "--name", "-n", help="The name to use with --voice [default: the file's name].", show_default=False)] = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Check a voice file and copy it into your voices folder ($BARK_VOICES_DIR overrides it)."""
    path = presets.add_user_voice(file, name, overwrite)
    Output(quiet).result(f"added voice {path.stem}: {path}")


@presets_app.command("remove", epilog=examples("bark presets remove me"))
def presets_remove(
    name: Annotated[str, typer.Argument(help="One of your voices.")],
    quiet: QuietOpt = False,
) -> None:
    """Delete one of your voices."""
    path = presets.remove_user_voice(name)
    Output(quiet).result(f"removed voice {name}: {path}")


@presets_app.command("import", epilog=examples(
    "bark presets import ~/src/bark/bark/assets/prompts",
    "bark presets import my_voices/ --prefix mine && bark say \"Hi.\" --voice mine.narrator -o hi.wav"))
def presets_import(
    source: Annotated[Path, typer.Argument(help="A Suno-format voice .npz, or a folder of them (searched through).")],
    prefix: Annotated[str, typer.Option(
        "--prefix", "-p", help="Put before each name, with a dot: v2/en_speaker_6.npz becomes PREFIX.v2.en_speaker_6.")
    ] = presets.IMPORT_PREFIX,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Check Suno-format voices and copy them into your voices folder, keeping their folder
    structure in their names. Nothing is copied unless every file is a valid voice."""
    written = presets.import_voices(source, prefix, overwrite)
    out = Output(quiet)
    for name, path in written:
        out.result(f"imported voice {name}: {path}")


from . import clone  # noqa: E402  (its own file; registered into this group)

clone.register(presets_app)
