"""How `bark` fails: one table from error type to exit code, one stderr line per error.

The library raises typed errors carrying a fix hint; `BarkGroup.invoke` runs every command and
turns whatever escapes it into one line and a documented exit code. Bad options and arguments
(Click's usage errors) get the same one-line treatment.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import NoReturn

import typer
from typer.core import TyperGroup

from ..errors import (BarkError, CheckpointError, DeviceError, DownloadIncompleteError, GenerationError,
                      HubAccessError, HubUnreachableError, InputError, NotCachedError, OutputError)

# Error type -> exit code, most specific first. 2: bad usage or bad input (as Click's usage
# errors); 1: a failure while generating, or a bug. 3-5 tell a script why a model could not be
# had, since each calls for another remedy (a token, a retry, going online).
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (HubAccessError, 3),
    (HubUnreachableError, 4),
    (DownloadIncompleteError, 4),
    (NotCachedError, 5),
    (GenerationError, 1),
    (InputError, 2),  # PresetError too
    (CheckpointError, 2),
    (DeviceError, 2),
    (OutputError, 2),
    (BarkError, 1),
)
EXIT_HELP = ("Exit codes: 0 success; 1 a failure while generating; 2 bad usage or bad input; 3 the Hub refused "
             "access; 4 the Hub unreachable or a download cut short; 5 offline and the model not cached.")


def exit_code(exc: BaseException) -> int:
    return next((code for kind, code in EXIT_CODES if isinstance(exc, kind)), 1)


def print_error(message: str, hint: str = "") -> None:
    """One plain line on stderr (never wrapped by Rich)."""
    print(f"error: {message}" + (f" ({hint})" if hint else ""), file=sys.stderr, flush=True)


# Click's UsageError as Typer raises it (Typer 0.2x carries its own copy of Click).
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def usage_error(exc: Exception) -> NoReturn:
    """A bad option or argument: one line, like every other bad input, then exit 2. A bare
    group's "error" is its help, which Typer shows."""
    if type(exc).__name__ == "NoArgsIsHelpError":
        raise exc
    ctx = getattr(exc, "ctx", None)
    print_error(exc.format_message(), f"see '{ctx.command_path if ctx else 'bark'} -h'")
    raise typer.Exit(exc.exit_code) from None


class BarkGroup(TyperGroup):
    """The top-level group: every command runs inside its `invoke`, so errors are mapped here once."""

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except UsageError as exc:  # the group's own options
            usage_error(exc)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BarkError as exc:
            print_error(exc.message, exc.hint)
            raise typer.Exit(exit_code(exc)) from None
        except UsageError as exc:  # a command's bad option or argument
            usage_error(exc)
        except Exception as exc:
            # typer.Exit, usage errors (they carry an exit_code) and a closed pipe are Typer's to report.
            if hasattr(exc, "exit_code") or (isinstance(exc, OSError) and exc.errno == errno.EPIPE):
                raise
            if os.environ.get("BARK_DEBUG"):
                raise
            print_error(f"unexpected {type(exc).__name__}: {exc}",
                        "set BARK_DEBUG=1 for a traceback, and please report it")
            raise typer.Exit(exit_code(exc)) from None
