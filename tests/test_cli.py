"""The `bark` command through Typer's CliRunner and through the installed script.

The tiny random model never emits EOS, so `--max-semantic-tokens` fixes the length:
S semantic tokens -> floor(S * 75 / 49.9) EnCodec frames -> 320 samples each at 24 kHz.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import soundfile as sf
from typer.testing import CliRunner

from bark_cli import __version__
from bark_cli.cli import app
from bark_cli.cli.output import StageBars
from bark_cli.pipeline import Bark
from bark_cli.errors import GenerationError

TOKENS = 8
FAST = ["--max-semantic-tokens", str(TOKENS), "--device", "cpu"]
BARK = Path(sys.executable).with_name("bark")


def expected_samples(semantic_tokens: int) -> int:
    return math.floor(semantic_tokens * 75 / 49.9) * 320


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Each test in its own folder with its own voices folder and no BARK_* settings."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BARK_VOICES_DIR", str(tmp_path / "voices"))
    for name in ("BARK_MODEL", "BARK_DEBUG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def model(tiny_checkpoint) -> str:
    return str(tiny_checkpoint)


@pytest.fixture(scope="module", autouse=True)
def load_once():
    """Every `say` still goes through Bark.load, which hands back one instance per model and settings:
    loading is cheap, but a fresh instance's first generation pays warm-up costs we need not repeat."""
    original = Bark.load.__func__
    loaded: dict = {}

    def load(cls, model, options=None, **kwargs):
        key = (str(model), options, tuple(sorted((k, v) for k, v in kwargs.items() if k != "progress")))
        if key not in loaded:
            loaded[key] = original(cls, model, options, **kwargs)
        return loaded[key]

    patch = pytest.MonkeyPatch()
    patch.setattr(Bark, "load", classmethod(load))
    yield
    patch.undo()


def run(*args: str, input: str | None = None, env: dict | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input, env=env)


def say(model: str, *args: str, **kwargs):
    return run("say", "--model", model, *FAST, *args, **kwargs)


def files_here() -> list[str]:
    return sorted(p.name for p in Path.cwd().iterdir() if p.name != "voices")


# The documented exit status of a model that HF_HUB_OFFLINE keeps from being downloaded.
OFFLINE_NOT_CACHED = 5


def assert_bad_input(result, fragment: str = "", files: list[str] | None = None, code: int = 2):
    """Exit `code` (bad input: 2), exactly one line on stderr, no traceback, nothing written."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0]
    assert "Traceback" not in result.output and result.stdout == ""
    assert files_here() == (files or [])


# --- say: files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name, subtype", [("out.wav", "PCM_16"), ("out.flac", "PCM_16"), ("out.ogg", "VORBIS")])
def test_say_writes_each_format(model, name, subtype):
    result = say(model, "Hello [laughter]", "-o", name, "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    report = json.loads(result.stdout)
    assert report["semantic_tokens"] == TOKENS
    info = sf.info(name)
    assert (info.samplerate, info.channels, info.subtype) == (24_000, 1, subtype)
    assert info.frames == expected_samples(TOKENS)
    assert report["output"] == name and report["sample_rate"] == 24_000
    assert report["audio_seconds"] == pytest.approx(info.frames / 24_000, abs=1e-3)
    assert isinstance(report["seed"], int) and report["device"] == "cpu" and report["dtype"] == "float32"
    assert set(report["stage_seconds"]) == {"semantic", "coarse", "fine", "decode"}
    assert files_here() == [name]


def tokens(path: str) -> dict[str, np.ndarray]:
    with np.load(path) as voice:
        return {key: voice[key] for key in voice.files}


def assert_same_tokens(a: str, b: str) -> None:
    first, second = tokens(a), tokens(b)
    assert first.keys() == second.keys() == {"semantic_prompt", "coarse_prompt", "fine_prompt"}
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])


def test_seed_is_repeatable_and_stdout_gets_the_same_wav(model):
    """Text from stdin to a WAV on stdout, then the same seed into a file: the same tokens, the same bytes."""
    piped = say(model, "-", "-o", "-", "--seed", "1234", "--save-voice", "a.npz", input="Same seed.\n")
    assert piped.exit_code == 0, piped.output
    assert piped.stdout_bytes[:4] == b"RIFF" and piped.stderr == ""
    data, sr = sf.read(io.BytesIO(piped.stdout_bytes), dtype="float32")
    assert sr == 24_000 and len(data) == expected_samples(TOKENS)
    filed = say(model, "Same seed.", "-o", "b.wav", "--seed", "1234", "--save-voice", "b.npz", "--json")
    assert filed.exit_code == 0, filed.output
    assert json.loads(filed.stdout)["seed"] == 1234
    assert_same_tokens("a.npz", "b.npz")
    assert Path("b.wav").read_bytes() == piped.stdout_bytes
    assert files_here() == ["a.npz", "b.npz", "b.wav"]


def test_temperature_zero_is_repeatable_and_saved_voices_feed_back(model):
    for name in ("a", "b"):
        result = say(model, "Remember this voice.", "-o", f"{name}.wav", "--save-voice", f"{name}.npz",
                     "--temperature", "0", "--subtype", "FLOAT")
        assert result.exit_code == 0, result.output
    assert Path("a.wav").read_bytes() == Path("b.wav").read_bytes()
    assert sf.info("a.wav").subtype == "FLOAT"
    assert_same_tokens("a.npz", "b.npz")
    voice = tokens("a.npz")
    frames = math.floor(TOKENS * 75 / 49.9)
    assert voice["semantic_prompt"].shape == (TOKENS,)
    assert voice["coarse_prompt"].shape == (2, frames) and voice["fine_prompt"].shape == (8, frames)
    assert 0 <= voice["fine_prompt"].min() and voice["fine_prompt"].max() < 1024
    # The saved voice as --voice: it conditions the next generation (greedy, so only the voice differs).
    again = say(model, "Remember this voice.", "-o", "c.wav", "--voice", "a.npz", "--temperature", "0",
                "--save-voice", "c.npz", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["voice"] == "a.npz"
    assert sf.info("c.wav").frames == expected_samples(TOKENS)
    # Conditioned on the voice, greedy decoding takes another path than without it.
    assert Path("c.wav").read_bytes() != Path("a.wav").read_bytes()
    # --save-voice keeps the voice used: with --voice, that voice itself (the long-form rule).
    assert_same_tokens("c.npz", "a.npz")


def test_no_split_cuts_with_a_warning(model):
    result = say(model, "word " * 300, "-o", "long.wav", "--no-split")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == ["warning: text cut from 300 to 256 tokens; the rest is not spoken"]
    assert files_here() == ["long.wav"]


# --- say: bad input -----------------------------------------------------------------------------


def test_unknown_preset(model):
    assert_bad_input(say(model, "Hi.", "-o", "a.wav", "--voice", "v2/en_speakr_6"), "unknown voice 'v2/en_speakr_6'")


def test_unreadable_npz(model):
    Path("junk.npz").write_bytes(b"this is not a zip file")
    assert_bad_input(say(model, "Hi.", "-o", "a.wav", "--voice", "junk.npz"), "is not a .npz archive", ["junk.npz"])


def test_malformed_npz(model):
    np.savez("bad.npz", semantic_prompt=np.zeros((2, 3), dtype=np.int64),
             coarse_prompt=np.zeros((2, 4), dtype=np.int64), fine_prompt=np.zeros((8, 4), dtype=np.int64))
    assert_bad_input(say(model, "Hi.", "-o", "a.wav", "--voice", "bad.npz"), "semantic_prompt has shape (2, 3)",
                     ["bad.npz"])


def test_missing_voice_file(model):
    assert_bad_input(say(model, "Hi.", "-o", "a.wav", "--voice", "nowhere.npz"), "does not exist")


@pytest.mark.parametrize("command", [["say", "Hi.", "-o", "a.wav"], ["batch", "-", "--output-dir", "out"]],
                         ids=["say", "batch"])
def test_voice_names_are_checked_before_the_model_loads(tmp_path, command):
    """A mistyped preset fails on the name alone: the Hub model is not cached (loading it would
    fail offline with another error) and the folder below holds no weights at all."""
    result = run(*command, "--model", "bark-cli-tests/not-cached", "--voice", "v2/en_speakr_6", input="Hi.\n")
    assert_bad_input(result, "unknown voice 'v2/en_speakr_6' (did you mean v2/en_speaker_6?")
    folder = tmp_path / "voices-only"
    folder.mkdir()
    (folder / "speaker_embeddings_path.json").write_text(json.dumps({"v2/en_speaker_1": {}}))
    result = run(*command, "--model", str(folder), "--voice", "v2/fr_speaker_1", input="Hi.\n")
    assert_bad_input(result, f"model {folder} has no files for Suno preset 'v2/fr_speaker_1'", ["voices-only"])
    assert "did you mean" not in result.stderr and "bark presets import" in result.stderr


def test_missing_model_offline():
    result = run("say", "Hi.", "-o", "a.wav", "--model", "bark-cli-tests/not-cached")
    assert_bad_input(result, "not in the local cache and downloads are off", code=OFFLINE_NOT_CACHED)


def test_missing_model_folder():
    assert_bad_input(run("say", "Hi.", "-o", "a.wav", "--model", "./no-such-folder"), "neither a folder nor a Hub id")


@pytest.mark.parametrize("args, stdin", [(["   "], None), (["-"], ""), (["-"], " \n\t")])
def test_empty_text(model, args, stdin):
    assert_bad_input(say(model, *args, "-o", "a.wav", input=stdin), "the text is empty")


def test_empty_or_missing_text_file(model):
    Path("empty.txt").write_text("\n")
    assert_bad_input(say(model, "-f", "empty.txt", "-o", "a.wav"), "the text is empty", ["empty.txt"])
    assert_bad_input(say(model, "-f", "nowhere.txt", "-o", "a.wav"), "cannot read nowhere.txt", ["empty.txt"])


def test_text_over_the_window_is_split_into_segments(model):
    result = say(model, "word " * 300, "-o", "long.wav", "--json", "--gap", "0.5", "--batch-size", "2",
                 "--max-segment-chars", "2000")  # the 256-token window alone splits it
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["segments"] == 2 and report["semantic_tokens"] == 2 * TOKENS
    assert sf.info("long.wav").frames == 2 * expected_samples(TOKENS) + 12_000  # one 0.5 s gap


def test_dry_run_prints_segments_and_writes_nothing(model):
    text = "First sentence here. " * 30
    result = say(model, text, "--dry-run", "--max-segment-chars", "100", "--json")
    assert result.exit_code == 0, result.output
    segments = json.loads(result.stdout)["segments"]
    assert len(segments) >= 6 and all(len(s["text"]) <= 100 and 0 < s["tokens"] <= 256 for s in segments)
    assert " ".join(s["text"] for s in segments) == " ".join(text.split())
    plain = say(model, text, "--dry-run", "--max-segment-chars", "100")
    assert plain.exit_code == 0 and len(plain.stdout.splitlines()) == len(segments)
    assert list(Path(".").glob("*.wav")) == []


def test_bad_batch_size(model):
    assert_bad_input(say(model, "Hi.", "-o", "a.wav", "--batch-size", "zero"), "batch-size")


def test_unwritable_output(model):
    Path("plain").write_text("x")
    assert_bad_input(say(model, "Hi.", "-o", "plain/a.wav"), "plain is a file, not a folder", ["plain"])
    assert_bad_input(say(model, "Hi.", "-o", "plain/deeper/a.wav"), "plain is a file, not a folder", ["plain"])
    assert_bad_input(say(model, "Hi.", "-o", "a.aiff"), "cannot tell the audio format", ["plain"])
    assert_bad_input(say(model, "Hi.", "-o", "a.flac", "--subtype", "FLOAT"), "FLAC cannot hold FLOAT", ["plain"])
    assert_bad_input(say(model, "Hi.", "-o", "a.mp3", "--subtype", "PCM_16"), "no --subtype", ["plain"])
    assert_bad_input(say(model, "Hi.", "-o", "a.wav", "--save-voice", "plain/v.npz"), "not a folder", ["plain"])


def test_missing_folders_are_made_when_the_file_is_written(model):
    """say and batch --output-dir follow one rule: missing folders are created, at write time only."""
    result = say(model, "Hi.", "-o", "new/deeper/a.wav", "--save-voice", "voices2/v.npz")
    assert result.exit_code == 0, result.output
    assert sf.info("new/deeper/a.wav").frames == expected_samples(TOKENS)
    assert tokens("voices2/v.npz")["semantic_prompt"].shape == (TOKENS,)
    # A run that fails before writing (an unknown voice) leaves no folder behind.
    assert_bad_input(say(model, "Hi.", "-o", "other/a.wav", "--voice", "v2/en_speakr_6"), "unknown voice",
                     ["new", "voices2"])


def test_mp3_where_libsndfile_writes_it(model):
    from bark_cli import audio

    result = say(model, "Hi.", "-o", "a.mp3")
    if audio.format_available("MP3"):
        assert result.exit_code == 0, result.output
        info = sf.info("a.mp3")
        assert (info.format, info.samplerate, info.channels) == ("MP3", 24_000, 1)
        # MP3 frames pad the start and end; the length is close to, not exactly, the audio's.
        assert abs(info.frames - expected_samples(TOKENS)) < 2 * 1152
    else:
        assert_bad_input(result, "cannot write MP3")


def test_existing_output_needs_overwrite(model):
    Path("a.wav").write_bytes(b"keep me")
    assert_bad_input(say(model, "Hi.", "-o", "a.wav"), "a.wav already exists", ["a.wav"])
    assert Path("a.wav").read_bytes() == b"keep me"


def test_flash_attention_on_cpu(model):
    assert_bad_input(say(model, "Hi.", "-o", "a.wav", "--attention", "flash"), "flash attention needs a CUDA device")


def test_threads_option_sets_torch_threads(model, monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    assert say(model, "Hi.", "-o", "a.wav", "--threads", "1").exit_code == 0
    cores = os.cpu_count()  # the most --threads takes
    assert run("batch", "-", "--model", model, *FAST, "--output-dir", "out", "--threads", str(cores),
               input="One.\n").exit_code == 0
    assert calls == [1, cores] and Path("a.wav").exists() and Path("out/00000.wav").exists()
    assert_bad_input(say(model, "Hi.", "-o", "b.wav", "--threads", "0"), "--threads 0 is out of range",
                     files=["a.wav", "out"])


def test_cuda_graphs_on_cpu(model):
    assert_bad_input(say(model, "Hi.", "-o", "a.wav", "--device", "cpu", "--cuda-graphs"),
                     "CUDA graphs need a CUDA device")


@pytest.mark.parametrize("args,fragment,command", [
    (["say", "-o", "a.wav"], "no text given", "bark say"),
    (["say", "Hi.", "-f", "x.txt", "-o", "a.wav"], "", "bark say"),  # both
    (["say", "Hi.", "-o", "-", "--json"], "both want stdout", "bark say"),
    (["say", "Hi.", "-o", "a.wav", "--temperature", "-1"], "--temperature", "bark say"),
    (["say", "Hi.", "-o", "a.wav", "--dtype", "float8"], "float8", "bark say"),
    (["say", "Hi."], "--output", "bark say"),  # no -o
    (["presets", "list", "--language", "xx"], "--language xx is not one of en, de, es", "bark presets list"),
    (["bench", "--tokens", "150", "300"], "unexpected extra argument 300", "bark bench"),
    (["nonsense"], "unknown command nonsense", "bark"),
    (["--bogus"], "unknown option --bogus", "bark"),
    (["say", "Hi.", "--sed", "1"], "unknown option --sed; did you mean --seed?", "bark say"),
    (["say", "Hi.", "-o", "a.wav", "--seed"], "--seed needs a value", "bark say"),
    (["presets", "list", "--language"], "--language needs a value", "bark presets list"),
    (["say", "Hi.", "-o", "a.wav", "--dry-run=yes"], "--dry-run is an on/off flag and takes no value", "bark say"),
])
def test_usage_errors_exit_2_with_one_line(args, fragment, command):
    result = run(*args)
    assert_bad_input(result, fragment)
    assert result.stderr.rstrip().endswith(f"(see '{command} -h')")


@pytest.mark.parametrize("args, line", [
    (["--dtype", "xx"], "error: --dtype xx is not one of auto, float32, float16, bfloat16 (see 'bark say -h')"),
    (["--subtype", "pcm8"], "error: --subtype pcm8 is not one of PCM_16, PCM_24, FLOAT (see 'bark say -h')"),
    (["--seed", "abc"], "error: --seed abc is not a whole number (see 'bark say -h')"),
    (["--temperature", "warm"], "error: --temperature warm is not a number (see 'bark say -h')"),
    (["--top-p", "2"], "error: --top-p 2 is out of range: it must be within 0..1 (see 'bark say -h')"),
])
def test_parser_errors_in_our_words(args, line):
    """The whole line, so that none of the parser's own wording ("Invalid value for", "Value error",
    quotes around each choice) comes through."""
    result = run("say", "Hi.", "-o", "a.wav", *args)
    assert result.exit_code == 2 and result.stderr.splitlines() == [line]


@pytest.mark.parametrize("args, fragment", [
    (["--seed", "-1"], "--seed -1 is out of range: it must be within 0..9223372036854775807"),
    (["--seed", str(2**63)], f"--seed {2**63} is out of range"),
    (["--gap", "61"], "--gap 61 is out of range: it must be within 0..60"),
    (["--gap", "-0.5"], "--gap -0.5 is out of range"),
    (["--threads", "0"], f"--threads 0 is out of range: it must be within 1..{os.cpu_count()}"),
    (["--threads", str(os.cpu_count() + 1)], "--threads"),
    (["--temperature", "nan"], "--temperature nan is not a finite number"),
    (["--coarse-temperature", "inf"], "--coarse-temperature inf is not a finite number"),
    (["--top-p", "nan"], "--top-p nan is not a finite number"),
    (["--min-eos-p", "-inf"], "--min-eos-p -inf is not a finite number"),
    (["--max-segment-chars", "0"], "--max-segment-chars 0 is out of range: it must be within 1..10000"),
    (["--max-segment-chars", "10001"], "--max-segment-chars 10001 is out of range"),
    (["--max-semantic-tokens", "4097"], "--max-semantic-tokens 4097 is out of range: it must be within 1..4096"),
    (["--top-k", "0"], "--top-k 0 is out of range: it must be at least 1"),
])
def test_numbers_are_checked_where_they_enter(args, fragment):
    result = run("say", "Hi.", "-o", "a.wav", *args)
    assert_bad_input(result, fragment)
    assert "unexpected" not in result.stderr


def test_text_input_is_limited_to_a_megabyte(model):
    from bark_cli.cli.say import MAX_TEXT_BYTES

    assert MAX_TEXT_BYTES == 1_000_000  # the README's figure
    assert_bad_input(say(model, "-f", "/dev/zero", "-o", "a.wav"), "the text in /dev/zero is over 1 MB")
    assert_bad_input(say(model, "-", "-o", "a.wav", input="a" * (MAX_TEXT_BYTES + 1)), "the text on stdin is over 1 MB")
    Path("latin1.txt").write_bytes("Grüße".encode("latin-1"))
    assert_bad_input(say(model, "-f", "latin1.txt", "-o", "a.wav"), "the text in latin1.txt is not UTF-8",
                     ["latin1.txt"])
    # At the limit, the text is read (and here only planned).
    Path("big.txt").write_text("Word. " * (MAX_TEXT_BYTES // 6))
    result = say(model, "-f", "big.txt", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["segments"]) > 1000


def test_echoed_names_reach_the_terminal_escaped(model):
    name = "\x1b]0;title\x07.aiff"
    result = say(model, "Hi.", "-o", name)
    assert_bad_input(result, "cannot tell the audio format of \\x1b]0;title\\x07.aiff")
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    result = say(model, "Hi.", "-o", "a.wav", "--voice", "v2/\x9b31mred")
    assert_bad_input(result, "v2/\\x9b31mred")
    assert "\x9b" not in result.stderr


def test_other_libraries_warnings_are_one_line(capsys):
    import warnings

    from bark_cli.cli.errors import show_warning

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show_warning
        warnings.warn("first line\n  second \x1b[31mred\x1b[0m", UserWarning)
    assert capsys.readouterr().err == "warning: first line second \\x1b[31mred\\x1b[0m\n"


def test_a_bare_group_shows_its_help():
    result = run("presets")
    assert result.exit_code == 2 and "list" in result.output and "error:" not in result.output


def test_failures_while_generating_exit_1(monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(Bark, "load", boom)
    result = run("say", "Hi.", "-o", "a.wav")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: unexpected RuntimeError: boom (set BARK_DEBUG=1 for a traceback, and please report it)"]
    result = run("say", "Hi.", "-o", "a.wav", env={"BARK_DEBUG": "1"})
    assert result.exit_code == 1 and isinstance(result.exception, RuntimeError)

    def fails(*args, **kwargs):
        raise GenerationError("the coarse stage produced nothing", "try another seed")

    monkeypatch.setattr(Bark, "load", fails)
    result = run("say", "Hi.", "-o", "a.wav")
    assert result.exit_code == 1
    assert result.stderr == "error: the coarse stage produced nothing (try another seed)\n"
    assert files_here() == []


# --- presets ------------------------------------------------------------------------------------


def test_presets_list(model):
    result = run("presets", "list", "--model", model)
    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["NAME", "LANGUAGE", "SOURCE", "ON", "DISK"]
    assert len(rows) >= 261 and all(row.split()[-1] == "yes" for row in rows)
    names = {row.split()[0] for row in rows}
    assert {"announcer", "en_speaker_0", "v2/zh_speaker_9"} <= names


def test_presets_list_language_and_json(model):
    result = run("presets", "list", "--language", "ja", "--json", env={"BARK_MODEL": model})
    assert result.exit_code == 0, result.output
    voices = json.loads(result.stdout)["voices"]
    assert len(voices) == 20 and {v["language"] for v in voices} == {"ja"} and all(v["on_disk"] for v in voices)
    result = run("presets", "list", "--json", "--model", "bark-cli-tests/not-cached")
    data = json.loads(result.stdout)
    assert len(data["voices"]) == 261 and not any(v["on_disk"] for v in data["voices"])
    human = run("presets", "list", "-l", "de", "--model", model).stdout.splitlines()
    assert len(human) == 21 and all(row.split()[1] == "de" for row in human[1:])


def test_presets_list_language_takes_any_case(model):
    lower = run("presets", "list", "--language", "de", "--json", "--model", model)
    upper = run("presets", "list", "--language", "DE", "--json", "--model", model)
    assert upper.exit_code == 0, upper.output
    assert json.loads(upper.stdout) == json.loads(lower.stdout)
    assert {v["language"] for v in json.loads(upper.stdout)["voices"]} == {"de"}


def command_paths(command, path=()):
    """Every command and subcommand of the app, as the words that name it."""
    yield path
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from command_paths(sub, (*path, name))


def test_no_help_shows_a_type_placeholder():
    """A value is shown as a word (N, FILE, auto|cpu), a flag with none: never Typer's type names
    in angle brackets (<str>, <list[str]>, <int range>, <dir>, <bool>) beside an option or argument."""
    import re

    import typer

    paths = list(command_paths(typer.main.get_command(app)))
    assert ("batch",) in paths and ("bench",) in paths and ("presets", "list") in paths
    for path in paths:
        result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (path, result.output)
        found = [line for line in result.output.splitlines() if re.search(r"<[\w\[\]|,. -]+>", line)]
        assert "--help" in result.output and not found, (path, found)


def test_presets_add_show_remove(model, tmp_path):
    voices = tmp_path / "voices"
    rng = np.random.default_rng(1)
    np.savez("mine.npz", semantic_prompt=rng.integers(0, 10_000, 30), coarse_prompt=rng.integers(0, 1024, (2, 45)),
             fine_prompt=rng.integers(0, 1024, (8, 45)))
    added = run("presets", "add", "mine.npz", "--name", "narrator")
    assert added.exit_code == 0, added.output
    assert (voices / "narrator.npz").is_file() and "narrator" in added.stdout
    listed = json.loads(run("presets", "list", "--json", "--model", model).stdout)["voices"]
    assert {"name": "narrator", "language": None, "source": "user", "on_disk": True,
            "path": str(voices / "narrator.npz")} in listed
    shown = run("presets", "show", "narrator", "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == {
        "name": "narrator", "source": "user", "language": None, "semantic_tokens": 30, "frames": 45,
        "seconds": 0.6, "files": [str(voices / "narrator.npz")]}
    assert "30 tokens" in run("presets", "show", "narrator").stdout
    assert_bad_input(run("presets", "add", "mine.npz", "--name", "narrator"), "already have a voice", ["mine.npz"])
    removed = run("presets", "remove", "narrator")
    assert removed.exit_code == 0 and not (voices / "narrator.npz").exists()
    assert_bad_input(run("presets", "show", "narrator"), "unknown voice 'narrator'", ["mine.npz"])
    assert_bad_input(run("presets", "remove", "narrator"), "no voice named", ["mine.npz"])


def test_presets_show_suno(model):
    result = run("presets", "show", "v2/en_speaker_6", "--model", model, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["source"] == "suno" and info["language"] == "en" and len(info["files"]) == 3
    assert info["frames"] == math.floor(info["semantic_tokens"] * 75 / 49.9)


def test_presets_bad_inputs(model):
    Path("junk.npz").write_bytes(b"junk")
    assert_bad_input(run("presets", "add", "junk.npz", "--name", "junk"), "is not a .npz archive", ["junk.npz"])
    assert_bad_input(run("presets", "add", "junk.npz", "--name", "en_speaker_0"), "", ["junk.npz"])
    assert_bad_input(run("presets", "remove", "announcer"), "is a Suno preset", ["junk.npz"])
    assert_bad_input(run("presets", "show", "v2/en_speaker_6", "--model", "bark-cli-tests/not-cached"),
                     "not cached and downloads are off", ["junk.npz"], code=OFFLINE_NOT_CACHED)


# --- models -------------------------------------------------------------------------------------


def fake_hub_cache(cache: Path, repo_id: str, folder: Path, commit: str = "c0ffee" * 6 + "c0ff") -> Path:
    """Lay a model folder out as huggingface_hub's cache does: blobs, a snapshot of links, refs/main."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for source in folder.rglob("*"):
        if source.is_file():
            blob = repo / "blobs" / hashlib.sha256(source.read_bytes()).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, blob)
            link = snapshot / source.relative_to(folder)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


@pytest.fixture(scope="module")
def hub_cache(tiny_checkpoint, tmp_path_factory) -> Path:
    """A Hugging Face cache holding the tiny model as `suno/bark-small` (read offline)."""
    cache = tmp_path_factory.mktemp("hf-cache")
    fake_hub_cache(cache, "suno/bark-small", tiny_checkpoint)
    (cache / "models--someone--other-model" / "snapshots").mkdir(parents=True)  # not Bark: not listed
    return cache


@pytest.fixture
def use_cache(hub_cache, monkeypatch) -> Path:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache))
    return hub_cache


def test_models_list(use_cache):
    result = run("models", "list")
    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["ID", "REVISION", "REFS", "SIZE"]
    assert [row.split()[:3] for row in rows] == [["suno/bark-small", "c0ffeec0ffee", "main"]]
    data = json.loads(run("models", "list", "--json").stdout)
    assert data["cache_dir"] == str(use_cache) and len(data["models"]) == 1
    assert data["models"][0]["size_bytes"] > 1_000_000


def test_models_download_and_info_from_the_cache(use_cache, tiny_checkpoint):
    result = run("models", "download", "suno/bark-small")  # offline: served by the cache
    assert result.exit_code == 0, result.output
    assert Path(result.stdout.strip()).parent.parent == use_cache / "models--suno--bark-small"
    info = json.loads(run("models", "info", "--json").stdout)  # default model suno/bark-small
    assert set(info["stages"]) == {"semantic", "coarse", "fine", "codec"}
    semantic = info["stages"]["semantic"]
    assert semantic["layers"] == 2 and semantic["hidden_size"] == 32 and semantic["dtypes"] == ["float32"]
    assert semantic["parameters"] > 129_600 * 32  # at least the text embedding
    assert any(f["name"] == "model.safetensors" for f in info["files"])
    from safetensors import safe_open

    with safe_open(str(tiny_checkpoint / "model.safetensors"), "np") as handle:
        stored = sum(handle.get_tensor(k).size for k in handle.keys() if handle.get_tensor(k).dtype != bool)
    assert info["parameters"] == stored
    human = run("models", "info", str(tiny_checkpoint))
    assert human.exit_code == 0 and "semantic" in human.stdout and "model.safetensors" in human.stdout


def test_presets_on_disk_in_the_hub_cache(use_cache):
    voices = json.loads(run("presets", "list", "--json", "--model", "suno/bark-small").stdout)["voices"]
    assert len(voices) == 261 and all(v["on_disk"] for v in voices)
    shown = json.loads(run("presets", "show", "v2/en_speaker_6", "--json").stdout)  # default model, offline
    assert all(f.startswith(str(use_cache)) for f in shown["files"])


def test_models_bad_inputs():
    assert_bad_input(run("models", "info", "bark-cli-tests/not-cached"), "is not downloaded")
    assert_bad_input(run("models", "download", "bark-cli-tests/not-cached"), "downloads are off",
                     code=OFFLINE_NOT_CACHED)


# --- help, version, progress ----------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["say"], ["presets"], ["presets", "list"], ["presets", "show"],
                                     ["presets", "add"], ["presets", "remove"], ["models"], ["models", "list"],
                                     ["models", "download"], ["models", "info"]])
def test_help_everywhere_with_an_example(command):
    result = run(*command, "-h")
    assert result.exit_code == 0, result.output
    assert "Usage: bark" in result.stdout and ("Example" in result.stdout)
    if command == ["say"]:
        assert "[laughter]" in result.stdout and "Exit codes" in result.stdout


def option_names(command) -> set[str]:
    """Every option of a Click command, as written on the command line."""
    names = set()
    for param in command.params:
        if param.param_type_name == "option":
            names.update(o for o in [*param.opts, *param.secondary_opts] if o.startswith("--"))
    return names


def test_say_help_fits_a_screen_and_lists_every_option():
    import typer.main

    result = CliRunner().invoke(app, ["say", "--help"], terminal_width=100, env={"COLUMNS": "100"})
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) <= 80, len(lines)
    assert max(len(line) for line in lines) <= 100
    say_command = typer.main.get_command(app).commands["say"]
    names = option_names(say_command)
    assert len(names) >= 30 and "--max-segment-chars" in names
    for name in names | {"--help"}:
        assert any(f" {name} " in line for line in lines), name
    # The text, then -o, --voice, --model and --seed come first.
    rows = [line.strip("│ ").split()[0] for line in lines if line.startswith("│")]
    assert rows[:5] == ["TEXT", "--output", "--voice", "--model", "--seed"], rows[:6]
    # An on/off flag takes no value and shows none.
    for flag in ("--overwrite", "--json", "--quiet", "--dry-run", "--no-split", "--offload", "--cuda-graphs", "--help"):
        row = next(line for line in lines if f" {flag} " in line)
        assert "<bool>" not in row and "bool" not in row.lower(), row
    assert not any("<bool>" in line for line in lines)


@pytest.mark.parametrize("command", [[], ["batch"], ["bench"], ["presets", "list"], ["models", "list"]])
def test_no_flag_shows_a_value_placeholder(command):
    result = CliRunner().invoke(app, [*command, "--help"], terminal_width=100, env={"COLUMNS": "100"})
    assert result.exit_code == 0 and "<bool>" not in result.stdout


def test_help_paragraphs_wrap_to_the_terminal():
    # batch's docstring breaks "temporary name / and renamed" across source lines; the help must
    # not keep that break, or an 80-column terminal shows ragged half-empty lines.
    wide = run("batch", "-h", env={"COLUMNS": "300"}).stdout
    assert "written under a temporary name and renamed, so an existing file is complete" in wide
    narrow = run("batch", "-h", env={"COLUMNS": "80"}).stdout
    prose = narrow[narrow.index("Items whose") : narrow.index("JSONL")].splitlines()[:-2]
    assert all(len(line.rstrip()) > 60 for line in prose[:-1]), prose


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"bark-cli {__version__}"


def test_stage_bars_draw_on_a_terminal():
    from rich.console import Console

    sink = io.StringIO()
    with StageBars(Console(file=sink, force_terminal=True, width=100)) as bars:
        for stage, total in (("semantic", 768), ("coarse", 30), ("fine", 2), ("decode", 1)):
            for done in range(1, min(total, 12) + 1):
                bars(stage, done, total)
    text = sink.getvalue()
    assert all(label in text for label in ("semantic tokens", "coarse tokens", "fine windows", "decode"))
    assert "12/12" in text  # the semantic bar ends full at its early stop, not 12/768


def test_stage_bars_stay_where_ctrl_c_stopped_them():
    from rich.console import Console

    sink = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        with StageBars(Console(file=sink, force_terminal=True, width=100)) as bars:
            for done in range(1, 13):
                bars("semantic", done, 768)
            raise KeyboardInterrupt
    last = sink.getvalue().rsplit("\r", 1)[-1]  # the bar as it was left
    assert "12/768" in last and "768/768" not in sink.getvalue() and "12/12" not in sink.getvalue()


# --- the installed script -------------------------------------------------------------------------


def script(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    if not BARK.is_file():
        pytest.skip(f"no installed script at {BARK}")
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([str(BARK), *args], capture_output=True, env=full_env, timeout=300, **kwargs)


def test_script_writes_a_file_and_json(model, tmp_path):
    result = script("say", "Hello [laughter]", "-o", "hi.flac", "--model", model, *FAST, "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    report = json.loads(result.stdout)
    assert report["output"] == "hi.flac"
    info = sf.info(tmp_path / "hi.flac")
    assert (info.samplerate, info.frames) == (24_000, expected_samples(TOKENS))


def test_script_stdout_from_the_hub_cache(hub_cache, tmp_path):
    """`-o -` through a pipe, with the model named by Hub id and found in HF_HUB_CACHE offline."""
    result = script("say", "-", "-o", "-", "--voice", "v2/de_speaker_1", *FAST, input=b"Hallo.", cwd=tmp_path,
                    env={"HF_HUB_CACHE": str(hub_cache)})
    assert result.returncode == 0, result.stderr.decode()
    data, sr = sf.read(io.BytesIO(result.stdout), dtype="float32")
    assert sr == 24_000 and len(data) == expected_samples(TOKENS)
    assert list(tmp_path.iterdir()) == []


def test_script_bad_input(tmp_path):
    result = script("say", "Hi.", "-o", "a.wav", "--model", "bark-cli-tests/not-cached", cwd=tmp_path)
    assert result.returncode == OFFLINE_NOT_CACHED
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: model bark-cli-tests/not-cached is not in the local cache")
    assert result.stdout == b"" and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["say", "-", "-o", "out.wav"], ["batch", "-", "-d", "out"]])
def test_script_with_stdin_closed(model, tmp_path, command):
    """`<&-` leaves the script no stdin at all: one line naming it, exit 2, nothing written."""
    if not BARK.is_file():
        pytest.skip(f"no installed script at {BARK}")
    line = " ".join(shlex.quote(word) for word in [str(BARK), *command, "--model", model, *FAST])
    result = subprocess.run(["sh", "-c", f"{line} <&-"], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: ")
    assert "stdin" in result.stderr or "standard input" in result.stderr
    assert "unexpected" not in result.stderr and list(tmp_path.iterdir()) == []


def test_script_refuses_a_file_name_too_long_before_generating(model, tmp_path):
    result = script("say", "Hi.", "-o", "a" * 300 + ".wav", "--model", model, *FAST, cwd=tmp_path)
    assert result.returncode == 2, result.stderr.decode()
    stderr = result.stderr.decode()
    assert stderr.count("\n") == 1 and "304 bytes long, over the 255-byte limit" in stderr
    assert "unexpected" not in stderr and "loading" not in stderr and list(tmp_path.iterdir()) == []
