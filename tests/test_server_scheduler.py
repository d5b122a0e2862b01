"""The scheduler in this process, on the tiny model: batches across requests, first segments
first, and one request's failure kept to itself."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest

from bark_cli.config import SamplingOptions
from bark_cli.errors import InputError
from bark_cli.server.scheduler import Dropped, Scheduler, generate_segments, voice_key

FAST = SamplingOptions(max_semantic_tokens=8, min_eos_p=0)


@pytest.fixture(scope="module")
def voice(bark):
    return bark.resolve_voice("v2/en_speaker_6")


def accepting(bark, generate=generate_segments, **options) -> Scheduler:
    """A scheduler that takes jobs before its thread starts, so that a test can queue several
    and know they all wait when the first batch is taken."""
    scheduler = Scheduler(lambda: bark, generate, **options)
    scheduler.bark = bark
    scheduler.ready.set()
    return scheduler


def recording(batches: list) -> Callable:
    """generate_segments, noting each batch's texts in `batches`."""

    def generate(bark, texts, *args):
        batches.append(list(texts))
        return generate_segments(bark, texts, *args)

    return generate


def test_one_failing_request_leaves_the_others_in_its_batch_their_audio(bark, voice):
    calls = []

    def generate(bark, texts, *args):
        # A fault in one row, as a bad input would raise it deep in generation.
        calls.append(list(texts))
        if any("poison" in text for text in texts):
            raise InputError("this text cannot be spoken")
        return generate_segments(bark, texts, *args)

    scheduler = accepting(bark, generate, max_batch=4)
    try:
        key = voice_key(voice)
        jobs = [scheduler.submit([text], voice, key, FAST, 7) for text in ("Fine one.", "poison", "Fine two.")]
        scheduler.start()
        results = [job.futures[0].exception(120) or job.futures[0].result() for job in jobs]
    finally:
        scheduler.stop(60)
    assert calls[0] == ["Fine one.", "poison", "Fine two."]  # one batch across the three requests
    assert isinstance(results[1], InputError)
    for text, made in zip(("Fine one.", "Fine two."), (results[0], results[2])):
        alone = bark.generate(text, voice=voice, seed=7, sampling=FAST, truncate=True)
        np.testing.assert_array_equal(made.audio, alone.audio)


def test_first_segments_go_before_later_ones(bark, voice):
    batches = []
    generate = recording(batches)
    scheduler = accepting(bark, generate, max_batch=2)
    try:
        key = voice_key(voice)
        long = scheduler.submit([f"Long {n}." for n in range(4)], voice, key, FAST, 1)
        short = scheduler.submit(["Short."], voice, key, FAST, 2)
        scheduler.start()
        for future in long.futures + short.futures:
            future.result(120)
    finally:
        scheduler.stop(60)
    # Both first segments, then the long one's next ones.
    assert batches == [["Long 0.", "Short."], ["Long 1.", "Long 2."], ["Long 3."]]


def test_a_batch_that_starts_a_request_holds_nothing_after_that_round(bark, voice):
    """A lone long request's first segment runs alone, as `bark say` runs it, and the rest after
    it: its own later segments do not delay its first audio (nor a request that lands meanwhile)."""
    batches = []
    generate = recording(batches)
    scheduler = accepting(bark, generate, max_batch=8)
    try:
        long = scheduler.submit([f"Long {n}." for n in range(4)], voice, voice_key(voice), FAST, 1)
        scheduler.start()
        for future in long.futures:
            future.result(120)
    finally:
        scheduler.stop(60)
    assert batches == [["Long 0."], ["Long 1.", "Long 2.", "Long 3."]]


def test_a_cancelled_job_is_never_run_and_says_so(bark, voice):
    scheduler = accepting(bark)  # never started: nothing can run
    job = scheduler.submit(["Never."], voice, voice_key(voice), FAST, 1)
    assert scheduler.waiting == 1
    scheduler.cancel(job)
    assert scheduler.waiting == 0
    with pytest.raises(Dropped):
        job.futures[0].result(0)
