"""`bark say`: speak a text into an audio file, to stdout as it is made, or out of the speakers."""

from __future__ import annotations

import contextlib
import os
import select
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from .. import audio, hub, playback, presets, voice as voices
from ..config import GenerationConfig, SamplingOptions
from ..errors import InputError, OutputError
from ..text import DEFAULT_MAX_CHARS, load_tokenizer, plan_segments
from .models import load_model
from .options import (
    DEFAULT_MODEL, LONG, BatchSizeOpt, DeviceOptions, GapOpt, JsonOpt, ModelOpt, OverwriteOpt, QuietOpt, RevisionOpt,
    SeedOpt, Subtype, VoiceMode, VoiceOpt, device_options, in_range, parse_batch_size, sampling_options,
)
from .output import Output, examples

# The most text one run reads (-f FILE or stdin), in bytes: about 15 hours of speech. Reading
# stops one byte past it, so `-f /dev/zero` fails at once instead of filling memory.
MAX_TEXT_BYTES = 1_000_000
# The longest --max-segment-chars: a segment far past the 256-token window is cut anyway.
MAX_SEGMENT_CHARS = 10_000

SAY_EXAMPLES = examples(
    'bark say "Hello [laughter]" -o hello.wav',
    'bark say "Bonjour !" --voice v2/fr_speaker_1 --seed 7 -o bonjour.flac',
    'echo "Piped text." | bark say - -o - > piped.wav',
    'bark say -f story.txt --raw | aplay -q -r 24000 -f S16_LE -',
    "bark say -f story.txt --voice me --device cuda --json -o story.ogg",
)


class RawFormat(str, Enum):
    s16le = "s16le"
    f32le = "f32le"


@sampling_options
@device_options
def say(
    text: Annotated[str | None, typer.Argument(
        metavar="TEXT", help="The text to speak; - reads stdin.", show_default=False)] = None,
    output: Annotated[str | None, typer.Option(
        "--output", "-o", metavar="FILE", help="File (.wav .flac .ogg .mp3); - is stdout (WAV).",
        show_default=False)] = None,
    voice: VoiceOpt = None,
    model: ModelOpt = DEFAULT_MODEL,
    seed: SeedOpt = None,
    file: Annotated[Path | None, typer.Option(
        "--file", "-f", metavar="FILE", help="Read the text from FILE (UTF-8, up to 1 MB).", show_default=False,
        dir_okay=False)] = None,
    subtype: Annotated[Subtype | None, typer.Option(
        case_sensitive=False, metavar="PCM_16|PCM_24|FLOAT", help="Samples of .wav/.flac (default PCM_16).",
        show_default=False)] = None,
    play: Annotated[bool, typer.Option(
        "--play", help="Also play it (the default with no -o on a terminal).")] = False,
    raw: Annotated[bool, typer.Option(
        "--raw", help="Headerless samples on stdout, as they are made.")] = False,
    raw_format: Annotated[RawFormat, typer.Option(
        case_sensitive=False, metavar="s16le|f32le", help="Samples of --raw (default s16le).",
        show_default=False)] = RawFormat.s16le,
    save_voice: Annotated[Path | None, typer.Option(
        metavar="NPZ", help="Also save the voice used, for --voice.", show_default=False, dir_okay=False)] = None,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    revision: RevisionOpt = None,
    sampling: SamplingOptions = SamplingOptions(),
    no_split: Annotated[bool, typer.Option(
        "--no-split", help="One segment, cut at the 256-token window.", rich_help_panel=LONG)] = False,
    max_segment_chars: Annotated[int, typer.Option(
        metavar="N", show_default=False, callback=in_range(1, MAX_SEGMENT_CHARS),
        help=f"Longest segment in letters (default {DEFAULT_MAX_CHARS}: ~13 s).",
        rich_help_panel=LONG)] = DEFAULT_MAX_CHARS,
    gap: GapOpt = 0.25,
    voice_mode: Annotated[VoiceMode, typer.Option(
        metavar="fixed|chain", show_default=False, help="fixed (default): one voice; chain: each the last's.",
        rich_help_panel=LONG)] = VoiceMode.fixed,
    batch_size: BatchSizeOpt = "auto",
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the segments and token counts; generate nothing.", rich_help_panel=LONG)] = False,
    hardware: DeviceOptions = DeviceOptions(),
) -> None:
    """Speak a text into an audio file.

    Long texts are split at sentence ends into ~13 s segments in one voice. \\[laughter], \\[sighs],
    \\[music], \\[gasps] and \\[clears throat] are sounds; ♪ marks singing.
    """
    out = Output(quiet, as_json)
    batch = parse_batch_size(batch_size)
    words = read_text(text, file)
    if dry_run:
        return _dry_run(out, words, model, revision, max_segment_chars, no_split)
    subtype_name = subtype.value if subtype else None
    play, stream_subtype = _check_outputs(output, subtype_name, raw, raw_format, play, as_json, overwrite, save_voice)
    player = playback.find_player() if play else None
    # Every voice is checked before the model loads: a mistyped name costs no load.
    local_voice = presets.find_voice(voice, model, revision, fetch=False) if voice else None

    bark, load_seconds = load_model(out, model, revision, hardware)
    prompt = local_voice.prompt if local_voice else bark.resolve_voice(voice)
    plan = dict(voice=prompt, voice_mode=voice_mode.value, split=not no_split, max_segment_chars=max_segment_chars,
                batch_size=batch, seed=seed, sampling=sampling)
    speech, written = _speak_out(out, bark, words, plan, output, subtype_name, overwrite, player, gap,
                                 stream_subtype, header=not raw)
    if save_voice is not None:
        _save_voice(speech.voice, save_voice)
    _report(out, bark, speech, written, player, voice, save_voice, load_seconds)


def _check_outputs(output: str | None, subtype: str | None, raw: bool, raw_format: RawFormat, play: bool,
                   as_json: bool, overwrite: bool, save_voice: Path | None) -> tuple[bool, str | None]:
    """Everything about where the audio goes that can be known before loading: bad combinations,
    a terminal as stdout, the file's format, folder and name. Returns (play, the subtype of the
    audio streamed to stdout, None when nothing is)."""
    if raw and output not in (None, audio.STDOUT):
        raise typer.BadParameter("--raw writes to stdout; leave -o out", param_hint="--raw")
    if raw and subtype is not None:
        raise typer.BadParameter("--raw takes --raw-format, not --subtype", param_hint="--subtype")
    to_stdout = raw or output == audio.STDOUT
    if output is None and not raw and not play:
        if not sys.stdout.isatty():
            raise typer.BadParameter("give the audio file to write, - for stdout, or --play to hear it",
                                     param_hint="--output")
        play = True  # on a terminal, with nowhere to write: say it out loud
    if to_stdout and as_json:
        raise typer.BadParameter("--json and -o - both want stdout; write the audio to a file", param_hint="--json")
    if to_stdout and sys.stdout.isatty():
        raise OutputError("stdout is a terminal, not a place for audio", "redirect it (> out.wav) or give -o FILE")
    stream_subtype = None
    if raw:
        stream_subtype = audio.RAW_FORMATS[raw_format.value]
    elif output == audio.STDOUT:
        stream_subtype = subtype or "PCM_16"
    elif output is not None:
        audio.check_output(output, subtype, overwrite)
    if save_voice is not None:
        if save_voice.suffix.lower() != ".npz":
            raise InputError(f"--save-voice {save_voice} is not a .npz name", "end it in .npz")
        audio.check_destination(save_voice, overwrite)
    return play, stream_subtype


def _speak_out(out: Output, bark, words: str, plan: dict, output: str | None, subtype: str | None, overwrite: bool,
               player, gap: float, stream_subtype: str | None, header: bool):
    """Speak `words` (longform.stream with `plan`), each segment to the player and stdout as soon
    as it is made, the whole to the file at the end. Returns (Speech, what was written or None)."""
    from .. import longform

    with contextlib.ExitStack() as sinks:
        # Entered before stdout, so left after it: stdout is complete while the player still plays.
        outlets = []
        if player is not None:
            outlets.append(sinks.enter_context(playback.Playback(player, bark.sample_rate, gap)))
        if stream_subtype is not None:
            sys.stdout.flush()
            outlets.append(sinks.enter_context(audio.SegmentStream(
                sys.stdout.buffer, bark.sample_rate, stream_subtype, header=header, gap_seconds=gap)))
        made = []
        with out.stages() as progress:
            for part in longform.stream(bark, words, progress=progress, **plan):
                made.append(part)
                for outlet in outlets:
                    outlet.put(part.audio)
        speech = longform.gather(made, bark.sample_rate, gap)
        for warning in speech.warnings:
            out.warning(warning)
        written = None
        if output not in (None, audio.STDOUT):
            written = audio.write_audio(output, speech.audio, speech.sample_rate, subtype, overwrite)
        elif stream_subtype is not None:
            written = audio.STDOUT
    return speech, written


def _report(out: Output, bark, speech, written: str | None, player, voice: str | None, save_voice: Path | None,
            load_seconds: float) -> None:
    seconds = speech.seconds
    if out.as_json:
        out.data({
            "output": written,
            "player": player.name if player else None,
            "audio_seconds": round(speech.duration, 3),
            "sample_rate": speech.sample_rate,
            "seed": speech.seed,
            "segment_seeds": [part.seed for part in speech.parts],  # segment j: seed + j
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
        done = f"wrote {written}" if written else "played"
        out.note(f"{done}: {speech.duration:.2f} s of audio in {len(speech.segments)} segment(s), "
                 f"seed {speech.seed} ({stages})")


def _dry_run(out: Output, words: str, model: str, revision: str | None, max_chars: int, no_split: bool) -> None:
    """Print the segments a text would be spoken in, with token counts; load only the tokenizer."""
    tokenizer = load_tokenizer(hub.resolve_model(model, revision=revision))
    limit = GenerationConfig().max_input_semantic_length
    plan = [(words, tokenizer.count_tokens(words))] if no_split else plan_segments(tokenizer, words, max_chars, limit)
    if out.as_json:
        out.data({"segments": [{"text": segment, "tokens": count} for segment, count in plan]})
        return
    for number, (segment, count) in enumerate(plan, start=1):
        flag = "  (over the window: will be cut)" if count > limit else ""
        out.result(f"{number:>3}  {count:>3} tokens{flag}  {segment}")


def _save_voice(voice: voices.VoicePrompt, path: Path) -> None:
    try:
        voices.save_voice(voice, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}", "pick a folder you can write to") from None


def read_text(text: str | None, file: Path | None) -> str:
    """The text to speak, from the argument, stdin (`-`) or --file; never empty."""
    if text is not None and file is not None:
        raise typer.BadParameter("give the text or --file, not both", param_hint="TEXT")
    if file is not None:
        try:
            with open(file, "rb") as handle:
                text = _decode(read_at_most(handle, MAX_TEXT_BYTES + 1), f"in {file}")
        except OSError as exc:
            raise InputError(f"cannot read {file}: {exc.strerror or exc}", "check the path") from None
    elif text == "-":
        if sys.stdin is None:  # started with stdin closed (<&-)
            raise InputError("- reads stdin, which is closed", "pipe the text in, or pass it as an argument")
        stdin = getattr(sys.stdin, "buffer", None)
        text = (_decode(read_at_most(stdin, MAX_TEXT_BYTES + 1), "on stdin") if stdin is not None
                else sys.stdin.read(MAX_TEXT_BYTES + 1))
        if len(text) > MAX_TEXT_BYTES:
            raise InputError("the text on stdin is over 1 MB", "split it into several runs, or use bark batch")
    elif text is None:
        raise typer.BadParameter("no text given: pass it as an argument, - for stdin, or -f FILE", param_hint="TEXT")
    if not text.strip():
        raise InputError("the text is empty", "give some text to speak")
    return text


def read_at_most(handle, limit: int) -> bytes:
    """Up to `limit` bytes, to the end of the file. An empty pipe or FIFO is waited on in short
    slices: Python acts on a signal only between its own steps, so Ctrl-C or SIGTERM landing just
    before one long blocking read would otherwise wait for input that may never come."""
    try:
        fd = handle.fileno()
        select.select([fd], [], [], 0)
    except (OSError, ValueError, AttributeError, TypeError):  # not a real file (a test's buffer)
        return handle.read(limit)
    chunks, size = [], 0
    while size < limit:
        if not select.select([fd], [], [], 0.2)[0]:
            continue
        chunk = os.read(fd, min(1 << 16, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _decode(data: bytes, source: str) -> str:
    if len(data) > MAX_TEXT_BYTES:
        raise InputError(f"the text {source} is over 1 MB", "split it into several runs, or use bark batch")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"the text {source} is not UTF-8", "save it as UTF-8") from None
