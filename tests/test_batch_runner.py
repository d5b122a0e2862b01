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


def test_output_names_with_control_characters_or_too_long_fail_their_item(tmp_path):
    """A data file's output may not drive the terminal (ESC, BEL) nor exceed a file name's
    length: that item fails with a one-line, escaped error; the others go on."""
    lines = [{"text": "a", "output": "\u001b]0;owned\u0007.mp3"}, {"text": "b", "output": "x" * 300 + ".wav"},
             {"text": "c", "output": "fine.wav"}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out"
    items = plan_outputs(read_items([str(tmp_path / "in.jsonl")]), out)
    assert items[0].output is None and items[0].error == "output '\\x1b]0;owned\\x07.mp3' holds control characters"
    assert items[1].output is None and "304 bytes long, over the 255-byte limit" in items[1].error
    assert all(ch.isprintable() for item in items[:2] for ch in item.error)
    assert items[2].error is None and items[2].output == (out / "fine.wav").resolve()
    summary = run_batch(lambda group: [(tone_for(i), 0) for i in group], items, batch_size=4)
    assert [o.status for o in summary.outcomes] == ["failed", "failed", "done"]
    assert [p.name for p in out.iterdir()] == ["fine.wav"]


# --- planning: collisions --------------------------------------------------------------------


def test_two_items_with_one_output_refuse_the_plan(tmp_path):
    (tmp_path / "lines.txt").write_text("a\nb\nc\n")
    (tmp_path / "more.jsonl").write_text('{"text": "d", "output": "./sub/../00001.wav"}\n')
    out = tmp_path / "out"
    items = read_items([str(tmp_path / "lines.txt"), str(tmp_path / "more.jsonl")])
    with pytest.raises(InputError) as caught:
        plan_outputs(items, out)
    message = str(caught.value)
    # lines.txt line 2 is item 1 -> 00001.wav; the JSONL line resolves to the same file.
    assert f"{tmp_path / 'lines.txt'}:2 and {tmp_path / 'more.jsonl'}:1 -> {out / '00001.wav'}" in message
    assert not out.exists()  # planning writes nothing


def test_a_template_without_index_collides_on_every_line(tmp_path):
    (tmp_path / "lines.txt").write_text("a\nb\nc\nd\ne\n")
    with pytest.raises(InputError, match=r"lines.txt:1 and .*lines.txt:2 -> .*same.wav.*\(and 1 more\)"):
        plan_outputs(read_items([str(tmp_path / "lines.txt")]), tmp_path / "out", "same.wav")


def test_names_differing_in_case_collide_only_on_a_case_insensitive_folder(tmp_path):
    from bark_cli.batch import case_insensitive

    (tmp_path / "in.jsonl").write_text('{"text": "a", "output": "Hello.wav"}\n{"text": "b", "output": "hello.wav"}\n')
    items = read_items([str(tmp_path / "in.jsonl")])
    # The oracle: does this file system find a file under another case of its name?
    (tmp_path / "Probe.txt").write_text("x")
    folds = (tmp_path / "probe.txt").exists()
    assert case_insensitive(tmp_path / "out" / "deeper") == folds  # probes the nearest existing parent
    if folds:
        with pytest.raises(InputError, match="two items write one file"):
            plan_outputs(items, tmp_path / "out")
    else:
        planned = plan_outputs(items, tmp_path / "out")
        assert planned[0].output != planned[1].output
    assert not list(tmp_path.glob(".bark-Case-Probe-*"))  # the probe cleans up


# --- planning: the template language ---------------------------------------------------------


@pytest.mark.parametrize("template,expected", [
    ("{index}.wav", "7.wav"),
    ("{index:05d}.wav", "00007.wav"),
    ("{index:012d}.wav", "000000000007.wav"),
    ("{stem}-{line:03d}.flac", "book-008.flac"),
    ("{{x}}{index}.wav", "{x}7.wav"),
    ("{stem}/{index:2d}.wav", None),
])
def test_template_language(template, expected):
    from bark_cli.batch import Template

    if expected is None:
        with pytest.raises(InputError, match="bad output template"):
            Template(template)
        return
    assert Template(template).render(7, 8, "book") == expected


@pytest.mark.parametrize("template", [
    "{index.__class__}.wav", "{stem[0]}.wav", "{index:>5}.wav", "{index:013d}.wav", "{index:00d}.wav",
    "{stem:05d}.wav", "{index!r}.wav", "{}.wav", "{0}.wav", "{nope}.wav", "x{.wav", "x}.wav", "{index:05x}.wav",
    "{index:{line}}.wav",
])
def test_template_refuses_everything_outside_the_language(tmp_path, template):
    (tmp_path / "in.txt").write_text("a\n")
    with pytest.raises(InputError, match="bad output template") as caught:
        plan_outputs(read_items([str(tmp_path / "in.txt")]), tmp_path / "out", template)
    assert "{index:05d}" in caught.value.hint


# --- claims ----------------------------------------------------------------------------------


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_claims_keep_a_live_runs_items_and_take_over_a_dead_ones(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    from bark_cli.claims import claim_path

    (tmp_path / "in.txt").write_text("one\ntwo\nthree\n")
    out = tmp_path / "out"
    items = plan_outputs(read_items([str(tmp_path / "in.txt")]), out)
    out.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        claim_path(items[0].output).write_text(f"{live.pid} {socket.gethostname()}")
        claim_path(items[1].output).write_text(f"{_dead_pid()} {socket.gethostname()}")
        spoken = []

        def speak_group(group):
            spoken.extend(i.text for i in group)
            assert all(claim_path(i.output).read_text().startswith(f"{os.getpid()} ") for i in group)
            return [(tone_for(i), 0) for i in group]

        summary = run_batch(speak_group, items, group_key=lambda i: "v", batch_size=8)
    finally:
        live.kill()
        live.wait()
    assert [o.status for o in summary.outcomes] == ["claimed", "done", "done"]
    assert spoken == ["two", "three"]
    assert not items[0].output.exists() and items[1].output.exists()
    assert claim_path(items[0].output).exists()  # the live run's claim is left alone
    assert not claim_path(items[1].output).exists() and not claim_path(items[2].output).exists()
    assert summary.failed == 0


def test_claims_are_released_when_an_item_fails(tmp_path):
    from bark_cli.claims import claim_path

    (tmp_path / "in.txt").write_text("ok\nboom\n")
    items = plan_outputs(read_items([str(tmp_path / "in.txt")]), tmp_path / "out")

    def speak_group(group):
        if any(i.text == "boom" for i in group):
            raise RuntimeError("no")
        return [(tone_for(i), 0) for i in group]

    summary = run_batch(speak_group, items, group_key=lambda i: "v", batch_size=2)
    assert [o.status for o in summary.outcomes] == ["done", "failed"]
    assert not list((tmp_path / "out").glob(".*.claim"))
    assert not claim_path(items[1].output).exists()


def test_concurrent_runs_generate_each_item_once(tmp_path):
    import threading
    import time

    (tmp_path / "in.txt").write_text("\n".join(f"item {i}" for i in range(12)) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    spoken: list[str] = []
    lock = threading.Lock()

    def speak_group(group):
        time.sleep(0.01)  # long enough for the runs to interleave
        with lock:
            spoken.extend(i.text for i in group)
        return [(tone_for(i), 0) for i in group]

    summaries = []

    def one_run():
        items = plan_outputs(read_items([str(tmp_path / "in.txt")]), out)
        summaries.append(run_batch(speak_group, items, group_key=lambda i: "v", batch_size=2))

    runs = [threading.Thread(target=one_run) for _ in range(3)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert sorted(spoken) == sorted(f"item {i}" for i in range(12))  # each exactly once
    assert len(list(out.glob("*.wav"))) == 12 and not list(out.glob(".*.claim"))
    statuses = [o.status for s in summaries for o in s.outcomes]
    assert statuses.count("done") == 12 and set(statuses) <= {"done", "claimed", "skipped"}
