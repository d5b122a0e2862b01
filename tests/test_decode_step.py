"""The decode step with its sampling inside (sampling.Pick, sampling.Noise), as GraphStep
captures it: tokens equal to the eager step's and to the sampling functions' on hand-checked
cases; the steps a run takes are known and prepared before it starts; the graph cache keeps
several batch sizes. Off CUDA a GraphStep runs its static step eagerly, so this runs on the CPU."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from bark_cli import Bark
from bark_cli.config import DeviceOptions, Sampling, SamplingOptions
from bark_cli.decoding import GraphCache, GraphStep, kv_cache
from bark_cli.generation import coarse_plan_all, coarse_windows, generate_coarse, generate_semantic
from bark_cli.runtime import Runtime
from bark_cli.sampling import Noise, Pick, distribution, draw, sample, uniform

GREEDY40 = SamplingOptions(temperature=0.0, max_semantic_tokens=40, min_eos_p=0)

SAMPLED = Sampling(0.8, top_k=20, top_p=0.9)
_rng = np.random.default_rng(5)
VOICE = {"semantic_prompt": _rng.integers(0, 10_000, 300), "coarse_prompt": _rng.integers(0, 1024, (2, 451)),
         "fine_prompt": _rng.integers(0, 1024, (8, 451))}


# --- Pick on hand-checked cases ----------------------------------------------------------------


def test_a_greedy_semantic_pick_sees_only_its_ids_and_eos():
    # 3 semantic ids, EOS's logit at index 5; index 4 (not allowed) is the largest of all
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0, 9.0, 2.5],
                           [1.0, 0.0, 2.0, 0.0, 9.0, 4.0]])
    token, fed, stop = Pick(Sampling(0.0), vocab=3, eos=5)(logits)
    assert token.tolist() == [1, 3]  # row 1: EOS, at index 3 of the allowed view
    assert fed.tolist() == [1, 5]  # fed back as EOS's own id
    assert stop.tolist() == [False, True]
    token, fed, stop = Pick(Sampling(0.0), vocab=3, eos=None)(logits)  # early stop off
    assert token.tolist() == [1, 2] and fed.tolist() == [1, 2] and stop.tolist() == [False, False]


def test_min_eos_p_stops_a_row_whose_eos_probability_exceeds_it():
    # allowed view [0, 1, 0, log 2]: weights 1, e, 1, 2 -> EOS p = 2 / (4 + e) = 0.2977
    logits = torch.tensor([[0.0, 1.0, 0.0, 7.0, float(np.log(2.0))]])
    for threshold, stops in ((0.29, True), (0.31, False)):
        token, _, stop = Pick(Sampling(0.0), vocab=3, eos=4, min_eos_p=threshold)(logits)
        assert token.tolist() == [1] and stop.tolist() == [stops]


def test_a_coarse_pick_adds_its_rows_offset():
    logits = torch.tensor([[0.0, 5.0, 1.0]])
    token, fed, stop = Pick(Sampling(0.0))(logits, None, 10_000 + 1024)
    assert token.tolist() == [11_025] and fed is token and stop is None


@pytest.mark.parametrize("sampling", [Sampling(1.0), Sampling(0.7, top_k=3), Sampling(1.3, top_p=0.5), SAMPLED])
def test_a_sampled_pick_is_the_sampling_functions_draw(sampling):
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(3))
    want = sample(logits, sampling, [torch.Generator().manual_seed(s) for s in range(4)])
    noise = uniform((4, 50), [torch.Generator().manual_seed(s) for s in range(4)], torch.device("cpu"), torch.float32)
    token, _, _ = Pick(sampling)(logits, noise)
    assert torch.equal(token, want)
    # and what the semantic view draws is the same distribution's draw over the view
    view = torch.cat([logits[:, :40], logits[:, 45:46]], dim=-1)
    probs = distribution(view, sampling)
    want = draw(probs, [torch.Generator().manual_seed(s) for s in range(4)])
    token, _, _ = Pick(sampling, vocab=40, eos=45)(logits, uniform((4, 41), [torch.Generator().manual_seed(s)
                                                                             for s in range(4)], "cpu", torch.float32))
    assert torch.equal(token, want)


@pytest.mark.parametrize("per_row", [True, False])
def test_noise_drawn_ahead_is_what_step_by_step_draws_give_on_the_cpu(per_row):
    def generators():
        return [torch.Generator().manual_seed(s) for s in (4, 5, 6)] if per_row else torch.Generator().manual_seed(4)

    noise = Noise(generators(), 3, 7, torch.device("cpu"), ahead=4)
    ahead = [noise.next().clone() for _ in range(10)]  # across three blocks
    one_by_one = generators()
    for step in ahead:
        assert torch.equal(step, uniform((3, 7), one_by_one, torch.device("cpu"), torch.float32))
    assert Noise(None, 3, 7, torch.device("cpu"), needed=False).next() is None


# --- the fused step against the eager one ----------------------------------------------------


@pytest.mark.parametrize("sampling", [Sampling(0.0), SAMPLED], ids=["greedy", "sampled"])
def test_the_static_step_with_its_pick_gives_the_eager_steps_tokens(bark, sampling):
    """float32: the same tokens greedy, and sampled from the same per-row generators, through the
    semantic and coarse loops; the coarse run with a voice re-prefills its windows."""
    ids = [bark.tokenizer.encode(t) for t in ("Hello world", "Guten Morgen [laughter]")]
    cfg, w = bark.config, bark.weights
    runs = []
    with torch.inference_mode():
        for graphed in (False, True):
            gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
            semantic = generate_semantic(w.semantic, ids, None, cfg, sampling, min_eos_p=0.2, max_new_tokens=24,
                                         generator=gens, graphed=graphed)
            gens = [torch.Generator().manual_seed(s) for s in (3, 4)]
            voice = bark.resolve_voice(VOICE)
            coarse = generate_coarse(w.coarse, semantic, voice, cfg, sampling, generator=gens, graphed=graphed)
            runs.append((semantic, coarse))
    (eager_sem, eager_coarse), (static_sem, static_coarse) = runs
    for a, b in zip(eager_sem, static_sem):
        np.testing.assert_array_equal(b, a)
    for a, b in zip(eager_coarse, static_coarse):
        np.testing.assert_array_equal(b, a)
    assert sum(c.shape[1] for c in eager_coarse) > 0


def test_the_semantic_loop_draws_what_a_step_by_step_loop_draws(bark):
    """Against a loop written here from the sampling functions (no early stop): logits of the
    eager step, `distribution`, `draw` with per-row generators one step at a time."""
    ids = [bark.tokenizer.encode(t) for t in ("Hello world", "One, two, three.")]
    cfg, model = bark.config, bark.weights.semantic
    from bark_cli.generation import semantic_prefix

    with torch.inference_mode():
        got = generate_semantic(model, ids, None, cfg, SAMPLED, min_eos_p=None, max_new_tokens=20,
                                generator=[torch.Generator().manual_seed(s) for s in (7, 8)],
                                allow_early_stop=False, graphed=True)
        gens = [torch.Generator().manual_seed(s) for s in (7, 8)]
        prefix = semantic_prefix(model, ids, None, cfg)
        want = []
        with kv_cache(model, 2) as step:
            logits = model(embeds=prefix, start=0)[:, -1]
            for i in range(20):
                token = draw(distribution(logits[:, : cfg.semantic_vocab_size], SAMPLED), gens)
                want.append(token)
                logits = step(token[:, None], prefix.shape[1] + i)
    want = torch.stack(want, 1).numpy()
    for row in range(2):
        np.testing.assert_array_equal(got[row], want[row])


# --- steps planned before the run, graphs for several batch sizes ----------------------------


@pytest.fixture(scope="module")
def graphed(bark):
    """The tiny model with CUDA graphs' code path on the CPU (as tests/test_graphs.py builds it)."""
    return Bark(copy.deepcopy(bark.weights), bark.tokenizer, Runtime(torch.device("cpu"), torch.float32, cuda_graphs=True),
                folder=bark.folder)


def met_keys(step: GraphStep) -> set:
    """Record the keys the step runs (off CUDA each step runs `_run` with its key)."""
    seen = set()
    run = step._run
    step._run = lambda key: (seen.add(key), run(key))[1]
    return seen


@pytest.mark.parametrize("voice", [None, VOICE], ids=["no voice", "voice"])
def test_a_run_takes_only_steps_planned_when_its_stage_started(graphed, voice):
    cache = graphed.graphs
    cache.kept.clear(), cache.steps.clear(), cache.storage.clear()
    seen = {}
    original = cache.step

    def step(model, batch_size):
        made = original(model, batch_size)
        if made not in seen:
            seen[made] = met_keys(made)
        return made

    cache.step = step
    try:
        graphed.generate_batch(["Hello world", "Guten Morgen"], voice=voice,
                               sampling=SamplingOptions(temperature=0.0, max_semantic_tokens=30, min_eos_p=0))
    finally:
        del cache.step
    assert len(seen) == 2
    for made, keys in seen.items():
        assert made.unplanned == []  # nothing captured mid-run
        assert keys == made.planned  # and the plan held no step the run did not take
    coarse = next(s for s in seen if s.model is graphed.weights.coarse)
    assert {k.rows for k in coarse.planned} == {(10_000, 11_024), (11_024, 12_048)}
    if voice is not None:
        assert max(k.end for k in coarse.planned) > 640  # re-prefilled windows in the upper buckets


def test_coarse_windows_reach_the_block_end_with_a_long_history(bark):
    cfg = bark.config
    windows = coarse_windows(256, 628, 400, cfg, 1024)
    assert sum(w.steps for w in windows) == 400 and windows[0].prefill
    assert all(w.position < 1024 for w in windows)
    assert max(w.position + w.steps for w in windows) <= 1024
    # any run's keys lie within what prepare_graphs captures for the coarse stage
    from bark_cli.generation import coarse_plan

    pick = Pick(Sampling(0.0))
    assert set(coarse_plan(windows, cfg, 1024, pick)) <= set(coarse_plan_all(cfg, 1024, pick))


def test_prepared_graphs_cover_a_later_run_of_any_planned_batch_size(graphed):
    cache = graphed.graphs
    cache.kept.clear(), cache.steps.clear(), cache.storage.clear()
    count = graphed.prepare_graphs(batch_sizes=(1, 3), sampling=GREEDY40)
    assert count > 0
    kept = dict(cache.kept)
    assert {b for _, b in kept} == {1, 3}
    graphed.generate_batch(["Hello world"], sampling=GREEDY40)
    graphed.generate_batch(["Hello world", "Hi", "One"], sampling=GREEDY40)
    assert cache.kept == kept  # the same steps, none replaced
    assert all(step.unplanned == [] for step in kept.values())


def test_the_graph_cache_keeps_several_batch_sizes_over_one_buffer(bark):
    model = copy.deepcopy(bark.weights.coarse)
    cache = GraphCache()
    cache.reserve(model, 4)
    steps = {b: cache.step(model, b) for b in (1, 4, 2)}
    storage = cache.storage[model]
    for b, step in steps.items():
        assert cache.step(model, b) is step
        assert step.caches[0].kv.shape[1] == b
        assert step.caches[0].kv.data_ptr() == storage[0].data_ptr()  # the buffer's first rows
    assert cache.steps[model] is steps[2]  # the step of the latest run
    cache.step(model, 5)  # larger than the buffer: everything anew
    assert set(b for _, b in cache.kept) == {5} and cache.storage[model][0].shape[1] == 5
