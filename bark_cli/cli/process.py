"""How `bark` ends on a signal or a closed or full stdout: exit statuses a shell understands,
one word or line on stderr, never a traceback.

Only the standard library is imported here: `main` sets the SIGTERM handler up before Typer,
Rich or PyTorch load.
"""

from __future__ import annotations

import errno
import os
import signal
import sys

# 128 + the signal number, as a shell reports a process the signal ended.
INTERRUPTED, TERMINATED, PIPE_CLOSED = 128 + signal.SIGINT, 128 + signal.SIGTERM, 128 + signal.SIGPIPE
# What a write to stdout or stderr meets when the output cannot all go out.
CUT_SHORT = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO)


class Terminated(BaseException):
    """SIGTERM, raised where the program is, so that `finally` and `except BaseException` blocks
    (the temporary audio file's removal) run as they do for Ctrl-C. Not an Exception, so that no
    error handler takes it for a failure."""


def terminate(signum, frame) -> None:
    """The SIGTERM handler `main` installs."""
    raise Terminated()


def ended(word: str, code: int) -> int:
    """Say how the run ended ("interrupted", "terminated") and return its status. A second
    signal while saying so must not end in a traceback."""
    for name in ("SIGINT", "SIGTERM"):
        try:
            signal.signal(getattr(signal, name), signal.SIG_IGN)
        except (ValueError, OSError):  # not the main thread (a test's runner)
            pass
    try:
        print(word, file=sys.stderr, flush=True)
    except OSError:
        pass
    return code


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so that nothing more written to it (Python's flush at exit
    included) fails with a traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (a test's capture): nothing to protect


def quiet_stdout() -> None:
    """Drop stdout once it is closed or broken; leave a working one alone."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        _drop_stdout()


def settle_stdout(code: int | str | None) -> int | str | None:
    """Flush stdout now, while a failure can still be reported: Python's own flush at exit would
    print "Exception ignored" and a traceback for a closed pipe or a full disk. Returns the
    status to exit with."""
    try:
        sys.stdout.flush()
        return code
    except OSError as exc:
        _drop_stdout()
        if isinstance(exc, BrokenPipeError):
            return PIPE_CLOSED if code in (0, None) else code
        if code in (0, None):
            print(f"error: cannot write to stdout: {exc.strerror or exc} (the output was cut short)",
                  file=sys.stderr, flush=True)
            return 2
        return code
    except (KeyboardInterrupt, Terminated):
        return code
    except (ValueError, AttributeError):  # stdout closed or absent
        return code


def output_failure(exc: OSError) -> None:
    """End the run for an output that could not be written; return (doing nothing) for any other
    OSError. A closed pipe (`| head`) means the reader wanted no more: quiet, with the status a
    shell gives a program SIGPIPE ended. A full disk or a size limit cut the output short: one
    line, exit 2."""
    import typer

    if exc.errno == errno.EPIPE:
        quiet_stdout()
        raise typer.Exit(PIPE_CLOSED) from None
    if exc.errno in CUT_SHORT:
        quiet_stdout()
        try:
            print(f"error: cannot write the output: {exc.strerror} (the output was cut short)", file=sys.stderr,
                  flush=True)
        except OSError:
            pass  # stderr gone too: nothing left to tell
        raise typer.Exit(2) from None
