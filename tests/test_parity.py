"""Greedy generation, token for token, against transformers' BarkModel on the same checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bark_cli.config import SamplingOptions
from bark_cli.generation import semantic_prefix
from bark_cli.voice import load_voice_file
from tiny_bark import REFERENCE

TEXTS = {
    "english-laughter": "Hello there, my friend! [laughter] How are you today?",
    "cjk": "你好，世界。今天天气很好。",
    "two-tokens": "Hello world",
}


def greedy(**fields) -> SamplingOptions:
    return SamplingOptions(temperature=0.0, **fields)


@pytest.fixture(scope="module")
def voice():
    return load_voice_file(REFERENCE / "suno-prompts" / "v2" / "en_speaker_6.npz")


def hf_stages(hf, text_ids, voice, max_semantic_tokens, min_eos_p=None):
    """transformers' three stages and decode, as BarkModel.generate chains them, all greedy."""
    from transformers.models.bark.generation_configuration_bark import (
        BarkCoarseGenerationConfig,
        BarkFineGenerationConfig,
        BarkSemanticGenerationConfig,
    )

    gen = hf.generation_config
    semantic_cfg = BarkSemanticGenerationConfig(**gen.semantic_config)
    coarse_cfg = BarkCoarseGenerationConfig(**gen.coarse_acoustics_config)
    fine_cfg = BarkFineGenerationConfig(**gen.fine_acoustics_config)
    ids = torch.zeros(1, 256, dtype=torch.long)
    ids[0, : len(text_ids)] = torch.tensor(text_ids)
    mask = (torch.arange(256) < len(text_ids)).long()[None]
    history = None if voice is None else {k: torch.from_numpy(v) for k, v in voice.as_dict().items()}
    with torch.no_grad():
        semantic = hf.semantic.generate(
            ids, attention_mask=mask, history_prompt=history, semantic_generation_config=semantic_cfg,
            do_sample=False, max_new_tokens=max_semantic_tokens, min_eos_p=min_eos_p,
        )
        coarse = hf.coarse_acoustics.generate(
            semantic.clone(), history_prompt=history, semantic_generation_config=semantic_cfg,
            coarse_generation_config=coarse_cfg, codebook_size=1024, do_sample=False,
        )
        fine = hf.fine_acoustics.generate(
            coarse, history_prompt=history, semantic_generation_config=semantic_cfg,
            coarse_generation_config=coarse_cfg, fine_generation_config=fine_cfg, codebook_size=1024,
            temperature=1.0,  # transformers' fine stage is greedy at temperature 1.0
        )
        audio = hf.codec_decode(fine)
    semantic = semantic[0].numpy()
    eos = np.flatnonzero(semantic == semantic_cfg.eos_token_id)
    semantic = semantic[: eos[0]] if len(eos) else semantic
    flat = coarse[0].view(-1, 2).T.numpy()  # (2, T), offset ids
    coarse_codes = flat - 10_000 - np.array([[0], [1024]])
    return semantic, coarse_codes, fine[0].numpy(), audio[0].numpy()


def assert_same(ours, theirs):
    semantic, coarse, fine, audio = theirs
    np.testing.assert_array_equal(ours.semantic_tokens, semantic)
    np.testing.assert_array_equal(ours.coarse_tokens, coarse)
    np.testing.assert_array_equal(ours.fine_tokens, fine)
    np.testing.assert_allclose(ours.audio, audio, rtol=0, atol=1e-4)
    assert ours.coarse_tokens.shape == (2, ours.fine_tokens.shape[1])
    assert len(ours.audio) == ours.fine_tokens.shape[1] * 320


@pytest.mark.parametrize("with_voice", [False, True], ids=["no-voice", "voice"])
@pytest.mark.parametrize("name", list(TEXTS))
def test_greedy_matches_transformers(bark, hf_tiny, voice, name, with_voice):
    text = TEXTS[name]
    ids = bark.tokenizer.encode(text)
    if name == "two-tokens":
        assert len(ids) == 2
    prompt = voice if with_voice else None
    ours = bark.generate(text, voice=prompt, sampling=greedy(max_semantic_tokens=48, min_eos_p=0))
    assert len(ours.semantic_tokens) == 48  # random weights never choose EOS in 48 greedy steps
    assert_same(ours, hf_stages(hf_tiny, ids, prompt, 48))


def test_long_greedy_run_crosses_windows(bark, hf_tiny, voice):
    """360 semantic tokens: 18 coarse windows (history trimmed to 630) and 2 fine windows."""
    text = TEXTS["english-laughter"]
    ours = bark.generate(text, voice=voice, sampling=greedy(max_semantic_tokens=360, min_eos_p=0))
    assert ours.fine_tokens.shape[1] == 541
    assert_same(ours, hf_stages(hf_tiny, bark.tokenizer.encode(text), voice, 360))


def eos_probabilities(bark, text_ids, tokens):
    """Stage-1 EOS probability before each token, from one full forward pass (unscaled logits)."""
    model, cfg = bark.weights.semantic, bark.config
    with torch.no_grad():
        prefix = semantic_prefix(model, [text_ids], None, cfg)
        embeds = torch.cat([prefix, model.embed(torch.from_numpy(tokens)[None])], 1)
        logits = model(embeds=embeds, all_logits=True)[0, prefix.shape[1] - 1 :]
    allowed = torch.cat([logits[:, : cfg.semantic_vocab_size], logits[:, cfg.semantic_eos_token :][:, :1]], -1)
    return allowed.softmax(-1)[:, -1].numpy(), allowed


def test_min_eos_p_stops_early_like_transformers(bark, hf_tiny):
    text = TEXTS["english-laughter"]
    ids = bark.tokenizer.encode(text)
    free = bark.generate(text, sampling=greedy(max_semantic_tokens=60, min_eos_p=0))
    p_eos, _ = eos_probabilities(bark, ids, free.semantic_tokens)
    # A threshold between a new record of p(EOS) and every earlier step's: the run must stop there.
    stop = next(k for k in range(5, 55) if p_eos[k] > 1.5 * p_eos[:k].max())
    threshold = float(np.sqrt(p_eos[k := stop] * p_eos[:k].max()))
    ours = bark.generate(text, sampling=greedy(max_semantic_tokens=60, min_eos_p=threshold))
    theirs = hf_stages(hf_tiny, ids, None, 60, min_eos_p=threshold)
    assert len(ours.semantic_tokens) == stop < 60
    assert_same(ours, theirs)


def test_greedy_decisions_have_wide_margins(bark):
    """The fixture is meaningful: every semantic decision wins by far more than float error."""
    text = TEXTS["english-laughter"]
    ids = bark.tokenizer.encode(text)
    run = bark.generate(text, sampling=greedy(max_semantic_tokens=48, min_eos_p=0))
    _, allowed = eos_probabilities(bark, ids, run.semantic_tokens)
    top2 = allowed.topk(2, dim=-1).values
    assert (top2[:, 0] - top2[:, 1]).min().item() > 1e-3
