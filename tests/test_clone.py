"""Voice cloning end to end: the library call against a reference assembled from transformers'
HubertModel, torch.nn layers and EncodecModel.encode; the command; a cloned voice in `bark say`;
hostile recordings through the `bark` script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from bark_cli import cloning
from bark_cli.cli import app
from bark_cli.cli import clone as clone_cli
from bark_cli.errors import RecordingError
from bark_cli.voice import load_voice_file
from bark_cli.recording import read_recording

transformers = pytest.importorskip("transformers")

from tiny_clone import write_hubert_folder, write_quantizer  # noqa: E402

BARK = Path(sys.executable).with_name("bark")


def speech_like(seconds: float, rate: int, seed: int = 0, channels: int = 1) -> np.ndarray:
    """Harmonics of a wandering pitch under a syllable-rate envelope, plus a little noise:
    loud and quiet stretches like speech. (frames, channels) float32."""
    gen = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    pitch = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = 0.2 + 0.8 * np.abs(np.sin(2 * np.pi * 2.5 * t))
    mono = 0.25 * envelope * voice + 0.01 * gen.standard_normal(t.size)
    return np.stack([mono * (1 - 0.1 * c) for c in range(channels)], axis=1).astype(np.float32)


def with_silence(x: np.ndarray, rate: int, before: float, after: float) -> np.ndarray:
    pad = lambda s: np.zeros((int(s * rate), x.shape[1]), np.float32)  # noqa: E731
    return np.concatenate([pad(before), x, pad(after)])


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_checkpoint):
    folder = tmp_path_factory.mktemp("clone-models")
    hubert = write_hubert_folder(folder / "hubert", seed=3)
    quantizer = folder / "quantifier_tiny_14.pth"
    reference = write_quantizer(quantizer, input_size=32, hidden_size=64, version=0, seed=4)  # version 1: test_semantic_quantizer
    return {"model": tiny_checkpoint, "hubert": hubert, "quantizer": quantizer, "reference": reference}


@pytest.fixture(scope="module")
def cloner(models):
    return cloning.load_cloner(models["model"], None, models["hubert"], models["quantizer"])


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """3 s of stereo 'speech' at 44.1 kHz between 0.5 s and 0.8 s of silence, as FLAC."""
    path = tmp_path_factory.mktemp("recordings") / "me.flac"
    sf.write(path, with_silence(speech_like(3.0, 44_100, channels=2), 44_100, 0.5, 0.8), 44_100)
    return path


# --- the library ------------------------------------------------------------------------------


def test_clone_equals_a_reference_from_transformers_and_torch_nn(models, cloner, recording, hf_tiny):
    samples, rate = read_recording(recording)
    voice = cloning.clone_voice(samples, rate, cloner)

    # The reference: the same prepared audio, resampled the same way, through the oracles.
    mono = cloning.prepare(samples, rate)
    speech16 = torch.from_numpy(cloning.resample(mono, rate, 16_000))
    speech24 = torch.from_numpy(cloning.resample(mono, rate, 24_000))
    hubert = transformers.HubertModel.from_pretrained(models["hubert"]).eval()
    with torch.no_grad():
        features = hubert(speech16[None], output_hidden_states=True).hidden_states[9][0]
        codes = hf_tiny.codec_model.encode(speech24[None, None], bandwidth=6.0).audio_codes[0, 0]
    tokens = models["reference"].tokens(features)

    assert codes.shape[0] == 8
    np.testing.assert_array_equal(voice.semantic_prompt, tokens.numpy())
    np.testing.assert_array_equal(voice.fine_prompt, codes.numpy())
    np.testing.assert_array_equal(voice.coarse_prompt, codes[:2].numpy())
    # many distinct tokens, so that equality says something. (The tiny Bark codec's latent is small
    # beside its codebooks, so its codes vary little; test_codec_encoder checks codes that do.)
    assert len(set(voice.semantic_prompt.tolist())) > 5
    # ≈50 semantic tokens and 75 codec frames a second of the trimmed audio
    seconds = mono.size / rate
    assert abs(voice.semantic_prompt.size - 50 * seconds) <= 2
    assert voice.fine_prompt.shape[1] == -(-speech24.numel() // 320)


def test_prepare_mixes_trims_and_keeps_the_end():
    rate = 16_000
    tone = speech_like(2.0, rate, channels=2)
    prepared = cloning.prepare(with_silence(tone, rate, 0.5, 0.5), rate)
    # 0.5 s of silence is 25 whole 20 ms windows: trimmed down to the 100 ms margin on each side
    assert prepared.size == int(2.2 * rate)
    np.testing.assert_allclose(prepared[1600:-1600], tone.mean(axis=1), atol=1e-7)
    # a 20 s recording: its last KEEP_SECONDS are kept
    long = speech_like(20.0, rate, seed=1)
    np.testing.assert_array_equal(cloning.prepare(long, rate), long[-15 * rate:, 0])
    # integer PCM is scaled to [-1, 1)
    pcm = (tone[:, 0] * 32768).astype(np.int16)
    np.testing.assert_allclose(cloning.prepare(pcm, rate), pcm / 32768, atol=1e-7)


@pytest.mark.parametrize("samples, message", [
    (np.zeros((0, 1), np.float32), "holds no audio"),
    (np.zeros(48_000, np.float32), "is silent"),
    (speech_like(0.2, 16_000), "only 0.20 s of sound"),
    (speech_like(2.0, 16_000, channels=8), "8 channels"),
    (np.full(20_000, np.nan, np.float32), "NaN"),
])
def test_unusable_samples_raise_recording_errors(samples, message):
    with pytest.raises(RecordingError, match=message):
        cloning.prepare(samples, 16_000)


# --- the command ------------------------------------------------------------------------------


def run(*args, env: dict | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def model_args(models) -> list[str]:
    return ["--model", models["model"], "--hubert", models["hubert"], "--quantizer", models["quantizer"]]


def test_the_defaults_in_the_help_are_the_library_defaults():
    assert clone_cli.DEFAULT_HUBERT == cloning.DEFAULT_HUBERT
    assert clone_cli.DEFAULT_QUANTIZER == cloning.DEFAULT_QUANTIZER


def test_clone_then_say_uses_the_voice_as_its_file_would(models, cloner, recording, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BARK_VOICES_DIR", str(tmp_path / "voices"))
    result = run("presets", "clone", recording, "--name", "me", *model_args(models), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    saved = tmp_path / "voices" / "me.npz"
    assert report["path"] == str(saved) and report["name"] == "me"
    voice = load_voice_file(saved)
    samples, rate = read_recording(recording)
    want = cloner.clone(samples, rate)
    for key in ("semantic_prompt", "coarse_prompt", "fine_prompt"):
        np.testing.assert_array_equal(getattr(voice, key), getattr(want, key))
    assert report["frames"] == voice.fine_prompt.shape[1]

    again = run("presets", "clone", recording, "--name", "me", *model_args(models))
    assert again.exit_code == 2 and "already have a voice named me" in again.stderr

    fast = ["--model", models["model"], "--max-semantic-tokens", "8", "--device", "cpu", "--seed", "11"]
    by_name = run("say", "Hello there.", "--voice", "me", *fast, "-o", "a.wav", "--save-voice", "a.npz")
    by_path = run("say", "Hello there.", "--voice", saved, *fast, "-o", "b.wav", "--save-voice", "b.npz")
    assert by_name.exit_code == 0 and by_path.exit_code == 0, (by_name.output, by_path.output)
    a, b = np.load("a.npz"), np.load("b.npz")
    for key in ("semantic_prompt", "coarse_prompt", "fine_prompt"):
        np.testing.assert_array_equal(a[key], b[key])
    assert a["semantic_prompt"].size > 0
    assert Path("a.wav").read_bytes() == Path("b.wav").read_bytes()


def test_start_and_end_pick_the_part(models, cloner, recording, tmp_path, monkeypatch):
    monkeypatch.setenv("BARK_VOICES_DIR", str(tmp_path / "voices"))
    result = run("presets", "clone", recording, "--name", "part", "--start", "0.4", "--end", "2.9", *model_args(models))
    assert result.exit_code == 0, result.output
    samples, rate = sf.read(recording, dtype="float32", always_2d=True)
    want = cloner.clone(samples[int(0.4 * rate): int(2.9 * rate)], rate)
    got = load_voice_file(tmp_path / "voices" / "part.npz")
    np.testing.assert_array_equal(got.fine_prompt, want.fine_prompt)
    np.testing.assert_array_equal(got.semantic_prompt, want.semantic_prompt)


# --- hostile recordings, through the `bark` script ----------------------------------------------


def _write_hostile(kind: str, folder: Path) -> Path:
    rate = 24_000
    speech = speech_like(3.0, rate)
    if kind == "empty":
        path = folder / "empty.wav"
        sf.write(path, np.zeros((0, 1), np.float32), rate)
    elif kind == "silent":
        path = folder / "silent.wav"
        sf.write(path, np.zeros((3 * rate, 1), np.float32), rate)
    elif kind == "short":
        path = folder / "short.wav"
        sf.write(path, speech_like(0.2, rate), rate)
    elif kind == "8-channels":
        path = folder / "surround.wav"
        sf.write(path, speech_like(2.0, rate, channels=8), rate)
    elif kind == "192-kHz":
        path = folder / "hires.flac"
        sf.write(path, speech_like(2.0, 192_000), 192_000)
    elif kind == "an-hour":
        path = folder / "hour.flac"  # an hour of real (silent) FLAC frames: small on disk, refused unread
        with sf.SoundFile(path, "w", 8_000, 1, subtype="PCM_16") as handle:
            block = np.zeros(8_000 * 60, np.int16)
            for _ in range(60):
                handle.write(block)
    elif kind == "not-audio":
        path = folder / "notes.wav"
        path.write_text("these are not the samples you are looking for\n" * 50)
    elif kind in ("truncated-wav", "truncated-flac"):
        ext = kind.split("-")[1]
        whole = folder / f"whole.{ext}"
        sf.write(whole, speech, rate)
        path = folder / f"cut.{ext}"
        path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
        whole.unlink()
    return path


HOSTILE = {
    "empty": "holds no audio",
    "silent": "is silent",
    "short": "s of sound; at least 1 s is needed",
    "8-channels": "has 8 channels",
    "192-kHz": "sampled at 192000 Hz",
    "an-hour": "is 60 min long",
    "not-audio": "is not a recording this program can read",
    "truncated-wav": "is cut short",
    "truncated-flac": "cut short",
    "pickle-quantizer": "holds more than tensors and was not run",
}


def bark(*args, env: dict, cwd: Path):
    return subprocess.run([str(BARK), *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=300)


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_inputs_fail_in_one_line_and_write_nothing(kind, models, recording, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    voices = tmp_path / "voices"
    env = {**os.environ, "BARK_VOICES_DIR": str(voices), "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    args = model_args(models)
    marker = tmp_path / "ran"
    if kind == "pickle-quantizer":
        class Payload:
            def __reduce__(self):
                return (open, (str(marker), "w"))

        evil = tmp_path / "evil.pth"
        torch.save({"fc.weight": Payload()}, evil)
        path, args = recording, [*args[:-1], evil]
    else:
        path = _write_hostile(kind, tmp_path)
    result = bark("presets", "clone", path, "--name", "x", *args, env=env, cwd=work)
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and HOSTILE[kind] in lines[0], result.stderr
    assert result.stdout == ""
    assert not voices.exists() and list(work.iterdir()) == [] and not marker.exists()


def test_offline_without_the_hubert_model_exits_5(models, recording, tmp_path):
    env = {**os.environ, "BARK_VOICES_DIR": str(tmp_path / "voices"), "HF_HUB_OFFLINE": "1",
           "HF_HUB_CACHE": str(tmp_path / "hub"), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = bark("presets", "clone", recording, "--name", "x", "--model", models["model"],
                  "--quantizer", models["quantizer"], env=env, cwd=tmp_path)
    assert result.returncode == 5, result.stderr
    assert result.stderr.startswith("error: HuBERT model facebook/hubert-base-ls960 is not in the local cache")
    assert not (tmp_path / "voices").exists()
