"""The `bark` command: the app (`app.py`), one module per command or group, and what they share
(`options.py`, `output.py`, `errors.py`; signals and stdout's end in `process.py`).

`main` imports the app itself, inside its guard: a Ctrl-C while Typer, Rich or PyTorch load then
ends like one at any other moment, with one line and no traceback. Only the standard library is
imported before the guard is up.
"""

from __future__ import annotations

import signal
import sys

from .process import INTERRUPTED, PIPE_CLOSED, TERMINATED, Terminated, ended, settle_stdout, terminate

_terminate = terminate  # the SIGTERM handler, under the name tests install it by


def main() -> None:
    """The `bark` script."""
    signal.signal(signal.SIGTERM, terminate)
    code: int | str | None = 0
    try:
        _app()(prog_name="bark")
    except SystemExit as exc:
        # Rich ends a help screen that meets a closed pipe with SystemExit(1), raised while
        # handling the BrokenPipeError: the same closed pipe as anywhere else.
        code = PIPE_CLOSED if isinstance(exc.__context__, BrokenPipeError) else exc.code
    except KeyboardInterrupt:
        code = ended("interrupted", INTERRUPTED)
    except Terminated:
        code = ended("terminated", TERMINATED)
    except BrokenPipeError:
        code = PIPE_CLOSED
    sys.exit(settle_stdout(code))


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


__all__ = ["app", "main", "Terminated"]
