"""One generation thread owns the model; requests wait in one queue and run in shared batches.

A request is a Job: its text split into segments (as `bark say` splits it), one voice, one seed.
The thread loads the model, then loops over batches, one step (a stage, or one pass of the fine
stage: pipeline.BatchRun) at a time. A batch holds up to `max_batch` segments that share a voice
and sampling options (what one `Bark.start_batch` call takes). The first segments waiting make a
batch of their own, ahead of everything else; only when none waits do later segments run, round
by round: each job's next segment, then each one's following segment, and so on.

So a new request's first audio waits for little more than its own segment: no later segment
shares its batch, and a batch of later segments in progress pauses for it at its next step. And
a request whose client left is dropped: its segments not yet taken never run, and its rows leave
a running batch at the end of the stage under way (a batch none of whose rows is still wanted
stops at its next step, or its next decode step inside a stage).

Segment j of a job runs with the seed `seed + j` and the job's voice and sampling, exactly as
`longform.stream` runs it for `bark say`; every item draws noise of its own, so a segment's audio
does not depend on what else shares its batch, nor on rows leaving it.

Everything here runs on plain threads: the HTTP side reads a segment's result from a
`concurrent.futures.Future` (asyncio wraps it) and never touches the model.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import BarkError, DeviceError, GenerationError


# The most of a batch's time that gathering may add to it (Scheduler._gather).
GATHER_SHARE = 0.025


class QueueFull(Exception):
    """Every slot of the queue is taken; the request may be sent again later."""


class NotReady(Exception):
    """The model is still loading, or failed to load, or the server is stopping."""


class Dropped(Exception):
    """A segment that will not be made: its request was cancelled or the server is stopping."""


class _StopBatch(Exception):
    """Raised from the progress hook to end a batch none of whose rows is still wanted."""


@dataclass(eq=False)
class Segment:
    """What one segment of a job became: its audio and the batch it ran in."""

    audio: Any  # float32 (N,)
    semantic_tokens: int
    batch: int  # the batch's sequence number, counting from 1
    batch_size: int


@dataclass(eq=False)
class Job:
    """One request: its segments, how to speak them, and one future per segment."""

    texts: list[str]
    voice: Any  # VoicePrompt
    voice_key: str
    sampling: Any  # SamplingOptions
    seed: int
    number: int = 0
    futures: list[Future] = field(default_factory=list)
    next: int = 0  # the next segment to put in a batch
    cancelled: bool = False

    @property
    def key(self) -> tuple:
        """What rows must share to run in one batch."""
        return self.voice_key, self.sampling


def voice_key(voice) -> str:
    """A digest of a voice prompt's arrays: requests that name one voice differently still share batches."""
    digest = hashlib.blake2b(digest_size=16)
    for array in (voice.semantic_prompt, voice.coarse_prompt, voice.fine_prompt):
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _failure(error: Exception) -> BarkError:
    """What a request is told of a failure: a BarkError as it is, anything else without its internals."""
    return error if isinstance(error, BarkError) else GenerationError(f"generation failed: {error}",
                                                                      "see the server's log")


def begin_segments(bark, texts: list[str], voice, seeds: list[int], sampling, progress):
    """One batch of segments, ready to step: the very batch `longform.stream` makes for `bark say`
    (truncate: a segment past the token window is cut, with a warning, as there)."""
    return bark.start_batch(texts, voice=voice, seeds=seeds, sampling=sampling, truncate=True, progress=progress)


@dataclass(eq=False)
class Batch:
    """Rows on their way through the stages together; `gone` holds the indices of rows dropped."""

    number: int
    rows: list[tuple[Job, int]]
    run: Any = None  # pipeline.BatchRun
    gone: set[int] = field(default_factory=set)
    busy: float = 0.0  # seconds spent in its stages, not waiting for another batch

    @property
    def firsts(self) -> bool:
        """Whether it holds some job's first segment."""
        return any(index == 0 for _, index in self.rows)

    def live(self) -> list[int]:
        return [k for k in range(len(self.rows)) if k not in self.gone]


class Scheduler:
    """The generation thread and its queue. `load()` builds the model (in the thread, so that all
    its CUDA work, graphs included, happens there); `begin(bark, texts, voice, seeds, sampling,
    progress)` starts one batch and returns its pipeline.BatchRun."""

    def __init__(self, load: Callable[[], Any], begin: Callable[..., Any] = begin_segments, *,
                 max_batch: int = 8, max_queue: int = 64, batch_wait: float = 0.02, metrics=None):
        self.load, self.begin = load, begin
        self.max_batch, self.max_queue, self.batch_wait, self.metrics = max_batch, max_queue, batch_wait, metrics
        self.bark = None
        self.load_error: BaseException | None = None
        self.ready = threading.Event()
        self._jobs: list[Job] = []
        self._running: list[Batch] = []  # batches started and not finished, at most two
        self._lock = threading.Condition()
        self._numbers = itertools.count(1)
        self._batches = itertools.count(1)
        self._stopping = False
        self._batch_seconds = 1.0  # the last batch's time, for Retry-After
        self._thread = threading.Thread(target=self._run, name="bark-generation", daemon=True)

    # --- the HTTP side ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, texts: list[str], voice, key: str, sampling, seed: int) -> Job:
        """Queue a request; raises QueueFull or NotReady."""
        job = Job(texts, voice, key, sampling, seed, futures=[Future() for _ in texts])
        with self._lock:
            if self._stopping or not self.ready.is_set() or self.bark is None:
                raise NotReady()
            if len(self._jobs) >= self.max_queue:
                raise QueueFull()
            job.number = next(self._numbers)
            self._jobs.append(job)
            self._gauge()
            self._lock.notify_all()
        return job

    def cancel(self, job: Job) -> None:
        """Drop a job's segments not yet made; its slot is free at once, its rows in a running
        batch leave it at the next stage boundary. A no-op for a finished job."""
        with self._lock:
            if job in self._jobs:
                job.cancelled = True
                self._jobs.remove(job)
                dropped = len(job.texts) - job.next
                if self.metrics and dropped:
                    self.metrics.dropped.inc(dropped)
                self._gauge()
        for future in job.futures:
            if not future.done():
                future.set_exception(Dropped())

    def stop(self, wait: float = 0) -> None:
        """Cancel every job, end the batches in progress at their next step, and wait up to `wait` seconds."""
        with self._lock:
            self._stopping = True
            jobs = list(self._jobs)
            self._lock.notify_all()
        for job in jobs:
            self.cancel(job)
        if self._thread.is_alive() and wait > 0:
            self._thread.join(wait)

    @property
    def waiting(self) -> int:
        return len(self._jobs)

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the batches ahead at the last batch's pace, at least 1."""
        with self._lock:
            pending = sum(len(job.texts) - job.next for job in self._jobs)
        return max(1, math.ceil(pending / self.max_batch * self._batch_seconds))

    # --- the generation thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            bark = self.load()
            self._reserve(bark)
            self.bark = bark
        except BaseException as exc:  # noqa: BLE001 - reported by /health and every request
            self.load_error = exc
            return
        finally:
            self.ready.set()
        while True:
            with self._lock:
                while not self._stopping and not self._running and not self._pending():
                    self._lock.wait()
                new = None
                if self._may_start():
                    self._gather()
                    if self._may_start():
                        new = Batch(next(self._batches), self._take())
                        self._running.append(new)
                if self._stopping:
                    return
                # A batch holding first segments runs ahead; otherwise the oldest goes on.
                batch = min(self._running, key=lambda b: (not b.firsts, b.number))
            if batch is new:
                self._begin(batch)
            else:
                self._step(batch)

    def _reserve(self, bark) -> None:
        """Under CUDA graphs, one KV buffer for the largest batch from the start: batch sizes come
        and go, and a buffer that had to grow would drop every step captured so far. So a
        --max-batch too large for the GPU fails here, as the server starts, not under load."""
        import torch

        try:
            bark.reserve_graphs(self.max_batch)
        except torch.OutOfMemoryError:
            raise DeviceError(f"the KV caches of a batch of {self.max_batch} do not fit in the GPU's memory "
                              "beside the model", "use a smaller --max-batch, or --no-cuda-graphs") from None

    def _pending(self) -> bool:
        return any(job.next < len(job.texts) for job in self._jobs)

    def _may_start(self) -> bool:
        """Whether a new batch starts now: with nothing running, when rows wait; beside a batch
        of later segments, when first segments wait and that batch has more than its decode left."""
        if self._stopping or not self._pending():
            return False
        if not self._running:
            return True
        return (not any(batch.firsts for batch in self._running)
                and any(job.next == 0 for job in self._jobs)
                and all(batch.run is not None and batch.run.next_stage != "decode" for batch in self._running))

    def _gather(self) -> None:
        """Hold a batch that is not full while requests keep arriving, each within a short wait
        of the last (at most 4 waits): clients that send together then share one batch, where
        the first to land would otherwise run alone and the others wait a whole batch for it.
        The wait is `batch_wait`, or 2.5% of the last batch's time where that is less: a lone
        request never pays more than that share for the chance of company."""
        wait = min(self.batch_wait, GATHER_SHARE * self._batch_seconds)
        for _ in range(4):
            rows = sum(len(job.texts) - job.next for job in self._jobs)
            if self._stopping or rows >= self.max_batch or not self._lock.wait(wait):
                return

    def _take(self) -> list[tuple[Job, int]]:
        """The next batch's rows, (job, segment index), as the module docstring tells: the first
        segments waiting, alone, or else the later segments round by round."""
        ready = [job for job in self._jobs if job.next < len(job.texts)]
        firsts = [job for job in ready if job.next == 0]
        # The oldest job leads and decides the batch's voice and sampling.
        pool = sorted(firsts or ready, key=lambda job: job.number)
        fellows = [job for job in pool if job.key == pool[0].key]
        rows: list[tuple[Job, int]] = []
        while len(rows) < self.max_batch and fellows:
            for job in list(fellows):
                if len(rows) == self.max_batch:
                    break
                rows.append((job, job.next))
                job.next += 1
                if job.next == len(job.texts) or firsts:
                    fellows.remove(job)
        return rows

    def _hook(self, batch: Batch) -> Callable[[str, int, int], None]:
        def progress(stage: str, done: int, total: int) -> None:
            # Called between decode steps: a batch none of whose rows is still wanted stops here.
            if self._stopping or all(batch.rows[k][0].cancelled for k in batch.live()):
                raise _StopBatch()
        return progress

    def _begin(self, batch: Batch) -> None:
        job = batch.rows[0][0]
        try:
            batch.run = self.begin(self.bark, [j.texts[i] for j, i in batch.rows], job.voice,
                                   [j.seed + i for j, i in batch.rows], job.sampling, self._hook(batch))
        except Exception as exc:  # noqa: BLE001 - each row's own error is found in _salvage
            self._salvage(batch, exc)

    def _step(self, batch: Batch) -> None:
        """Run the batch's next stage; then its cancelled rows leave it, and a finished batch is handed out."""
        start = time.perf_counter()
        try:
            batch.run.step()
        except _StopBatch:
            self._drop(batch, batch.live())
        except Exception as exc:  # noqa: BLE001 - each row's own error is found in _salvage
            return self._salvage(batch, exc)
        batch.busy += time.perf_counter() - start
        self._drop(batch, [k for k in batch.live() if batch.rows[k][0].cancelled])
        if batch.run.done:
            self._finish(batch, batch.run.results())

    def _drop(self, batch: Batch, rows: list[int]) -> None:
        if rows:
            batch.gone.update(rows)
            batch.run.drop(rows)
            if self.metrics:
                self.metrics.dropped.inc(len(rows))

    def _salvage(self, batch: Batch, error: Exception) -> None:
        """A failing batch: a lone row gets the error; several run again one by one, so that one
        request's failure leaves the others their audio."""
        live = batch.live()
        made: list = [None] * len(batch.rows)
        for k in live:
            made[k] = _failure(error) if len(live) == 1 else self._alone(batch.rows[k])
        self._finish(batch, made)

    def _alone(self, row: tuple[Job, int]):
        """One row run by itself to its end: its Generation, its error, or None if dropped."""
        job, index = row
        single = Batch(0, [row])
        try:
            single.run = self.begin(self.bark, [job.texts[index]], job.voice, [job.seed + index], job.sampling,
                                    self._hook(single))
            while not single.run.done:
                single.run.step()
            return single.run.results()[0]
        except _StopBatch:
            return None
        except Exception as exc:  # noqa: BLE001 - handed to the row's request
            return _failure(exc)

    def _finish(self, batch: Batch, made: list) -> None:
        """Hand each live row its segment (or error); the batch leaves the running ones."""
        with self._lock:
            if batch in self._running:
                self._running.remove(batch)
        self._batch_seconds = batch.busy or self._batch_seconds
        size, audio_seconds = len(batch.live()), 0.0
        for k in batch.live():
            job, index = batch.rows[k]
            result = made[k]
            if isinstance(result, BaseException):
                self._fail(job, result)
                continue
            if result is None:
                continue
            if not job.futures[index].done():
                audio_seconds += result.duration
                job.futures[index].set_result(
                    Segment(result.audio, int(result.semantic_tokens.shape[0]), batch.number, size))
            with self._lock:
                if job in self._jobs and all(f.done() for f in job.futures):
                    self._jobs.remove(job)
                    self._gauge()
        if self.metrics and audio_seconds:
            delivered = sum(made[k] is not None and not isinstance(made[k], BaseException) for k in batch.live())
            self.metrics.batch(delivered, audio_seconds, batch.busy)

    def _fail(self, job: Job, error: BaseException) -> None:
        for future in job.futures:
            if not future.done():
                future.set_exception(error)
        with self._lock:
            if job in self._jobs:
                self._jobs.remove(job)
                self._gauge()

    def _gauge(self) -> None:
        if self.metrics:
            self.metrics.queue_depth.set(len(self._jobs))
