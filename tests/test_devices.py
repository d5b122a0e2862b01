"""Device, precision, attention and offload choices (CPU side; CUDA runs are in test_cuda.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bark_cli import Bark
from bark_cli.errors import DeviceError
from bark_cli.runtime import Runtime, check_attention, pick_device, pick_dtype


def test_auto_picks_what_the_machine_has():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device("auto").type == expected
    assert pick_dtype("auto", torch.device("cpu")) == torch.float32
    assert pick_dtype("auto", torch.device("cuda")) == torch.float16


def test_int8_picks_bfloat16_on_the_cpu_and_refuses_float32():
    assert Runtime.choose("cpu", quantize="int8").dtype == torch.bfloat16
    with pytest.raises(DeviceError, match="bfloat16"):
        Runtime.choose("cpu", "float32", quantize="int8")
    with pytest.raises(DeviceError, match="quantization"):
        Runtime.choose("cpu", quantize="int4")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_missing_cuda_is_a_clear_error(name):
    with pytest.raises(DeviceError, match="CUDA is not available"):
        pick_device(name)


@pytest.mark.parametrize("name,message", [("tpu", "unknown device"), ("vulkan", "unsupported device")])
def test_unknown_devices(name, message):
    with pytest.raises(DeviceError, match=message):
        pick_device(name)


def test_flash_attention_needs_cuda_and_half_precision():
    with pytest.raises(DeviceError, match="flash attention needs a CUDA device"):
        check_attention("flash", torch.device("cpu"), torch.float16)
    with pytest.raises(DeviceError, match="flash attention needs a CUDA device"):
        check_attention("flash", torch.device("cuda"), torch.float32)
    assert check_attention("flash", torch.device("cuda"), torch.bfloat16) == "flash"
    with pytest.raises(DeviceError, match="unknown attention"):
        check_attention("xformers", torch.device("cpu"), torch.float32)


def test_math_attention_gives_the_same_tokens(bark, tiny_checkpoint):
    math_bark = Bark.load(tiny_checkpoint, device="cpu", dtype="float32", attention="math")
    options = dict(temperature=0.0, max_semantic_tokens=16, min_eos_p=0)
    a = bark.generate("Hello world", **options)
    b = math_bark.generate("Hello world", **options)
    np.testing.assert_array_equal(a.fine_tokens, b.fine_tokens)


def test_bfloat16_on_cpu_runs_and_stays_close(bark, tiny_checkpoint):
    half = Bark.load(tiny_checkpoint, device="cpu", dtype="bfloat16")
    assert half.weights.semantic.lm_head.weight.dtype == torch.bfloat16
    options = dict(temperature=0.0, max_semantic_tokens=24, min_eos_p=0)
    a = bark.generate("Hello world", **options)
    b = half.generate("Hello world", **options)
    assert np.isfinite(b.audio).all() and b.audio.shape == a.audio.shape
    assert np.mean(a.semantic_tokens == b.semantic_tokens) >= 0.5


def test_offload_is_a_no_op_on_the_cpu(tiny_checkpoint):
    offloaded = Bark.load(tiny_checkpoint, device="cpu", dtype="float32", offload=True)
    assert offloaded.runtime.offload is False
    result = offloaded.generate("Hi", temperature=0.0, max_semantic_tokens=8)
    assert len(result.audio) > 0


def test_cuda_graphs_need_cuda(tiny_checkpoint):
    with pytest.raises(DeviceError, match="CUDA graphs need a CUDA device"):
        Bark.load(tiny_checkpoint, device="cpu", cuda_graphs=True)


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_offload_moves_all_but_the_semantic_token_table(bark, monkeypatch, cuda_graphs):
    """Which sub-modules offload sends to the GPU while a stage runs, recorded on the CPU: the
    semantic stage leaves its token table behind (not under CUDA graphs, which look it up in
    the graph); the other stages move whole."""
    moved: list[tuple[torch.nn.Module, object]] = []
    monkeypatch.setattr(torch.nn.Module, "to", lambda module, *args, **kwargs: moved.append((module, args)) or module)
    runtime = Runtime(torch.device("cuda"), torch.float32, offload=True, cuda_graphs=cuda_graphs)
    gpu = Bark(bark.weights, bark.tokenizer, runtime, folder=bark.folder)
    semantic = bark.weights.semantic
    with gpu.stage("semantic"):
        to_gpu = [module for module, args in moved if args == (torch.device("cuda"),)]
    if cuda_graphs:
        assert to_gpu == [semantic]
    else:
        rest = [child for name, child in semantic.named_children() if name != "input_embeds_layer"]
        assert to_gpu == rest
    assert moved[-1] == (semantic, ("cpu",))  # all of it back afterwards
    moved.clear()
    with gpu.stage("coarse"):
        pass
    assert [m for m, _ in moved] == [bark.weights.coarse, bark.weights.coarse]



def test_auto_batch_size_fits_free_memory(bark):
    runtime = Runtime.choose("cpu", "float32")
    assert runtime.free_memory() > 0
    assert 1 <= runtime.auto_batch_size(bark.weights.config) <= 16
    assert runtime.auto_batch_size(bark.weights.config, limit=2) <= 2
