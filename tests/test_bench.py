"""The benchmark on a tiny config: `bark bench` alone and bench/compare.py beside transformers.
It runs, counts are exact and equal in both implementations, and every figure it reports is
positive and consistent with the others. No timing assertions."""

from __future__ import annotations

import importlib.util
import inspect
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bark_cli import bench
from bark_cli.bench import BenchOptions, format_report, run_benchmark
from bark_cli.config import DeviceOptions, GenerationConfig
from bark_cli.errors import BarkError, DeviceError, InputError
from bark_cli.models.gpt import GPT

ROOT = Path(__file__).resolve().parents[1]
TOKENS = 12
# 12 semantic tokens -> floor(12 * 75 / 49.9) = 18 frames of 320 samples, one fine window
FRAMES = 18


def cpu(**settings) -> DeviceOptions:
    return DeviceOptions(device="cpu", **settings)


FAST = dict(config="tiny", tokens=[TOKENS], bandwidth_mb=4, decode_steps=2, warmup=False, hardware=cpu(threads=1))


def load_compare():
    """bench/compare.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("bench_compare", ROOT / "bench" / "compare.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def compare():
    pytest.importorskip("transformers")
    return load_compare()


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
    # the real-time factor is processing seconds per audio second; "x faster" its inverse
    assert rates["real_time_factor"] == pytest.approx(run.seconds["total"] / run.audio_seconds)
    assert rates["real_time_factor"] * rates["x_faster_than_real_time"] == pytest.approx(1)
    assert rates["decode_real_time_factor"] == pytest.approx(run.seconds["decode"] / run.audio_seconds)
    assert run.audio_seconds == pytest.approx(batch * FRAMES * 320 / 24_000)
    assert run.rss_peak_bytes > 0 and run.cpu_cores_used > 0
    if run.rss_start_bytes is not None:
        # the probe's peak covers its own start reading, however lazily the kernel updates VmHWM
        assert run.rss_delta_bytes == run.rss_peak_bytes - run.rss_start_bytes
        assert run.rss_delta_bytes >= 0


@pytest.fixture(scope="module")
def alone():
    return run_benchmark(BenchOptions(**FAST))


@pytest.fixture(scope="module")
def compared(compare):
    return compare.run_comparison(BenchOptions(**FAST), compare.CompareOptions())


def test_bench_alone_counts_and_figures(alone):
    (run,) = alone.results
    check_run(run, 1)
    assert run.implementation == "bark-cli" and run.dtype == "float32"  # auto on the CPU
    assert run.semantic_step_seconds > 0
    assert alone.model["weights"] == "random" and alone.model["stages"]["semantic"]["hidden_size"] == 32


def test_decode_floor(alone):
    bw = alone.bandwidth
    assert min(bw.copy_bytes_per_s, bw.sum_bytes_per_s, bw.matvec_bytes_per_s) > 0
    assert bw.strict_bytes_per_s >= max(bw.sum_bytes_per_s, bw.matvec_bytes_per_s, 2 * bw.copy_bytes_per_s)
    assert [f.stage for f in alone.floors] == ["semantic", "coarse"]
    for floor in alone.floors:
        assert floor.error is None
        assert floor.weight_bytes > 0 and floor.kv_bytes > 0 and floor.measured_seconds > 0
        assert floor.strict_floor_seconds == pytest.approx(floor.weight_bytes / bw.strict_bytes_per_s)
        assert floor.strict_ratio == pytest.approx(floor.measured_seconds / floor.strict_floor_seconds)
        assert 0 < floor.best_seconds <= floor.measured_seconds
        assert floor.best_strict_ratio == pytest.approx(floor.best_seconds / floor.strict_floor_seconds)
        # the copy floor: the weights at the copy rate (bytes read), which the strict floor
        # counts as half the traffic a copy moves
        assert floor.copy_floor_seconds == pytest.approx(floor.weight_bytes / bw.copy_bytes_per_s)
        assert floor.copy_floor_seconds >= 2 * floor.strict_floor_seconds * (1 - 1e-9)
        assert floor.copy_ratio == pytest.approx(floor.measured_seconds / floor.copy_floor_seconds)
    text = "\n".join(format_report(alone))
    assert "bandwidth floors" in text and "copy floor" in text and "strict floor" in text


def test_compare_transformers_counts_and_figures(compared):
    (comp,) = compared.comparisons
    check_run(comp.ours, 1)
    check_run(comp.transformers, 1)
    assert comp.ours.semantic_step_seconds > 0 and comp.transformers.semantic_step_seconds > 0
    speedup, ratio = comp.speedup(), comp.time_ratio()
    for stage in (*bench.STAGES, "total"):
        assert speedup[stage] == pytest.approx(comp.transformers.seconds[stage] / comp.ours.seconds[stage])
        assert speedup[stage] * ratio[stage] == pytest.approx(1)
    assert compared.bench.model["weights"] == "random" and compared.bench.model["config"] == "tiny"


def test_report_names_transformers_attention(compared):
    assert "transformers' BarkModel attention: eager" in compared.notes


def test_report_json_and_text(compare, compared):
    data = json.loads(compared.to_json())
    (result,) = data["results"]
    assert result["tokens"] == TOKENS
    assert result["bark_cli"]["semantic_tokens"] == result["transformers"]["semantic_tokens"] == TOKENS
    assert result["bark_cli"]["coarse_frames"] == result["transformers"]["coarse_frames"] == FRAMES
    assert set(result["speedup"]) == {*bench.STAGES, "total"}
    assert data["environment"]["transformers"]
    assert any(note.startswith("run order: interleaved") for note in data["notes"])  # CPU, Linux
    assert data["model"]["stages"]["semantic"]["hidden_size"] == 32
    text = "\n".join(compare.format_comparison(compared))
    assert f"{TOKENS} semantic tokens x 1: {FRAMES} coarse frames, {FRAMES} fine frames" in text
    assert "speedup" in text and "bandwidth floors" in text
    total = compared.comparisons[0].speedup()["total"]
    assert f"{total:.2f}x" in text


def test_batched_against_sequential_transformers(compare):
    """Batch mode: bark-cli makes 2 items in one call, transformers 1 run scaled to 2 items."""
    report = compare.run_comparison(BenchOptions(batch_size=2, **dict(FAST, bandwidth_mb=0)),
                                    compare.CompareOptions(transformers_runs=1))
    (comp,) = report.comparisons
    check_run(comp.ours, 2)
    check_run(comp.transformers, 2)
    assert comp.transformers.scaled_from == 1 and comp.transformers.calls == 2
    assert comp.transformers.seconds["total"] == pytest.approx(2 * comp.transformers.runs[0]["total"])
    assert report.bench.floors == [] and any("scaled" in note for note in report.notes)
    assert "(2 runs, 1 timed)" in "\n".join(compare.format_comparison(report))


def test_without_transformers(monkeypatch):
    """`bark bench` never imports transformers."""
    monkeypatch.setitem(sys.modules, "transformers", None)
    report = run_benchmark(BenchOptions(**dict(FAST, bandwidth_mb=0)))
    (run,) = report.results
    check_run(run, 1)
    assert "transformers" not in json.loads(report.to_json())["environment"]
    assert "speedup" not in "\n".join(format_report(report))


def test_missing_transformers_is_a_clear_error(monkeypatch):
    compare = load_compare()
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(BarkError, match="needs the transformers package"):
        compare.run_comparison(BenchOptions(**FAST), compare.CompareOptions())


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


def test_model_folder(compare, tiny_checkpoint):
    """A real model folder: both implementations load the same files, the real tokenizer speaks the text."""
    report = compare.run_comparison(BenchOptions(**dict(FAST, config=str(tiny_checkpoint), bandwidth_mb=0)),
                                    compare.CompareOptions())
    (comp,) = report.comparisons
    check_run(comp.ours, 1)
    check_run(comp.transformers, 1)
    assert report.bench.model["weights"] == "checkpoint"


def test_bfloat16_int8_against_float32_transformers(compare):
    """bark-cli in bfloat16 with int8 GPT weights; transformers stays float32 on the CPU."""
    report = compare.run_comparison(BenchOptions(**dict(FAST, hardware=cpu(threads=1, dtype="bfloat16", quantize="int8"))), compare.CompareOptions())
    (comp,) = report.comparisons
    check_run(comp.ours, 1)
    check_run(comp.transformers, 1)
    assert (comp.ours.dtype, comp.transformers.dtype) == ("bfloat16+int8", "float32")
    semantic = report.bench.floors[0]
    assert semantic.error is None and semantic.measured_seconds > 0
    assert semantic.kv_bytes == 2 * 2 * 1 * semantic.position * 32 * 4  # a float32 cache on the CPU, not int8
    assert "bfloat16 + int8 weights" in compare.format_comparison(report)[0]


def test_dtype_auto_is_bark_loads():
    """dtype auto follows Bark.load: int8 weights on the CPU take bfloat16 activations."""
    report = run_benchmark(BenchOptions(**dict(FAST, bandwidth_mb=0, hardware=cpu(threads=1, quantize="int8"))))
    assert report.results[0].dtype == "bfloat16+int8" and report.model["dtype"] == "bfloat16"


def test_int8_needs_reduced_precision():
    with pytest.raises(DeviceError, match="bfloat16 or float16"):
        run_benchmark(BenchOptions(config="tiny", hardware=cpu(quantize="int8", dtype="float32")))
    with pytest.raises(DeviceError, match="unknown quantization"):
        run_benchmark(BenchOptions(config="tiny", hardware=cpu(quantize="int4", dtype="bfloat16")))


def test_cuda_graphs_need_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(DeviceError, match="CUDA graphs need a CUDA device"):
        run_benchmark(BenchOptions(config="tiny", hardware=cpu(cuda_graphs=True)))


def test_bark_bench_command_prints_json():
    from typer.testing import CliRunner

    from bark_cli.cli import app

    result = CliRunner().invoke(app, ["bench", "--config", "tiny", "--tokens", "12", "--repeats", "1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (run,) = report["results"]
    assert run["tokens"] == 12 and run["bark_cli"]["semantic_tokens"] == 12
    assert run["bark_cli"]["coarse_frames"] == math.floor(12 * 75 / 49.9)
    assert run["bark_cli"]["real_time_factor"] == pytest.approx(
        run["bark_cli"]["seconds"]["total"] / run["bark_cli"]["audio_seconds"])
    assert report["options"]["dtype"] == "auto" and report["model"]["dtype"] == "float32"


def test_bark_bench_help_names_every_size():
    from typer.testing import CliRunner

    from bark_cli.cli import app

    result = CliRunner().invoke(app, ["bench", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert all(size in result.output for size in bench.SIZES)


def test_compare_takes_every_bark_bench_option():
    from bark_cli.cli.bench import bench as bench_command

    ours = inspect.signature(bench_command).parameters
    theirs = inspect.signature(load_compare().main).parameters
    assert set(ours) <= set(theirs)
    assert set(theirs) - set(ours) == {"transformers_dtype", "transformers_batched", "transformers_runs"}


def test_compare_script_prints_json():
    pytest.importorskip("transformers")
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "compare.py"), "--config", "tiny", "--tokens", "12",
                             "--no-warmup", "--bandwidth-mb", "0", "--threads", "1", "--json", "--quiet"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (run,) = json.loads(result.stdout)["results"]
    assert run["bark_cli"]["semantic_tokens"] == run["transformers"]["semantic_tokens"] == 12


def test_decode_breakdown_script_runs_and_checks_its_fused_step():
    """bench/decode_breakdown.py asserts its hand-fused step gives the model's logits, then
    prints one line per variant."""
    script = ROOT / "bench" / "decode_breakdown.py"
    result = subprocess.run([sys.executable, str(script), "--config", "tiny", "--rounds", "2", "--position", "20"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith("floor ") and [line.split()[0] for line in lines[2:]] == [
        "model", "fused", "fused-mkl", "matmuls", "matmuls-mkl", "+", "+", "+"]


def test_roofline_counts_tiny_by_hand():
    """FLOPs and bytes of the tiny config (2 layers, width 32), worked out by hand: a block's four
    matrices hold 12 * 32^2 = 12288 weights, so two blocks 24576."""
    config = bench.bark_config("tiny")
    gen = GenerationConfig()
    # semantic step at position 263, float32 weights and cache: matrices plus the 10048-row head
    # = 24576 + 321536 = 346112 weights; keys and values of 264 positions, 2 layers: 2*2*264*32
    flops, nbytes = bench.gpt_step_counts(config.semantic, 10_048, 263, 1, 4, 4)
    assert flops == 2 * 346_112 + 2 * 33_792
    assert nbytes == 4 * 346_112 + 4 * 33_792
    # batch 3 multiplies the FLOPs and the cache read, not the weights read
    flops3, nbytes3 = bench.gpt_step_counts(config.semantic, 10_048, 263, 3, 2, 4)
    assert flops3 == 3 * flops and nbytes3 == 2 * 346_112 + 3 * 4 * 33_792
    # one fine pass over 1024 frames with the 1024 kept head rows: 24576 + 32768 = 57344 weights;
    # attention 4 * 1024^2 * 32 per layer
    flops, nbytes = bench.fine_pass_counts(config.fine, 1024, 1024, 1, 2)
    assert flops == 2 * 57_344 * 1024 + 2 * 4 * 1024 ** 2 * 32 == 385_875_968
    assert nbytes == 2 * 57_344
    # a run of 12 semantic tokens, 18 coarse frames and one fine window: the semantic steps at
    # position 256 + 1 + 6, the fine stage's six codebook passes
    run = bench.RunResult("float32", 1, TOKENS, FRAMES, FRAMES, 1, FRAMES * 320, 24_000,
                          seconds={k: 1.0 for k in (*bench.STAGES, "total")})
    counts = bench.stage_counts(config, gen, run, {"semantic": 4, "coarse": 4, "fine": 4}, 4)
    step = bench.gpt_step_counts(config.semantic, 10_048, 263, 1, 4, 4)
    assert counts["semantic"] == (12 * step[0], 12 * step[1])
    assert counts["fine"] == (6 * 385_875_968, 6 * 4 * 57_344)
    assert counts["coarse"][0] > 0 and set(counts) == {"semantic", "coarse", "fine"}


def test_roofline_in_report_and_json(alone):
    dtypes = [p.dtype for p in alone.peaks]
    assert dtypes[:2] == ["float32", "bfloat16"]
    assert ("int8" in dtypes) == bench.has_int8_dot(bench.cpu_flags())
    assert all(p.flops_per_s > 0 and p.shape == bench.GEMM_SHAPE for p in alone.peaks)
    (stages,) = alone.rooflines
    assert [s.stage for s in stages] == ["semantic", "coarse", "fine"]
    for s in stages:
        assert s.roof_seconds == max(s.flops / s.peak_flops_per_s, s.bytes / s.bytes_per_s)
        assert s.fraction == pytest.approx(s.roof_seconds / s.seconds)
        assert s.peak_dtype == "float32"
    # decode steps stream weights; the fine stage's 1024-frame passes reuse them
    assert [s.bound for s in stages] == ["memory", "memory", "compute"]
    text = "\n".join(format_report(alone))
    assert "roofline: GEMM peak (1024 x 1024) @ (1024 x 4096): float32" in text and "reached" in text
    data = json.loads(alone.to_json())
    assert [p["dtype"] for p in data["gemm_peak"]] == dtypes
    (result,) = data["results"]
    assert [s["stage"] for s in result["roofline"]] == ["semantic", "coarse", "fine"]
    assert result["roofline"][2]["fraction"] == pytest.approx(stages[2].fraction)


def test_fine_stage_script_runs_and_measures_against_float32():
    """bench/fine_stage.py times the fine stage's six passes both ways and prints each dtype's
    logit error against float32: none for float32 itself (the same weights and kernels)."""
    script = ROOT / "bench" / "fine_stage.py"
    result = subprocess.run([sys.executable, str(script), "--config", "tiny", "--rounds", "1", "--threads", "1"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    header, f32, bf16 = result.stdout.splitlines()
    assert header.startswith("tiny fine stage, one window (6 passes x 1024 frames), batch 1")
    # 6 passes of the hand-counted 385,875,968 FLOPs (test_roofline_counts_tiny_by_hand)
    assert header.endswith(f"{6 * 385_875_968 / 1e9:.0f} GFLOP")
    assert f32.split()[0] == "float32" and "logits vs float32: max 0.000, mean 0.0000" in f32
    assert bf16.split()[0] == "bfloat16" and "of the bfloat16 GEMM peak" in bf16


def test_serve_script_measures_the_requests_it_sends(tmp_path):
    """bench/serve.py against a real server on the tiny model: every client's audio arrives (EOS
    held off, so each segment is exactly --tokens semantic tokens long) and the figures agree."""
    tokens, clients = 8, 2
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "serve.py"), "--size", "tiny", "--tokens", str(tokens),
                             "--clients", str(clients), "--turns", "1", "--json", "--figures", str(tmp_path / "f.json")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    segment_audio_s = math.floor(tokens * 75 / 49.9) * 320 / 24_000
    assert report["audio_s"] == pytest.approx(clients * segment_audio_s, abs=0.01)
    ttfb = report["ttfb_s"]
    assert len(ttfb) == clients and report["ttfb_p95_s"] == max(ttfb)  # nearest rank: of 2, the slower
    assert len(report["alone_over_speak_turns"]) == 1
    assert report["alone_over_speak"] == pytest.approx(report["one_request_alone_s"] / report["speak_s"], rel=0.01)
    figures = json.loads((tmp_path / "f.json").read_text())["figures"]
    assert figures[f"serve tiny {clients}x1 ttfb p95 s"] == report["ttfb_p95_s"]
    assert figures[f"serve tiny {clients}x1 one request alone s"] == report["one_request_alone_s"]
    assert all(value > 0 for value in figures.values())
