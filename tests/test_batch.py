"""Batched generation equals solo generation under greedy decoding, item by item."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bark_cli.config import Sampling, SamplingOptions
from bark_cli.generation import generate_coarse, generate_fine, generate_semantic
from bark_cli.voice import load_voice_file
from tiny_bark import REFERENCE

GREEDY = Sampling(temperature=0.0)


@pytest.fixture(scope="module")
def voice():
    return load_voice_file(REFERENCE / "suno-prompts" / "v2" / "de_speaker_3.npz")


@pytest.mark.parametrize("with_voice", [False, True], ids=["no-voice", "voice"])
def test_coarse_batch_equals_solo_with_different_lengths(bark, voice, with_voice):
    rng = np.random.default_rng(0)
    semantic = [rng.integers(0, 10_000, n) for n in (7, 130, 61)]
    prompt = voice if with_voice else None
    w, cfg = bark.weights, bark.config
    with torch.inference_mode():
        batched = generate_coarse(w.coarse, semantic, prompt, cfg, GREEDY)
        solo = [generate_coarse(w.coarse, [s], prompt, cfg, GREEDY)[0] for s in semantic]
    assert [b.shape[1] for b in batched] == [10, 195, 91]  # floor(n * 75 / 49.9) frames
    for one, many in zip(solo, batched):
        np.testing.assert_array_equal(many, one)


@pytest.mark.parametrize("with_voice", [False, True], ids=["no-voice", "voice"])
def test_fine_batch_equals_solo_with_different_windows(bark, voice, with_voice):
    """A 40-frame item and a 1300-frame item (3-4 windows): the short one never sees the long
    one's frames, unlike transformers' batched fine stage."""
    rng = np.random.default_rng(1)
    coarse = [rng.integers(0, 1024, (2, n)) for n in (40, 1300)]
    prompt = voice if with_voice else None
    w, cfg = bark.weights, bark.config
    with torch.inference_mode():
        batched = generate_fine(w.fine, coarse, prompt, cfg, GREEDY)
        solo = [generate_fine(w.fine, [c], prompt, cfg, GREEDY)[0] for c in coarse]
    for codes, one, many in zip(coarse, solo, batched):
        assert many.shape == (8, codes.shape[1])
        np.testing.assert_array_equal(many[:2], codes)
        np.testing.assert_array_equal(many, one)


def test_semantic_batch_equals_solo(bark):
    texts = ["Hello world", "Guten Morgen, wie geht es dir heute? [laughter]", "你好"]
    ids = [bark.tokenizer.encode(t) for t in texts]
    w, cfg = bark.weights, bark.config
    with torch.inference_mode():
        batched = generate_semantic(w.semantic, ids, None, cfg, GREEDY, 0.0, 30)
        solo = [generate_semantic(w.semantic, [i], None, cfg, GREEDY, 0.0, 30)[0] for i in ids]
    for one, many in zip(solo, batched):
        np.testing.assert_array_equal(many, one)


def test_semantic_items_stop_independently(bark):
    """Per-item EOS: with an EOS threshold, items stop at their own step and the batch still
    gives each item its solo tokens."""
    texts = ["Hello there, my friend! [laughter] How are you today?", "Hello world", "Bonjour à tous."]
    ids = [bark.tokenizer.encode(t) for t in texts]
    w, cfg = bark.weights, bark.config
    with torch.inference_mode():
        free = [generate_semantic(w.semantic, [i], None, cfg, GREEDY, 0.0, 60)[0] for i in ids]
        # The threshold: the median of the largest EOS probability each item reaches.
        peaks = [_peak_eos(bark, i, f) for i, f in zip(ids, free)]
        threshold = float(np.median(peaks)) * 0.999
        solo = [generate_semantic(w.semantic, [i], None, cfg, GREEDY, threshold, 60)[0] for i in ids]
        batched = generate_semantic(w.semantic, ids, None, cfg, GREEDY, threshold, 60)
    assert len({len(s) for s in solo}) >= 2, [len(s) for s in solo]
    for one, many in zip(solo, batched):
        np.testing.assert_array_equal(many, one)


def _peak_eos(bark, text_ids, tokens):
    from bark_cli.generation import semantic_prefix

    model, cfg = bark.weights.semantic, bark.config
    prefix = semantic_prefix(model, [text_ids], None, cfg)
    embeds = torch.cat([prefix, model.embed(torch.from_numpy(tokens)[None])], 1)
    logits = model(embeds=embeds, all_logits=True)[0, prefix.shape[1] - 1 : -1]
    allowed = torch.cat([logits[:, : cfg.semantic_vocab_size], logits[:, cfg.semantic_eos_token :][:, :1]], -1)
    return allowed.softmax(-1)[:, -1].max().item()


def test_generate_batch_end_to_end_equals_solo(bark, voice):
    texts = ["Hello world", "A slightly longer sentence, with a pause."]
    options = dict(voice=voice, sampling=SamplingOptions(temperature=0.0, max_semantic_tokens=24, min_eos_p=0))
    batched = bark.generate_batch(texts, **options)
    for text, many in zip(texts, batched):
        one = bark.generate(text, **options)
        np.testing.assert_array_equal(many.fine_tokens, one.fine_tokens)
        np.testing.assert_array_equal(many.audio, one.audio)


@pytest.mark.parametrize("after", [1, 2, 3, 8], ids=["semantic", "coarse", "first-fine-pass", "fine"])
def test_items_dropped_between_steps_leave_the_others_as_made_alone(bark, voice, after):
    """Sampled, with seeds: an item taken out of a batch after a step (a whole stage, or one of
    the fine stage's six passes, one per codebook it predicts) is gone from the results, and the
    items left are what each makes alone with its seed."""
    texts = ["Hello world", "A slightly longer sentence, with a pause.", "Short."]
    options = dict(voice=voice, sampling=SamplingOptions(max_semantic_tokens=20, min_eos_p=0))
    run = bark.start_batch(texts, seeds=[11, 12, 13], **options)
    steps = []
    while not run.done:
        steps.append(run.step())
        if len(steps) == after:
            run.drop([1])
    assert steps == ["semantic", "coarse", *["fine"] * 6, "decode"]
    made = run.results()
    assert made[1] is None
    for i in (0, 2):
        one = bark.generate(texts[i], seed=11 + i, **options)
        assert made[i].seed == 11 + i
        np.testing.assert_array_equal(made[i].semantic_tokens, one.semantic_tokens)
        np.testing.assert_array_equal(made[i].fine_tokens, one.fine_tokens)
        np.testing.assert_array_equal(made[i].audio, one.audio)


@pytest.mark.parametrize("whole_stage", [False, True], ids=["pass-by-pass", "whole"])
def test_a_stage_run_in_pieces_is_timed_whole(bark, monkeypatch, whole_stage):
    """Stage times add up over the fine stage's passes (a clock that ticks 1 s per reading: each
    piece of a stage reads it twice, so lasts 1 s)."""
    import bark_cli.pipeline as pipeline

    ticks = iter(range(10_000))
    monkeypatch.setattr(pipeline, "time", type("Clock", (), {"perf_counter": staticmethod(lambda: next(ticks))}))
    run = bark.start_batch(["One."], seed=3, sampling=SamplingOptions(max_semantic_tokens=8, min_eos_p=0))
    steps = []
    while not run.done:
        steps.append(run.step(whole_stage=whole_stage))
    assert steps.count("fine") == (1 if whole_stage else 6)
    assert run.seconds == {"semantic": 1, "coarse": 1, "fine": steps.count("fine"), "decode": 1}


def test_fine_passes_of_two_runs_may_alternate(bark, voice):
    """Another run's stages between a run's fine passes change nothing: the fine stage keeps no
    state in the model."""
    options = dict(voice=voice, sampling=SamplingOptions(max_semantic_tokens=16, min_eos_p=0))
    first = bark.start_batch(["One sentence here."], seed=4, **options)
    while first.next_stage != "fine":
        first.step()
    first.step()  # one fine pass
    other = bark.generate_batch(["Something else entirely.", "And more."], seed=9, **options)
    while not first.done:
        first.step()
    np.testing.assert_array_equal(first.results()[0].audio, bark.generate("One sentence here.", seed=4, **options).audio)
    np.testing.assert_array_equal(other[0].audio, bark.generate("Something else entirely.", seed=9, **options).audio)


@pytest.mark.parametrize("steps", [1, 3], ids=["after-semantic", "during-fine"])
def test_a_batch_whose_items_are_all_dropped_is_done_with_no_results(bark, steps):
    run = bark.start_batch(["One.", "Two."], seed=3, sampling=SamplingOptions(max_semantic_tokens=8, min_eos_p=0))
    for _ in range(steps):
        run.step()
    run.drop([0])
    assert not run.done
    run.drop([1])
    assert run.done and run.next_stage is None
    assert run.results() == [None, None]


def test_graph_step_generates_the_eager_tokens(bark, voice):
    """decoding.GraphStep runs the static step eagerly off CUDA: same tokens as the eager step
    in the semantic stage and in the coarse stage, whose windows extend the cache and re-prefill."""
    ids = [bark.tokenizer.encode(t) for t in ("Hello world", "Guten Morgen [laughter]")]
    w, cfg = bark.weights, bark.config
    with torch.inference_mode():
        eager = generate_semantic(w.semantic, ids, voice, cfg, GREEDY, 0.0, 40)
        static = generate_semantic(w.semantic, ids, voice, cfg, GREEDY, 0.0, 40, graphed=True)
        semantic = [np.random.default_rng(1).integers(0, 10_000, n) for n in (90, 300)]
        coarse_eager = generate_coarse(w.coarse, semantic, voice, cfg, GREEDY)
        coarse_static = generate_coarse(w.coarse, semantic, voice, cfg, GREEDY, graphed=True)
    for a, b in zip(eager, static):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(coarse_eager, coarse_static):
        np.testing.assert_array_equal(a, b)
