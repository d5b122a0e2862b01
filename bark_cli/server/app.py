"""The HTTP routes of `bark serve`: thin, in OpenAI's shapes, over the scheduler.

    app = create_app(Settings(model_id="suno/bark-small"), scheduler, Metrics())
    uvicorn.run(app)

Every failure a client can cause or meet leaves as an ApiError, which `_error` turns into
OpenAI's body; nothing else reaches the client, and no traceback is ever in a body.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import secrets
import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Callable

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from ..config import SamplingOptions
from ..errors import BarkError
from ..text import DEFAULT_MAX_CHARS
from . import speech, voices
from .encoders import MEDIA_TYPES, Encoder
from .metrics import Metrics
from .scheduler import Dropped, NotReady, QueueFull, Scheduler, voice_key
from .schema import MODEL_ALIASES, VOICE_MAP, ApiError, parse_speech

# A speech request's JSON body: 4096 characters of input, escaped, fit many times over.
MAX_BODY_BYTES = 1 << 20


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class Settings:
    model_id: str
    voice_map: dict[str, str] = field(default_factory=lambda: dict(VOICE_MAP))
    api_key: str | None = None
    max_input: int = 4096
    max_body: int = MAX_BODY_BYTES
    gap: float = 0.25
    max_segment_chars: int = DEFAULT_MAX_CHARS
    sampling: SamplingOptions = SamplingOptions()
    grace: float = 10.0
    log_text: bool = False
    log: Callable[[str], None] = _stderr


def create_app(settings: Settings, scheduler: Scheduler, metrics: Metrics) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app):
        scheduler.start()
        yield
        await asyncio.to_thread(scheduler.stop, settings.grace)

    app = FastAPI(title="bark serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_exception_handler(ApiError, lambda request, exc: _error(exc))
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError,
                              lambda request, exc: _error(ApiError(400, "the request is not valid")))
    app.add_middleware(AccessLog, settings=settings, metrics=metrics)

    async def authorized(request: Request) -> None:
        if settings.api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        # Constant time: how much of a guess matched must not show in the answer's timing.
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), settings.api_key.encode()):
            raise ApiError(401, "missing or incorrect API key: send Authorization: Bearer KEY", None,
                           "invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(authorized)])

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8"))

    @app.get("/health")
    async def health() -> JSONResponse:
        if scheduler.load_error is not None:
            return JSONResponse({"status": "failed", "error": str(scheduler.load_error)}, 503)
        if scheduler.bark is None:
            return JSONResponse({"status": "loading"}, 503)
        return JSONResponse({"status": "ok", "model": settings.model_id, "waiting": scheduler.waiting})

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        body, kind = metrics.render()
        return Response(body, media_type=kind)

    @v1.get("/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "bark-cli"}
                                           for name in model_names(settings)]}

    @v1.get("/audio/models")
    async def audio_models() -> dict:
        return {"models": [{"id": name} for name in model_names(settings)]}

    @v1.get("/audio/voices")
    async def audio_voices() -> dict:
        bark = _bark(scheduler)
        return {"voices": await asyncio.to_thread(voices.listing, bark, settings.voice_map)}

    @v1.post("/audio/speech")
    async def create_speech(request: Request) -> Response:
        try:
            return await _speech(request, settings, scheduler)
        except ApiError:
            raise
        except BarkError as exc:
            raise ApiError(400, exc.message + (f" ({exc.hint})" if exc.hint else "")) from None
        except Exception as exc:  # noqa: BLE001 - logged here, never sent
            settings.log(f"error: unexpected {type(exc).__name__}: {exc}")
            raise ApiError(500, "the server failed to answer; see its log", None, None, "server_error") from None

    app.include_router(v1)
    return app


def model_names(settings: Settings) -> list[str]:
    return [settings.model_id, *MODEL_ALIASES]


def _bark(scheduler: Scheduler):
    if scheduler.bark is None:
        raise ApiError(503, "the model is still loading; try again shortly", None, "model_not_ready",
                       "server_error", headers={"Retry-After": "5"})
    return scheduler.bark


async def _speech(request: Request, settings: Settings, scheduler: Scheduler) -> Response:
    from ..longform import plan_text
    from ..pipeline import fresh_seed

    body = await _read_body(request, settings.max_body)
    ask = parse_speech(body, settings.max_input, settings.sampling)
    if ask.model not in model_names(settings):
        raise ApiError(404, f"the model {ask.model!r} does not exist; use {settings.model_id} or "
                       f"{', '.join(MODEL_ALIASES)}", "model", "model_not_found")
    bark = _bark(scheduler)
    voice = await asyncio.to_thread(voices.resolve, bark, ask.voice, settings.voice_map)
    plan = await asyncio.to_thread(plan_text, bark, ask.input, settings.max_segment_chars)
    seed = fresh_seed() if ask.seed is None else ask.seed
    try:
        job = scheduler.submit([text for text, _ in plan], voice, voice_key(voice), ask.sampling, seed)
    except QueueFull:
        retry = scheduler.retry_after()
        raise ApiError(429, f"the queue is full; try again in {retry} s", None, "rate_limit_exceeded",
                       "rate_limit_error", headers={"Retry-After": str(retry)}) from None
    except NotReady:
        _bark(scheduler)
        raise ApiError(503, "the server is stopping", None, "shutting_down", "server_error") from None
    outcome = speech.Outcome()
    request.state.outcome = outcome
    # As a JSON string: quotes, newlines and control characters escaped, one line whatever the text.
    request.state.detail = f"input={json.dumps(ask.input)}" if settings.log_text else ""
    # Only FLAC gains from a muxer that may seek: its length. MP3's would add a Xing frame that changes the audio.
    encoder = Encoder(ask.response_format, bark.sample_rate, ask.speed,
                      whole=not ask.stream and ask.response_format == "flac")
    headers = {"X-Bark-Seed": str(seed), "X-Bark-Segments": str(len(plan))}
    args = (job, scheduler, encoder, outcome, bark.sample_rate, settings.gap)
    if ask.stream_format == "sse":
        tokens = sum(count for _, count in plan)
        return StreamingResponse(speech.sse_stream(*args, tokens), media_type="text/event-stream", headers=headers)
    if ask.stream:
        return StreamingResponse(speech.audio_stream(*args), media_type=MEDIA_TYPES[ask.response_format],
                                 headers=headers)
    data = await _unless_gone(request, job, scheduler, speech.whole(
        job, encoder, outcome, bark.sample_rate, settings.gap, ask.response_format))
    headers["X-Bark-Batches"] = ",".join(map(str, outcome.batches))
    return Response(data, media_type=MEDIA_TYPES[ask.response_format], headers=headers)


async def _unless_gone(request: Request, job, scheduler: Scheduler, work):
    """Await `work`, cancelling the job if the client disconnects first (its body is read, so
    the next message the server has for it is the disconnect)."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        scheduler.cancel(job)
        task.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        return await task
    except asyncio.CancelledError:
        request.state.outcome.status = 499
        raise
    except Exception as exc:  # noqa: BLE001
        scheduler.cancel(job)
        request.state.outcome.status = 500
        if isinstance(exc, BarkError):
            raise ApiError(500, exc.message, None, None, "server_error") from None
        raise
    finally:
        watcher.cancel()


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise ApiError(413, f"the body is {length} bytes, over this server's limit of {limit}", None,
                       "request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the body is over this server's limit of {limit} bytes", None, "request_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _error(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """Starlette's own refusals (no such route, wrong method) in OpenAI's shape."""
    message = {404: f"no route {request.url.path}", 405: f"{request.method} is not allowed on {request.url.path}"}
    code = {404: "unknown_url", 405: "method_not_allowed"}
    return _error(ApiError(exc.status_code, message.get(exc.status_code, str(exc.detail)), None,
                           code.get(exc.status_code), headers=getattr(exc, "headers", None)))


class AccessLog:
    """One line per request on the log, when its response has ended: id, method, path, status,
    and for speech the segments, audio seconds, batch sizes and latency. Text only when asked."""

    def __init__(self, app, settings: Settings, metrics: Metrics):
        self.app, self.settings, self.metrics = app, settings, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        request_id = secrets.token_hex(6)
        state = scope.setdefault("state", {})
        status, started = [500], [False]

        async def sending(message) -> None:
            if message["type"] == "http.response.start":
                started[0] = True
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:  # noqa: BLE001 - one log line, never a traceback
            if not isinstance(exc, Dropped):
                self.settings.log(f"error: {request_id} failed: {type(exc).__name__}: {exc}")
            if not started[0]:
                await _error(ApiError(500, "the server failed to answer; see its log", None, None,
                                      "server_error"))(scope, receive, sending)
            # Else the body is cut short: returning unfinished makes the server drop the
            # connection, so the client sees an error rather than a short file that looks whole.
        finally:
            self._log(scope, state, request_id, status[0], time.perf_counter() - start)

    def _log(self, scope, state, request_id: str, status: int, seconds: float) -> None:
        outcome = state.get("outcome")
        if outcome is not None and outcome.status != 200:
            status = outcome.status
        line = f'{request_id} {scope["method"]} {scope["path"]} {status} {seconds:.3f}s'
        if scope["path"] == "/v1/audio/speech":
            self.metrics.requests.labels(str(status)).inc()
        if outcome is not None:
            sizes = outcome.batch_sizes
            line += (f" segments={outcome.segments} audio={outcome.audio_seconds:.2f}s"
                     f" batch={max(sizes) if sizes else 0} {state.get('detail', '')}").rstrip()
        self.settings.log(line)

