"""Playing audio as it is made: find a player, and hand it a stream to write segments to.

The player is, in this order: BARK_PLAYER (a command that reads a WAV stream on its stdin, split
as a shell would), `sounddevice` when it can be imported (`pip install 'bark-cli[play]'`), or the
first of pw-play, paplay, aplay, afplay, ffplay on PATH. Each gets the segments through
audio.SegmentStream, the writer `-o -` uses: a WAV of unknown length on its stdin (raw float
samples for sounddevice, a whole file for afplay, which cannot read stdin).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .audio import SegmentStream, write_audio
from .errors import OutputError

PLAYER_ENV = "BARK_PLAYER"
# Players found on PATH, in order, each with the arguments that make it read a WAV from stdin.
PLAYERS: tuple[tuple[str, ...], ...] = (
    ("pw-play", "-"),
    ("paplay",),
    ("aplay", "-q", "-"),
    ("afplay",),  # reads only files: given a temporary one
    ("ffplay", "-nodisp", "-autoexit", "-loglevel", "quiet", "-"),
)
NO_PLAYER_HINT = ("install one (pipewire, pulseaudio-utils or alsa-utils), pip install 'bark-cli[play]', "
                  f"set {PLAYER_ENV} to a command that reads a WAV on stdin, or write a file with -o")


@dataclass(frozen=True)
class Player:
    """How audio is played: a command (`argv`), or the sounddevice module (`argv` empty)."""

    name: str
    argv: tuple[str, ...] = ()

    @property
    def reads_stdin(self) -> bool:
        return self.name != "afplay"


def find_player(environ: dict[str, str] | None = None) -> Player:
    """The player to use, or OutputError saying how to get one."""
    environ = os.environ if environ is None else environ
    command = environ.get(PLAYER_ENV, "").strip()
    if command:
        argv = tuple(shlex.split(command))
        if shutil.which(argv[0], path=environ.get("PATH")) is None:
            raise OutputError(f"{PLAYER_ENV} names {argv[0]}, which is not found", "check the command")
        return Player(Path(argv[0]).name, argv)
    if _sounddevice() is not None:
        return Player("sounddevice")
    for argv in PLAYERS:
        found = shutil.which(argv[0], path=environ.get("PATH"))
        if found:
            return Player(argv[0], (found, *argv[1:]))
    raise OutputError("no audio player found", NO_PLAYER_HINT)


def _sounddevice():
    try:
        import sounddevice
    except (ImportError, OSError):  # not installed, or no PortAudio library
        return None
    return sounddevice


class Playback:
    """A player running: `put` each segment, `close` when done (it returns once the player has
    played everything), `abort` to stop it. Use as a context manager."""

    def __init__(self, player: Player, sample_rate: int, gap_seconds: float = 0.25):
        self.player = player
        self.sample_rate = sample_rate
        self.gap_seconds = gap_seconds
        self._process: subprocess.Popen | None = None
        self._segments: list[np.ndarray] = []  # afplay only: it gets a whole file at the end
        self._stream: SegmentStream | None = None
        self._device = None
        name = f"the player ({player.name})"
        if player.argv and player.reads_stdin:
            try:
                self._process = subprocess.Popen(player.argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
            except OSError as exc:
                raise OutputError(f"cannot start {player.name}: {exc.strerror or exc}", NO_PLAYER_HINT) from None
            self._stream = SegmentStream(_PlayerPipe(self._process.stdin, player.name), sample_rate, "PCM_16",
                                         gap_seconds=gap_seconds, name=name)
        elif not player.argv:
            sounddevice = _sounddevice()
            self._device = sounddevice.OutputStream(samplerate=sample_rate, channels=1, dtype="float32")
            self._device.start()
            self._stream = SegmentStream(_DeviceWriter(self._device), sample_rate, "FLOAT", header=False,
                                         gap_seconds=gap_seconds, name=name)

    def put(self, audio: np.ndarray) -> None:
        if self._stream is None:
            self._segments.append(audio)
        else:
            self._stream.put(audio)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
        if self._process is not None:
            try:
                self._process.stdin.close()
            except BrokenPipeError:
                pass  # every byte was flushed already; the status below says how the player ended
            code = self._process.wait()
            if code != 0:
                raise OutputError(f"the player {self.player.name} ended with status {code}",
                                  f"check the sound setup, or set {PLAYER_ENV}")
        elif self._device is not None:
            self._device.stop()
            self._device.close()
        else:
            self._play_file()

    def abort(self) -> None:
        if self._stream is not None:
            self._stream.abort()
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        if self._device is not None:
            self._device.abort()
            self._device.close()

    def _play_file(self) -> None:
        from .audio import join_segments

        audio = join_segments(self._segments, self.sample_rate, self.gap_seconds)
        with tempfile.TemporaryDirectory(prefix="bark-play-") as folder:
            path = write_audio(Path(folder) / "speech.wav", audio, self.sample_rate)
            code = subprocess.run([*self.player.argv, path], stdout=subprocess.DEVNULL).returncode
        if code != 0:
            raise OutputError(f"the player {self.player.name} ended with status {code}",
                              f"check the sound setup, or set {PLAYER_ENV}")

    def __enter__(self) -> "Playback":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class _PlayerPipe:
    """A player's stdin: a player that quits early is an error of the player, not a closed stdout
    (which ends `bark` quietly)."""

    def __init__(self, pipe: BinaryIO, name: str):
        self.pipe, self.name = pipe, name

    def write(self, data: bytes) -> int:
        try:
            return self.pipe.write(data)
        except BrokenPipeError:
            raise OutputError(f"the player {self.name} stopped reading", f"check it, or set {PLAYER_ENV}") from None

    def flush(self) -> None:
        try:
            self.pipe.flush()
        except BrokenPipeError:
            raise OutputError(f"the player {self.name} stopped reading", f"check it, or set {PLAYER_ENV}") from None

    def seekable(self) -> bool:
        return False


class _DeviceWriter:
    """Raw float32 samples to a sounddevice OutputStream (its write blocks until they fit)."""

    def __init__(self, device):
        self.device = device

    def write(self, data: bytes) -> int:
        self.device.write(np.frombuffer(data, dtype="<f4").reshape(-1, 1))
        return len(data)

    def flush(self) -> None:
        pass

    def seekable(self) -> bool:
        return False
