"""How `bark` ends when the world around it does: a reader that closes the pipe, a full disk, a
file size limit, Ctrl-C, SIGTERM. Through the installed script, where the real signals and file
descriptors are, on the tiny model (generation takes a moment).

Documented exit statuses: 130 Ctrl-C, 141 stdout closed early, 143 SIGTERM, 2 output cut short.
"""

from __future__ import annotations

import io
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf

import bark_cli.cli as cli
from bark_cli import audio

BARK = Path(sys.executable).with_name("bark")
FAST = ["--max-semantic-tokens", "8", "--device", "cpu"]
# What one run of the tiny model writes to stdout: a WAV header and 12 frames of 320 samples.
WAV_BYTES = 44 + 12 * 320 * 2

pytestmark = pytest.mark.skipif(not BARK.is_file(), reason=f"no installed script at {BARK}")


def env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "BARK_VOICES_DIR": "voices"}


def _like_a_terminal_job() -> None:
    # A shell starts a background job with SIGINT ignored, and Python keeps an ignored SIGINT
    # ignored (rightly: the job must survive the script's Ctrl-C). These tests stand for a
    # foreground run, where Ctrl-C reaches bark, whatever the test runner's own state.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(*args: str, cwd: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([str(BARK), *args], cwd=cwd, env=env(), stderr=subprocess.PIPE,
                            preexec_fn=_like_a_terminal_job, **kwargs)


def assert_quiet_end(stderr: bytes) -> None:
    assert b"Traceback" not in stderr and b"Exception ignored" not in stderr, stderr.decode()


# --- a reader that closes the pipe ----------------------------------------------------------------


MODEL = object()  # stands for --model and the tiny model


def command_line(command: list, tiny_checkpoint: Path) -> list[str]:
    return [arg for part in command for arg in (["--model", str(tiny_checkpoint)] if part is MODEL else [part])]


@pytest.mark.parametrize("command", [
    ["presets", "list", MODEL],
    ["presets", "list", MODEL, "--json"],
    ["say", "Hello.", "-o", "-", MODEL, *FAST],
    ["say", "--help"],
    ["--version"],
])
def test_a_closed_pipe_ends_quietly_with_141(tiny_checkpoint, tmp_path, command):
    """`bark presets list | head -2`, `bark say ... -o - | head -c 10`, `bark say -h | head -1`:
    the reader is gone before bark writes (its end of the pipe closed at once), so every write
    meets EPIPE. (A reader that closes after everything was written sees exit 0.)"""
    proc = start(*command_line(command, tiny_checkpoint), cwd=tmp_path, stdout=subprocess.PIPE,
                 stdin=subprocess.DEVNULL)
    proc.stdout.close()
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 141, stderr.decode()
    assert stderr == b""
    assert list(tmp_path.iterdir()) == []


def test_a_pipe_read_whole_ends_with_0(tiny_checkpoint, tmp_path):
    done = subprocess.run([str(BARK), "say", "Hello.", "-o", "-", "--model", str(tiny_checkpoint), *FAST],
                          cwd=tmp_path, env=env(), capture_output=True, timeout=300)
    assert done.returncode == 0 and done.stderr == b""
    assert len(done.stdout) == WAV_BYTES
    assert sf.info(io.BytesIO(done.stdout)).frames == 12 * 320


# --- output cut short: full disk, size limit --------------------------------------------------------


def test_audio_to_a_full_disk_fails_loudly(tiny_checkpoint, tmp_path):
    with open("/dev/full", "wb") as full:
        done = subprocess.run([str(BARK), "say", "Hello.", "-o", "-", "--model", str(tiny_checkpoint), *FAST],
                              cwd=tmp_path, env=env(), stdout=full, stderr=subprocess.PIPE, timeout=300)
    assert done.returncode == 2
    assert done.stderr.decode().splitlines() == [
        "error: cannot write to stdout: No space left on device "
        "(the output was cut short; check the disk or the size limit)"]


@pytest.mark.parametrize("command", [["presets", "list", MODEL], ["say", "--help"], ["--version"]])
def test_text_to_a_full_disk_fails_loudly(tiny_checkpoint, tmp_path, command):
    with open("/dev/full", "wb") as full:
        done = subprocess.run([str(BARK), *command_line(command, tiny_checkpoint)], cwd=tmp_path,
                              env=env(), stdout=full, stderr=subprocess.PIPE, timeout=300)
    assert done.returncode == 2
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "No space left on device" in lines[0], lines


def test_audio_over_the_file_size_limit_fails_loudly(tiny_checkpoint, tmp_path):
    """RLIMIT_FSIZE below the WAV's size: the write stops part way (Python ignores SIGXFSZ, so
    the kernel's answer is a short write, then EFBIG)."""
    limit = WAV_BYTES // 2

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    with open(tmp_path / "out.wav", "wb") as sink:
        done = subprocess.run([str(BARK), "say", "Hello.", "-o", "-", "--model", str(tiny_checkpoint), *FAST],
                              cwd=tmp_path, env=env(), stdout=sink, stderr=subprocess.PIPE, timeout=300,
                              preexec_fn=small_files)
    assert done.returncode == 2, done.stderr.decode()
    # Python's writer reports either the short write (half the bytes went out) or EFBIG.
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write to stdout: "), lines
    assert lines[0].endswith("(the output was cut short; check the disk or the size limit)")
    assert f"of {WAV_BYTES} bytes went out" in lines[0] or "File too large" in lines[0]
    assert (tmp_path / "out.wav").stat().st_size == limit


# --- Ctrl-C and SIGTERM --------------------------------------------------------------------------------


def started_reading(fifo: Path, proc: subprocess.Popen) -> int:
    """Wait until `proc` has the FIFO open for reading (it is then past start-up, in the command),
    and return our writing end. Opening a FIFO without blocking fails until a reader has it."""
    for _ in range(3000):
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.01)
    raise AssertionError("bark never opened the text file")


@pytest.mark.parametrize("signum, code, word", [(signal.SIGINT, 130, "interrupted"),
                                                (signal.SIGTERM, 143, "terminated")])
def test_a_signal_mid_run_ends_with_one_line(tiny_checkpoint, tmp_path, signum, code, word):
    fifo = tmp_path / "text.fifo"
    os.mkfifo(fifo)
    proc = start("say", "-f", str(fifo), "-o", "out/a.wav", "--model", str(tiny_checkpoint), *FAST, cwd=tmp_path,
                 stdout=subprocess.PIPE)
    writer = started_reading(fifo, proc)
    try:
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        os.close(writer)
    assert proc.returncode == code, stderr.decode()
    assert stderr.decode().splitlines() == [word] and stdout == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text.fifo"]  # no out/, no .part


def loading(proc: subprocess.Popen, library: str) -> None:
    """Wait until `proc` has mapped a shared library whose path holds `library`: it is then
    importing the package (PyTorch, say), a moment that is otherwise hard to catch."""
    maps = Path(f"/proc/{proc.pid}/maps")
    for _ in range(6000):
        try:
            if library in maps.read_text():
                return
        except OSError:
            pass
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.005)
    raise AssertionError(f"bark never loaded {library}")


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
@pytest.mark.parametrize("signum, code, word", [(signal.SIGINT, 130, "interrupted"),
                                                (signal.SIGTERM, 143, "terminated")])
def test_a_signal_while_pytorch_loads_ends_with_one_line(tiny_checkpoint, tmp_path, signum, code, word):
    proc = start("say", "Hello.", "-o", "a.wav", "--model", str(tiny_checkpoint), *FAST, cwd=tmp_path,
                 stdout=subprocess.PIPE)
    loading(proc, "libtorch")
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert_quiet_end(stderr)
    assert proc.returncode == code, stderr.decode()
    assert stderr.decode().splitlines() == [word] and stdout == b""
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_while_starting_up(monkeypatch, capsys):
    """Ctrl-C while Typer, Rich or PyTorch are imported: `main` imports the app inside its guard."""

    def interrupted_import():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_app", interrupted_import)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(SystemExit) as ended:
            cli.main()
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
    assert ended.value.code == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_sigterm_while_writing_leaves_no_part_file(tmp_path):
    """The handler `main` installs turns SIGTERM into an exception where the program is, so the
    temporary file is removed as for Ctrl-C."""
    previous = signal.signal(signal.SIGTERM, cli._terminate)

    def write(tmp):
        Path(tmp).write_bytes(b"RIFF half a file")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the signal arrives here

    try:
        with pytest.raises(cli.Terminated):
            audio.replace_atomically(tmp_path / "new" / "a.wav", write)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert list(tmp_path.iterdir()) == []  # neither the .part file nor the folder made for it
