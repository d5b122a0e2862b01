"""audio.py: formats, subtypes, stdout, atomic writes that leave nothing behind, joining segments."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from bark_cli import audio
from bark_cli.errors import OutputError

SR = 24_000


@pytest.fixture
def tone() -> np.ndarray:
    t = np.arange(SR // 2) / SR
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.mark.parametrize(
    "name, subtype, expected",
    [("a.wav", None, "PCM_16"), ("a.flac", None, "PCM_16"), ("a.ogg", None, "VORBIS"),
     ("a.wav", "FLOAT", "FLOAT"), ("a.WAV", "pcm_24", "PCM_24"), ("a.flac", "PCM_24", "PCM_24")],
)
def test_write_formats(tmp_path, tone, name, subtype, expected):
    path = tmp_path / name
    assert audio.write_audio(path, tone, SR, subtype) == str(path)
    info = sf.info(path)
    assert (info.samplerate, info.frames, info.channels, info.subtype) == (SR, len(tone), 1, expected)
    assert os.listdir(tmp_path) == [name]


def test_float_keeps_samples_and_pcm_clips(tmp_path):
    loud = np.array([0.0, 0.25, -2.0, 3.0, 1e-6], dtype=np.float32)
    audio.write_audio(tmp_path / "f.wav", loud, SR, "FLOAT")
    np.testing.assert_array_equal(sf.read(tmp_path / "f.wav", dtype="float32")[0], loud)
    audio.write_audio(tmp_path / "i.wav", loud, SR)
    pcm = sf.read(tmp_path / "i.wav", dtype="int16")[0]
    assert pcm[2] == -32768 and pcm[3] == 32767  # clipped, not wrapped around


def test_float_wav_is_byte_identical_when_repeated(tmp_path, tone):
    """No PEAK chunk (it would carry the time of writing)."""
    audio.write_audio(tmp_path / "a.wav", tone, SR, "FLOAT")
    audio.write_audio(tmp_path / "b.wav", tone, SR, "FLOAT")
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    assert b"PEAK" not in (tmp_path / "a.wav").read_bytes()[:100]


def test_missing_folders_are_made_at_write_time(tmp_path, tone):
    target = tmp_path / "a" / "b" / "out.wav"
    audio.check_output(target)  # checking creates nothing
    assert os.listdir(tmp_path) == []
    audio.write_audio(target, tone, SR)
    assert sf.info(target).frames == len(tone) and os.listdir(target.parent) == ["out.wav"]


def test_a_failed_write_removes_the_folders_it_made(tmp_path, tone, monkeypatch):
    (tmp_path / "kept").mkdir()
    monkeypatch.setattr(audio, "_write", _failing_write(OSError(28, "No space left on device")))
    with pytest.raises(OutputError, match="No space left on device"):
        audio.write_audio(tmp_path / "kept" / "new" / "deeper" / "a.wav", tone, SR)
    assert os.listdir(tmp_path) == ["kept"] and os.listdir(tmp_path / "kept") == []


def test_stale_part_files_are_removed_by_the_next_write(tmp_path, tone):
    """A `.part` that a killed run (SIGKILL) left is removed by the next write into its folder, once
    it is older than a minute; a fresh one (another run writing now) and other files stay."""
    old = time.time() - audio.STALE_PART_SECONDS - 5
    stale = tmp_path / ".story.wav.k3j_9x2a.part"
    fresh = tmp_path / ".other.flac.abcdefgh.part"
    not_ours = [tmp_path / "notes.part", tmp_path / ".story.wav.part", tmp_path / ".x.wav.TOOLONG12.part"]
    for path in (stale, fresh, *not_ours):
        path.write_bytes(b"RIFF")
    for path in (stale, *not_ours):
        os.utime(path, (old, old))
    audio.write_audio(tmp_path / "a.wav", tone, SR)
    assert sorted(os.listdir(tmp_path)) == sorted(["a.wav", fresh.name, *(p.name for p in not_ours)])


class _ShortWriter(io.BytesIO):
    """A stream that takes only half of what it is given, as a file at its size limit does."""

    def write(self, data):
        return super().write(bytes(data[: len(data) // 2]))


def test_a_short_write_to_stdout_is_an_error(tone):
    size = len(audio.encode(tone, SR))
    with pytest.raises(OutputError, match=f"cannot write to stdout: {size // 2} of {size} bytes went out"):
        audio.write_audio("-", tone, SR, stdout=_ShortWriter())


def test_stdout_to_a_full_disk(tone):
    with open("/dev/full", "wb") as full, pytest.raises(OutputError, match="No space left on device"):
        audio.write_audio("-", tone, SR, stdout=full)


def test_mp3_when_libsndfile_has_it(tmp_path, tone):
    if not audio.format_available("MP3"):
        with pytest.raises(OutputError, match="cannot write MP3"):
            audio.write_audio(tmp_path / "a.mp3", tone, SR)
        return
    audio.write_audio(tmp_path / "a.mp3", tone, SR)
    info = sf.info(tmp_path / "a.mp3")
    assert (info.format, info.samplerate, info.channels) == ("MP3", SR, 1)
    back, _ = sf.read(tmp_path / "a.mp3", dtype="float32")
    # A lossy codec: the tone comes back as a tone (same loudness), not bit for bit.
    assert abs(len(back) - len(tone)) < 2 * 1152
    assert np.sqrt(np.mean(back**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


def test_stdout_gets_a_wav(tone):
    sink = io.BytesIO()
    assert audio.write_audio("-", tone, SR, stdout=sink) == "-"
    data, sr = sf.read(io.BytesIO(sink.getvalue()), dtype="float32")
    assert sr == SR and len(data) == len(tone) and sink.getvalue()[:4] == b"RIFF"


@pytest.mark.parametrize(
    "name, subtype, fragment",
    [("a.aiff", None, "audio format"), ("a", None, "audio format"), ("a.flac", "FLOAT", "FLAC cannot hold FLOAT"),
     ("a.ogg", "PCM_16", "no --subtype"), ("a.mp3", "PCM_16", "no --subtype")],
)
def test_bad_format_or_subtype(tmp_path, tone, name, subtype, fragment):
    with pytest.raises(OutputError, match=fragment):
        audio.write_audio(tmp_path / name, tone, SR, subtype)
    assert os.listdir(tmp_path) == []


def test_destination_checks(tmp_path, tone):
    (tmp_path / "file").write_text("x")
    for inside in ("file/a.wav", "file/deeper/a.wav"):
        with pytest.raises(OutputError, match="file is a file, not a folder"):
            audio.write_audio(tmp_path / inside, tone, SR)
    (tmp_path / "dir.wav").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        audio.write_audio(tmp_path / "dir.wav", tone, SR)
    assert sorted(os.listdir(tmp_path)) == ["dir.wav", "file"]


def test_existing_file_needs_overwrite_and_keeps_its_mode(tmp_path, tone):
    path = tmp_path / "a.wav"
    path.write_bytes(b"old")
    path.chmod(0o640)
    with pytest.raises(OutputError, match="already exists"):
        audio.write_audio(path, tone, SR)
    assert path.read_bytes() == b"old"
    audio.write_audio(path, tone, SR, overwrite=True)
    assert sf.info(path).frames == len(tone)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_new_file_mode_follows_umask(tmp_path, tone):
    old = os.umask(0o022)
    try:
        audio.write_audio(tmp_path / "a.wav", tone, SR)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.wav").stat().st_mode) == 0o644  # not mkstemp's 0600


def _failing_write(exc):
    def write(file, data, samplerate, fmt, subtype):
        with open(file, "wb") as handle:  # half a file, then the failure
            handle.write(b"RIFF\x00\x00")
        raise exc

    return write


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), RuntimeError("libsndfile failed")])
def test_failed_write_leaves_nothing(tmp_path, tone, monkeypatch, exc):
    monkeypatch.setattr(audio, "_write", _failing_write(exc))
    with pytest.raises(OutputError, match="cannot write"):
        audio.write_audio(tmp_path / "a.wav", tone, SR)
    assert os.listdir(tmp_path) == []


def test_failed_overwrite_keeps_the_old_file(tmp_path, tone, monkeypatch):
    path = tmp_path / "a.wav"
    path.write_bytes(b"old")
    monkeypatch.setattr(audio, "_write", _failing_write(OSError(5, "I/O error")))
    with pytest.raises(OutputError):
        audio.write_audio(path, tone, SR, overwrite=True)
    assert os.listdir(tmp_path) == ["a.wav"] and path.read_bytes() == b"old"


def test_interrupted_write_leaves_nothing(tmp_path, tone, monkeypatch):
    monkeypatch.setattr(audio, "_write", _failing_write(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        audio.write_audio(tmp_path / "a.flac", tone, SR)
    assert os.listdir(tmp_path) == []


def test_join_segments():
    a, b, c = (np.full(n, v, dtype=np.float32) for n, v in ((100, 0.1), (50, 0.2), (10, 0.3)))
    joined = audio.join_segments([a, b, c], SR, gap_seconds=0.01)  # 240-sample gaps
    assert joined.dtype == np.float32 and len(joined) == 160 + 2 * 240
    np.testing.assert_array_equal(joined[100:340], 0)
    np.testing.assert_array_equal(joined[340:390], b)
    assert len(audio.join_segments([a], SR)) == 100
    assert len(audio.join_segments([], SR)) == 0
    assert len(audio.join_segments([a, b], SR, gap_seconds=0)) == 150


def test_unwritable_folder_is_refused_before_writing(tmp_path, tone, monkeypatch):
    """What a read-only folder looks like to a non-root user (os.access says no)."""
    monkeypatch.setattr(audio.os, "access", lambda path, mode: False)
    with pytest.raises(OutputError, match="cannot write to folder"):
        audio.write_audio(tmp_path / "a.wav", tone, SR)
    assert os.listdir(tmp_path) == []


def test_long_ogg_is_written_whole(tmp_path):
    """Two and ten minutes of Vorbis: libsndfile crashes the process when handed minutes of audio
    in one call, so the writer feeds it in blocks. Run in a child process, where a crash is an
    exit status rather than the end of the test run."""
    script = (
        "import sys, numpy as np; from bark_cli import audio\n"
        "for minutes in (2, 10):\n"
        "    n = minutes * 60 * 24000\n"
        "    tone = (0.3 * np.sin(np.arange(n, dtype=np.float32) * 0.05)).astype(np.float32)\n"
        "    audio.write_audio(f'{sys.argv[1]}/long{minutes}.ogg', tone, 24000)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for minutes in (2, 10):
        info = sf.info(str(tmp_path / f"long{minutes}.ogg"))
        assert (info.format, info.samplerate) == ("OGG", 24000)
        assert info.frames == minutes * 60 * 24000
    assert sorted(os.listdir(tmp_path)) == ["long10.ogg", "long2.ogg"]
