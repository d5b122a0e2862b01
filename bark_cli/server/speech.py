"""POST /v1/audio/speech after its checks: the job's segments, in order, as a response body.

The gap between segments is `bark say`'s (silence of `gap` seconds), so a seeded response holds
the samples `bark say` writes. A body streams by default, segment by segment; the `stream: false`
extension gathers it first and sends it whole, with its length (a WAV's header then has true sizes).
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from typing import AsyncIterator

import numpy as np

from .. import audio
from .encoders import Encoder
from .scheduler import Dropped, Job, Scheduler


@dataclass
class Outcome:
    """What the access log says of a request: filled in as its body goes out."""

    status: int = 200
    segments: int = 0
    audio_seconds: float = 0.0
    batch_sizes: list[int] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)
    error: str | None = None


async def segments(job: Job, outcome: Outcome, sample_rate: int, gap: float) -> AsyncIterator[np.ndarray]:
    """The job's audio, one piece per segment (the gap before it included), as each is made."""
    silence = np.zeros(int(round(gap * sample_rate)), dtype=np.float32)
    for index, future in enumerate(job.futures):
        segment = await asyncio.wrap_future(future)
        outcome.segments += 1
        outcome.audio_seconds += len(segment.audio) / sample_rate + (len(silence) / sample_rate if index else 0)
        outcome.batch_sizes.append(segment.batch_size)
        outcome.batches.append(segment.batch)
        yield np.concatenate([silence, segment.audio]) if index else segment.audio


async def audio_stream(job: Job, scheduler: Scheduler, encoder: Encoder, outcome: Outcome, sample_rate: int,
                       gap: float) -> AsyncIterator[bytes]:
    """The encoded body, chunk by chunk. Whatever ends it early (the client leaving, a failure)
    cancels the job's segments not yet made."""
    try:
        async for samples in segments(job, outcome, sample_rate, gap):
            data = await asyncio.to_thread(encoder.feed, samples)
            if data:
                yield data
        tail = await asyncio.to_thread(encoder.finish)
        if tail:
            yield tail
    except BaseException as exc:
        _failed(outcome, exc)
        raise
    finally:
        scheduler.cancel(job)


async def sse_stream(job: Job, scheduler: Scheduler, encoder: Encoder, outcome: Outcome, sample_rate: int,
                     gap: float, input_tokens: int) -> AsyncIterator[bytes]:
    """OpenAI's server-sent events: `speech.audio.delta` with base64 audio, then `speech.audio.done`
    with usage (input: text tokens; output: semantic tokens), or an `error` event."""
    try:
        output_tokens = 0
        async for samples in segments(job, outcome, sample_rate, gap):
            data = await asyncio.to_thread(encoder.feed, samples)
            if data:
                yield _event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})
        tail = await asyncio.to_thread(encoder.finish)
        if tail:
            yield _event({"type": "speech.audio.delta", "audio": base64.b64encode(tail).decode()})
        output_tokens = sum(f.result().semantic_tokens for f in job.futures)
        yield _event({"type": "speech.audio.done",
                      "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                                "total_tokens": input_tokens + output_tokens},
                      "bark": {"seed": job.seed, "batches": outcome.batches}})
    except Exception as exc:  # noqa: BLE001 - the status is sent: the error goes out as an event
        _failed(outcome, exc)
        if not isinstance(exc, Dropped):
            message, kind = _message(exc)
            yield _event({"type": "error", "error": {"message": message, "type": kind, "param": None, "code": None}})
    except BaseException as exc:
        _failed(outcome, exc)
        raise
    finally:
        scheduler.cancel(job)


async def whole(job: Job, encoder: Encoder, outcome: Outcome, sample_rate: int, gap: float, fmt: str) -> bytes:
    """The body of an unstreamed response; a WAV's header carries its true sizes."""
    chunks = []
    async for samples in segments(job, outcome, sample_rate, gap):
        chunks.append(await asyncio.to_thread(encoder.feed, samples))
    chunks.append(await asyncio.to_thread(encoder.finish))
    data = b"".join(chunks)
    if fmt == "wav":
        header = audio.wav_header(sample_rate, data_bytes=len(data) - len(audio.wav_header(sample_rate)))
        data = header + data[len(header):]
    return data


def _event(payload: dict) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def _failed(outcome: Outcome, exc: BaseException) -> None:
    outcome.status = 499 if isinstance(exc, (Dropped, asyncio.CancelledError, GeneratorExit)) else 500
    outcome.error = type(exc).__name__


def _message(exc: BaseException) -> tuple[str, str]:
    from ..errors import BarkError

    if isinstance(exc, BarkError):
        return exc.message, "server_error"
    return "generation failed; see the server's log", "server_error"
