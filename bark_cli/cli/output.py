"""What `bark` prints: the one output sink, the per-stage progress bars, plain-text tables.

Results go to stdout (text, or JSON with --json); progress, spinners and notes to stderr, and only
on a terminal; warnings to stderr unless --quiet. Rich is imported only once something draws.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import typer

from rich.markup import escape

from ..errors import OutputError
from .errors import EXIT_HELP, print_warning, printable

if TYPE_CHECKING:
    from ..batch import Summary


class Output:
    """The one sink. Results go to stdout (text, or JSON with --json); progress, spinners and
    notes to stderr only when it is a terminal and not --quiet; warnings unless --quiet."""

    def __init__(self, quiet: bool = False, as_json: bool = False):
        self.quiet = quiet
        self.as_json = as_json
        self.interactive = not quiet and sys.stderr.isatty()
        self._console = None

    @property
    def console(self):
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False)
        return self._console

    def result(self, text: str = "") -> None:
        if not self.quiet:
            print(text, flush=True)

    def data(self, obj: Any) -> None:
        print(json.dumps(obj, ensure_ascii=False), flush=True)

    def note(self, text: str) -> None:
        if self.interactive:
            self.console.print(escape(printable(text)))

    def warning(self, text: str) -> None:
        if not self.quiet:
            print_warning(text)

    @contextlib.contextmanager
    def status(self, text: str, show: bool = True) -> Iterator:
        """A spinner; yields a function that changes its text (a no-op when not interactive)."""
        if not (self.interactive and show):
            yield lambda message: None
            return
        with self.console.status(escape(printable(text))) as spinner:
            yield lambda message: spinner.update(escape(printable(message)))

    @contextlib.contextmanager
    def stages(self) -> Iterator:
        """Per-stage progress bars; yields the library's progress callback (None when not interactive)."""
        if not self.interactive:
            yield None
            return
        bars = StageBars(self.console)
        with bars:
            yield bars


class StageBars:
    """One Rich bar per generation stage, fed by the library's progress(stage, done, total)."""

    LABELS = {"semantic": "semantic tokens", "coarse": "coarse tokens", "fine": "fine windows", "decode": "decode",
              "segments": "segments"}

    def __init__(self, console):
        from rich import progress as rich_progress

        self.progress = rich_progress.Progress(
            rich_progress.TextColumn("{task.description:<15}"), rich_progress.BarColumn(),
            rich_progress.MofNCompleteColumn(), rich_progress.TimeElapsedColumn(),
            rich_progress.TimeRemainingColumn(), console=console, redirect_stdout=False, redirect_stderr=False)
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> "StageBars":
        self.progress.start()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        # Only a run that ended normally has finished bars; after Ctrl-C or an error each bar
        # stays where it stopped.
        if exc_type is None:
            self._finish_all()
        self.progress.stop()

    def _finish_all(self) -> None:
        # The semantic stage stops early at EOS: show a finished bar, not 200/768.
        for task in self.tasks.values():
            done = self.progress.tasks[task].completed
            self.progress.update(task, total=max(done, 1), completed=max(done, 1))

    def items(self, total: int):
        """A bar over a batch's items (with its ETA); returns a function taking the count done."""
        task = self.progress.add_task("items", total=total)
        return lambda done: self.progress.update(task, completed=done)

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self._finish_all()
            self.tasks[stage] = self.progress.add_task(self.LABELS.get(stage, stage), total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total)


def examples(*lines: str) -> str:
    """A command's help epilog: its examples, one a line, then the exit codes."""
    return "Examples:\n" + "\n".join(f"  {escape(line)}" for line in lines) + f"\n\n{EXIT_HELP}"


def table(headers: tuple[str, ...] | None, rows: list[tuple[str, ...]]) -> str:
    """Left-aligned columns separated by two spaces; plain text, for people and for `cut`/`awk`."""
    body = ([headers] if headers else []) + rows
    if not body:
        return ""
    widths = [max(len(row[i]) for row in body) for i in range(len(body[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in body)


def human_size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def open_report(stack: contextlib.ExitStack, report: Path | None):
    """The --report file, opened for appending inside `stack` (None without one)."""
    if report is None:
        return None
    try:
        return stack.enter_context(open(report, "a", encoding="utf-8"))
    except OSError as exc:
        raise OutputError(f"cannot write {report}: {exc.strerror or exc}", "pick a writable --report path") from None


def finish(out: Output, summary: Summary, total: int, output_dir: Path, where: str = "") -> None:
    """The closing line; exit 1 when any item failed."""
    claimed = f", {summary.count('claimed')} left to another run" if summary.count("claimed") else ""
    out.note(f"{summary.count('done')} done, {summary.count('skipped')} skipped{claimed}, {summary.failed} failed "
             f"of {total} item(s) in {output_dir}{where}")
    if summary.failed:
        raise typer.Exit(1)
