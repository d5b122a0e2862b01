"""`bark batch` end to end on the tiny checkpoint: outputs, report, shards, refusals, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf
from typer.testing import CliRunner

from bark_cli.cli import app

FAST = ["--max-semantic-tokens", "8", "--temperature", "0", "--device", "cpu", "-q"]
BARK = Path(sys.executable).with_name("bark")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BARK_VOICES_DIR", str(tmp_path / "voices"))


def run(model, *args):
    return CliRunner().invoke(app, ["batch", *map(str, args), "--model", str(model), *FAST])


def report_lines(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def valid_audio(path: Path) -> bool:
    info = sf.info(path)
    return info.samplerate == 24_000 and info.frames > 0


def test_lines_become_files_with_a_report(tiny_checkpoint):
    Path("lines.txt").write_text("Hello world.\n\nA second line [laughter].\nThird.\n")
    result = run(tiny_checkpoint, "lines.txt", "--output-dir", "out", "--report", "r.jsonl", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in Path("out").iterdir()) == ["00000.wav", "00001.wav", "00002.wav"]
    assert all(valid_audio(p) for p in Path("out").iterdir())
    lines = report_lines("r.jsonl")
    assert [(r["index"], r["status"], r["line"]) for r in lines] == [(0, "done", 1), (1, "done", 3), (2, "done", 4)]
    assert all(r["seconds_of_audio"] > 0 and r["path"].endswith(".wav") for r in lines)


def test_bad_jsonl_items_fail_alone(tiny_checkpoint, tmp_path):
    outside = tmp_path / "elsewhere.wav"
    Path("in.jsonl").write_text("\n".join([
        json.dumps({"text": "Fine one.", "output": "a/one.flac"}),
        json.dumps({"text": "Escape.", "output": "../x.wav"}),
        '{"text": "broken',
        json.dumps({"text": "Absolute.", "output": str(outside)}),
        json.dumps({"text": "Fine two.", "seed": 5}),
    ]) + "\n")
    result = run(tiny_checkpoint, "in.jsonl", "--output-dir", "out", "--report", "r.jsonl")
    assert result.exit_code == 1, result.output
    status = {r["index"]: r for r in report_lines("r.jsonl")}
    assert status[0]["status"] == "done" and sf.info("out/a/one.flac").format == "FLAC"
    assert status[4]["status"] == "done" and status[4]["seed"] == 5 and Path("out/00004.wav").is_file()
    assert "outside the output folder" in status[1]["error"]
    assert "outside the output folder" in status[3]["error"]
    assert "in.jsonl line 3" in status[2]["error"]
    assert not Path("x.wav").exists() and not outside.exists()


def test_shards_cover_every_item_once(tiny_checkpoint):
    Path("lines.txt").write_text("".join(f"Line number {i}.\n" for i in range(7)))
    done = []
    for k in range(3):
        result = run(tiny_checkpoint, "lines.txt", "--output-dir", "out", "--shard", f"{k}/3", "--report", f"r{k}.jsonl")
        assert result.exit_code == 0, result.output
        done += [r["index"] for r in report_lines(f"r{k}.jsonl") if r["status"] == "done"]
    assert sorted(done) == list(range(7))
    assert len(list(Path("out").glob("*.wav"))) == 7


def test_whole_file_items_and_templates(tiny_checkpoint):
    Path("chapter.txt").write_text("First sentence. " * 20)
    result = run(tiny_checkpoint, "chapter.txt", "--whole-file", "--output-dir", "book", "--template", "{stem}.wav",
                 "--report", "r.jsonl")
    assert result.exit_code == 0, result.output
    (line,) = report_lines("r.jsonl")
    # 320 letters is two segments of 8 tokens' audio plus one 0.25 s gap
    assert line["status"] == "done" and abs(line["seconds_of_audio"] - (2 * 12 * 320 + 6000) / 24_000) < 1e-3
    assert valid_audio(Path("book/chapter.wav"))


@pytest.mark.parametrize("args,fragment", [
    (["--shard", "3/3"], "bad shard"),
    (["--batch-size", "0"], "batch-size"),
    (["--template", "{nope}.wav"], "bad output template"),
])
def test_bad_usage_exits_2(tiny_checkpoint, args, fragment):
    Path("lines.txt").write_text("Hello.\n")
    result = run(tiny_checkpoint, "lines.txt", "--output-dir", "out", *args)
    assert result.exit_code == 2 and fragment in result.stderr and "Traceback" not in result.output


def test_missing_input_file_exits_2(tiny_checkpoint):
    result = run(tiny_checkpoint, "absent.txt", "--output-dir", "out")
    assert result.exit_code == 2 and "absent.txt does not exist" in result.stderr


def test_killed_batch_resumes_without_redoing_work(tiny_checkpoint):
    """SIGKILL mid-run, then the same command: every output valid, none generated twice."""
    count = 12
    Path("lines.txt").write_text("".join(f"Utterance number {i} of the run.\n" for i in range(count)))
    command = [str(BARK), "batch", "lines.txt", "--output-dir", "out", "--batch-size", "1", "--model",
               str(tiny_checkpoint), "--max-semantic-tokens", "24", "--temperature", "0", "-q"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    first = subprocess.Popen([*command, "--report", "first.jsonl"], env=env, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and first.poll() is None and len(list(Path("out").glob("*.wav"))) < 2:
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    before = {p.name: p.stat().st_mtime_ns for p in Path("out").glob("*.wav")}
    assert 0 < len(before) < count, "the kill should land mid-run"

    second = subprocess.run([*command, "--report", "second.jsonl"], env=env, capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 0, second.stderr
    outputs = sorted(Path("out").glob("*.wav"))
    assert len(outputs) == count and all(valid_audio(p) for p in outputs)
    for name, mtime in before.items():  # finished files were not written again
        assert Path("out", name).stat().st_mtime_ns == mtime
    first_done = {r["index"] for r in report_lines("first.jsonl") if r["status"] == "done"}
    second = {r["index"]: r["status"] for r in report_lines("second.jsonl")}
    assert all(second[i] == "skipped" for i in first_done)
    assert {i for i, s in second.items() if s == "done"} == set(range(count)) - first_done
