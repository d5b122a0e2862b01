"""`bark presets clone`: a voice of your own from a recording."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import DEFAULT_MODEL, JsonOpt, ModelOpt, OverwriteOpt, QuietOpt, RevisionOpt, in_range
from .output import Output, examples

# The defaults, written out here too so that `--help` loads nothing heavy (cloning imports numpy).
DEFAULT_HUBERT = "facebook/hubert-base-ls960"
DEFAULT_QUANTIZER = "GitMylo/bark-voice-cloning:quantifier_hubert_base_ls960_14.pth"

CLONE_EXAMPLES = examples(
    "bark presets clone me.wav --name me && bark say \"Hello, it's me.\" --voice me -o hi.wav",
    "bark presets clone interview.mp3 --name guest --start 62 --end 74",
    "bark presets clone take2.flac --name me --overwrite --json",
)


def presets_clone(
    recording: Annotated[Path, typer.Argument(
        help="WAV, FLAC, OGG or MP3: 4-15 s of one person speaking, no music, ending at a sentence end.",
        dir_okay=False, show_default=False)],
    name: Annotated[str, typer.Option("--name", "-n", help="The name to use with --voice.", show_default=False)],
    start: Annotated[float | None, typer.Option(
        help="Start this many seconds into the recording.", show_default=False, metavar="SECONDS",
        callback=in_range(0.0))] = None,
    end: Annotated[float | None, typer.Option(
        help="Stop this many seconds into the recording.", show_default=False, metavar="SECONDS",
        callback=in_range(0.0))] = None,
    model: ModelOpt = DEFAULT_MODEL,
    revision: RevisionOpt = None,
    hubert: Annotated[str, typer.Option(
        metavar="ID|DIR", help=f"HuBERT model, Hub id or folder (default {DEFAULT_HUBERT}).",
        show_default=False)] = DEFAULT_HUBERT,
    quantizer: Annotated[str, typer.Option(
        metavar="REPO:FILE|PATH", show_default=False,
        help=f"Quantizer from HuBERT features to Bark's tokens (default {DEFAULT_QUANTIZER}, English; "
             "other languages' quantizers work the same way).")] = DEFAULT_QUANTIZER,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Make a voice from a recording and keep it in your voices folder ($BARK_VOICES_DIR overrides it).

    Silence at both ends is trimmed; of a recording longer than 15 s the last 15 s are kept, since
    Bark carries on from the end of its prompt. Clean, single-speaker speech of 4-15 s that ends at
    a sentence end clones best; try a few takes and keep the one that sounds right.
    """
    from .. import cloning
    from ..recording import read_recording

    out = Output(quiet=quiet, as_json=as_json)
    if start is not None and end is not None and end <= start:
        from ..errors import InputError

        raise InputError(f"--end {end:g} is not after --start {start:g}", "give --end after --start")
    target = cloning.voice_target(name, overwrite)  # before any work: a clash costs nothing
    samples, rate = read_recording(recording, start, end)
    mono = cloning.prepare(samples, rate)  # a silent or too short recording fails before the models load
    with out.status("loading the cloning models") as update:
        cloner = cloning.load_cloner(model, revision, hubert, quantizer, progress=update)
        update("cloning")
        voice = cloner.clone_prepared(mono, rate)
    path = cloning.store_voice(voice, target)
    frames = int(voice.fine_prompt.shape[1])
    seconds = round(frames / cloner.codec.config.frame_rate, 2)
    if as_json:
        out.data({"name": name, "path": str(path), "seconds": seconds,
                  "semantic_tokens": int(voice.semantic_prompt.shape[0]), "frames": frames})
        return
    out.result(f"cloned voice {name} ({seconds:.1f} s): {path}")


def register(app: typer.Typer) -> None:
    app.command("clone", epilog=CLONE_EXAMPLES)(presets_clone)
