"""bench/cuda_report.py: the GPU report's figures from made-up report files, against a baseline."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("cuda_report", ROOT / "bench" / "cuda_report.py")
cuda_report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cuda_report)


def bench_report(total: float, semantic_step: float, floor_ratio: float) -> dict:
    """The parts of a `bark bench --json` report the figures come from."""
    return {"results": [{"tokens": 100, "bark_cli": {"seconds": {"semantic": 0.2, "coarse": 0.6, "total": total},
                                                     "cuda_peak_bytes": 3 * 2**30}}],
            "decode_floor": [{"stage": "semantic", "measured_seconds": semantic_step, "strict_ratio": floor_ratio},
                             {"stage": "coarse", "measured_seconds": None, "strict_ratio": None}]}


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "bark-fp16-graphs.json").write_text(json.dumps(bench_report(0.9, 0.0012, 8.5)))
    (tmp_path / "bark-fp16.json").write_text("not json")  # a step that failed half-way
    (tmp_path / "steps.figures.json").write_text(json.dumps({"figures": {"kernels per semantic step": 130,
                                                                         "cold start s": 4.0}}))
    return tmp_path


def test_figures_are_read_from_the_reports(folder):
    figures = cuda_report.collect(folder)
    assert figures["bark fp16 graphs total s"] == 0.9
    assert figures["bark fp16 graphs gpu peak GiB"] == 3.0
    assert figures["bark fp16 graphs semantic step ms"] == pytest.approx(1.2)
    assert figures["bark fp16 graphs semantic step / strict floor"] == 8.5
    assert "bark fp16 graphs coarse step ms" not in figures  # not measured: no figure
    assert figures["kernels per semantic step"] == 130 and figures["cold start s"] == 4.0
    assert not any(name.startswith("bark fp16 eager") for name in figures)


def test_a_figure_more_than_25_percent_above_its_baseline_fails(folder, tmp_path_factory, capsys):
    base = tmp_path_factory.mktemp("base")

    def run(baseline: dict) -> int:
        path = base / "baseline.json"
        path.write_text(json.dumps({"figures": baseline}))
        return cuda_report.main([str(folder), "--baseline", str(path)])

    # 0.9 s against 0.75 s is +20%: within 25%; 130 kernels against 100 is +30%
    assert run({"bark fp16 graphs total s": 0.75, "cold start s": None, "ten segments ttfa streamed s": 0.3}) == 0
    assert run({"bark fp16 graphs total s": 0.71}) == 1
    assert "bark fp16 graphs total s" in capsys.readouterr().err
    assert run({"kernels per semantic step": 100}) == 1
    assert run({"kernels per semantic step": 200, "bark fp16 graphs total s": 2.0}) == 0  # faster passes


def test_compare_skips_figures_either_side_lacks():
    assert cuda_report.compare({"a": 2.0, "b": None}, {"a": None, "b": 1.0, "c": 1.0}) == []
    assert cuda_report.compare({"a": 1.3}, {"a": 1.0}, tolerance=0.25) == ["a: 1.3 against 1 (+30%)"]


def test_the_committed_baseline_names_figures_the_report_makes(folder, tmp_path):
    baseline = json.loads((ROOT / "bench" / "cuda-baseline.json").read_text())["figures"]
    assert baseline["bark fp16 graphs total s"] == 0.87  # the README's H200 figure
    written = tmp_path / "written.json"
    cuda_report.main([str(folder), "--write", str(written)])
    assert set(json.loads(written.read_text())["figures"]) <= set(baseline)
