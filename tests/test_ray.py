"""`bark batch --ray` on a local Ray (2 CPUs, one actor) and the tiny checkpoint: the same files as
the local batch, byte for byte; a worker killed mid-run; a run stopped by Ctrl-C and resumed."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import soundfile as sf
from typer.testing import CliRunner

from bark_cli import batch as runner
from bark_cli.cli import app
from bark_cli.config import DeviceOptions, SamplingOptions

ray = pytest.importorskip("ray", reason="needs Ray: pip install -e '.[ray]'")
psutil = pytest.importorskip("psutil")

FAST = ["--max-semantic-tokens", "8", "--temperature", "0", "--device", "cpu", "--dtype", "float32", "-q"]
DEADLINE = 150  # seconds any one run may take on two busy cores before the test gives up


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One small Ray for the module; `bark batch --ray` uses a Ray this process has started."""
    ray.init(num_cpus=2, object_store_memory=80 * 2**20, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)
    yield
    ray.shutdown()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def bounded():
    """Every test ends in its time, even if Ray hangs: SIGALRM raises in the main thread."""
    limit = 2 * DEADLINE

    def give_up(signum, frame):
        raise TimeoutError(f"the test ran past {limit} s")

    previous = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(limit)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def run(model, *args):
    return CliRunner().invoke(app, ["batch", *map(str, args), "--model", str(model), *FAST])


def report(path) -> dict[int, dict]:
    lines = [json.loads(line) for line in Path(path).read_text().splitlines()]
    by_index = {line["index"]: line for line in lines}
    assert len(by_index) == len(lines), "an item reported twice"
    return by_index


def leftovers(folder: Path) -> list[str]:
    """Temporary files and claims: what a clean stop leaves none of."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".part", ".claim")))


def mixed_inputs() -> list[str]:
    long_line = " ".join(f"Sentence {n} of a long item that is spoken in several segments." for n in range(8))
    Path("lines.txt").write_text(f"Hello world.\n\nA second line [laughter].\n{long_line}\nLast.\n")
    Path("more.jsonl").write_text("\n".join(json.dumps(row) for row in [
        {"text": "Own seed.", "seed": 7},
        {"text": "Own name and voice.", "output": "named/one.flac", "voice": "v2/en_speaker_1"},
        {"text": "Plain."},
    ]) + "\n")
    return ["lines.txt", "more.jsonl"]


def test_ray_writes_the_local_batchs_bytes(tiny_checkpoint):
    inputs = mixed_inputs()
    local = run(tiny_checkpoint, *inputs, "-d", "local", "--seed", "3", "--batch-size", "2", "--report", "local.jsonl")
    assert local.exit_code == 0, local.output
    on_ray = run(tiny_checkpoint, *inputs, "-d", "ray", "--seed", "3", "--batch-size", "2", "--report", "ray.jsonl",
                 "--ray")
    assert on_ray.exit_code == 0, on_ray.output
    made = sorted(p.relative_to("local") for p in Path("local").rglob("*.*"))
    assert len(made) == 7 and sorted(p.relative_to("ray") for p in Path("ray").rglob("*.*")) == made
    for name in made:
        assert (Path("ray") / name).read_bytes() == (Path("local") / name).read_bytes(), name
    strip = lambda r: {i: (line["status"], line["seed"], line["seconds_of_audio"]) for i, line in r.items()}  # noqa: E731
    assert strip(report("ray.jsonl")) == strip(report("local.jsonl"))

    # A rerun finds every file there: nothing is generated, so no actor even starts.
    again = run(tiny_checkpoint, *inputs, "-d", "ray", "--seed", "3", "--report", "again.jsonl", "--ray")
    assert again.exit_code == 0 and {line["status"] for line in report("again.jsonl").values()} == {"skipped"}


def test_collisions_are_refused_before_ray_is_touched(tiny_checkpoint, monkeypatch):
    # With Ray unimportable, reaching Ray would say how to install it: the plan is refused first.
    monkeypatch.setitem(sys.modules, "ray", None)
    Path("clash.jsonl").write_text('{"text": "One.", "output": "same.wav"}\n{"text": "Two.", "output": "same.wav"}\n')
    result = run(tiny_checkpoint, "clash.jsonl", "-d", "out", "--ray")
    assert result.exit_code == 2 and "two items write one file" in result.stderr
    assert not Path("out").exists()

    Path("fine.txt").write_text("Fine.\n")
    result = run(tiny_checkpoint, "fine.txt", "-d", "out", "--ray")
    assert result.exit_code == 2 and "pip install 'bark-cli[ray]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and list(Path("out").iterdir()) == []


def test_a_model_the_workers_cannot_load_is_one_error(tmp_path):
    Path("fine.txt").write_text("Fine.\nAlso fine.\n")
    result = CliRunner().invoke(app, ["batch", "fine.txt", "-d", "out", "--model", str(tmp_path / "absent"), "--ray",
                                      *FAST])
    assert result.exit_code == 2 and "absent" in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and list(Path("out").iterdir()) == []


def planned(tiny_checkpoint, count: int):
    from bark_cli.raybatch import Speaking

    Path("lines.txt").write_text("".join(f"Utterance number {i} of the run.\n" for i in range(count)))
    items = runner.assign_seeds(runner.plan_outputs(runner.read_items(["lines.txt"]), Path("out")), 11)
    speaking = Speaking(model=str(tiny_checkpoint), hardware=DeviceOptions(device="cpu", dtype="float32"),
                        sampling=SamplingOptions(temperature=0, max_semantic_tokens=8), batch_size=1)
    return items, speaking


def worker_pids() -> set[int]:
    """Processes of this module's Ray actors (Ray titles them after the callable class)."""
    found = set()
    for process in psutil.process_iter(["cmdline"]):
        if any("ItemWorker" in part for part in process.info["cmdline"] or []):
            found.add(process.pid)
    return found


def wait_for(condition, what: str):
    deadline = time.time() + DEADLINE
    while not condition():
        assert time.time() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def valid(path: Path) -> bool:
    info = sf.info(path)
    return info.samplerate == 24_000 and info.frames > 0


def test_a_killed_worker_is_replaced_and_every_file_made_once(tiny_checkpoint):
    from bark_cli.raybatch import run_on_ray

    count = 10
    items, speaking = planned(tiny_checkpoint, count)
    summaries = []
    with open("report.jsonl", "w") as report_file:
        driver = threading.Thread(target=lambda: summaries.append(run_on_ray(items, speaking, report=report_file)))
        driver.start()
        wait_for(lambda: list(Path("out").glob("*.wav")) or not driver.is_alive(), "the first file")
        victims = worker_pids()
        done_at_kill = len(list(Path("out").glob("*.wav")))
        assert victims and 0 < done_at_kill < count, "the kill should land mid-run"
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        driver.join(DEADLINE)
        assert not driver.is_alive()
    assert not victims & worker_pids()
    outputs = sorted(Path("out").glob("*.wav"))
    assert [p.name for p in outputs] == [f"{i:05d}.wav" for i in range(count)] and all(map(valid, outputs))
    assert leftovers(Path("out")) == []
    lines = report("report.jsonl")
    assert sorted(lines) == list(range(count)) and {line["status"] for line in lines.values()} <= {"done", "skipped"}
    assert summaries[0].failed == 0


def test_ctrl_c_leaves_no_partial_files_and_a_rerun_finishes(tiny_checkpoint):
    """The driver stops the job and frees its claims; every file there is whole. (A worker killed
    while writing may leave its temporary file: the rerun, owning the item, removes it.)"""
    from bark_cli.raybatch import run_on_ray

    count = 8
    items, speaking = planned(tiny_checkpoint, count)

    def interrupt_at_first_file():
        wait_for(lambda: list(Path("out").glob("*.wav")), "the first file")
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: KeyboardInterrupt in the main thread, where the driver runs

    watcher = threading.Thread(target=interrupt_at_first_file, daemon=True)
    watcher.start()
    with open("first.jsonl", "w") as first, pytest.raises(KeyboardInterrupt):
        run_on_ray(items, speaking, report=first)
    wait_for(lambda: not worker_pids(), "the stopped job's workers to end")
    before = {p.name: p.stat().st_mtime_ns for p in Path("out").glob("*.wav")}
    assert 0 < len(before) < count, "the interrupt should land mid-run"
    assert not list(Path("out").glob(".*.claim")) and all(valid(Path("out", name)) for name in before)

    items, speaking = planned(tiny_checkpoint, count)
    with open("second.jsonl", "w") as second:
        summary = run_on_ray(items, speaking, report=second)
    assert summary.failed == 0
    assert sorted(p.name for p in Path("out").glob("*.wav")) == [f"{i:05d}.wav" for i in range(count)]
    assert {name: Path("out", name).stat().st_mtime_ns for name in before} == before  # not made again
    statuses = {i: line["status"] for i, line in report("second.jsonl").items()}
    assert {i for i, s in statuses.items() if s == "skipped"} == {int(name[:5]) for name in before}
    assert {i for i, s in statuses.items() if s == "done"} == set(range(count)) - {int(name[:5]) for name in before}
    assert leftovers(Path("out")) == []
