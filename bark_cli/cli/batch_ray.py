"""`bark batch --ray`: the planned items to bark_cli.raybatch; one bar over items and audio seconds."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from ..config import DeviceOptions, SamplingOptions
from .output import Output, finish, open_report


def batch_on_ray(out: Output, items: list, output_dir: Path, *, address: str | None, report: Path | None,
                 model: str, revision: str | None, hardware: DeviceOptions, voice: str | None,
                 sampling: SamplingOptions, gap: float, batch_size: int | None, subtype: str | None,
                 overwrite: bool) -> None:
    """Run planned, seeded items on Ray (a local one, or the cluster at `address`); exit 1 when any failed."""
    from .. import raybatch

    raybatch.import_ray()  # without the extra: one line on installing it, before anything starts
    speaking = raybatch.Speaking(model=model, revision=revision, hardware=hardware, voice=voice, sampling=sampling,
                                 gap=gap, batch_size=batch_size, subtype=subtype, overwrite=overwrite)
    with contextlib.ExitStack() as stack:
        report_file = open_report(stack, report)
        bar = stack.enter_context(items_bar(out, len(items)))
        seconds = 0.0

        def on_item(outcome, done: int, total: int) -> None:
            nonlocal seconds
            seconds += outcome.seconds_of_audio or 0.0
            bar(done, seconds)
            if outcome.status == "failed":
                where = f"{outcome.source}:{outcome.line}" if outcome.line else outcome.source
                out.warning(f"item {outcome.index} ({where}) failed: {outcome.error}")

        summary = raybatch.run_on_ray(items, speaking, address=address, report=report_file, on_item=on_item)
    finish(out, summary, len(items), output_dir, " (on Ray)")


@contextlib.contextmanager
def items_bar(out: Output, total: int) -> Iterator:
    """A bar over items done, with the seconds of audio made; yields `update(done, seconds)`."""
    if not out.interactive:
        yield lambda done, seconds: None
        return
    from rich import progress as rich_progress

    bar = rich_progress.Progress(
        rich_progress.TextColumn("items"), rich_progress.BarColumn(), rich_progress.MofNCompleteColumn(),
        rich_progress.TextColumn("{task.fields[audio]}"), rich_progress.TimeElapsedColumn(),
        rich_progress.TimeRemainingColumn(), console=out.console, redirect_stdout=False, redirect_stderr=False)
    task = bar.add_task("items", total=total, audio="0 s of audio")
    with bar:
        yield lambda done, seconds: bar.update(task, completed=done, audio=f"{seconds:.0f} s of audio")
