"""`bark batch`: speak many texts into many files; resumable, shardable, one bad item never stops it."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from .. import batch as runner, presets
from ..config import SamplingOptions
from ..errors import InputError, OutputError
from ..groups import Speaker
from .models import load_model
from .options import (
    DEFAULT_MODEL, LONG, OUTPUT, BatchSizeOpt, DeviceOptions, ModelOpt, OverwriteOpt, QuietOpt, RevisionOpt, SeedOpt,
    Subtype, VoiceOpt, device_options, parse_batch_size, sampling_options,
)
from .output import Output, examples, finish, open_report

BATCH_EXAMPLES = examples(
    "bark batch lines.txt --output-dir out",
    "bark batch chapters/*.txt --whole-file --output-dir book --template {stem}.flac --voice v2/en_speaker_6",
    "bark batch corpus.jsonl --output-dir wavs --report report.jsonl --shard 0/4",
    "seq 0 3 | xargs -P 4 -I K bark batch corpus.jsonl --output-dir wavs --shard K/4 -q",
)


@sampling_options
@device_options
def batch(
    inputs: Annotated[list[str], typer.Argument(
        help="Text files (one utterance per line), .jsonl files, or - for stdin.", show_default=False)],
    output_dir: Annotated[Path, typer.Option(
        "--output-dir", "-d", help="Folder for the audio files (created if missing).", file_okay=False,
        rich_help_panel=OUTPUT, show_default=False)],
    template: Annotated[str, typer.Option(
        help="File name of an item without an output of its own: {index}, {line}, {stem} (input file name); "
             "numbers may be zero-padded, {index:05d}.",
        rich_help_panel=OUTPUT)] = runner.DEFAULT_TEMPLATE,
    whole_file: Annotated[bool, typer.Option(
        "--whole-file", help="Each text file is one long item (split into segments), not one item per line.")] = False,
    jsonl: Annotated[bool | None, typer.Option(
        "--jsonl/--text", help="Read inputs as JSONL or as text; default: by extension (.jsonl, .ndjson).",
        show_default=False)] = None,
    report: Annotated[Path | None, typer.Option(
        help="Write one JSON line per item: status, path, seconds of audio, seed, error.", dir_okay=False,
        rich_help_panel=OUTPUT, show_default=False)] = None,
    shard: Annotated[str | None, typer.Option(
        metavar="K/N", help="K/N: only the items whose index modulo N is K (spread a corpus over N jobs).",
        show_default=False)] = None,
    overwrite: OverwriteOpt = False,
    subtype: Annotated[Subtype | None, typer.Option(
        case_sensitive=False, help="Sample format of .wav/.flac (default PCM_16).", show_default=False,
        rich_help_panel=OUTPUT)] = None,
    model: ModelOpt = DEFAULT_MODEL,
    revision: RevisionOpt = None,
    voice: VoiceOpt = None,
    seed: SeedOpt = None,
    sampling: SamplingOptions = SamplingOptions(),
    gap: Annotated[float, typer.Option(min=0, help="Seconds of silence between segments of a long item.",
                                       rich_help_panel=LONG)] = 0.25,
    batch_size: BatchSizeOpt = "auto",
    hardware: DeviceOptions = DeviceOptions(),
    ray: Annotated[bool, typer.Option(
        "--ray", help="Run the items on Ray Data, one model per actor: a local Ray on this machine's cores, or "
                      "the cluster of --ray-address or RAY_ADDRESS (pip install 'bark-cli\\[ray]').")] = False,
    ray_address: Annotated[str | None, typer.Option(
        metavar="auto|ray://HOST:PORT", show_default=False,
        help="The Ray cluster to join (implies --ray): auto for the one started here, local for a new one.")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Speak many texts, one audio file each.

    Items whose output file already exists are skipped (every file is written under a temporary name
    and renamed, so an existing file is complete): rerun a killed batch to finish it. A failing item
    is reported and the rest go on. Exit 0 when every item succeeded or was skipped, 1 when any
    failed, 2 for bad usage.

    JSONL lines are objects {"text": ..., "output": ..., "voice": ..., "seed": ...}; only text is
    required, and output is relative to --output-dir, which it may not leave. Two items that would
    write one file stop the run before it starts (exit 2).

    Item i gets the seed S + i (S is --seed, or drawn at random), or its own JSONL seed; the report
    gives each item's seed, and `bark say TEXT --seed SEED` with the same voice, model, device and
    dtype makes that item again.
    """
    out = Output(quiet)
    size = parse_batch_size(batch_size)
    if voice:
        # A mistyped --voice fails on its name: no model load, no Ray start, no output folder.
        presets.find_voice(voice, model, revision, fetch=False)
    items = _plan(inputs, whole_file, jsonl, output_dir, template, shard)
    from ..pipeline import fresh_seed

    # Item i gets the seed S + i (S: --seed, or one drawn now and reported per item).
    runner.assign_seeds(items, fresh_seed() if seed is None else seed)
    if ray or ray_address:
        from .batch_ray import batch_on_ray

        return batch_on_ray(out, items, output_dir, address=ray_address, report=report, model=model, revision=revision,
                            hardware=hardware, voice=voice, sampling=sampling, gap=gap, batch_size=size,
                            subtype=subtype.value if subtype else None, overwrite=overwrite)

    summary = _run_here(out, items, model, revision, hardware, voice, gap, size, sampling,
                        subtype.value if subtype else None, overwrite, report)
    finish(out, summary, len(items), output_dir)


def _run_here(out: Output, items: list[runner.Item], model: str, revision: str | None, hardware: DeviceOptions,
              voice: str | None, gap: float, size: int | None, sampling: SamplingOptions, subtype: str | None,
              overwrite: bool, report: Path | None) -> runner.Summary:
    """The items on this machine: one model, groups of one voice batched together."""
    bark, _ = load_model(out, model, revision, hardware)
    speaker = Speaker(bark, voice, gap, size, sampling)
    with contextlib.ExitStack() as stack:
        report_file = open_report(stack, report)
        speaker.progress = bars = stack.enter_context(out.stages())
        group_size = size or bark.runtime.auto_batch_size(bark.weights.config)
        return runner.run_batch(speaker.speak_group, items, group_key=speaker.group_key, batch_size=group_size,
                                overwrite=overwrite, subtype=subtype, report=report_file,
                                on_item=_item_reporter(out, bars.items(len(items)) if bars else None))


def _plan(inputs: list[str], whole_file: bool, jsonl: bool | None, output_dir: Path, template: str,
          shard: str | None) -> list[runner.Item]:
    """Read the items and plan every output (collisions refused) before anything is created or
    generated; then make the output folder."""
    shard_k_n = runner.parse_shard(shard)
    if "-" in inputs and sys.stdin is not None and sys.stdin.isatty():
        raise InputError("- reads stdin, which is a terminal", "pipe the text in, or name a file")
    items = runner.read_items(inputs, whole_file=whole_file, jsonl=jsonl, stdin=sys.stdin)
    if not items:
        raise InputError("the inputs hold no text", "give files with at least one non-empty line")
    items = runner.select_shard(runner.plan_outputs(items, output_dir, template), shard_k_n)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {output_dir}: {exc.strerror or exc}", "pick a folder you can write to") from None
    return items


def _item_reporter(out: Output, items_bar):
    """run_batch's `on_item`: the items bar moves on, a failed item is a warning line."""

    def on_item(outcome: runner.Outcome, done: int, total: int) -> None:
        if items_bar:
            items_bar(done)
        if outcome.status == "failed":
            where = f"{outcome.source}:{outcome.line}" if outcome.line else outcome.source
            out.warning(f"item {outcome.index} ({where}) failed: {outcome.error}")

    return on_item
