"""How `bark` fails: one table from error type to exit code, one stderr line per error.

The library raises typed errors carrying a fix hint; `BarkGroup.invoke` runs every command and
turns whatever escapes it into one line and a documented exit code. Bad options and arguments
(the parser's usage errors) get the same one-line treatment, in our words rather than the parser's.
Whatever a line echoes from the user (a file name, a voice, a text) goes through `printable`, so
no control character reaches the terminal.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from typing import NoReturn

import typer
from typer.core import TyperGroup

from .help import HELP_OPTIONS, plain_placeholders
from .process import INTERRUPTED, ended, output_failure
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
EXIT_HELP = ("Exit codes: 0 done; 1 generation failed; 2 bad usage or input; 3 Hub refused access; 4 Hub "
             "unreachable or download cut short; 5 offline, model not cached; 130 Ctrl-C; 141 stdout closed "
             "early; 143 SIGTERM.")

# C0 and C1 controls and DEL; tab is kept out too, since it moves the cursor.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: object) -> str:
    """`text` with every control character (ESC included) shown as an escape such as \\x1b, so that
    a file name or a text echoed in a message cannot move the cursor, retitle the terminal or
    colour what follows."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def exit_code(exc: BaseException) -> int:
    return next((code for kind, code in EXIT_CODES if isinstance(exc, kind)), 1)


def print_error(message: str, hint: str = "") -> None:
    """One plain line on stderr (never wrapped by Rich), control characters escaped."""
    line = f"error: {printable(message)}" + (f" ({printable(hint)})" if hint else "")
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:
        pass  # stderr gone too: nothing left to tell


def print_warning(message: str) -> None:
    try:
        print(f"warning: {printable(message)}", file=sys.stderr, flush=True)
    except OSError:
        pass


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """`warnings.showwarning` for the `bark` command: another library's warning (PyTorch's
    UserWarnings and the like) as one `warning:` line, without its source line."""
    print_warning(" ".join(str(message).split()))


class BadValue(typer.BadParameter):
    """An option's value out of its range: reported as `--option VALUE <message>`."""


# Click's UsageError as Typer raises it (Typer 0.2x carries its own copy of Click).
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def usage_error(exc: Exception, command_path: str = "bark") -> NoReturn:
    """A bad option or argument: one line, like every other bad input, then exit 2. A bare
    group's "error" is its help, which Typer shows."""
    if type(exc).__name__ == "NoArgsIsHelpError":
        raise exc
    ctx = getattr(exc, "ctx", None)
    print_error(usage_message(exc), f"see '{ctx.command_path if ctx else command_path} -h'")
    raise typer.Exit(exc.exit_code) from None


def _option_name(param) -> str:
    """How the user wrote the parameter: its long option, or an argument's name in capitals."""
    if param is None:
        return ""
    if getattr(param, "param_type_name", "") == "argument":
        return (param.name or "").upper()
    longs = [o for o in param.opts if o.startswith("--")]
    return (longs or param.opts or [param.name])[0]


def _choices(param) -> list[str]:
    descriptor = getattr(param, "type_descriptor", None)
    choices = getattr(descriptor, "choices", None) or ()
    return [str(getattr(c, "value", c)) for c in choices]


def usage_message(exc: Exception) -> str:
    """The parser's error in our words: `--dtype xx is not one of auto, float32, ...`, not
    "Invalid value for '--dtype': Value error, 'xx' is not one of 'auto', ...".

    Values come from the validation error the parser chained (pydantic's, in this Typer), whose
    kind says what was wrong; anything unforeseen falls back to the parser's own message."""
    kind = type(exc).__name__
    param = getattr(exc, "param", None)
    name = _option_name(param) or " / ".join(
        h.strip("'") for h in ([exc.param_hint] if isinstance(getattr(exc, "param_hint", None), str)
                               else getattr(exc, "param_hint", None) or []))
    if kind == "NoSuchOption":
        message = f"unknown option {exc.option_name}"
        if exc.possibilities:
            message += f"; did you mean {' or '.join(sorted(exc.possibilities))}?"
        return message
    if kind == "BadOptionUsage":
        match = re.match(r"Option '(.+)' requires (an argument|\d+ arguments)", exc.message)
        if match:
            return f"{match.group(1)} needs a value"
        match = re.match(r"Option '(.+)' does not take a value", exc.message)
        if match:
            return f"{match.group(1)} is an on/off flag and takes no value"
        return exc.message.rstrip(".")
    if kind == "MissingParameter":
        return f"missing {name}" if name else "a required argument is missing"
    if isinstance(exc, BadValue):
        return f"{name} {exc.message}"
    if kind == "BadParameter":
        cause = exc.__cause__
        errors = cause.errors() if hasattr(cause, "errors") else []
        if errors:
            return f"{name} {_explain(errors[0], param)}"
        return f"{name}: {exc.message}" if name else exc.message
    match = re.match(r"No such command '(.+)'", exc.message)
    if match:
        return f"unknown command {match.group(1)}"
    match = re.match(r"Got unexpected extra argument(?:s|\(s\))? \((.+)\)", exc.message)
    if match:
        return f"unexpected extra argument {match.group(1)}"
    return exc.message.rstrip(".")


def _explain(error: dict, param) -> str:
    """`<value> is not ...` for one validation error."""
    value = error.get("input")
    kind = error.get("type", "")
    limits = error.get("ctx") or {}
    if kind in ("enum", "literal_error") or _choices(param):
        return f"{value} is not one of {', '.join(_choices(param))}"
    if kind.startswith("int"):
        return f"{value} is not a whole number"
    if kind.startswith("float"):
        return f"{value} is not a number"
    if kind.startswith("bool"):
        return f"{value} is not true or false"
    bounds = {"greater_than_equal": "at least {ge}", "greater_than": "over {gt}",
              "less_than_equal": "at most {le}", "less_than": "under {lt}"}
    if kind in bounds:
        return f"{value} is out of range: it must be " + bounds[kind].format(**limits)
    message = str(error.get("msg", "is not valid"))
    return f"{value}: {message.removeprefix('Value error, ')}"


class BarkGroup(TyperGroup):
    """The top-level group: every command runs inside its `invoke`, so errors are mapped here once."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        plain_placeholders(self)

    def get_params(self, ctx):
        # Typer adds --install-completion and --show-completion after __init__.
        plain_placeholders(self, recurse=False)
        return super().get_params(ctx)

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except UsageError as exc:  # the group's own options
            usage_error(exc)
        except OSError as exc:  # --version or --help into a closed pipe or onto a full disk
            if not output_failure(exc):
                raise

    def invoke(self, ctx):
        if not os.environ.get("BARK_DEBUG"):
            warnings.showwarning = show_warning
        # The invoke below consumes the arguments; an error without a context is named after them.
        words = [*getattr(ctx, "_protected_args", []), *ctx.args]
        try:
            return super().invoke(ctx)
        except BarkError as exc:
            print_error(exc.message, exc.hint)
            raise typer.Exit(exit_code(exc)) from None
        except UsageError as exc:  # a command's bad option or argument
            usage_error(exc, self._command_path(ctx, words))
        except KeyboardInterrupt:
            raise typer.Exit(ended("interrupted", INTERRUPTED)) from None
        except Exception as exc:
            if isinstance(exc, OSError):
                output_failure(exc)
            if hasattr(exc, "exit_code"):  # typer.Exit and the like
                raise
            if os.environ.get("BARK_DEBUG"):
                raise
            print_error(f"unexpected {type(exc).__name__}: {exc}",
                        "set BARK_DEBUG=1 for a traceback, and please report it")
            raise typer.Exit(exit_code(exc)) from None

    def _command_path(self, ctx, args: list[str]) -> str:
        """The command an error without a context belongs to (`bark say` for `bark say --seed`),
        found by walking the command names at the front of the arguments."""
        words, command = [ctx.command_path], self
        for arg in args:
            sub = getattr(command, "commands", {}).get(arg)
            if sub is None:
                break
            words.append(arg)
            command = sub
        return " ".join(words)
