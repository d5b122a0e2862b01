"""Audio out: join segments, and write wav/flac/ogg/mp3 files atomically or a WAV to stdout;
stream segments as they are made (a WAV of unknown length, or headerless PCM) through a writer thread.

A file is written to a temporary name beside the target and renamed over it (`os.replace`,
atomic on one file system), so an interrupted or failed run never leaves a half-written file
under the name the user asked for. Missing folders on the way are created at that moment, not
before, so a run that fails earlier leaves none. `-` stands for stdout, which always gets a WAV.
"""

from __future__ import annotations

import errno
import io
import os
import queue
import re
import stat
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf

from .errors import OutputError

STDOUT = "-"
FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3"}
SUBTYPES = ("PCM_16", "PCM_24", "FLOAT")  # what --subtype offers; OGG and MP3 have one each
DEFAULT_SUBTYPE = {"WAV": "PCM_16", "FLAC": "PCM_16", "OGG": "VORBIS", "MP3": "MPEG_LAYER_III"}
# Compressed formats: their one encoding takes no --subtype.
_NO_SUBTYPE = {"OGG": "Ogg Vorbis", "MP3": "MP3"}


def format_available(fmt: str) -> bool:
    """Whether the libsndfile soundfile loaded can write `fmt` (MP3 needs libsndfile 1.1 or later
    built with LAME and mpg123)."""
    return fmt in sf.available_formats() and sf.check_format(fmt, DEFAULT_SUBTYPE[fmt])


def output_format(path: str | os.PathLike, subtype: str | None = None) -> tuple[str, str]:
    """(format, subtype) for an output path: the format from the extension, `-` is WAV."""
    if str(path) == STDOUT:
        fmt = "WAV"
    else:
        suffix = Path(path).suffix.lower()
        if suffix not in FORMATS:
            raise OutputError(f"cannot tell the audio format of {path}",
                              f"end the output name in {', '.join(FORMATS)}, or use -o - for a WAV on stdout")
        fmt = FORMATS[suffix]
    if subtype is not None and fmt in _NO_SUBTYPE:
        raise OutputError(f"{path} is {_NO_SUBTYPE[fmt]}, which has no --subtype",
                          f"leave --subtype out for {Path(path).suffix.lower()}")
    if not format_available(fmt):
        raise OutputError(f"this libsndfile ({sf.__libsndfile_version__}) cannot write {fmt} for {path}",
                          "write .wav, .flac or .ogg, or install a libsndfile built with MP3 support")
    if subtype is None:
        return fmt, DEFAULT_SUBTYPE[fmt]
    subtype = subtype.upper()
    if not sf.check_format(fmt, subtype):
        raise OutputError(f"{fmt} cannot hold {subtype} samples",
                          "use .wav for FLOAT" if subtype == "FLOAT" else f"use one of {', '.join(SUBTYPES)}")
    return fmt, subtype


def check_output(path: str | os.PathLike, subtype: str | None = None, overwrite: bool = False) -> tuple[str, str]:
    """Everything that can be known before generating: format, folder, an existing file.

    Run it first so that a bad `-o` costs nothing; `write_audio` checks again.
    """
    fmt = output_format(path, subtype)
    if str(path) != STDOUT:
        check_destination(Path(path), overwrite)
    return fmt


def check_destination(path: Path, overwrite: bool = False) -> None:
    """A file can be created at `path`: its folder exists and is writable, or the nearest folder
    that exists is writable and nothing but missing folders lies between (they are created when
    the file is written); nothing is in the way (an existing file only with `overwrite`)."""
    path = Path(path)
    check_name_length(path)
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{existing} is a file, not a folder", "pick another output path")
    if path.is_dir():
        raise OutputError(f"{path} is a folder", "give a file name")
    if path.exists() and not overwrite:
        raise OutputError(f"{path} already exists", "pass --overwrite to replace it")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to folder {existing}", "pick a folder you can write to")


NAME_MAX = 255  # the longest file or folder name most file systems take (ext4, XFS, APFS), in bytes


def check_name_length(path: Path) -> None:
    """Every name in `path` fits NAME_MAX, so that writing cannot fail on it after generating."""
    size, name = max(((len(os.fsencode(name)), name) for name in Path(path).parts), default=(0, ""))
    if size > NAME_MAX:
        raise OutputError(f"the file name {name[:20]}... is {size} bytes long, over the {NAME_MAX}-byte limit "
                          "of file systems", "use a shorter name")


def join_segments(segments: Sequence[np.ndarray], sample_rate: int, gap_seconds: float = 0.25) -> np.ndarray:
    """One float32 signal from several, with `gap_seconds` of silence between neighbours."""
    if gap_seconds < 0:
        raise ValueError("gap_seconds must be >= 0")
    gap = np.zeros(int(round(gap_seconds * sample_rate)), dtype=np.float32)
    parts: list[np.ndarray] = []
    for i, segment in enumerate(segments):
        if i:
            parts.append(gap)
        parts.append(np.asarray(segment, dtype=np.float32).reshape(-1))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def _prepare(audio: np.ndarray, subtype: str) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    # Integer samples saturate at full scale (soundfile also asks libsndfile to clip; we do not
    # rely on it). FLOAT keeps whatever the codec produced.
    return audio if subtype == "FLOAT" else np.clip(audio, -1.0, 1.0)


# libsndfile's SFC_SET_ADD_PEAK_CHUNK; soundfile has no name for it.
_SFC_SET_ADD_PEAK_CHUNK = 0x1050
# Samples handed to libsndfile per call. Its Vorbis encoder crashes the process on one call of a
# few minutes of audio; about a second at a time is safe for every format and costs nothing.
WRITE_BLOCK = 1 << 15


def _write(file, audio: np.ndarray, sample_rate: int, fmt: str, subtype: str) -> None:
    """Write one mono file. Float WAVs get no PEAK chunk: it holds the time of writing, and a
    repeated run (same seed) should give a byte-identical file."""
    with sf.SoundFile(file, "w", sample_rate, 1, subtype, format=fmt) as handle:
        if subtype == "FLOAT":
            try:  # soundfile internals; without them the file only keeps its timestamp
                sf._snd.sf_command(handle._file, _SFC_SET_ADD_PEAK_CHUNK, sf._ffi.NULL, sf._snd.SF_FALSE)
            except AttributeError:
                pass
        for start in range(0, len(audio), WRITE_BLOCK):
            handle.write(audio[start : start + WRITE_BLOCK])


def encode(audio: np.ndarray, sample_rate: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    """The bytes of an audio file in memory (WAV by default)."""
    subtype = subtype or DEFAULT_SUBTYPE[fmt]
    buffer = io.BytesIO()
    _write(buffer, _prepare(audio, subtype), sample_rate, fmt, subtype)
    return buffer.getvalue()


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int, subtype: str | None = None,
                overwrite: bool = False, stdout: BinaryIO | None = None) -> str:
    """Write `audio` (float32, mono) to `path`, or a WAV to stdout for `-`. Returns the path.

    Raises OutputError when the file cannot be written; no file is left behind then.
    """
    fmt, subtype = check_output(path, subtype, overwrite)
    audio = _prepare(audio, subtype)
    if str(path) == STDOUT:
        data = encode(audio, sample_rate, fmt, subtype)
        if stdout is None:
            sys.stdout.flush()
            stdout = sys.stdout.buffer
        write_all(stdout, data)
        return STDOUT
    path = Path(path)
    replace_atomically(path, lambda tmp: _write(tmp, audio, sample_rate, fmt, subtype))
    return str(path)


def write_all(stream: BinaryIO, data: bytes, name: str = "stdout") -> None:
    """Write every byte of `data` to `stream` and flush, or raise OutputError saying why not
    (a full disk, a file size limit, a short write). A reader that closed the pipe is not an
    error of ours: BrokenPipeError goes up as it is, for the caller to end quietly."""
    try:
        written = stream.write(data)
        stream.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            raise
        raise OutputError(f"cannot write to {name}: {exc.strerror or exc}",
                          "the output was cut short; check the disk or the size limit") from None
    if written is not None and written != len(data):
        raise OutputError(f"cannot write to {name}: {written} of {len(data)} bytes went out",
                          "the output was cut short; check the disk or the size limit")


# Our temporary files: `.NAME.XXXXXXXX.part`, as tempfile.mkstemp names them with our prefix and suffix.
_PART = re.compile(r"^\..+\.[a-z0-9_]{8}\.part$")
# A temporary file this old was left by a writer that was killed (SIGKILL, a power cut): no
# write of ours keeps one open that long without finishing.
STALE_PART_SECONDS = 60


def remove_stale_parts(folder: Path, now: float | None = None) -> None:
    """Remove temporary files of ours in `folder` that a killed run left behind."""
    now = time.time() if now is None else now
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if not _PART.match(entry.name):
            continue
        try:
            stale = now - entry.stat(follow_symlinks=False).st_mtime > STALE_PART_SECONDS
            if stale and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
        except OSError:
            pass  # gone already, or not ours to remove


def _make_folders(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents; return those created, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for made in reversed(missing):
        made.mkdir()
    return missing


def replace_atomically(path: Path, write) -> None:
    """Call `write(temp_path)` for a temporary file beside `path`, then rename it to `path`.

    Missing folders are created first. On any failure, interruption included, the temporary file
    and the folders created for it are removed.
    """
    path = Path(path)
    created: list[Path] = []
    try:
        created = _make_folders(path.parent)
        remove_stale_parts(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except BaseException as exc:
        _remove_folders(created)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}",
                              "pick a folder you can write to") from None
        raise
    os.close(fd)
    try:
        write(tmp)
        # mkstemp makes the file private (0600); give it the mode a plain open() would have.
        os.chmod(tmp, _new_file_mode(path))
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        _remove_folders(created)
        if isinstance(exc, (OSError, sf.LibsndfileError, RuntimeError)):
            raise OutputError(f"cannot write {path}: {exc}", "check the disk and the output path") from None
        raise


def _remove_folders(folders: list[Path]) -> None:
    for folder in folders:  # deepest first
        try:
            folder.rmdir()
        except OSError:
            pass  # no longer empty: someone else wrote there meanwhile


def _new_file_mode(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o777  # replacing a file keeps its mode
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


# --- Streaming: each segment out as soon as it is made ------------------------------------------------

# --raw's sample formats (as piper's --output-raw): little-endian, mono, no header.
RAW_FORMATS = {"s16le": "PCM_16", "f32le": "FLOAT"}
# What a writer that cannot go back puts in a WAV header's two sizes (sox and ffmpeg on a pipe):
# readers take the data to run to the end of the stream.
UNKNOWN_SIZE = 0xFFFFFFFF
# subtype -> (WAVE format tag, bits per sample): 1 is integer PCM, 3 IEEE float.
_WAV_TAGS = {"PCM_16": (1, 16), "PCM_24": (1, 24), "FLOAT": (3, 32)}
# Segments waiting for the writer. Generation only waits when this many are queued, which takes
# a reader much slower than real time (a segment is ~13 s of audio).
STREAM_QUEUE = 8


def wav_header(sample_rate: int, subtype: str = "PCM_16", data_bytes: int | None = None) -> bytes:
    """The 44-byte header of a mono WAV: RIFF, WAVE, a 16-byte fmt chunk, the data chunk's start.
    `data_bytes=None` (a stream of unknown length) writes UNKNOWN_SIZE in both sizes. For PCM_16
    it is byte for byte the header libsndfile writes for a file of `data_bytes`."""
    if subtype not in _WAV_TAGS:
        raise OutputError(f"a streamed WAV holds {', '.join(_WAV_TAGS)} samples, not {subtype}",
                          "write a file with -o FILE for other sample formats")
    tag, bits = _WAV_TAGS[subtype]
    width = bits // 8
    riff = UNKNOWN_SIZE if data_bytes is None else min(36 + data_bytes, UNKNOWN_SIZE)
    data = UNKNOWN_SIZE if data_bytes is None else min(data_bytes, UNKNOWN_SIZE)
    fmt = struct.pack("<HHIIHH", tag, 1, sample_rate, sample_rate * width, width, bits)
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"data" + struct.pack("<I", data))


def pcm(audio: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> bytes:
    """Headerless little-endian mono samples, converted by libsndfile's own writer, so that each
    sample equals the one a .wav file of the same audio holds."""
    audio = _prepare(audio, subtype)
    buffer = io.BytesIO()
    if len(audio):
        with sf.SoundFile(buffer, "w", sample_rate, 1, subtype, endian="LITTLE", format="RAW") as handle:
            handle.write(audio)
    return buffer.getvalue()


def _patchable(stream: BinaryIO) -> bool:
    """Whether the sizes of a WAV header already written to `stream` can be put right at the end:
    a regular file not opened for appending (`-o - > out.wav`), or a buffer in memory."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        seekable = getattr(stream, "seekable", None)
        return bool(seekable and seekable())
    try:
        import fcntl

        if not stat.S_ISREG(os.fstat(fd).st_mode) or fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND:
            return False
        return stream.seekable()
    except (ImportError, OSError, ValueError):
        return False


_END = object()


class SegmentStream:
    """Segments of audio out to one binary stream as they come, in order, with `gap_seconds` of
    silence between: a WAV of unknown length (`header=True`) or headerless PCM.

    A thread of its own does the writing behind a queue of STREAM_QUEUE segments, so generation
    goes on while a slow reader (a pipe, a player) takes the audio, and waits only when the queue
    is full. A failed write (write_all's OutputError, or BrokenPipeError for a reader that left)
    stops the writing and is raised in the caller's thread by the next `put` or by `close`. When
    the stream is a regular file, `close` puts the header's sizes right, so the file is the one
    `write_audio` makes.

        with SegmentStream(sys.stdout.buffer, 24_000) as out:
            for segment in segments:
                out.put(segment)
    """

    def __init__(self, stream: BinaryIO, sample_rate: int, subtype: str = "PCM_16", *, header: bool = True,
                 gap_seconds: float = 0.25, name: str = "stdout", depth: int = STREAM_QUEUE):
        if subtype not in _WAV_TAGS:
            wav_header(sample_rate, subtype)  # raises the OutputError that says why
        self.stream, self.sample_rate, self.subtype, self.header, self.name = stream, sample_rate, subtype, header, name
        self.gap = bytes(int(round(gap_seconds * sample_rate)) * (_WAV_TAGS[subtype][1] // 8))
        self.data_bytes = 0
        self.segments = 0
        self._patch = header and _patchable(stream)
        self._start = 0
        self._error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        # A daemon: a run ended by Ctrl-C or an error must not wait for a reader that never reads.
        self._thread = threading.Thread(target=self._run, name=f"bark-writer-{name}", daemon=True)
        self._thread.start()

    def put(self, audio: np.ndarray) -> None:
        """Queue one segment (float32 mono); raise the writer's error if it has failed."""
        self._raise()
        self._queue.put(np.asarray(audio, dtype=np.float32).reshape(-1))

    def close(self) -> None:
        """Wait until every queued segment is out, then raise the writer's error if it failed."""
        self._queue.put(_END)
        self._thread.join()
        self._raise()

    def abort(self) -> None:
        """Stop without waiting (the run failed or was interrupted): queued segments are dropped."""
        self._error = self._error or _Aborted()
        try:
            self._queue.put_nowait(_END)
        except queue.Full:
            pass  # the writer is busy; it is a daemon and ends with the process

    def __enter__(self) -> "SegmentStream":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _raise(self) -> None:
        if self._error is not None and not isinstance(self._error, _Aborted):
            raise self._error

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _END:
                break
            if self._error is not None:
                continue  # failed: drain, so that `put` never blocks on a writer that stopped
            try:
                self._write(item)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                self._error = exc
        if self._error is None and self._patch and self.segments:
            try:
                self._patch_sizes()
            except BaseException as exc:  # noqa: BLE001
                self._error = exc

    def _write(self, audio: np.ndarray) -> None:
        samples = pcm(audio, self.sample_rate, self.subtype)
        if self.segments:
            data = self.gap + samples
        elif self.header:
            if self._patch:
                self._start = self.stream.tell()
            data = wav_header(self.sample_rate, self.subtype) + samples
        else:
            data = samples
        write_all(self.stream, data, self.name)
        self.data_bytes += len(samples) + (len(self.gap) if self.segments else 0)
        self.segments += 1

    def _patch_sizes(self) -> None:
        end = self.stream.tell()
        header = wav_header(self.sample_rate, self.subtype, self.data_bytes)
        self.stream.seek(self._start)
        write_all(self.stream, header, self.name)
        self.stream.seek(end)


class _Aborted(Exception):
    """The caller stopped the stream; nothing to report."""
