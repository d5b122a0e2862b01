"""CUDA paths: half precision, flash attention, offload, CUDA graphs. They run where a GPU is present.

Exact comparisons run in float32 on the tiny model. A replayed graph launches the very kernels
the static step launches eagerly, on the same inputs, so its logits are bitwise those of the
eager static step. Against the sliced eager step (attention over the written positions only,
no mask) the static step attends over a bucket with masked positions that weigh exactly 0, so
the two differ at most in rounding; the tiny model's greedy margins are far wider than float32
rounding, so greedy tokens agree exactly. Half precision rounds coarsely enough to flip a near
tie, so those runs check agreement, not equality.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from bark_cli import Bark
from bark_cli.config import DeviceOptions, SamplingOptions
from bark_cli.decoding import GraphCache, GraphStep, kv_cache
from bark_cli.errors import DeviceError
from bark_cli.longform import speak
from bark_cli.runtime import native_bfloat16

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
GREEDY = SamplingOptions(temperature=0.0, max_semantic_tokens=32, min_eos_p=0)
OPTIONS = dict(sampling=GREEDY)
TEXTS = ["Hello world", "Guten Morgen [laughter]"]
_rng = np.random.default_rng(11)
# A voice with the longest history the coarse stage reads (209 semantic tokens, 626 coarse).
VOICE = {"semantic_prompt": _rng.integers(0, 10_000, 300), "coarse_prompt": _rng.integers(0, 1024, (2, 451)),
         "fine_prompt": _rng.integers(0, 1024, (8, 451))}


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of equal tokens over the shorter run (runs may stop at different steps)."""
    n = min(len(a), len(b))
    return float(np.mean(a[:n] == b[:n])) if n else 0.0


def assert_same(a, b) -> None:
    for x, y in zip(a, b):
        np.testing.assert_array_equal(y.semantic_tokens, x.semantic_tokens)
        np.testing.assert_array_equal(y.coarse_tokens, x.coarse_tokens)
        np.testing.assert_array_equal(y.fine_tokens, x.fine_tokens)


def sm80() -> bool:
    return torch.cuda.get_device_capability() >= (8, 0)


@pytest.fixture(scope="module")
def eager32(tiny_checkpoint):
    return Bark.load(tiny_checkpoint, DeviceOptions(device="cuda", dtype="float32", cuda_graphs=False))


@pytest.fixture(scope="module")
def graphed32(tiny_checkpoint):
    return Bark.load(tiny_checkpoint, DeviceOptions(device="cuda", dtype="float32", cuda_graphs=True))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_generation(bark, tiny_checkpoint, dtype):
    if dtype == "bfloat16" and not native_bfloat16(torch.device("cuda")):
        pytest.skip("this GPU has no native bfloat16")
    gpu = Bark.load(tiny_checkpoint, DeviceOptions(device="cuda", dtype=dtype))
    reference = bark.generate("Hello there, my friend!", **OPTIONS)
    result = gpu.generate("Hello there, my friend!", **OPTIONS)
    assert np.isfinite(result.audio).all()
    assert agreement(result.semantic_tokens, reference.semantic_tokens) >= 0.5


def test_float32_on_cuda_matches_the_cpu(bark, tiny_checkpoint):
    gpu = Bark.load(tiny_checkpoint, DeviceOptions(device="cuda", dtype="float32", attention="math", cuda_graphs=False))
    reference = bark.generate("Hello world", **OPTIONS)
    result = gpu.generate("Hello world", **OPTIONS)
    np.testing.assert_array_equal(result.fine_tokens, reference.fine_tokens)


def test_flash_attention(tiny_checkpoint):
    if not sm80():
        with pytest.raises(DeviceError, match="compute capability 8.0"):
            Bark.load(tiny_checkpoint, DeviceOptions(device="cuda", dtype="float16", attention="flash"))
        return
    gpu = Bark.load(tiny_checkpoint, DeviceOptions(device="cuda", dtype="float16", attention="flash"))
    assert gpu.runtime.sdpa_backends(gpu.weights.config.semantic)["prefill"] == "flash"
    result = gpu.generate("Hello world", **OPTIONS)
    assert np.isfinite(result.audio).all()


def test_int8_is_refused_on_cuda(tiny_checkpoint):
    with pytest.raises(DeviceError, match="int8 weights are a CPU path"):
        Bark.load(tiny_checkpoint, DeviceOptions(device="cuda", dtype="float16", quantize="int8"))


def test_the_sdpa_backend_is_one_pytorch_runs(tiny_checkpoint):
    gpu = Bark.load(tiny_checkpoint, DeviceOptions(device="cuda", dtype="float16", cuda_graphs=True))
    kernels = gpu.runtime.sdpa_backends(gpu.weights.config.semantic, batch_size=4)
    assert set(kernels.values()) <= {"flash", "efficient", "cudnn", "math"}, kernels
    assert kernels["step"] != "flash"  # a graphed step attends under a mask


# --- offload -------------------------------------------------------------------------------


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_offload_keeps_idle_models_on_the_cpu_and_lowers_peak_memory(tiny_checkpoint, cuda_graphs):
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    resident = Bark.load(tiny_checkpoint, DeviceOptions(device="cuda", dtype="float16", cuda_graphs=cuda_graphs))
    reference = resident.generate("Hello world", **OPTIONS)
    peak_resident = torch.cuda.max_memory_allocated()
    del resident
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    offloaded = Bark.load(tiny_checkpoint, DeviceOptions(device="cuda", dtype="float16", offload=True, cuda_graphs=cuda_graphs))
    weights = offloaded.weights
    modules = (weights.semantic, weights.coarse, weights.fine, weights.codec)
    assert all(t.device.type == "cpu" and t.is_pinned() for m in modules for t in m.parameters())
    homes = {id(m): [t.data_ptr() for t in m.parameters()] for m in modules}
    table = weights.semantic.input_embeds_layer.weight
    seen = []
    weights.semantic.register_forward_pre_hook(
        lambda module, args: seen.append((table.device.type, module.lm_head.weight.device.type)))
    result = offloaded.generate("Hello world", **OPTIONS)
    # every tensor back at its pinned home, the very storage made at load
    assert all([t.data_ptr() for t in m.parameters()] == homes[id(m)] for m in modules)
    assert torch.cuda.max_memory_allocated() < peak_resident
    assert seen and set(seen) == {("cpu", "cuda")}  # the semantic token table stayed on the CPU
    # the same kernels on the same values: the same tokens
    np.testing.assert_array_equal(result.semantic_tokens, reference.semantic_tokens)
    again = offloaded.generate("Hello world", **OPTIONS)  # a second batch uploads from the same homes
    np.testing.assert_array_equal(again.fine_tokens, result.fine_tokens)


# --- CUDA graphs ---------------------------------------------------------------------------


def test_a_replayed_graph_gives_the_eager_static_steps_logits(graphed32):
    """Bitwise: the replay runs the kernels the eager static step runs, in every bucket used."""
    model = graphed32.weights.coarse
    ids = torch.randint(0, 12_096, (2, 300), generator=torch.Generator().manual_seed(3)).cuda()
    outputs = []
    with torch.inference_mode():
        for capture in (True, False):
            with kv_cache(model, 2, graphed=True) as step:
                step.capture = capture
                model(ids=ids[:, :100], start=0)
                outputs.append(torch.stack([step(ids[:, p : p + 1], p) for p in range(100, 300)]))
            if capture:
                assert sorted(step.graphs) == [128, 256, 384]  # one graph per bucket, captured lazily
    assert torch.equal(outputs[0], outputs[1])


@pytest.mark.parametrize("attention", ["auto", "math"])
def test_cuda_graphs_replay_the_eager_steps(eager32, tiny_checkpoint, attention):
    graphed = Bark.load(tiny_checkpoint, DeviceOptions(device="cuda", dtype="float32", attention=attention, cuda_graphs=True))
    options = dict(sampling=dataclasses.replace(GREEDY, max_semantic_tokens=48))
    assert_same(eager32.generate_batch(TEXTS, **options), graphed.generate_batch(TEXTS, **options))


def test_graphs_are_kept_across_calls_and_replaced_on_a_new_batch_size(eager32, graphed32):
    first = graphed32.generate_batch(TEXTS, **OPTIONS)
    steps = dict(graphed32.graphs.steps)
    graphs = {m: dict(s.graphs) for m, s in steps.items()}
    assert set(steps) == {graphed32.weights.semantic, graphed32.weights.coarse}
    second = graphed32.generate_batch(TEXTS, **OPTIONS)
    assert graphed32.graphs.steps == steps
    for m, step in steps.items():
        assert all(step.graphs[end] is graph for end, graph in graphs[m].items())  # replayed, not captured again
    assert_same(first, second)
    assert_same(eager32.generate_batch(TEXTS, **OPTIONS), second)
    three = graphed32.generate_batch(TEXTS + ["Hi"], **OPTIONS)
    assert all(s.batch_size == 3 for s in graphed32.graphs.steps.values())
    assert_same(eager32.generate_batch(TEXTS + ["Hi"], **OPTIONS), three)


def test_sampling_with_graphs(eager32, graphed32):
    """Seeded top-k / top-p sampling with early stop: a graphed run repeats itself exactly and
    follows the eager run (float32 rounding can move a draw only at a near tie)."""
    options = dict(sampling=SamplingOptions(temperature=0.9, top_k=50, top_p=0.9, max_semantic_tokens=80,
                                           min_eos_p=2.5e-4))
    texts = TEXTS + ["One, two, three."]
    # Whether a random model's draws reach the end token depends on the seed (and on the
    # GPU's kernels): take the first seed whose eager run stops a row early.
    for seed in range(64):
        eager = eager32.generate_batch(texts, seed=seed, **options)
        if any(len(g.semantic_tokens) < 80 for g in eager):
            break
    else:
        pytest.fail("no seed in 0-63 stops a row early; raise min_eos_p")
    a = graphed32.generate_batch(texts, seed=seed, **options)
    b = graphed32.generate_batch(texts, seed=seed, **options)
    assert_same(a, b)
    for x, y in zip(eager, a):
        assert agreement(x.semantic_tokens, y.semantic_tokens) >= 0.9


def test_voice_prompts_and_re_prefilled_coarse_windows_under_graphs(eager32, graphed32):
    """A long voice history moves the coarse window's start every window, so each window
    prefills again (positions up to 887) and its steps land in the upper buckets."""
    options = dict(sampling=dataclasses.replace(GREEDY, max_semantic_tokens=64))
    eager = eager32.generate_batch(TEXTS, voice=VOICE, **options)
    graphed = graphed32.generate_batch(TEXTS, voice=VOICE, **options)
    assert_same(eager, graphed)
    assert max(graphed32.graphs.steps[graphed32.weights.coarse].graphs) > 640


def test_several_segments_under_graphs(eager32, graphed32):
    text = "Hello there. " * 30  # several segments, run in batches of 1 and then 2
    options = dict(sampling=SamplingOptions(temperature=0.0, max_semantic_tokens=24, min_eos_p=0), max_segment_chars=80,
                   batch_size=2, seed=1)
    a = speak(eager32, text, **options)
    b = speak(graphed32, text, **options)
    assert len(a.parts) >= 3
    assert_same(a.parts, b.parts)


def test_bfloat16_with_graphs(tiny_checkpoint):
    if not native_bfloat16(torch.device("cuda")):
        pytest.skip("this GPU has no native bfloat16")
    eager = Bark.load(tiny_checkpoint, DeviceOptions(device="cuda", dtype="bfloat16", cuda_graphs=False))
    graphed = Bark.load(tiny_checkpoint, DeviceOptions(device="cuda", dtype="bfloat16", cuda_graphs=True))
    for x, y in zip(eager.generate_batch(TEXTS, **OPTIONS), graphed.generate_batch(TEXTS, **OPTIONS)):
        assert np.isfinite(y.audio).all()
        assert agreement(x.semantic_tokens, y.semantic_tokens) >= 0.5


def test_graphs_on_a_second_gpu(eager32, tiny_checkpoint):
    if torch.cuda.device_count() < 2:
        pytest.skip("one CUDA device: cuda:1 needs a second")
    current = torch.cuda.current_device()
    graphed = Bark.load(tiny_checkpoint, DeviceOptions(device="cuda:1", dtype="float32", cuda_graphs=True))
    result = graphed.generate_batch(TEXTS, **OPTIONS)
    assert torch.cuda.current_device() == current  # the device guard restored it
    for step in graphed.graphs.steps.values():
        assert isinstance(step, GraphStep) and step.ids.device == torch.device("cuda:1") and step.graphs
        assert step.stream.device == torch.device("cuda:1")
    assert_same(eager32.generate_batch(TEXTS, **OPTIONS), result)
    assert isinstance(graphed.graphs, GraphCache)
