"""Long texts: split, one voice throughout, joined with silence; checked against solo runs."""

from __future__ import annotations

import numpy as np
import pytest

from bark_cli.config import SamplingOptions
from bark_cli.errors import InputError
from bark_cli.longform import plan_text, speak
from bark_cli.voice import load_voice_file
from tiny_bark import REFERENCE

STORY = (
    "Once upon a time there was a small dog. It barked at every cloud! [laughter] "
    "The clouds never answered, which made the dog bark louder. "
    "One day a cloud came down to talk. The dog was so surprised it forgot to bark."
)
FAST = dict(sampling=SamplingOptions(temperature=0.0, max_semantic_tokens=10, min_eos_p=0))


@pytest.fixture(scope="module")
def voice():
    return load_voice_file(REFERENCE / "suno-prompts" / "v2" / "en_speaker_3.npz")


def test_fixed_voice_segments_equal_solo_runs(bark, voice):
    speech = speak(bark, STORY, voice=voice, max_segment_chars=80, batch_size=2, gap=0.5, **FAST)
    assert len(speech.segments) >= 3
    assert " ".join(speech.segments) == " ".join(STORY.split())
    for segment, part in zip(speech.segments, speech.parts):
        alone = bark.generate(segment, voice=voice, **FAST)
        np.testing.assert_array_equal(part.fine_tokens, alone.fine_tokens)
    gap = int(0.5 * 24_000)
    assert len(speech.audio) == sum(len(p.audio) for p in speech.parts) + gap * (len(speech.parts) - 1)
    assert speech.voice is voice or np.array_equal(speech.voice.semantic_prompt, voice.semantic_prompt)


def test_without_voice_the_first_segment_becomes_the_voice(bark):
    speech = speak(bark, STORY, max_segment_chars=80, batch_size=3, **FAST)
    first = speech.parts[0]
    np.testing.assert_array_equal(speech.voice.fine_prompt, first.fine_tokens)
    for segment, part in zip(speech.segments[1:], speech.parts[1:]):
        alone = bark.generate(segment, voice=first.voice, **FAST)
        np.testing.assert_array_equal(part.semantic_tokens, alone.semantic_tokens)
        np.testing.assert_array_equal(part.fine_tokens, alone.fine_tokens)


def test_chain_mode_conditions_each_segment_on_the_previous(bark):
    speech = speak(bark, STORY, voice_mode="chain", max_segment_chars=80, **FAST)
    for k in range(1, len(speech.parts)):
        alone = bark.generate(speech.segments[k], voice=speech.parts[k - 1].voice, **FAST)
        np.testing.assert_array_equal(speech.parts[k].fine_tokens, alone.fine_tokens)


def test_same_seed_same_speech_when_sampling(bark):
    options = dict(sampling=SamplingOptions(max_semantic_tokens=8), max_segment_chars=100, batch_size=2, seed=42)
    one = speak(bark, STORY, **options)
    two = speak(bark, STORY, **options)
    np.testing.assert_array_equal(one.audio, two.audio)
    assert one.seed == two.seed == 42


def test_no_split_cuts_with_a_warning(bark):
    long_text = " ".join(["word"] * 400)
    speech = speak(bark, long_text, split=False, **FAST)
    assert len(speech.segments) == 1
    assert any("cut from 400 to 256 tokens" in w for w in speech.warnings)


def test_generate_refuses_text_over_the_window(bark):
    with pytest.raises(InputError, match="400 tokens"):
        bark.generate(" ".join(["word"] * 400), **FAST)


def test_split_reports_token_counts(bark):
    plan = plan_text(bark, " ".join(["word"] * 1000))
    assert all(count <= 256 for _, count in plan)
    assert sum(count for _, count in plan) == 1000


@pytest.mark.parametrize("bad", [dict(voice_mode="loop"), dict(gap=-1), dict(batch_size=0)])
def test_bad_long_form_options(bark, bad):
    with pytest.raises(InputError):
        speak(bark, STORY, **{**FAST, **bad})


def test_stage_seconds_count_each_batch_once(bark):
    """Items of one batch share the batch's timing; a speech adds up batches, not items."""
    speech = speak(bark, STORY, max_segment_chars=80, batch_size=8, **FAST)
    first, rest = speech.parts[0], speech.parts[1:]
    assert len(rest) >= 2 and all(part.seconds is rest[0].seconds for part in rest)
    for stage, value in speech.seconds.items():
        assert value == pytest.approx(first.seconds[stage] + rest[0].seconds[stage])
