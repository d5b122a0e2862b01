"""Claims: which run makes an output that several runs could make (shards sharing a folder, a
rerun started while the first still runs, a Ray driver and a local batch). A claim is a marker
file beside the output, `.NAME.claim`, created exclusively and holding "PID HOST"."""

from __future__ import annotations

import os
import socket
from pathlib import Path

CLAIM_SUFFIX = ".claim"


def claim_path(output: Path) -> Path:
    """The marker of an output being generated: `.NAME.claim` beside it."""
    return output.with_name(f".{output.name}{CLAIM_SUFFIX}")


def _holder(path: Path) -> tuple[int, str] | None:
    """The (pid, host) a claim file names, or None when it names none (half-written, foreign)."""
    try:
        pid, _, host = path.read_text(encoding="utf-8").partition(" ")
        return int(pid), host.strip()
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError):
        return True  # someone else's process, or a pid we cannot check: assume it runs
    return True


def claim(output: Path) -> bool:
    """Claim `output` for this process: create its marker exclusively (O_CREAT | O_EXCL), holding
    "PID HOST". False when a live process holds it. A claim of a process that is gone (same host,
    pid not running) is taken over: renamed aside atomically, so of two runs taking it over only
    one wins."""
    path = claim_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = f"{os.getpid()} {socket.gethostname()}"
    for _ in range(2):
        try:
            handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if holder is None or holder[1] != socket.gethostname() or _alive(holder[0]):
                return False
            aside = path.with_name(f"{path.name}.stale-{os.getpid()}")
            try:
                os.rename(path, aside)
            except FileNotFoundError:
                continue  # another run took it over first; try to create it again
            if _holder(aside) != holder:  # renamed a claim made meanwhile: give it back
                os.rename(aside, path)
                return False
            os.unlink(aside)
            continue
        with os.fdopen(handle, "w", encoding="utf-8") as marker:
            marker.write(me)
        return True
    return False


def release(output: Path) -> None:
    try:
        claim_path(output).unlink()
    except FileNotFoundError:
        pass
