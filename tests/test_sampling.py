"""Sampling: the draw follows the distribution; temperature, top-k and top-p as hand-computed."""

from __future__ import annotations

import dataclasses
import inspect
import math

import pytest
import torch

from bark_cli.config import GenerationConfig, Sampling, SamplingOptions
from bark_cli.errors import InputError
from bark_cli.sampling import distribution, draw, sample


def test_draw_follows_the_probabilities():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05, 0.0])
    n = 40_000
    picks = draw(probs.expand(n, -1).contiguous(), torch.Generator().manual_seed(0))
    counts = torch.bincount(picks, minlength=5).double()
    assert counts[4] == 0  # probability 0 is never drawn
    expected = probs.double() * n
    # each count within 5 standard deviations of its binomial expectation
    sigma = (expected * (1 - probs.double())).sqrt()
    assert ((counts[:4] - expected[:4]).abs() <= 5 * sigma[:4]).all(), counts


def test_draw_is_repeatable_with_a_seed():
    probs = torch.rand(3, 1000).softmax(-1)
    a = draw(probs, torch.Generator().manual_seed(7))
    b = draw(probs, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_temperature_scales_logits_before_the_softmax():
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    got = distribution(logits, Sampling(temperature=0.5))
    weights = [math.exp(v / 0.5) for v in (2.0, 1.0, 0.0)]
    torch.testing.assert_close(got, torch.tensor([[w / sum(weights) for w in weights]]))


def test_top_k_keeps_the_k_largest():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0]])
    got = distribution(logits, Sampling(temperature=1.0, top_k=2))
    weights = [0.0, math.exp(3.0), 0.0, math.exp(2.0)]
    torch.testing.assert_close(got, torch.tensor([[w / sum(weights) for w in weights]]))


def test_top_p_keeps_the_entry_that_crosses_it():
    # probabilities 0.5, 0.3, 0.15, 0.05: the nucleus of 0.7 is the first two (0.5 + 0.3 >= 0.7)
    probs = torch.tensor([[0.15, 0.5, 0.05, 0.3]])
    got = distribution(probs.log(), Sampling(temperature=1.0, top_p=0.7))
    torch.testing.assert_close(got, torch.tensor([[0.0, 0.5 / 0.8, 0.0, 0.3 / 0.8]]))
    # a nucleus smaller than the top entry still keeps it
    got = distribution(probs.log(), Sampling(temperature=1.0, top_p=0.1))
    torch.testing.assert_close(got, torch.tensor([[0.0, 1.0, 0.0, 0.0]]))


def test_greedy_takes_the_argmax():
    logits = torch.tensor([[0.1, 0.7, 0.2], [0.9, 0.0, 0.5]])
    assert sample(logits, Sampling(temperature=0.0), None).tolist() == [1, 0]


def test_sampling_options_resolve_per_stage():
    gen = GenerationConfig()
    stages = SamplingOptions(temperature=0.3, fine_temperature=0.0, top_k=7).stages(gen)
    assert stages["semantic"] == Sampling(0.3, 7, gen.semantic_top_p)
    assert stages["coarse"] == Sampling(0.3, 7, gen.coarse_top_p)
    assert stages["fine"] == Sampling(0.0, 7, gen.fine_top_p) and stages["fine"].greedy
    defaults = SamplingOptions().stages(gen)
    assert defaults["coarse"] == Sampling(gen.coarse_temperature, gen.coarse_top_k, gen.coarse_top_p)
    assert SamplingOptions().min_eos_p_for(gen) == gen.min_eos_p
    assert SamplingOptions(max_semantic_tokens=9).max_tokens_for(gen) == 9


def test_sampling_enters_generation_as_one_value():
    """Bark.generate(_batch), speak and stream take SamplingOptions and no loose sampling
    keyword beside it, so a value is checked once, when built, and never merged downstream."""
    from bark_cli.longform import speak, stream
    from bark_cli.pipeline import Bark

    for function in (Bark.generate, Bark.generate_batch, speak, stream):
        parameters = inspect.signature(function).parameters
        assert "sampling" in parameters, function.__name__
        assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()), function.__name__
        assert not {f.name for f in dataclasses.fields(SamplingOptions)} & set(parameters), function.__name__


@pytest.mark.parametrize("bad,message", [
    (dict(top_k=0), "top-k 0 is below 1"),
    (dict(top_p=1.5), r"top-p 1.5 is outside \(0, 1\]"),
    (dict(coarse_temperature=-1), "temperature -1 is negative"),
    (dict(min_eos_p=2), r"min-eos-p 2 is outside \[0, 1\]"),
    (dict(max_semantic_tokens=0), "max semantic tokens 0 is below 1"),
])
def test_sampling_options_refuse_bad_values(bad, message):
    with pytest.raises(InputError, match=message):
        SamplingOptions(**bad)
