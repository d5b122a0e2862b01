"""`bark say`: speak a text into an audio file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .. import audio, checkpoint, presets
from ..config import GenerationConfig, SamplingOptions
from ..errors import InputError, OutputError
from ..text import DEFAULT_MAX_CHARS, load_tokenizer, plan_segments
from .models import load_model
from .options import (
    DEFAULT_MODEL, LONG, OUTPUT, BatchSizeOpt, DeviceOptions, JsonOpt, ModelOpt, OverwriteOpt, QuietOpt, RevisionOpt,
    SeedOpt, Subtype, VoiceMode, VoiceOpt, device_options, parse_batch_size, sampling_options,
)
from .output import Output, examples

SAY_EXAMPLES = examples(
    'bark say "Hello [laughter]" -o hello.wav',
    'bark say "Bonjour !" --voice v2/fr_speaker_1 --seed 7 -o bonjour.flac',
    'echo "Piped text." | bark say - -o - > piped.wav',
    "bark say -f story.txt --voice me --device cuda --json -o story.ogg",
)


@sampling_options
@device_options
def say(
    text: Annotated[str | None, typer.Argument(help="The text to speak; - reads stdin.", show_default=False)] = None,
    file: Annotated[Path | None, typer.Option(
        "--file", "-f", help="Read the text from FILE.", show_default=False, dir_okay=False)] = None,
    output: Annotated[str | None, typer.Option(
        "--output", "-o", help="Audio file (.wav, .flac or .ogg), or - for a WAV on stdout.",
        rich_help_panel=OUTPUT, show_default=False)] = None,
    model: ModelOpt = DEFAULT_MODEL,
    revision: RevisionOpt = None,
    voice: VoiceOpt = None,
    seed: SeedOpt = None,
    sampling: SamplingOptions = SamplingOptions(),
    no_split: Annotated[bool, typer.Option(
        "--no-split", help="Speak the text as one segment, cut at the 256-token window (with a warning).",
        rich_help_panel=LONG)] = False,
    max_segment_chars: Annotated[int, typer.Option(
        min=1, help="Longest segment, in letters (a CJK character counts 4): about 13 s of speech.",
        rich_help_panel=LONG)] = DEFAULT_MAX_CHARS,
    gap: Annotated[float, typer.Option(min=0, help="Seconds of silence between segments.",
                                       rich_help_panel=LONG)] = 0.25,
    voice_mode: Annotated[VoiceMode, typer.Option(
        help="fixed: every segment in --voice (or in the first segment's voice); chain: each segment in "
             "the voice of the one before.", rich_help_panel=LONG)] = VoiceMode.fixed,
    batch_size: BatchSizeOpt = "auto",
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the segments and their token counts; generate nothing.",
        rich_help_panel=LONG)] = False,
    save_voice: Annotated[Path | None, typer.Option(
        help="Also save this generation as a voice .npz, reusable with --voice.", show_default=False,
        dir_okay=False, rich_help_panel=OUTPUT)] = None,
    subtype: Annotated[Subtype | None, typer.Option(
        case_sensitive=False, help="Sample format of .wav/.flac (default PCM_16); FLOAT keeps float32 (.wav only).",
        show_default=False, rich_help_panel=OUTPUT)] = None,
    overwrite: OverwriteOpt = False,
    hardware: DeviceOptions = DeviceOptions(),
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Speak a text into an audio file.

    The text comes as an argument, from stdin (-) or from a file (-f). Text of any length is split
    at sentence ends into segments of about 13 s, spoken in one voice and joined with short silences.

    Square brackets mark sounds: \\[laughter], \\[sighs], \\[music], \\[gasps], \\[clears throat]; ♪ marks singing.
    """
    out = Output(quiet, as_json)
    batch = parse_batch_size(batch_size)
    words = read_text(text, file)
    if dry_run:
        return _dry_run(out, words, model, revision, max_segment_chars, no_split)
    if output is None:
        raise typer.BadParameter("give the audio file to write, or - for stdout", param_hint="--output")
    if output == audio.STDOUT and as_json:
        raise typer.BadParameter("--json and -o - both want stdout; write the audio to a file", param_hint="--json")
    if output == audio.STDOUT and sys.stdout.isatty():
        raise OutputError("stdout is a terminal, not a place for audio", "redirect it (> out.wav) or give -o FILE")
    audio.check_output(output, subtype.value if subtype else None, overwrite)
    if save_voice is not None:
        if save_voice.suffix.lower() != ".npz":
            raise InputError(f"--save-voice {save_voice} is not a .npz name", "end it in .npz")
        audio.check_destination(save_voice, overwrite)
    # A voice file or a voice of the user's is checked before the model loads; a preset name needs the model.
    local_voice = presets.find_local_voice(voice) if voice else None

    from .. import longform

    bark, load_seconds = load_model(out, model, revision, hardware)
    prompt = local_voice.prompt if local_voice else bark.resolve_voice(voice)
    with out.stages() as progress:
        speech = longform.speak(
            bark, words, voice=prompt, voice_mode=voice_mode.value, split=not no_split,
            max_segment_chars=max_segment_chars, gap=gap, batch_size=batch, seed=seed, sampling=sampling,
            progress=progress)
    for warning in speech.warnings:
        out.warning(warning)

    written = audio.write_audio(output, speech.audio, speech.sample_rate, subtype.value if subtype else None, overwrite)
    if save_voice is not None:
        _save_voice(speech.voice, save_voice)

    seconds = speech.seconds
    if as_json:
        out.data({
            "output": written,
            "audio_seconds": round(speech.duration, 3),
            "sample_rate": speech.sample_rate,
            "seed": speech.seed,
            "stage_seconds": {k: round(v, 3) for k, v in seconds.items()},
            "load_seconds": round(load_seconds, 3),
            "device": str(bark.device),
            "dtype": str(bark.dtype).removeprefix("torch."),
            "model": bark.model_id,
            "voice": voice,
            "saved_voice": str(save_voice) if save_voice else None,
            "segments": len(speech.segments),
            "semantic_tokens": sum(int(p.semantic_tokens.shape[0]) for p in speech.parts),
            "warnings": speech.warnings,
        })
    else:
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())
        out.note(f"wrote {written}: {speech.duration:.2f} s of audio in {len(speech.segments)} segment(s), "
                 f"seed {speech.seed} ({stages})")


def _dry_run(out: Output, words: str, model: str, revision: str | None, max_chars: int, no_split: bool) -> None:
    """Print the segments a text would be spoken in, with token counts; load only the tokenizer."""
    tokenizer = load_tokenizer(checkpoint.resolve_model(model, revision=revision))
    limit = GenerationConfig().max_input_semantic_length
    plan = [(words, tokenizer.count_tokens(words))] if no_split else plan_segments(tokenizer, words, max_chars, limit)
    if out.as_json:
        out.data({"segments": [{"text": segment, "tokens": count} for segment, count in plan]})
        return
    for number, (segment, count) in enumerate(plan, start=1):
        flag = "  (over the window: will be cut)" if count > limit else ""
        out.result(f"{number:>3}  {count:>3} tokens{flag}  {segment}")


def _save_voice(voice: presets.VoicePrompt, path: Path) -> None:
    try:
        presets.save_voice(voice, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}", "pick a folder you can write to") from None


def read_text(text: str | None, file: Path | None) -> str:
    """The text to speak, from the argument, stdin (`-`) or --file; never empty."""
    if text is not None and file is not None:
        raise typer.BadParameter("give the text or --file, not both", param_hint="TEXT")
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{file} is not UTF-8 text", "save it as UTF-8") from None
        except OSError as exc:
            raise InputError(f"cannot read {file}: {exc.strerror or exc}", "check the path") from None
    elif text == "-":
        text = sys.stdin.read()
    elif text is None:
        raise typer.BadParameter("no text given: pass it as an argument, - for stdin, or -f FILE", param_hint="TEXT")
    if not text.strip():
        raise InputError("the text is empty", "give some text to speak")
    return text
