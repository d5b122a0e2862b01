"""The `bark` command: the app (`app.py`), one module per command or group, and what they share
(`options.py`, `output.py`, `errors.py`).

`main` imports the app itself, inside its guard: a Ctrl-C while Typer, Rich or PyTorch load then
ends like one at any other moment, with one line and no traceback. Only the standard library is
imported before the guard is up.
"""

from __future__ import annotations

import os
import signal
import sys

# 128 + the signal number, as a shell reports a process the signal ended.
INTERRUPTED, TERMINATED, PIPE_CLOSED = 128 + signal.SIGINT, 128 + signal.SIGTERM, 128 + signal.SIGPIPE


class Terminated(BaseException):
    """SIGTERM, raised where the program is, so that `finally` and `except BaseException` blocks
    (the temporary audio file's removal) run as they do for Ctrl-C. Not an Exception, so that no
    error handler takes it for a failure."""


def _terminate(signum, frame) -> None:
    raise Terminated()


def main() -> None:
    """The `bark` script."""
    signal.signal(signal.SIGTERM, _terminate)
    code: int | str | None = 0
    try:
        _app()(prog_name="bark")
    except SystemExit as exc:
        # Rich ends a help screen that meets a closed pipe with SystemExit(1), raised while
        # handling the BrokenPipeError: the same closed pipe as anywhere else.
        code = PIPE_CLOSED if isinstance(exc.__context__, BrokenPipeError) else exc.code
    except KeyboardInterrupt:
        code = _ended("interrupted", INTERRUPTED)
    except Terminated:
        code = _ended("terminated", TERMINATED)
    except BrokenPipeError:
        code = PIPE_CLOSED
    code = _settle_stdout(code)
    sys.exit(code)


def _ended(word: str, code: int) -> int:
    # A second signal while saying so must not end in a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        print(word, file=sys.stderr, flush=True)
    except OSError:
        pass
    return code


def _settle_stdout(code: int | str | None) -> int | str | None:
    """Flush stdout now, while a failure can still be reported: Python's own flush at exit would
    print "Exception ignored" and a traceback for a closed pipe or a full disk. Whatever cannot
    be written is dropped by pointing stdout at /dev/null."""
    try:
        sys.stdout.flush()
        return code
    except OSError as exc:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        if isinstance(exc, BrokenPipeError):
            return PIPE_CLOSED if code in (0, None) else code
        if code in (0, None):
            print(f"error: cannot write to stdout: {exc.strerror or exc} (the output was cut short)",
                  file=sys.stderr, flush=True)
            return 2
        return code
    except (KeyboardInterrupt, Terminated):
        return code


def _app():
    import importlib

    module = importlib.import_module(".app", __name__)  # binds the module to our name `app` ...
    globals()["app"] = module.app  # ... which must be the Typer app, as importers expect
    return module.app


def __getattr__(name: str):
    # `app` on first use: importing this package loads neither Typer nor Rich.
    if name == "app":
        return _app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["app", "main"]
