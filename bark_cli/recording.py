"""Read a recording to clone a voice from: WAV, FLAC, OGG, MP3 and whatever else libsndfile reads.

Everything a file could make costly or ambiguous is refused from its header, before any sample
is read: more than `MAX_CHANNELS` channels, a rate outside `MIN_RATE..MAX_RATE`, more than
`MAX_READ_SECONDS` to read. A lossless file shorter than its header says is refused as cut short.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from .errors import RecordingError

# Mono or stereo: a speaker is one voice, and a mix-down of more channels (surround, a
# multi-microphone session) is a choice the user should make, not us.
MAX_CHANNELS = 2
# Telephone speech up to studio masters; 192 kHz and above holds nothing HuBERT (16 kHz) or
# EnCodec (24 kHz) could use and multiplies the work of reading and resampling.
MIN_RATE, MAX_RATE = 8_000, 96_000
# The most audio read from one file (before silence is trimmed): ten minutes. An hour-long
# recording is refused from its header; --start/--end pick a part of it.
MAX_READ_SECONDS = 600.0
# Formats whose header gives the exact frame count, so that a shorter read means a damaged file.
_EXACT_LENGTH = {"WAV", "WAVEX", "RF64", "W64", "AIFF", "FLAC", "CAF", "AU"}
_DATA_SIZE = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def _hint() -> str:
    return "give a WAV, FLAC, OGG or MP3 recording of 4-15 s of one person speaking"


def _cut_short(info) -> bool:
    """A WAV/AIFF whose data chunk declares more bytes than the file holds (libsndfile reads the
    part that is there and notes the difference in its log). Streamed files that leave the size
    at 0 or 0xFFFFFFFF are not cut short."""
    match = _DATA_SIZE.search(getattr(info, "extra_info", "") or "")
    if not match:
        return False
    declared, actual = int(match.group(1)), int(match.group(2))
    return 0 < declared < 0xFFFFFF00 and declared > actual


def read_recording(path: str | os.PathLike, start: float | None = None,
                   end: float | None = None) -> tuple[np.ndarray, int]:
    """The samples of `path` between `start` and `end` seconds, as float32 (frames, channels), and
    the file's rate. Raises RecordingError, naming the file, for anything that is not usable audio."""
    import soundfile as sf

    path = Path(path)
    name = str(path)
    if not path.is_file():
        raise RecordingError(f"recording {name} does not exist", _hint())
    try:
        info = sf.info(str(path), verbose=True)
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError) as exc:
        detail = getattr(exc, "error_string", "") or str(exc)
        raise RecordingError(f"{name} is not a recording this program can read ({detail.strip() or 'unknown format'})",
                             _hint()) from None
    channels, rate, frames = info.channels, info.samplerate, info.frames
    if frames <= 0:
        raise RecordingError(f"{name} holds no audio", _hint())
    if channels > MAX_CHANNELS:
        raise RecordingError(f"{name} has {channels} channels; voices are cloned from mono or stereo",
                             "mix it down first, e.g. ffmpeg -i IN -ac 1 OUT.wav")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise RecordingError(f"{name} is sampled at {rate} Hz; {MIN_RATE}..{MAX_RATE} Hz can be read",
                             "resample it first, e.g. ffmpeg -i IN -ar 48000 OUT.wav")
    if _cut_short(info):
        raise RecordingError(f"{name} is cut short: its header promises more audio than the file holds",
                             "record or export it again")
    duration = frames / rate
    first = 0 if start is None else int(round(start * rate))
    last = frames if end is None else min(frames, int(round(end * rate)))
    if first >= frames:
        raise RecordingError(f"--start {start:g} is past the end of {name} ({duration:.1f} s)",
                             "pick a start inside the recording")
    if last <= first:
        raise RecordingError(f"--end {end:g} is not after --start {start or 0:g}", "give --end after --start")
    if (last - first) / rate > MAX_READ_SECONDS:
        raise RecordingError(
            f"{name} is {(last - first) / rate / 60:.0f} min long; at most {MAX_READ_SECONDS / 60:.0f} min are read",
            "pick the part to clone from with --start and --end (4-15 s is best)")
    try:
        data, _ = sf.read(str(path), start=first, stop=last, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as exc:
        detail = getattr(exc, "error_string", "") or str(exc)
        raise RecordingError(f"cannot read {name}: it is damaged or cut short ({detail.strip()})",
                             "record or export it again") from None
    if info.format in _EXACT_LENGTH and data.shape[0] < last - first:
        raise RecordingError(f"{name} is cut short: {data.shape[0]} of {last - first} frames could be read",
                             "record or export it again")
    return data, rate
