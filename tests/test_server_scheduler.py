"""The scheduler in this process, on the tiny model: batches across requests, first segments
first, and one request's failure kept to itself."""

from __future__ import annotations

import threading
from typing import Callable

import numpy as np
import pytest

from bark_cli.config import SamplingOptions
from bark_cli.errors import InputError
from bark_cli.server.metrics import Metrics
from bark_cli.server.scheduler import Dropped, Scheduler, begin_segments, voice_key

FAST = SamplingOptions(max_semantic_tokens=8, min_eos_p=0)
# A short segment's steps: whole stages, but the fine stage's six passes (one per codebook).
STEPS = ["semantic", "coarse", *["fine"] * 6, "decode"]


@pytest.fixture(scope="module")
def voice(bark):
    return bark.resolve_voice("v2/en_speaker_6")


def accepting(bark, begin=begin_segments, **options) -> Scheduler:
    """A scheduler that takes jobs before its thread starts, so that a test can queue several
    and know they all wait when the first batch is taken."""
    scheduler = Scheduler(lambda: bark, begin, **options)
    scheduler.bark = bark
    scheduler.ready.set()
    return scheduler


def recording(batches: list) -> Callable:
    """begin_segments, noting each batch's texts in `batches`."""

    def begin(bark, texts, *args):
        batches.append(list(texts))
        return begin_segments(bark, texts, *args)

    return begin


def test_one_failing_request_leaves_the_others_in_its_batch_their_audio(bark, voice):
    calls = []

    def begin(bark, texts, *args):
        # A fault in one row, as a bad input would raise it deep in generation.
        calls.append(list(texts))
        if any("poison" in text for text in texts):
            raise InputError("this text cannot be spoken")
        return begin_segments(bark, texts, *args)

    scheduler = accepting(bark, begin, max_batch=4)
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
    begin = recording(batches)
    scheduler = accepting(bark, begin, max_batch=2)
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
    begin = recording(batches)
    scheduler = accepting(bark, begin, max_batch=8)
    try:
        long = scheduler.submit([f"Long {n}." for n in range(4)], voice, voice_key(voice), FAST, 1)
        scheduler.start()
        for future in long.futures:
            future.result(120)
    finally:
        scheduler.stop(60)
    assert batches == [["Long 0."], ["Long 1.", "Long 2.", "Long 3."]]


def test_a_batch_of_first_segments_holds_nothing_else(bark, voice):
    """A request that lands while another's first segment runs gets a batch of its own next,
    before the other's later segments (which would make its first audio wait for theirs)."""
    batches, late = [], []

    def after_step(texts, stage, run):
        if not batches or batches[-1] != texts:
            batches.append(texts)
        if texts == ("Early 0.",) and stage == "semantic":
            late.append(scheduler.submit(["Late 0.", "Late 1."], voice, key, FAST, 2))

    scheduler = accepting(bark, watching(after_step), max_batch=8)
    try:
        key = voice_key(voice)
        early = scheduler.submit(["Early 0.", "Early 1.", "Early 2."], voice, key, FAST, 1)
        scheduler.start()
        for future in early.futures:
            future.result(120)
        for future in late[0].futures:
            future.result(120)
    finally:
        scheduler.stop(60)
    assert batches == [("Early 0.",), ("Late 0.",), ("Early 1.", "Late 1.", "Early 2.")]


def watching(after_step: Callable) -> Callable:
    """begin_segments whose runs call `after_step(texts, stage, run)` after each stage, in the
    generation thread: a test acts at a stage boundary, where the scheduler looks next."""

    def begin(bark, texts, *args):
        run = begin_segments(bark, texts, *args)
        step = run.step

        def step_and_tell() -> str:
            name = step()
            after_step(tuple(texts), name, run)
            return name

        run.step = step_and_tell
        return run

    return begin


def test_a_cancelled_request_leaves_its_running_batch_at_the_next_stage(bark, voice):
    """A client leaves while its segment is in a batch: its row is gone from the next stage on,
    and the rows left get the audio each makes alone."""
    seen, jobs = [], []

    def after_step(texts, stage, run):
        seen.append((stage, len(run.items)))
        if stage == "semantic":
            scheduler.cancel(jobs[1])  # what the HTTP side does when the client leaves

    metrics = Metrics()
    scheduler = accepting(bark, watching(after_step), max_batch=4, metrics=metrics)
    try:
        key = voice_key(voice)
        jobs.extend(scheduler.submit([text], voice, key, FAST, 5) for text in ("Stays one.", "Leaves.", "Stays two."))
        scheduler.start()
        kept = [jobs[0].futures[0].result(120), jobs[2].futures[0].result(120)]
    finally:
        scheduler.stop(60)
    # The leaver's row ran the semantic stage only; the batch then went on with two rows.
    assert seen == [("semantic", 3)] + [(step, 2) for step in STEPS[1:]]
    with pytest.raises(Dropped):
        jobs[1].futures[0].result(0)
    assert metrics.registry.get_sample_value("bark_segments_dropped_total") == 1
    for text, made in zip(("Stays one.", "Stays two."), kept):
        alone = bark.generate(text, voice=voice, seed=5, sampling=FAST, truncate=True)
        np.testing.assert_array_equal(made.audio, alone.audio)
        assert made.batch_size == 2


@pytest.mark.parametrize("steps_before", [1, 4], ids=["after-semantic", "between-fine-passes"])
def test_a_new_request_runs_before_a_batch_of_later_segments_resumes(bark, voice, steps_before):
    """A request landing while a batch of another's later segments runs waits for that batch's
    step under way only (a stage, or one pass of the fine stage): its first segment runs next,
    in a batch of its own, and then the other batch goes on where it stopped."""
    order, short = [], []
    rest = ("Long 1.", "Long 2.", "Long 3.")

    def after_step(texts, stage, run):
        order.append((texts, stage))
        if texts == rest and sum(seen == rest for seen, _ in order) == steps_before:
            short.append(scheduler.submit(["Short."], voice, key, FAST, 9))

    scheduler = accepting(bark, watching(after_step), max_batch=8)
    try:
        key = voice_key(voice)
        long = scheduler.submit([f"Long {n}." for n in range(4)], voice, key, FAST, 1)
        scheduler.start()
        for future in long.futures:
            future.result(120)
        made = short[0].futures[0].result(120)
    finally:
        scheduler.stop(60)
    assert order == ([(("Long 0.",), s) for s in STEPS] + [(rest, s) for s in STEPS[:steps_before]]
                     + [(("Short.",), s) for s in STEPS] + [(rest, s) for s in STEPS[steps_before:]])
    alone = bark.generate("Short.", voice=voice, seed=9, sampling=FAST, truncate=True)
    np.testing.assert_array_equal(made.audio, alone.audio)
    for index, future in enumerate(long.futures):
        alone = bark.generate(f"Long {index}.", voice=voice, seed=1 + index, sampling=FAST, truncate=True)
        np.testing.assert_array_equal(future.result().audio, alone.audio)


def test_gathering_waits_at_most_a_share_of_the_last_batch(bark, voice):
    """A batch that is not full waits for company `batch_wait` (20 ms), but never more than 2.5%
    of the last batch's time: a lone request on a fast model pays a small share, not 20 ms."""
    waits = []

    class Recording(threading.Condition):
        def wait(self, timeout=None):
            waits.append(timeout)
            return False  # nobody came

    scheduler = accepting(bark, max_batch=8)
    scheduler._lock = Recording()
    scheduler.submit(["Alone."], voice, voice_key(voice), FAST, 1)
    for last_batch in (0.2, 10.0):
        scheduler._batch_seconds = last_batch
        with scheduler._lock:
            scheduler._gather()
    assert waits == [pytest.approx(0.005), pytest.approx(0.02)]


def test_a_cancelled_job_is_never_run_and_says_so(bark, voice):
    scheduler = accepting(bark)  # never started: nothing can run
    job = scheduler.submit(["Never."], voice, voice_key(voice), FAST, 1)
    assert scheduler.waiting == 1
    scheduler.cancel(job)
    assert scheduler.waiting == 0
    with pytest.raises(Dropped):
        job.futures[0].result(0)


@pytest.mark.parametrize("fails", [False, True], ids=["loads", "fails"])
def test_health_answers_503_while_the_model_loads(bark, fails):
    """/health and the speech route say 503 (OpenAI's error body for the route) until the load
    ends; then /health says 200, or 503 with the load's error."""
    from fastapi.testclient import TestClient

    from bark_cli.server.app import Settings, create_app

    release = threading.Event()

    def load():
        assert release.wait(60)
        if fails:
            raise RuntimeError("the weights are unreadable")
        return bark

    scheduler = Scheduler(load)
    app = create_app(Settings(model_id="tiny", log=lambda _: None), scheduler, Metrics())
    with TestClient(app) as http:
        assert http.get("/health").status_code == 503
        assert http.get("/health").json() == {"status": "loading"}
        refused = http.post("/v1/audio/speech", json={"model": "tts-1", "input": "Hi.", "voice": "alloy"})
        assert refused.status_code == 503
        assert set(refused.json()["error"]) == {"message", "type", "param", "code"}
        release.set()
        assert scheduler.ready.wait(60)
        answer = http.get("/health")
    if fails:
        assert answer.status_code == 503
        assert answer.json() == {"status": "failed", "error": "the weights are unreadable"}
    else:
        assert answer.status_code == 200
        assert answer.json()["status"] == "ok"


def loaded(tiny_checkpoint, graphs, max_batch: int) -> tuple:
    """A scheduler whose thread has loaded the tiny model with `graphs` as its GraphCache (what a
    CUDA load with graphs holds; sizing its buffers needs no GPU), and that model."""
    from bark_cli import Bark
    from bark_cli.config import DeviceOptions

    bark = Bark.load(tiny_checkpoint, DeviceOptions("cpu", "float32"))
    bark.graphs = graphs
    scheduler = Scheduler(lambda: bark, max_batch=max_batch)
    scheduler.start()
    assert scheduler.ready.wait(60)
    return scheduler, bark


def test_the_kv_buffer_is_sized_for_the_largest_batch_at_load(tiny_checkpoint):
    """Under CUDA graphs each stage model keeps one KV buffer, and one that must grow drops every
    step captured so far; the server sizes it for --max-batch once, as the model loads."""
    from bark_cli.decoding import GraphCache

    scheduler, bark = loaded(tiny_checkpoint, GraphCache(), max_batch=5)
    try:
        assert scheduler.load_error is None
        for model in (bark.weights.semantic, bark.weights.coarse):
            buffers = bark.graphs.storage[model]
            assert len(buffers) == len(model.layers)
            assert all(buffer.shape[1] == 5 for buffer in buffers)
    finally:
        scheduler.stop(wait=5)


def test_a_max_batch_too_large_for_the_gpu_fails_the_load_in_one_line(tiny_checkpoint):
    """The KV buffers are set aside at load, so a --max-batch whose caches the GPU cannot hold is
    the load's error (what /health and `bark serve` report), naming the option to change."""
    import torch

    from bark_cli.decoding import GraphCache
    from bark_cli.errors import DeviceError

    class SmallGpu(GraphCache):
        """A GPU with room for the caches of 4 rows: more is what CUDA raises when it runs out."""

        def reserve(self, model, batch_size):
            if batch_size > 4:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.00 GiB")
            super().reserve(model, batch_size)

    for max_batch, fits in ((4, True), (16, False)):
        scheduler, bark = loaded(tiny_checkpoint, SmallGpu(), max_batch)
        try:
            if fits:
                assert scheduler.load_error is None and scheduler.bark is bark
            else:
                assert isinstance(scheduler.load_error, DeviceError) and scheduler.bark is None
                assert "batch of 16" in scheduler.load_error.message
                assert "--max-batch" in scheduler.load_error.hint
        finally:
            scheduler.stop(wait=5)
