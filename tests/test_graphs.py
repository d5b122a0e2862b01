"""Decode steps kept across runs (decoding.GraphCache), position buckets, and the semantic loop's
end-of-speech check every N steps. Off CUDA a GraphStep runs its static step eagerly, so all
of this runs on the CPU; tests/test_cuda.py replays the captured graphs on a GPU."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from bark_cli import Bark
from bark_cli.config import Sampling, SamplingOptions
from bark_cli.decoding import BUCKET, EagerStep, GraphCache, GraphStep, bucket_end, kv_cache
from bark_cli.generation import EOS_CHECK_EVERY, generate_semantic
from bark_cli.runtime import Runtime

TOL = dict(rtol=1e-4, atol=1e-4)
GREEDY = dict(sampling=SamplingOptions(temperature=0.0, max_semantic_tokens=24, min_eos_p=0))


@pytest.fixture(scope="module")
def graphed(bark):
    """The tiny model with CUDA graphs' code path on the CPU (Runtime.choose refuses graphs off
    CUDA, so the runtime is built directly); weights of its own, so that nothing it keeps
    touches the shared fixture."""
    weights = copy.deepcopy(bark.weights)
    return Bark(weights, bark.tokenizer, Runtime(torch.device("cpu"), torch.float32, cuda_graphs=True),
                folder=bark.folder)


def test_bucket_ends():
    assert BUCKET == 128
    assert [bucket_end(p, 1024) for p in (0, 127, 128, 257, 383, 384, 1023)] == [128, 128, 256, 384, 384, 512, 1024]
    assert bucket_end(990, 1000) == 1000  # the last bucket stops at the block size


@pytest.mark.parametrize("prefill,steps", [(100, 40), (250, 10), (1010, 14)])
def test_bucketed_static_step_gives_the_eager_logits(bark, prefill, steps):
    """Across bucket borders (128, 256) and up to the last position, the static step that reads
    the cache up to its bucket's end gives the sliced step's logits and the full pass's."""
    model = bark.weights.coarse
    ids = torch.randint(0, 12_096, (2, prefill + steps), generator=torch.Generator().manual_seed(7))
    rows = slice(10_000, 11_024)
    with torch.inference_mode():
        full = model(ids=ids, all_logits=True)[:, prefill - 1 :, rows]
        results = []
        for graphed in (False, True):
            with kv_cache(model, 2, graphed) as step:
                assert isinstance(step, GraphStep if graphed else EagerStep)
                out = [model(ids=ids[:, :prefill], start=0)[:, -1, rows]]
                out += [step(ids[:, p : p + 1], p, rows) for p in range(prefill, prefill + steps)]
            results.append(torch.stack(out, 1))
    eager, static = results
    torch.testing.assert_close(static, eager, **TOL)
    torch.testing.assert_close(static, full, **TOL)


def test_a_static_step_reads_no_further_than_its_bucket(bark):
    """Positions past the bucket's end are not read at all: NaN there leaves the logits finite
    (a masked read would still multiply the NaN by a zero weight)."""
    model = bark.weights.semantic
    ids = torch.randint(0, 10_000, (1, 131), generator=torch.Generator().manual_seed(8))
    with torch.inference_mode(), kv_cache(model, 1, graphed=True) as step:
        for block in model.layers:
            block.attn.kv_cache.kv[:, :, :, 256:] = float("nan")
        model(ids=ids[:, :120], start=0)
        logits = [step(ids[:, p : p + 1], p) for p in range(120, 131)]  # buckets 0..128 and 128..256
    assert all(torch.isfinite(x).all() for x in logits)
    with torch.inference_mode(), kv_cache(model, 1, graphed=True) as step:
        for block in model.layers:
            block.attn.kv_cache.kv[:, :, :, 200:] = float("nan")  # inside the second bucket
        model(ids=ids[:, :120], start=0)
        assert torch.isnan(step(ids[:, 130:131], 130)).all()


def test_the_graph_cache_keeps_each_models_step_across_runs(bark, graphed):
    """One GraphStep per (stage model, batch size), kept by the loaded model across
    generate_batch calls with its KV cache; a new batch size replaces it. Tokens stay those of
    eager steps, also when a kept cache still holds the previous run's keys."""
    assert isinstance(graphed.graphs, GraphCache)
    texts = ["Hello world", "Guten Morgen [laughter]"]
    first = graphed.generate_batch(texts, **GREEDY)
    steps = dict(graphed.graphs.steps)
    assert set(steps) == {graphed.weights.semantic, graphed.weights.coarse}
    assert {s.batch_size for s in steps.values()} == {2}
    caches = {model: [c.kv for c in step.caches] for model, step in steps.items()}
    # between runs the models hold no cache; the steps keep theirs
    assert all(block.attn.kv_cache is None for m in steps for block in m.layers)

    second = graphed.generate_batch(texts[::-1], **GREEDY)
    assert graphed.graphs.steps == steps  # the same step objects
    for model, step in graphed.graphs.steps.items():
        assert all(a is b.kv for a, b in zip(caches[model], step.caches))

    eager = bark.generate_batch(texts, **GREEDY)
    for a, b, c in zip(eager, first, second[::-1]):
        np.testing.assert_array_equal(b.semantic_tokens, a.semantic_tokens)
        np.testing.assert_array_equal(c.semantic_tokens, a.semantic_tokens)
        np.testing.assert_array_equal(c.fine_tokens, a.fine_tokens)

    third = graphed.generate_batch(texts + ["Hi"], **GREEDY)
    assert {s.batch_size for s in graphed.graphs.steps.values()} == {3}
    assert not any(graphed.graphs.steps[m] is steps[m] for m in steps)
    np.testing.assert_array_equal(third[0].semantic_tokens, eager[0].semantic_tokens)


def test_moved_weights_get_a_new_step(bark):
    """A graph replays reads of the addresses it was captured at: weights moved since (as offload
    moves them) make the cache build a new step instead of replaying stale addresses."""
    model = copy.deepcopy(bark.weights.coarse)
    cache = GraphCache()
    step = cache.step(model, 2)
    model.clear_cache()
    assert cache.step(model, 2) is step
    model.clear_cache()
    model.lm_head.weight.data = model.lm_head.weight.data.clone()
    assert cache.step(model, 2) is not step


# --- the end-of-speech check every N steps -------------------------------------------------


def semantic_run(bark, check_every: int, max_new_tokens: int = 60):
    """Sampled semantic tokens of three texts with early stop, each row with its own seeded
    generator; also how many steps the loop ran (progress calls)."""
    ids = [bark.tokenizer.encode(t) for t in ("Hello world", "Guten Morgen [laughter]", "One, two, three.")]
    generators = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    calls = []
    with torch.inference_mode():
        tokens = generate_semantic(bark.weights.semantic, ids, None, bark.config, Sampling(1.0, None, None),
                                   min_eos_p=2.5e-4, max_new_tokens=max_new_tokens, generator=generators,
                                   progress=lambda stage, done, total: calls.append(done),
                                   eos_check_every=check_every)
    return tokens, len(calls)


def test_checking_for_the_end_every_n_steps_gives_the_same_tokens(bark):
    reference, steps_run = semantic_run(bark, check_every=1)  # a check after every step
    lengths = [len(t) for t in reference]
    # Early stop happened, at different steps per item (otherwise the test proves little).
    assert max(lengths) < 60 and len(set(lengths)) > 1, lengths
    assert steps_run == max(lengths) + 1  # the step that stopped the last item ends the loop
    for n in (2, 5, EOS_CHECK_EVERY, 64):
        tokens, steps = semantic_run(bark, check_every=n)
        for a, b in zip(reference, tokens):
            np.testing.assert_array_equal(b, a)
        # the loop runs on to the next check (or the end), not further
        assert steps == min(60, -(-steps_run // n) * n)


# --- decode steps under offload: the token table's first rows on the device ------------------


def test_a_step_looks_up_only_rows_the_model_puts_out(bark):
    """Under offload the semantic token table stays on the CPU and a decode step looks up a
    device copy of its first output_vocab_size rows: enough, as a step feeds back an id the
    stage itself sampled, and the same embeddings as the whole table."""
    cfg, w = bark.config, bark.weights
    assert cfg.semantic_eos_token < w.config.semantic.output_vocab_size  # the largest id a semantic step feeds
    assert cfg.semantic_vocab_size + cfg.n_coarse_codebooks * cfg.codebook_size <= w.config.coarse.output_vocab_size
    model = w.semantic
    ids = torch.randint(0, 10_001, (2, 140), generator=torch.Generator().manual_seed(9))
    ids[:, 100:] = torch.tensor([10_000, 9_999])[:, None]  # EOS fed back, the largest id
    results = []
    with torch.inference_mode():
        for graphed in (False, True):
            for rows in (None, model.input_embeds_layer.weight[: model.config.output_vocab_size].clone()):
                with kv_cache(model, 2, graphed) as step:
                    assert step.token_rows is None  # the table is where the step runs
                    step.token_rows = rows  # as offload's step has it
                    model(ids=ids[:, :120], start=0)
                    results.append(torch.stack([step(ids[:, p : p + 1], p) for p in range(120, 140)]))
    torch.testing.assert_close(results[1], results[0], rtol=0, atol=0)
    torch.testing.assert_close(results[3], results[2], rtol=0, atol=0)
