"""One generation thread owns the model; requests wait in one queue and run in shared batches.

A request is a Job: its text split into segments (as `bark say` splits it), one voice, one seed.
The thread loads the model, then loops: take a batch, run it, hand each segment to its job. A
batch holds up to `max_batch` segments that share a voice and sampling options (what one
`Bark.generate_batch` call takes), chosen round by round: each waiting job's next segment, the
jobs whose next segment is their first ahead of the others, then each job's following segment,
and so on; a round that holds some job's first segment is the batch's last. A new request's
first audio so waits for at most the batch in progress and one round.

Segment j of a job runs with the seed `seed + j` and the job's voice and sampling, exactly as
`longform.stream` runs it for `bark say`; generate_batch gives each item noise of its own, so a
segment's audio does not depend on what else shares its batch.

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

from ..errors import BarkError, GenerationError


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


def generate_segments(bark, texts: list[str], voice, seeds: list[int], sampling, progress) -> list:
    """One batch of segments: the very call `longform.stream` makes for `bark say` (truncate: a
    segment past the token window is cut, with a warning, as there)."""
    return bark.generate_batch(texts, voice=voice, seeds=seeds, sampling=sampling, truncate=True, progress=progress)


class Scheduler:
    """The generation thread and its queue. `load()` builds the model (in the thread, so that all
    its CUDA work, graphs included, happens there); `generate(bark, texts, voice, seeds, sampling,
    progress)` runs one batch and returns one Generation per text."""

    def __init__(self, load: Callable[[], Any], generate: Callable[..., list] = generate_segments, *,
                 max_batch: int = 8, max_queue: int = 64, batch_wait: float = 0.02, metrics=None):
        self.load, self.generate = load, generate
        self.max_batch, self.max_queue, self.batch_wait, self.metrics = max_batch, max_queue, batch_wait, metrics
        self.bark = None
        self.load_error: BaseException | None = None
        self.ready = threading.Event()
        self._jobs: list[Job] = []
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
        """Drop a job's segments not yet made; its slot is free at once. A no-op for a finished job."""
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
        """Cancel every job, end the batch in progress at its next step, and wait up to `wait` seconds."""
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
            self.bark = self.load()
        except BaseException as exc:  # noqa: BLE001 - reported by /health and every request
            self.load_error = exc
            return
        finally:
            self.ready.set()
        while True:
            with self._lock:
                while not self._stopping and not self._pending():
                    self._lock.wait()
                self._gather()
                if self._stopping:
                    return
                rows = self._take()
            self._run_batch(rows)

    def _gather(self) -> None:
        """Hold a batch that is not full while requests keep arriving, each within `batch_wait`
        of the last (at most 4 waits): clients that send together then share one batch, where
        the first to land would otherwise run alone and the others wait a whole batch for it."""
        for _ in range(4):
            rows = sum(len(job.texts) - job.next for job in self._jobs)
            if self._stopping or rows >= self.max_batch or not self._lock.wait(self.batch_wait):
                return

    def _pending(self) -> bool:
        return any(job.next < len(job.texts) for job in self._jobs)

    def _take(self) -> list[tuple[Job, int]]:
        """The next batch's rows, (job, segment index), by the rounds the module docstring tells."""
        ready = [job for job in self._jobs if job.next < len(job.texts)]
        # First segments first, then arrival order: the lead row decides the batch's voice and sampling.
        ready.sort(key=lambda job: (job.next > 0, job.number))
        key = ready[0].key
        fellows = [job for job in ready if job.key == key]
        rows: list[tuple[Job, int]] = []
        while len(rows) < self.max_batch and fellows:
            firsts = False
            for job in list(fellows):
                if len(rows) == self.max_batch:
                    break
                firsts = firsts or job.next == 0
                rows.append((job, job.next))
                job.next += 1
                if job.next == len(job.texts):
                    fellows.remove(job)
            if firsts:
                # A round that starts some request ends the batch: its first audio then waits one
                # round's time, not its own later segments' (`bark say` runs a first segment alone).
                break
        return rows

    def _run_batch(self, rows: list[tuple[Job, int]]) -> None:
        number = next(self._batches)
        jobs = {id(job): job for job, _ in rows}

        def progress(stage: str, done: int, total: int) -> None:
            # Called between decode steps: a batch whose every row was cancelled stops here.
            if self._stopping or all(job.cancelled for job in jobs.values()):
                raise _StopBatch()

        start = time.perf_counter()
        try:
            made = self._generate(rows, progress)
        except _StopBatch:
            made = [Dropped() for _ in rows]
            if self.metrics:
                self.metrics.dropped.inc(len(rows))
        seconds = self._batch_seconds = time.perf_counter() - start
        audio_seconds = 0.0
        for (job, index), result in zip(rows, made):
            future = job.futures[index]
            if isinstance(result, BaseException):
                self._fail(job, result)
                continue
            if not future.done():
                audio_seconds += result.duration
                future.set_result(Segment(result.audio, int(result.semantic_tokens.shape[0]), number, len(rows)))
            with self._lock:
                if job in self._jobs and all(f.done() for f in job.futures):
                    self._jobs.remove(job)
                    self._gauge()
        if self.metrics and audio_seconds:
            self.metrics.batch(sum(not isinstance(r, BaseException) for r in made), audio_seconds, seconds)

    def _generate(self, rows: list[tuple[Job, int]], progress) -> list:
        """One Generation (or the error it met) per row. A failing batch is run again row by row,
        so that one request's failure leaves the others in its batch their audio."""
        job = rows[0][0]
        try:
            return self.generate(self.bark, [j.texts[i] for j, i in rows], job.voice,
                                 [j.seed + i for j, i in rows], job.sampling, progress)
        except _StopBatch:
            raise
        except Exception as exc:  # noqa: BLE001 - each row's own error is found below
            if len(rows) == 1:
                return [exc if isinstance(exc, BarkError) else GenerationError(f"generation failed: {exc}",
                                                                              "see the server's log")]
        return [self._generate([row], progress)[0] for row in rows]

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
