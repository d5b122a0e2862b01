"""The batch runner's planning: inputs, output names, shards, isolation of bad items, resume."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
import pytest
import soundfile as sf

from bark_cli.batch import parse_shard, plan_outputs, read_items, run_batch, select_shard
from bark_cli.errors import InputError


@dataclass
class Tone:
    """A stand-in result: one second of a tone whose pitch encodes the item's text length."""

    audio: np.ndarray
    sample_rate: int = 8000

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate


def tone_for(item):
    t = np.arange(8000) / 8000
    return Tone((0.1 * np.sin(2 * np.pi * (100 + len(item.text)) * t)).astype(np.float32))


def test_text_files_jsonl_and_stdin(tmp_path):
    (tmp_path / "a.txt").write_text("first line\n\n  second line  \n")
    (tmp_path / "b.jsonl").write_text('{"text": "json one", "seed": 3}\n{"text": \n{"text": "json two", "voice": "v"}\n')
    items = read_items([str(tmp_path / "a.txt"), str(tmp_path / "b.jsonl"), "-"], stdin=io.StringIO("from stdin\n"))
    assert [i.text for i in items] == ["first line", "second line", "json one", "", "json two", "from stdin"]
    assert [i.index for i in items] == list(range(6))
    assert items[2].seed == 3 and items[4].voice == "v"
    assert items[3].error and "b.jsonl line 2" in items[3].error
    assert items[1].line == 3 and items[5].stem == "stdin"


def test_whole_file_items(tmp_path):
    (tmp_path / "chapter1.txt").write_text("One.\nTwo.\n")
    items = read_items([str(tmp_path / "chapter1.txt")], whole_file=True)
    assert len(items) == 1 and items[0].text == "One.\nTwo." and items[0].stem == "chapter1"


@pytest.mark.parametrize("line,message", [
    ('{"text": "x", "seed": -1}', "seed"),
    ('{"text": "x", "colour": "red"}', "unknown key"),
    ('["text"]', "non-empty"),
    ('{"text": "x", "output": 5}', "output must be a string"),
])
def test_bad_jsonl_lines(tmp_path, line, message):
    (tmp_path / "in.jsonl").write_text(line + "\n")
    (item,) = read_items([str(tmp_path / "in.jsonl")])
    assert message in item.error and "line 1" in item.error


def test_outputs_outside_the_folder_are_refused(tmp_path):
    (tmp_path / "in.jsonl").write_text("\n".join(json.dumps(d) for d in [
        {"text": "a", "output": "../x.wav"},
        {"text": "b", "output": str(tmp_path / "elsewhere.wav")},
        {"text": "c", "output": "sub/ok.wav"},
        {"text": "d"},
        {"text": "e", "output": "notes.txt"},
    ]))
    out = tmp_path / "out"
    items = plan_outputs(read_items([str(tmp_path / "in.jsonl")]), out, "{stem}-{index:03d}.flac")
    assert "outside the output folder" in items[0].error
    assert "outside the output folder" in items[1].error
    assert items[2].output == (out / "sub" / "ok.wav").resolve()
    assert items[3].output == (out / "in-003.flac").resolve()
    assert "does not end in" in items[4].error


def test_shards_cover_every_item_exactly_once(tmp_path):
    (tmp_path / "in.txt").write_text("\n".join(f"line {i}" for i in range(10)))
    items = read_items([str(tmp_path / "in.txt")])
    seen = [i.index for k in range(3) for i in select_shard(items, parse_shard(f"{k}/3"))]
    assert sorted(seen) == list(range(10))
    for bad in ["3/3", "1", "a/b", "-1/2", "0/0"]:
        with pytest.raises(InputError):
            parse_shard(bad)


def test_a_failing_item_fails_alone_and_a_rerun_resumes(tmp_path):
    (tmp_path / "in.txt").write_text("one\ntwo\nboom\nfour\nfive\n")
    out = tmp_path / "out"
    calls = []

    def speak_group(items):
        calls.append([i.text for i in items])
        if any(i.text == "boom" for i in items):
            raise RuntimeError("model exploded")
        return [(tone_for(i), 7) for i in items]

    items = plan_outputs(read_items([str(tmp_path / "in.txt")]), out)
    report = io.StringIO()
    summary = run_batch(speak_group, items, group_key=lambda i: "same voice", batch_size=2, report=report)
    assert [o.status for o in summary.outcomes] == ["done", "done", "failed", "done", "done"]
    assert "model exploded" in summary.outcomes[2].error
    assert calls[:2] == [["one", "two"], ["boom", "four"]]  # the failed pair was retried alone
    lines = [json.loads(line) for line in report.getvalue().splitlines()]
    assert {line["status"] for line in lines} == {"done", "failed"} and lines[0]["seed"] == 7
    data, rate = sf.read(out / "00000.wav")
    assert rate == 8000 and len(data) == 8000

    calls.clear()
    again = run_batch(speak_group, plan_outputs(read_items([str(tmp_path / "in.txt")]), out), batch_size=2,
                      group_key=lambda i: "same voice")
    assert [o.status for o in sorted(again.outcomes, key=lambda o: o.index)] == [
        "skipped", "skipped", "failed", "skipped", "skipped"]
    assert calls == [["boom"]]  # nothing generated twice


def test_seeded_items_run_alone(tmp_path):
    (tmp_path / "in.jsonl").write_text('{"text": "a"}\n{"text": "b", "seed": 1}\n{"text": "c"}\n{"text": "d"}\n')
    groups = []

    def speak_group(items):
        groups.append([i.text for i in items])
        return [(tone_for(i), i.seed or 0) for i in items]

    items = plan_outputs(read_items([str(tmp_path / "in.jsonl")]), tmp_path / "out")
    run_batch(speak_group, items, group_key=lambda i: None if i.seed is not None else ("voice", i.voice), batch_size=8)
    assert groups == [["a"], ["b"], ["c", "d"]]
