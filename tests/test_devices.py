"""Device, precision, attention and offload choices (CPU side; CUDA runs are in test_cuda.py)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from bark_cli import Bark
from bark_cli.config import DeviceOptions, SamplingOptions
from bark_cli.errors import DeviceError, InputError
from bark_cli.runtime import HostHome, Runtime, check_attention, native_bfloat16, pick_cuda_graphs, pick_device, pick_dtype


def test_auto_picks_what_the_machine_has():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device("auto").type == expected
    assert pick_dtype("auto", torch.device("cpu")) == torch.float32
    assert pick_dtype("auto", torch.device("cuda")) == torch.float16


def test_int8_picks_bfloat16_on_the_cpu_and_refuses_float32():
    assert Runtime.choose(DeviceOptions("cpu", quantize="int8")).dtype == torch.bfloat16
    with pytest.raises(DeviceError, match="bfloat16"):
        Runtime.choose(DeviceOptions("cpu", "float32", quantize="int8"))
    with pytest.raises(DeviceError, match="quantization"):
        Runtime.choose(DeviceOptions("cpu", quantize="int4"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_missing_cuda_is_a_clear_error(name):
    with pytest.raises(DeviceError, match="CUDA is not available"):
        pick_device(name)


@pytest.mark.parametrize("name,message", [("tpu", "unknown device"), ("vulkan", "unsupported device")])
def test_unknown_devices(name, message):
    with pytest.raises(DeviceError, match=message):
        pick_device(name)


def fake_gpu(monkeypatch, capability=(9, 0), bf16_argument=True):
    """CUDA queries answered as a machine with one GPU of `capability` answers them; a PyTorch
    without is_bf16_supported's `including_emulation` argument where `bf16_argument` is off."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    if bf16_argument:
        # PyTorch's answer: emulated bfloat16 counts unless including_emulation is off
        monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                            lambda including_emulation=True: including_emulation or capability >= (8, 0))
    else:
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)


@pytest.mark.parametrize("bad,message", [
    (dict(dtype="float64"), "unknown dtype 'float64'"),
    (dict(attention="xformers"), "unknown attention backend"),
    (dict(quantize="int4"), "unknown quantization 'int4'"),
    (dict(device=""), "unknown device"),
])
def test_device_options_check_names_when_built(bad, message):
    with pytest.raises(DeviceError, match=message):
        DeviceOptions(**bad)


@pytest.mark.parametrize("threads", [0, -2, True])
def test_device_options_refuse_a_thread_count_below_one(threads):
    with pytest.raises(InputError, match="threads"):
        DeviceOptions(threads=threads)


def test_runtime_applies_the_thread_count(monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    Runtime.choose(DeviceOptions("cpu", "float32"))
    assert calls == []  # None leaves PyTorch's own choice
    Runtime.choose(DeviceOptions("cpu", "float32", threads=1))
    assert calls == [1]


def test_flash_attention_needs_cuda_and_half_precision(monkeypatch):
    with pytest.raises(DeviceError, match="flash attention needs a CUDA device"):
        check_attention("flash", torch.device("cpu"), torch.float16)
    with pytest.raises(DeviceError, match="flash attention needs a CUDA device"):
        check_attention("flash", torch.device("cuda"), torch.float32)
    with pytest.raises(DeviceError, match="unknown attention"):
        DeviceOptions("cpu", "float32", attention="xformers")
    fake_gpu(monkeypatch, (8, 0))
    assert check_attention("flash", torch.device("cuda"), torch.bfloat16) == "flash"
    assert check_attention("flash", torch.device("cuda:1"), torch.float16) == "flash"


@pytest.mark.parametrize("capability", [(7, 5), (7, 0)])
def test_flash_attention_needs_sm80(monkeypatch, capability):
    fake_gpu(monkeypatch, capability)
    has = f"{capability[0]}.{capability[1]}"
    with pytest.raises(DeviceError, match=f"compute capability 8.0 or later; this GPU has {has}"):
        check_attention("flash", torch.device("cuda"), torch.float16)
    assert check_attention("sdpa", torch.device("cuda"), torch.float16) == "sdpa"


@pytest.mark.parametrize("bf16_argument", [True, False])
def test_bfloat16_only_where_the_gpu_has_it_natively(monkeypatch, bf16_argument):
    """A Turing GPU emulates bfloat16 (PyTorch's plain is_bf16_supported says yes): refused; an
    Ampere or later GPU runs it. Without the including_emulation argument the capability decides."""
    fake_gpu(monkeypatch, (7, 5), bf16_argument)
    with pytest.raises(DeviceError, match="no native bfloat16"):
        pick_dtype("bfloat16", torch.device("cuda"))
    with pytest.raises(DeviceError, match="no native bfloat16"):
        Runtime.choose(DeviceOptions("cuda:1", "bfloat16"))
    assert pick_dtype("float16", torch.device("cuda")) == torch.float16
    fake_gpu(monkeypatch, (8, 0), bf16_argument)
    assert pick_dtype("bfloat16", torch.device("cuda")) == torch.bfloat16
    assert Runtime.choose(DeviceOptions("cuda:1", "bfloat16")).dtype == torch.bfloat16


def test_bfloat16_on_another_gpu_asks_that_gpu(monkeypatch):
    """cuda:1 is not the current device: its own capability decides, not the current one's."""
    fake_gpu(monkeypatch, (9, 0))
    monkeypatch.setattr(torch.cuda, "get_device_capability",
                        lambda device=None: (7, 5) if torch.device(device).index == 1 else (9, 0))
    assert native_bfloat16(torch.device("cuda:0"))
    assert not native_bfloat16(torch.device("cuda:1"))


def test_int8_is_refused_on_cuda(monkeypatch):
    fake_gpu(monkeypatch)
    with pytest.raises(DeviceError, match="int8 weights are a CPU path") as error:
        Runtime.choose(DeviceOptions("cuda", quantize="int8"))
    assert error.value.hint == "use --dtype float16 on a GPU"
    assert Runtime.choose(DeviceOptions("cuda", "float16")).dtype == torch.float16


@pytest.mark.parametrize("attention,expected", [("math", "math"), ("auto", None), ("sdpa", None)])
@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_the_sdpa_backend_is_reported(bark, attention, expected, cuda_graphs):
    """The kernel PyTorch picks for the prefill and the decode step: `math` when only math is
    allowed, one of PyTorch's kernels otherwise."""
    runtime = Runtime(torch.device("cpu"), torch.float32, attention=attention, cuda_graphs=cuda_graphs)
    backends = runtime.sdpa_backends(bark.weights.config.semantic, batch_size=2)
    assert set(backends) == {"prefill", "step"}
    for name in backends.values():
        assert name == expected if expected else name in {"math", "flash", "efficient", "cudnn"}


@pytest.mark.parametrize("device,attention,cudnn", [("cuda", "auto", False), ("cuda", "sdpa", True),
                                                     ("cpu", "auto", True)])
def test_auto_attention_leaves_cudnn_out_on_cuda(device, attention, cudnn):
    """cuDNN's attention plans each new sequence length anew, which a decode step meets every
    step: `auto` leaves it out on CUDA, `sdpa` leaves the choice to PyTorch."""
    runtime = Runtime(torch.device(device), torch.float16, attention=attention)
    with runtime.attention_kernels():
        assert torch.backends.cuda.cudnn_sdp_enabled() is cudnn
        assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.mem_efficient_sdp_enabled()
    assert torch.backends.cuda.cudnn_sdp_enabled()  # restored afterwards


def test_cuda_graphs_are_on_by_default_where_the_device_is_cuda():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert pick_cuda_graphs(None, cuda) is True and pick_cuda_graphs(False, cuda) is False
    assert pick_cuda_graphs(None, cpu) is False and pick_cuda_graphs(False, cpu) is False
    assert Runtime.choose(DeviceOptions("cpu")).cuda_graphs is False
    with pytest.raises(DeviceError, match="CUDA graphs need a CUDA device"):
        pick_cuda_graphs(True, cpu)


def test_math_attention_gives_the_same_tokens(bark, tiny_checkpoint):
    math_bark = Bark.load(tiny_checkpoint, DeviceOptions(device="cpu", dtype="float32", attention="math"))
    options = dict(sampling=SamplingOptions(temperature=0.0, max_semantic_tokens=16, min_eos_p=0))
    a = bark.generate("Hello world", **options)
    b = math_bark.generate("Hello world", **options)
    np.testing.assert_array_equal(a.fine_tokens, b.fine_tokens)


def test_bfloat16_on_cpu_runs_and_stays_close(bark, tiny_checkpoint):
    half = Bark.load(tiny_checkpoint, DeviceOptions(device="cpu", dtype="bfloat16"))
    assert half.weights.semantic.lm_head.weight.dtype == torch.bfloat16
    options = dict(sampling=SamplingOptions(temperature=0.0, max_semantic_tokens=24, min_eos_p=0))
    a = bark.generate("Hello world", **options)
    b = half.generate("Hello world", **options)
    assert np.isfinite(b.audio).all() and b.audio.shape == a.audio.shape
    assert np.mean(a.semantic_tokens == b.semantic_tokens) >= 0.5


def test_offload_is_a_no_op_on_the_cpu(tiny_checkpoint):
    offloaded = Bark.load(tiny_checkpoint, DeviceOptions(device="cpu", dtype="float32", offload=True))
    assert offloaded.runtime.offload is False
    result = offloaded.generate("Hi", sampling=SamplingOptions(temperature=0.0, max_semantic_tokens=8))
    assert len(result.audio) > 0


def test_cuda_graphs_need_cuda(tiny_checkpoint):
    with pytest.raises(DeviceError, match="CUDA graphs need a CUDA device"):
        Bark.load(tiny_checkpoint, DeviceOptions(device="cpu", cuda_graphs=True))


@pytest.fixture
def fake_copies(monkeypatch):
    """Device copies on a CPU-only machine: Tensor.to a device or pin_memory makes a new CPU
    tensor (new storage, as a real copy has) and records the call. Returns the log of
    (kind, non_blocking) per copy."""
    log: list[tuple[str, bool]] = []
    real_to = torch.Tensor.to

    def to(tensor, *args, **kwargs):
        if not args or not isinstance(args[0], (str, torch.device)):
            return real_to(tensor, *args, **kwargs)  # a dtype change
        log.append((f"to {args[0]}", kwargs.get("non_blocking", False)))
        return tensor.clone()

    def pin_memory(tensor):
        log.append(("pin", False))
        return tensor.clone()

    monkeypatch.setattr(torch.Tensor, "to", to)
    monkeypatch.setattr(torch.Tensor, "pin_memory", pin_memory)
    monkeypatch.setattr(torch.Tensor, "is_pinned", lambda tensor: False)
    return log


def pointers(module: torch.nn.Module) -> dict[str, int]:
    return {name: t.data_ptr() for name, t in (*module.named_parameters(), *module.named_buffers())}


def test_host_home_uploads_and_points_back_at_the_same_storage(bark, fake_copies):
    """Pinned once at load; upload points each tensor at a non-blocking device copy, except the
    children kept home; back points each at the very storage it was pinned into, with no copy;
    the tensors stay the module's own objects (tied weights too)."""
    model = copy.deepcopy(bark.weights.fine)
    tensors = dict((*model.named_parameters(), *model.named_buffers()))
    original = pointers(model)
    home = HostHome(model, pin=True)
    pinned = pointers(model)
    assert len(fake_copies) == len(tensors) and {kind for kind, _ in fake_copies} == {"pin"}
    assert all(pinned[name] != original[name] for name in tensors)  # each now in its pinned copy
    fake_copies.clear()
    with torch.inference_mode():
        home.upload("cuda", keep={"input_embeds_layers"})
    moved = {name for name, ptr in pointers(model).items() if ptr != pinned[name]}
    assert moved == {name for name in tensors if not name.startswith("input_embeds_layers.")}
    assert fake_copies == [("to cuda", True)] * len(moved)
    fake_copies.clear()
    home.back()
    assert pointers(model) == pinned and fake_copies == []
    assert all(a is b for a, b in zip(tensors.values(), (*model.parameters(), *model.buffers())))


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_offload_moves_all_but_the_semantic_token_table(bark, fake_copies, cuda_graphs):
    """What offload sends to the GPU while a stage runs, recorded on the CPU: the semantic stage
    leaves its token table home (graphed or not: decode steps use a device copy of its first
    rows); the other stages move whole; afterwards every tensor points at its pinned home again."""
    weights = copy.deepcopy(bark.weights)
    runtime = Runtime(torch.device("cuda"), torch.float32, offload=True, cuda_graphs=cuda_graphs)
    gpu = Bark(weights, bark.tokenizer, runtime, folder=bark.folder)
    assert gpu.graphs is None  # under offload graphs are captured per stage run
    assert set(gpu.homes) == {"semantic", "coarse", "fine", "codec"}
    homes = {m: pointers(getattr(weights, m)) for m in ("semantic", "coarse")}
    with torch.inference_mode():
        with gpu.stage("semantic") as model:
            moved = {name for name, ptr in pointers(model).items() if ptr != homes["semantic"][name]}
        assert moved == {name for name in homes["semantic"] if not name.startswith("input_embeds_layer.")}
        with gpu.stage("coarse") as model:
            assert all(ptr != homes["coarse"][name] for name, ptr in pointers(model).items())
    for m in ("semantic", "coarse"):
        assert pointers(getattr(weights, m)) == homes[m]


def test_auto_batch_size_fits_free_memory(bark):
    runtime = Runtime.choose(DeviceOptions("cpu", "float32"))
    assert runtime.free_memory() > 0
    assert 1 <= runtime.auto_batch_size(bark.weights.config) <= 16
    assert runtime.auto_batch_size(bark.weights.config, limit=2) <= 2


def test_bark_bench_reports_the_sdpa_backend():
    from bark_cli.bench import BenchOptions, format_report, run_benchmark
    from bark_cli.config import DeviceOptions

    report = run_benchmark(BenchOptions(config="tiny", tokens=[8], hardware=DeviceOptions("cpu", attention="math"),
                                        warmup=False, bandwidth_mb=0, decode_steps=0))
    assert report.model["sdpa_backends"] == {"prefill": "math", "step": "math"}
    assert '"sdpa_backends"' in report.to_json()
    assert "  attention math: SDPA kernel math for the prefill, math for a decode step" in format_report(report)
