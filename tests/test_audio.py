"""audio.py: formats, subtypes, stdout, atomic writes that leave nothing behind, joining segments."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys

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


def test_stdout_gets_a_wav(tone):
    sink = io.BytesIO()
    assert audio.write_audio("-", tone, SR, stdout=sink) == "-"
    data, sr = sf.read(io.BytesIO(sink.getvalue()), dtype="float32")
    assert sr == SR and len(data) == len(tone) and sink.getvalue()[:4] == b"RIFF"


@pytest.mark.parametrize(
    "name, subtype, fragment",
    [("a.mp3", None, "audio format"), ("a", None, "audio format"), ("a.flac", "FLOAT", "FLAC cannot hold FLOAT"),
     ("a.ogg", "PCM_16", "no --subtype")],
)
def test_bad_format_or_subtype(tmp_path, tone, name, subtype, fragment):
    with pytest.raises(OutputError, match=fragment):
        audio.write_audio(tmp_path / name, tone, SR, subtype)
    assert os.listdir(tmp_path) == []


def test_destination_checks(tmp_path, tone):
    with pytest.raises(OutputError, match="does not exist"):
        audio.write_audio(tmp_path / "missing" / "a.wav", tone, SR)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="does not exist"):
        audio.write_audio(tmp_path / "file" / "a.wav", tone, SR)
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
