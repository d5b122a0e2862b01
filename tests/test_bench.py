"""The benchmark on a tiny config: it runs, counts are exact and equal in both implementations,
and every figure it reports is positive and consistent with the others. No timing assertions."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from bark_cli import bench
from bark_cli.bench import BenchOptions, format_report, run_benchmark
from bark_cli.errors import BarkError, DeviceError, InputError
from bark_cli.models.gpt import GPT

TOKENS = 12
# 12 semantic tokens -> floor(12 * 75 / 49.9) = 18 frames of 320 samples, one fine window
FRAMES = 18
FAST = dict(config="tiny", tokens=[TOKENS], bandwidth_mb=4, decode_steps=2, warmup=False, threads=1)


def check_run(run: bench.RunResult, batch: int) -> None:
    assert (run.semantic_tokens, run.coarse_frames, run.fine_frames) == (TOKENS, FRAMES, FRAMES)
    assert run.audio_samples == FRAMES * 320 and run.fine_windows == 1
    assert run.batch_size == batch
    assert all(run.seconds[k] > 0 for k in (*bench.STAGES, "total"))
    assert run.seconds["total"] >= 0.99 * sum(run.seconds[k] for k in bench.STAGES)
    rates = run.rates()
    assert all(v > 0 and math.isfinite(v) for v in rates.values())
    assert rates["semantic_tokens_per_s"] * run.seconds["semantic"] == pytest.approx(batch * TOKENS)
    assert rates["coarse_tokens_per_s"] * run.seconds["coarse"] == pytest.approx(batch * 2 * FRAMES)
    assert rates["real_time_factor"] * rates["x_slower_than_real_time"] == pytest.approx(1)
    assert run.audio_seconds == pytest.approx(batch * FRAMES * 320 / 24_000)
    assert run.rss_peak_bytes > 0 and run.cpu_cores_used > 0
    if run.rss_start_bytes is not None:
        assert run.rss_peak_bytes >= run.rss_start_bytes


@pytest.fixture(scope="module")
def compared():
    pytest.importorskip("transformers")
    return run_benchmark(BenchOptions(compare_transformers=True, **FAST))


def test_compare_transformers_counts_and_figures(compared):
    (comp,) = compared.results
    check_run(comp.ours, 1)
    check_run(comp.transformers, 1)
    assert comp.ours.semantic_step_seconds > 0 and comp.transformers.semantic_step_seconds > 0
    speedup, ratio = comp.speedup(), comp.time_ratio()
    for stage in (*bench.STAGES, "total"):
        assert speedup[stage] == pytest.approx(comp.transformers.seconds[stage] / comp.ours.seconds[stage])
        assert speedup[stage] * ratio[stage] == pytest.approx(1)


def test_decode_floor(compared):
    bw = compared.bandwidth
    assert min(bw.copy_bytes_per_s, bw.sum_bytes_per_s, bw.matvec_bytes_per_s) > 0
    assert bw.floor_bytes_per_s >= max(bw.sum_bytes_per_s, bw.matvec_bytes_per_s, 2 * bw.copy_bytes_per_s)
    assert [f.stage for f in compared.floors] == ["semantic", "coarse"]
    for floor in compared.floors:
        assert floor.error is None
        assert floor.weight_bytes > 0 and floor.kv_bytes > 0 and floor.measured_seconds > 0
        assert floor.floor_seconds == pytest.approx(floor.weight_bytes / bw.floor_bytes_per_s)
        assert floor.ratio == pytest.approx(floor.measured_seconds / floor.floor_seconds)
        assert 0 < floor.best_seconds <= floor.measured_seconds
        assert floor.best_ratio == pytest.approx(floor.best_seconds / floor.floor_seconds)
        # the floor: the weights at the copy rate (bytes read), which the strict floor
        # counts as half the traffic a copy moves
        assert floor.copy_floor_seconds == pytest.approx(floor.weight_bytes / bw.copy_bytes_per_s)
        assert floor.copy_floor_seconds >= 2 * floor.floor_seconds * (1 - 1e-9)
        assert floor.copy_ratio == pytest.approx(floor.measured_seconds / floor.copy_floor_seconds)


def test_report_names_transformers_attention(compared):
    assert "transformers' BarkModel attention: eager" in compared.notes


def test_report_json_and_text(compared):
    data = json.loads(compared.to_json())
    (result,) = data["results"]
    assert result["tokens"] == TOKENS
    assert result["bark_cli"]["semantic_tokens"] == result["transformers"]["semantic_tokens"] == TOKENS
    assert result["bark_cli"]["coarse_frames"] == result["transformers"]["coarse_frames"] == FRAMES
    assert set(result["speedup"]) == {*bench.STAGES, "total"}
    assert data["environment"]["transformers"]
    assert any(note.startswith("run order: interleaved") for note in data["notes"])  # CPU, Linux
    assert data["model"]["stages"]["semantic"]["hidden_size"] == 32
    text = "\n".join(format_report(compared))
    assert f"{TOKENS} semantic tokens x 1: {FRAMES} coarse frames, {FRAMES} fine frames" in text
    assert "speedup" in text and "bandwidth floor" in text
    total = compared.results[0].speedup()["total"]
    assert f"{total:.2f}x" in text


def test_batched_against_sequential_transformers():
    """Batch mode: bark-cli makes 2 items in one call, transformers 1 run scaled to 2 items."""
    pytest.importorskip("transformers")
    report = run_benchmark(BenchOptions(compare_transformers=True, batch_size=2, transformers_runs=1,
                                        **dict(FAST, bandwidth_mb=0)))
    (comp,) = report.results
    check_run(comp.ours, 2)
    check_run(comp.transformers, 2)
    assert comp.transformers.scaled_from == 1 and comp.transformers.calls == 2
    assert comp.transformers.seconds["total"] == pytest.approx(2 * comp.transformers.runs[0]["total"])
    assert report.floors == [] and any("scaled" in note for note in report.notes)
    assert "(2 runs, 1 timed)" in "\n".join(format_report(report))


def test_without_transformers(monkeypatch):
    """Random weights built by bark-cli alone; transformers is never imported."""
    monkeypatch.setitem(sys.modules, "transformers", None)
    report = run_benchmark(BenchOptions(**dict(FAST, bandwidth_mb=0)))
    (comp,) = report.results
    check_run(comp.ours, 1)
    assert comp.transformers is None and comp.speedup() is None
    assert json.loads(report.to_json())["environment"]["transformers"] is None
    assert "speedup" not in "\n".join(format_report(report))


def test_missing_transformers_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(BarkError, match="needs the transformers package"):
        run_benchmark(BenchOptions(compare_transformers=True, **FAST))


def test_bad_options():
    with pytest.raises(InputError):
        run_benchmark(BenchOptions(config="tiny", tokens=[0]))
    with pytest.raises(InputError, match="unknown size"):
        bench.bark_config("huge")


def test_threads_are_restored(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setitem(sys.modules, "transformers", None)
    run_benchmark(BenchOptions(**dict(FAST, bandwidth_mb=0, decode_steps=0)))
    assert torch.get_num_threads() == before


def test_decode_step_bytes_bark_small():
    """The weights one bark-small semantic step reads: 12 blocks, final LayerNorm, the LM head and
    one position row, float32 (about 371 MB); the 129,600-row token table is not read."""
    config = bench.bark_config("bark-small").semantic
    with torch.device("meta"):
        model = GPT(config)
    h = 768
    block = 3 * h * h + h * h + 2 * 4 * h * h + 2 * h  # attention, MLP, two LayerNorm scales
    expected = 4 * (12 * block + h + 10_048 * h + h)
    assert bench.decode_step_bytes(model) == expected
    assert bench.kv_step_bytes(model, batch=2, position=300) == 2 * 12 * 2 * 300 * h * 4


def test_model_folder(tiny_checkpoint):
    """A real model folder: both implementations load the same files, the real tokenizer speaks the text."""
    pytest.importorskip("transformers")
    report = run_benchmark(BenchOptions(**dict(FAST, config=str(tiny_checkpoint), bandwidth_mb=0),
                                        compare_transformers=True))
    (comp,) = report.results
    check_run(comp.ours, 1)
    check_run(comp.transformers, 1)
    assert report.model["weights"] == "checkpoint"


def test_bfloat16_int8_against_float32_transformers():
    """bark-cli in bfloat16 with int8 GPT weights; transformers stays float32 on the CPU."""
    pytest.importorskip("transformers")
    report = run_benchmark(BenchOptions(compare_transformers=True, dtype="bfloat16", quantize="int8", **FAST))
    (comp,) = report.results
    check_run(comp.ours, 1)
    check_run(comp.transformers, 1)
    assert (comp.ours.dtype, comp.transformers.dtype) == ("bfloat16+int8", "float32")
    semantic = report.floors[0]
    assert semantic.error is None and semantic.measured_seconds > 0
    assert semantic.kv_bytes == 2 * 2 * 1 * semantic.position * 32 * 4  # a float32 cache on the CPU, not int8
    assert "bfloat16 + int8 weights" in format_report(report)[0]


def test_int8_needs_reduced_precision():
    with pytest.raises(DeviceError, match="bfloat16 or float16"):
        run_benchmark(BenchOptions(config="tiny", quantize="int8", dtype="float32"))
    with pytest.raises(DeviceError, match="unknown quantization"):
        run_benchmark(BenchOptions(config="tiny", quantize="int4", dtype="bfloat16"))


def test_cuda_graphs_need_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(DeviceError, match="CUDA graphs need a CUDA device"):
        run_benchmark(BenchOptions(config="tiny", cuda_graphs=True))


def test_bark_bench_command_prints_json():
    from typer.testing import CliRunner

    from bark_cli.cli import app

    result = CliRunner().invoke(app, ["bench", "--config", "tiny", "--tokens", "12", "--repeats", "1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (run,) = report["results"]
    assert run["tokens"] == 12 and run["bark_cli"]["semantic_tokens"] == 12
    assert run["bark_cli"]["coarse_frames"] == math.floor(12 * 75 / 49.9)


def test_decode_breakdown_script_runs_and_checks_its_fused_step():
    """bench/decode_breakdown.py asserts its hand-fused step gives the model's logits, then
    prints one line per variant."""
    import subprocess

    script = Path(__file__).resolve().parents[1] / "bench" / "decode_breakdown.py"
    result = subprocess.run([sys.executable, str(script), "--config", "tiny", "--rounds", "2", "--position", "20"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith("floor ") and [line.split()[0] for line in lines[2:]] == [
        "model", "fused", "fused-mkl", "matmuls", "matmuls-mkl", "+", "+", "+"]
