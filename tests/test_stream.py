"""Hearing the audio as it is made: longform.stream, the streaming writer, `-o -`, --raw, --play.

Through the library on the tiny model, through CliRunner, and through the installed script where
real pipes, terminals and signals are. The tiny random model never emits EOS, so
--max-semantic-tokens fixes each segment's length: 8 tokens -> 12 EnCodec frames of 320 samples.
"""

from __future__ import annotations

import errno
import io
import os
import pty
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from bark_cli import audio
from bark_cli.config import SamplingOptions
from bark_cli.cli import app
from bark_cli.errors import InputError, OutputError
from bark_cli.longform import speak, stream
from bark_cli.voice import load_voice_file
from tiny_bark import REFERENCE

BARK = Path(sys.executable).with_name("bark")
STORY = ("One dog barked. Then a cat answered it loudly. The bird said nothing at all. "
         "A fox ran past the fence. Night came down on the farm.")
FAST = dict(sampling=SamplingOptions(temperature=0.0, max_semantic_tokens=8, min_eos_p=0))
CLI_FAST = ["--max-semantic-tokens", "8", "--device", "cpu", "--max-segment-chars", "30", "--gap", "0.1"]
SEGMENT_SAMPLES = 12 * 320


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BARK_VOICES_DIR", str(tmp_path / "voices"))
    for name in ("BARK_MODEL", "BARK_DEBUG", "BARK_PLAYER"):
        monkeypatch.delenv(name, raising=False)


def script_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "BARK_PLAYER"}
    return {**env, "HF_HUB_OFFLINE": "1", "BARK_VOICES_DIR": "voices", **extra}


def script(*args: str, **kwargs) -> subprocess.CompletedProcess:
    if not BARK.is_file():
        pytest.skip(f"no installed script at {BARK}")
    kwargs.setdefault("env", script_env())
    return subprocess.run([str(BARK), *args], capture_output=True, timeout=300, **kwargs)


def expected_s16(x: np.ndarray) -> bytes:
    """16-bit samples as a WAV file holds them: x * 32768 rounded down, saturated at full scale."""
    return np.clip(np.floor(x.astype(np.float64) * 32768), -32768, 32767).astype("<i2").tobytes()


# --- the library ----------------------------------------------------------------------------------


def test_stream_yields_in_order_and_equals_speak(bark):
    voice = load_voice_file(REFERENCE / "suno-prompts" / "v2" / "en_speaker_3.npz")
    options = dict(voice=voice, max_segment_chars=30, batch_size=2, seed=11, **FAST)
    parts = list(stream(bark, STORY, **options))
    speech = speak(bark, STORY, gap=0.1, **options)
    assert [p.index for p in parts] == list(range(len(speech.segments))) and len(parts) >= 4
    assert [p.text for p in parts] == speech.segments
    for part, whole in zip(parts, speech.parts):
        assert part.generation.seed == whole.seed == 11 + part.index
        np.testing.assert_array_equal(part.audio, whole.audio)
    np.testing.assert_array_equal(audio.join_segments([p.audio for p in parts], 24_000, 0.1), speech.audio)


def test_the_first_segment_comes_alone_then_batches(bark, monkeypatch):
    """Batching never delays the first audio: it is yielded after one batch of one, whatever the
    batch size, and the rest come in batches."""
    calls: list[int] = []
    original = bark.generate_batch

    def counting(texts, **kwargs):
        calls.append(len(texts))
        return original(texts, **kwargs)

    voice = load_voice_file(REFERENCE / "suno-prompts" / "v2" / "en_speaker_3.npz")
    monkeypatch.setattr(bark, "generate_batch", counting)
    parts = stream(bark, STORY, voice=voice, max_segment_chars=30, batch_size=3, seed=1, **FAST)
    assert calls == []  # nothing made before it is asked for
    first = next(parts)
    assert first.index == 0 and calls == [1]
    rest = list(parts)
    assert calls[0] == 1 and all(n <= 3 for n in calls[1:]) and sum(calls) == 1 + len(rest)
    assert calls[1] == min(3, len(rest))


def test_stream_checks_its_options_at_the_call(bark):
    with pytest.raises(InputError, match="voice mode"):
        stream(bark, STORY, voice_mode="loop", **FAST)
    with pytest.raises(InputError, match="batch size"):
        stream(bark, STORY, batch_size=0, **FAST)


# --- the streaming writer ----------------------------------------------------------------------------


def test_wav_header_is_libsndfiles_for_a_known_length():
    x = np.linspace(-1, 1, 1000, dtype=np.float32)
    whole = audio.encode(x, 24_000)
    assert audio.wav_header(24_000, "PCM_16", 2000) == whole[:44]
    streamed = audio.wav_header(24_000, "PCM_16")
    assert streamed[4:8] == streamed[40:44] == b"\xff\xff\xff\xff" and streamed[8:40] == whole[8:40]


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_a_streamed_wav_read_from_a_pipe_parses(subtype):
    """Header and segments through a real pipe, read back as a buffer: soundfile takes the unknown
    sizes as "to the end", and the samples are those of a file."""
    x = [np.sin(np.arange(n, dtype=np.float32) / 7) * 0.5 for n in (500, 300, 700)]
    read_end, write_end = os.pipe()
    received = bytearray()
    reader = threading.Thread(target=lambda: received.extend(_read_all(read_end)))
    reader.start()
    with open(write_end, "wb") as pipe:
        with audio.SegmentStream(pipe, 24_000, subtype, gap_seconds=0.01) as out:
            for segment in x:
                out.put(segment)
    reader.join()
    assert bytes(received[4:8]) == b"\xff\xff\xff\xff"
    data, sr = sf.read(io.BytesIO(bytes(received)), dtype="float32")
    whole, _ = sf.read(io.BytesIO(audio.encode(audio.join_segments(x, 24_000, 0.01), 24_000, "WAV", subtype)),
                       dtype="float32")
    assert sr == 24_000
    np.testing.assert_array_equal(data, whole)


def _read_all(fd: int) -> bytes:
    with open(fd, "rb") as pipe:
        return pipe.read()


def test_generation_does_not_wait_on_a_slow_reader():
    """A reader that takes nothing yet: `put` returns for as many segments as the queue holds,
    then everything goes out in order once the reader reads."""
    release = threading.Event()
    sink = io.BytesIO()

    class Slow:
        def write(self, data):
            release.wait()
            return sink.write(data)

        def flush(self):
            pass

        def seekable(self):
            return False

    segments = [np.full(10, i / 10, dtype=np.float32) for i in range(audio.STREAM_QUEUE)]
    out = audio.SegmentStream(Slow(), 24_000, "FLOAT", header=False, gap_seconds=0)
    for segment in segments:  # the writer holds the first, the queue the rest: no put blocks
        out.put(segment)
    assert sink.getvalue() == b""
    release.set()
    out.close()
    assert sink.getvalue() == np.concatenate(segments).astype("<f4").tobytes()


def test_a_failed_write_surfaces_as_the_one_line_error():
    class Full:
        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def flush(self):
            pass

        def seekable(self):
            return False

    out = audio.SegmentStream(Full(), 24_000)
    out.put(np.zeros(10, dtype=np.float32))
    with pytest.raises(OutputError, match="cannot write to stdout: No space left on device"):
        out.close()


# --- `bark say`: stdout, --raw, a file ----------------------------------------------------------------


def cli_say(model, *args: str, env: dict | None = None):
    return CliRunner().invoke(app, ["say", STORY, "--model", str(model), *CLI_FAST, *args], env=env)


@pytest.mark.parametrize("fmt", ["s16le", "f32le"])
def test_raw_is_the_float_audio_byte_for_byte(bark, tiny_checkpoint, fmt):
    result = cli_say(tiny_checkpoint, "--raw", "--raw-format", fmt, "--seed", "5")
    assert result.exit_code == 0, result.output
    speech = speak(bark, STORY, max_segment_chars=30, gap=0.1, seed=5, sampling=SamplingOptions(max_semantic_tokens=8))
    x = np.clip(speech.audio, -1, 1) if fmt == "s16le" else speech.audio
    expected = expected_s16(x) if fmt == "s16le" else x.astype("<f4").tobytes()
    assert result.stdout_bytes == expected


def test_stdout_and_a_file_hold_the_same_wav(tiny_checkpoint):
    """`-o -` into a file (sizes put right at the end) and `-o FILE` (written whole, atomically)
    give the same bytes; nothing else is left in the folder."""
    filed = cli_say(tiny_checkpoint, "-o", "a.wav", "--seed", "9")
    piped = cli_say(tiny_checkpoint, "-o", "-", "--seed", "9")
    assert filed.exit_code == piped.exit_code == 0, (filed.output, piped.output)
    assert Path("a.wav").read_bytes() == piped.stdout_bytes
    assert sorted(p.name for p in Path.cwd().iterdir()) == ["a.wav"]


@pytest.mark.parametrize("args, fragment", [
    (["--raw", "-o", "a.wav"], "--raw writes to stdout"),
    (["--raw", "--subtype", "FLOAT"], "--raw-format, not --subtype"),
    (["--raw", "--json"], "both want stdout"),
])
def test_raw_refuses_other_outputs(tiny_checkpoint, args, fragment):
    result = cli_say(tiny_checkpoint, *args)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert list(Path.cwd().iterdir()) == []


def test_the_first_segment_reaches_the_pipe_before_the_last_is_made(tiny_checkpoint, tmp_path):
    """Read `-o -` as it comes: once the first segment's bytes are in, interrupt the run. Had
    the audio been held back until every segment was made, the whole WAV would have gone out in
    one write before the first byte arrived (it fits a pipe's 64 KiB); streamed, only a prefix
    of the full output has. Twelve short segments made one by one (`--batch-size 1`) keep the
    run going well over a second after the first segment, however slowly this test is scheduled."""
    text = " ".join(f"Word number {i}." for i in range(12))
    args = ["say", text, "--model", str(tiny_checkpoint), "--max-semantic-tokens", "4", "--device", "cpu",
            "--max-segment-chars", "16", "--gap", "0", "--batch-size", "1", "--seed", "4", "-o", "-"]
    full = script(*args, cwd=tmp_path)
    assert full.returncode == 0, full.stderr.decode()
    segment_bytes = 2 * 6 * 320  # 4 semantic tokens -> 6 frames of 320 samples, 16-bit
    assert len(full.stdout) == 44 + 12 * segment_bytes < 65_536
    first = 44 + segment_bytes
    # SIGINT at its default in bark, as in a foreground run: a test runner started as a background
    # job has it ignored, and bark would inherit that.
    proc = subprocess.Popen([str(BARK), *args], cwd=tmp_path, env=script_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    received = b""
    while len(received) < first:
        chunk = os.read(proc.stdout.fileno(), first - len(received))
        assert chunk, proc.stderr.read().decode()
        received += chunk
    proc.send_signal(signal.SIGINT)
    rest, stderr = proc.communicate(timeout=120)
    received += rest
    assert proc.returncode == 130, stderr.decode()
    assert len(received) < len(full.stdout)
    assert received == full.stdout[: len(received)]


# --- playing ------------------------------------------------------------------------------------------


def test_the_player_gets_the_wav_stdout_gets(tiny_checkpoint, tmp_path):
    args = ["say", STORY, "--model", str(tiny_checkpoint), *CLI_FAST, "--seed", "2"]
    piped = script(*args, "-o", "-", cwd=tmp_path)
    played = script(*args, "--play", cwd=tmp_path, env=script_env(BARK_PLAYER="sh -c 'cat > played.wav'"))
    assert piped.returncode == played.returncode == 0, played.stderr.decode()
    heard = (tmp_path / "played.wav").read_bytes()
    assert heard == piped.stdout and played.stdout == b""
    data, sr = sf.read(io.BytesIO(heard), dtype="float32")
    assert sr == 24_000 and len(data) > 4 * SEGMENT_SAMPLES


def test_on_a_terminal_without_o_it_plays(tiny_checkpoint, tmp_path):
    """No -o and stdout a terminal: the audio goes to the player, nothing to the terminal."""
    if not BARK.is_file():
        pytest.skip(f"no installed script at {BARK}")
    leader, follower = pty.openpty()
    try:
        done = subprocess.run([str(BARK), "say", "Hello there.", "--model", str(tiny_checkpoint), *CLI_FAST],
                              cwd=tmp_path, env=script_env(BARK_PLAYER="sh -c 'cat > played.wav'"),
                              stdout=follower, stderr=subprocess.PIPE, timeout=300)
    finally:
        os.close(follower)
        os.close(leader)
    assert done.returncode == 0, done.stderr.decode()
    info = sf.info(tmp_path / "played.wav")
    assert (info.samplerate, info.channels) == (24_000, 1)


def test_no_player_is_one_line_and_exit_2(tiny_checkpoint, tmp_path):
    done = script("say", "Hello.", "--model", str(tiny_checkpoint), "--play", cwd=tmp_path,
                  env=script_env(PATH=""))
    assert done.returncode == 2
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no audio player found"), lines
    assert "alsa-utils" in lines[0] and "bark-cli[play]" in lines[0] and "-o" in lines[0]
    assert done.stdout == b"" and list(tmp_path.iterdir()) == []


def test_writing_a_file_and_playing_it(tiny_checkpoint, tmp_path):
    args = ["say", STORY, "--model", str(tiny_checkpoint), *CLI_FAST, "--seed", "6"]
    done = script(*args, "-o", "a.wav", "--play", cwd=tmp_path,
                  env=script_env(BARK_PLAYER="sh -c 'cat > played.wav'"))
    assert done.returncode == 0, done.stderr.decode()
    filed = (tmp_path / "a.wav").read_bytes()
    heard = (tmp_path / "played.wav").read_bytes()
    assert heard[44:] == filed[44:] and heard[4:8] == b"\xff\xff\xff\xff"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "played.wav"]
