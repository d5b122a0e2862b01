"""Every `bark` example in the README and the user guides runs, on the tiny model.

The examples are the lines starting with `bark ` in ```sh and ```console blocks (`$ bark ` in a
console block) of README.md and docs/guide/*.md. A block that cannot run here (a GPU, the real
Hub, a network, a speaker) carries the line `<!-- not run: REASON -->` right above its fence,
and the test lists those with their reason. Each runnable example runs through the command's own
code (Typer's CliRunner, in this process, one model load per setting), with:

- the model names the docs use (`suno/bark-small`, `./bark-small`, ...) and `$BARK_MODEL` set
  to the tiny checkpoint, voices and the Hub cache in a folder of their own;
- the input files the examples name (story.txt, lines.txt, corpus.jsonl, ...) made beforehand;
- `--max-semantic-tokens 8` for `say` and `batch` (the tiny model never stops by itself), tiny
  sizes for `bench`, and `-o FILE` added to a `say` that would play;
- whatever follows `|` left out, and `> FILE` writing the command's stdout to FILE.

Each must exit 0 and leave the file it names (`-o`, `> FILE`, `--save-voice`, `--output-dir`,
`--report`). A new command's examples are covered by adding it to COMMANDS (the README must
show a runnable example of each) and, where it needs more than a file check, to CHECKS.
"""

from __future__ import annotations

import glob
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bark_cli.cli import app
from bark_cli.pipeline import Bark

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs" / "guide").glob("*.md"))]
# The commands whose README examples must run (a later command adds itself here).
COMMANDS = ("say", "batch", "presets", "models", "bench")
# Model names the docs use, all read as the tiny checkpoint.
MODEL_NAMES = {"suno/bark-small", "suno/bark", "./bark-small", "./my-bark"}
NOT_RUN = re.compile(r"<!--\s*not run:\s*(.+?)\s*-->")
FENCE = re.compile(r"^```(sh|console)\s*$")
TOKENS = "8"


@dataclass
class Example:
    doc: str
    line: int
    command: str
    skip: str | None  # why it is not run here

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {self.command}"


def examples(path: Path) -> list[Example]:
    """The `bark` lines of a document's sh and console blocks, each with its block's reason
    for not running, if any."""
    found: list[Example] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    in_block, skip, previous = False, None, ""
    for number, line in enumerate(lines, 1):
        if not in_block and FENCE.match(line):
            in_block = True
            match = NOT_RUN.search(previous)
            skip = match.group(1) if match else None
        elif in_block and line.startswith("```"):
            in_block = False
        elif in_block:
            command = line.removeprefix("$ ").strip()
            if command.startswith("bark "):
                found.append(Example(str(path.relative_to(ROOT)), number, command, skip))
        previous = line
    return found


ALL = [example for doc in DOCS for example in examples(doc)]


def subcommand(example: Example) -> str:
    return shlex.split(example.command, comments=True)[1]


def test_examples_are_found_and_every_skip_has_a_reason():
    assert len(ALL) >= 20
    for example in ALL:
        assert example.skip is None or len(example.skip) > 5, example
    skipped = [f"{e} ({e.skip})" for e in ALL if e.skip]
    print("not run here:", *skipped, sep="\n  ")


def test_the_readme_has_a_runnable_example_of_every_command():
    readme = [e for e in ALL if e.doc == "README.md" and e.skip is None]
    assert {subcommand(e) for e in readme} >= set(COMMANDS)


# --- running them -------------------------------------------------------------------------------


def write_inputs(folder: Path) -> None:
    """The files the examples read."""
    (folder / "story.txt").write_text("Once upon a time. The end.\n")
    (folder / "chapter.txt").write_text("It was a dark night. The wind howled. Then the sun rose.\n")
    (folder / "dialogue.txt").write_text("Where are you? Over here! Come quickly.\n")
    (folder / "lines.txt").write_text("First line.\n\nSecond line.\n")
    (folder / "corpus.jsonl").write_text(
        json.dumps({"text": "Hello.", "output": "hello.wav"}) + "\n"
        + json.dumps({"text": "Again.", "voice": "v2/en_speaker_1", "seed": 3}) + "\n")
    (folder / "chapters").mkdir()
    (folder / "chapters" / "one.txt").write_text("Chapter one.\n")
    (folder / "chapters" / "two.txt").write_text("Chapter two.\n")
    voices = folder / "my-voices"
    voices.mkdir()
    rng = np.random.default_rng(0)
    np.savez(voices / "calm.npz", semantic_prompt=rng.integers(0, 10_000, 20),
             coarse_prompt=rng.integers(0, 1024, (2, 30)), fine_prompt=rng.integers(0, 1024, (8, 30)))


def option(args: list[str], *names: str) -> str | None:
    for i, arg in enumerate(args[:-1]):
        if arg in names:
            return args[i + 1]
    return None


def without(args: list[str], *names: str) -> list[str]:
    """`args` less the options `names` and their values."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg not in names and not (i and args[i - 1] in names):
            out.append(arg)
    return out


def prepare(example: Example, model: str) -> tuple[list[str], str | None]:
    """The example as arguments for the app, and the file its stdout goes to (`> FILE`)."""
    words = shlex.split(example.command, comments=True)[1:]
    args, stdout_file = [], None
    for i, word in enumerate(words):
        if word == "|":
            break
        if word == ">":
            stdout_file = words[i + 1]
            break
        if "*" in word:
            args += sorted(glob.glob(word)) or [word]
        else:
            args.append(model if word in MODEL_NAMES else word)
    command = args[0]
    if "--help" in args or "-h" in args:
        return args, stdout_file
    if command in ("say", "batch") and "--max-semantic-tokens" not in args:
        args += ["--max-semantic-tokens", TOKENS]
    if command == "say" and not {"-o", "--output", "--raw", "--dry-run"} & set(args):
        args += ["-o", f"played-{example.line}.wav"]  # would play on a speaker
    if command == "bench":
        args = without(args, "--config", "--tokens", "-t") + [
            "--config", "tiny", "--tokens", TOKENS, "--bandwidth-mb", "0", "--no-warmup"]
    return args, stdout_file


def check_outputs(args: list[str], stdout_file: str | None, stdout: str) -> None:
    """The files the example says it makes are there and not empty."""
    named = [option(args, "-o", "--output"), option(args, "--save-voice"), option(args, "--report"), stdout_file]
    for name in filter(None, named):
        if name != "-":
            assert Path(name).is_file() and Path(name).stat().st_size > 0, f"{name} was not written"
    folder = option(args, "--output-dir", "-d")
    if folder:
        assert any(p.suffix in (".wav", ".flac", ".ogg", ".mp3") for p in Path(folder).rglob("*")), folder
    if "--json" in args and stdout_file is None and option(args, "-o", "--output") != "-":
        json.loads(stdout)
    if args[0] == "bench" and "--json" not in args:
        assert "semantic tokens" in stdout


@pytest.fixture(scope="module")
def load_once():
    """Bark.load hands back one instance per model and settings while the examples run, on one
    thread (the tiny model's products are too small to share; on a busy machine, threads wait)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    original = Bark.load.__func__
    loaded: dict = {}

    def load(cls, model, *args, **kwargs):
        key = (str(model), repr(args), repr(sorted((k, v) for k, v in kwargs.items() if k != "progress")))
        if key not in loaded:
            loaded[key] = original(cls, model, *args, **kwargs)
        return loaded[key]

    patch = pytest.MonkeyPatch()
    patch.setattr(Bark, "load", classmethod(load))
    yield
    patch.undo()
    torch.set_num_threads(threads)


# The documents with something to run: the others (the library, the performance record, guides
# whose examples need a server, Ray or a recording) are covered by the not-run check above.
WITH_RUNNABLE = sorted({e.doc for e in ALL if e.skip is None})


@pytest.mark.parametrize("doc", WITH_RUNNABLE)
def test_examples_run(doc, tiny_checkpoint, tmp_path, monkeypatch, load_once):
    """A document's runnable examples in order, in one folder (later ones use what earlier ones made)."""
    runnable = [e for e in ALL if e.doc == doc and e.skip is None]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BARK_VOICES_DIR", str(tmp_path / "voices"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("BARK_MODEL", str(tiny_checkpoint))
    monkeypatch.delenv("BARK_DEBUG", raising=False)
    write_inputs(tmp_path)
    for example in runnable:
        args, stdout_file = prepare(example, str(tiny_checkpoint))
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, f"{example}\n  ran as: bark {shlex.join(args)}\n{result.output}"
        if stdout_file:
            Path(stdout_file).write_bytes(result.stdout_bytes)
        check_outputs(args, stdout_file, result.stdout)
