"""The CPU kernel choice: measured once per CPU kind, kept in a cache file, PyTorch's default
unless an alternative measured faster, and each choice followed by Linear."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from bark_cli.models import kernels
from bark_cli.models.kernels import MARGIN, CpuKernels, Linear, calibrate, decide, use

SLOW_ONEDNN = {"float32 row, oneDNN": 2.0e-3, "float32 row, default": 1.0e-3,
               "float32 rows, oneDNN": 4.0e-3, "float32 rows, default": 3.0e-3,
               "bfloat16 row, native": 1.2e-3, "bfloat16 row, default": 1.0e-3}
FAST_ONEDNN = {"float32 row, oneDNN": 0.5e-3, "float32 row, default": 1.0e-3,
               "float32 rows, oneDNN": 2.0e-3, "float32 rows, default": 3.0e-3,
               "bfloat16 row, native": 0.4e-3, "bfloat16 row, default": 1.0e-3}


def test_an_alternative_is_chosen_only_where_it_measured_faster():
    slow, fast = decide(SLOW_ONEDNN), decide(FAST_ONEDNN)
    assert (slow.float32_onednn_row, slow.float32_onednn_rows, slow.bfloat16_native_row) == (False, False, False)
    assert (fast.float32_onednn_row, fast.float32_onednn_rows, fast.bfloat16_native_row) == (True, True, True)
    # A near tie keeps the default: the alternative must be at least 1 - MARGIN faster.
    tie = dict(FAST_ONEDNN, **{"float32 row, oneDNN": 1.0e-3 * (MARGIN + 0.01)})
    assert decide(tie).float32_onednn_row is False
    # Pairs not measured (no oneDNN in this build) keep the default.
    assert decide({}) == CpuKernels(bfloat16_fused_rows=kernels.ONEDNN_BF16_LINEAR, native_small_gelu=True,
                                    how="measured")


def test_measured_once_per_cpu_kind_then_read_from_the_cache(tmp_path, monkeypatch):
    calls = []

    def fake_measure():
        calls.append(1)
        return FAST_ONEDNN

    path = tmp_path / "kernels.json"
    with use(kernels.BY_FEATURES):
        first = calibrate(path, fake_measure)
        second = calibrate(path, fake_measure)
    assert len(calls) == 1
    assert first.how == "measured" and second.how == "cached"
    assert (second.float32_onednn_row, second.bfloat16_native_row) == (True, True)
    assert json.loads(path.read_text()) == {kernels.cpu_kind(): {"seconds": FAST_ONEDNN}}
    assert not list(tmp_path.glob("*.part"))
    # Another thread count is another kind: measured anew, and both kept.
    monkeypatch.setattr(kernels, "cpu_kind", lambda: "another CPU threads 1")
    with use(kernels.BY_FEATURES):
        calibrate(path, fake_measure)
    assert len(calls) == 2 and len(json.loads(path.read_text())) == 2


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"%s": {"seconds": 3}}'])
def test_a_broken_cache_is_measured_over(tmp_path, content):
    path = tmp_path / "kernels.json"
    path.write_text(content.replace("%s", kernels.cpu_kind()))
    with use(kernels.BY_FEATURES):
        chosen = calibrate(path, lambda: SLOW_ONEDNN)
    assert chosen.how == "measured"
    assert json.loads(path.read_text())[kernels.cpu_kind()] == {"seconds": SLOW_ONEDNN}


def test_an_unwritable_cache_still_gives_a_choice(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with use(kernels.BY_FEATURES):
        chosen = calibrate(blocker / "sub" / "kernels.json", lambda: FAST_ONEDNN)
    assert chosen.how == "measured" and chosen.float32_onednn_row


def test_pytorch_defaults_on_request(tmp_path, monkeypatch):
    monkeypatch.setenv(kernels.CPU_KERNELS_ENV, "pytorch")
    with use(kernels.BY_FEATURES):
        chosen = calibrate(tmp_path / "kernels.json", lambda: pytest.fail("nothing is measured"))
    assert chosen == kernels.PYTORCH_DEFAULT
    assert not (tmp_path / "kernels.json").exists()


def test_an_unknown_setting_is_a_clear_error(tmp_path, monkeypatch):
    from bark_cli.errors import DeviceError

    monkeypatch.setenv(kernels.CPU_KERNELS_ENV, "fastest")
    with use(kernels.BY_FEATURES):
        with pytest.raises(DeviceError, match="is not auto or pytorch") as error:
            calibrate(tmp_path / "kernels.json", lambda: pytest.fail("nothing is measured"))
        assert kernels.chosen is kernels.BY_FEATURES  # nothing chosen
    assert "BARK_CPU_KERNELS" in error.value.hint and not (tmp_path / "kernels.json").exists()


def test_measure_times_each_pair_this_build_has():
    seconds = kernels.measure(hidden=64, rows=8, repeats=3)
    expected = set()
    if kernels.ONEDNN_LINEAR:
        expected |= {"float32 row, oneDNN", "float32 row, default", "float32 rows, oneDNN", "float32 rows, default"}
    if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        expected |= {"bfloat16 row, native", "bfloat16 row, default"}
    assert set(seconds) == expected
    assert all(math.isfinite(s) and s > 0 for s in seconds.values())


def ops_of(layer: Linear, x: torch.Tensor, choice: CpuKernels) -> set[str]:
    with profile(activities=[ProfilerActivity.CPU]) as prof, use(choice), torch.inference_mode():
        layer(x)
    return {event.key for event in prof.key_averages()}


@pytest.mark.skipif(not kernels.ONEDNN_LINEAR, reason="oneDNN's product is a candidate only on x86-64 builds")
def test_linear_follows_the_choice_per_row_count():
    layer = Linear(32, 48)
    row, rows = torch.randn(1, 32), torch.randn(6, 32)
    only_rows = CpuKernels(float32_onednn_rows=True, how="measured")
    assert "mkldnn::_linear_pointwise" not in ops_of(layer, row, only_rows)
    assert "mkldnn::_linear_pointwise" in ops_of(layer, rows, only_rows)
    assert "mkldnn::_linear_pointwise" not in ops_of(layer, rows, kernels.PYTORCH_DEFAULT)
    # Every choice computes the same product.
    with torch.inference_mode():
        expected = torch.nn.functional.linear(rows, layer.weight, layer.bias)
        for choice in (only_rows, kernels.PYTORCH_DEFAULT, kernels.BY_FEATURES):
            with use(choice):
                torch.testing.assert_close(layer(rows), expected)


def test_a_cpu_model_calibrates_on_load(tmp_path, monkeypatch, bark):
    """Bark on the CPU settles the choice before generating: measured or read, never left at the
    unmeasured guess."""
    from bark_cli.pipeline import Bark

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with use(kernels.BY_FEATURES):
        monkeypatch.setattr(kernels, "measure", lambda: SLOW_ONEDNN)
        Bark(bark.weights, bark.tokenizer, bark.runtime)
        assert kernels.chosen.how in ("measured", "cached")
        assert (tmp_path / "bark-cli" / "cpu-kernels.json").exists()
