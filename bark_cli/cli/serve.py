"""`bark serve`: OpenAI's speech API on this machine (bark_cli.server does the work)."""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
from typing import Annotated

import typer

from ..config import DeviceOptions, SamplingOptions
from ..errors import InputError
from ..text import DEFAULT_MAX_CHARS
from .errors import print_warning, printable
from .options import (
    DEFAULT_MODEL, LONG, GapOpt, ModelOpt, RevisionOpt, device_options, in_range, sampling_options,
)
from .output import examples

SERVE_EXAMPLES = examples(
    "bark serve",
    "bark serve --device cuda --max-batch 16 --port 8000",
    "BARK_API_KEY=secret bark serve --host 0.0.0.0",
    "bark serve --voice-map alloy=v2/en_speaker_9 --voice-map nova=me",
)
SERVER = "Server"
# A key shorter than this is a typo or a placeholder, not a secret.
MIN_KEY_CHARS = 8


@sampling_options
@device_options
def serve(
    host: Annotated[str, typer.Option(
        metavar="ADDRESS", help="Address to listen on (default 127.0.0.1: this machine only).",
        show_default=False, rich_help_panel=SERVER)] = "127.0.0.1",
    port: Annotated[int, typer.Option(
        metavar="N", help="Port (default 8000; 0: any free one).", show_default=False,
        callback=in_range(0, 65535), rich_help_panel=SERVER)] = 8000,
    api_key: Annotated[str | None, typer.Option(
        envvar="BARK_API_KEY", show_envvar=True, metavar="KEY", show_default=False, rich_help_panel=SERVER,
        help="Require Authorization: Bearer KEY on /v1 routes.")] = None,
    max_batch: Annotated[int, typer.Option(
        metavar="N", help="Segments per generation batch, across requests (default 8).", show_default=False,
        callback=in_range(1, 256), rich_help_panel=SERVER)] = 8,
    max_queue: Annotated[int, typer.Option(
        metavar="N", help="Requests waiting or in progress before 429 (default 64).", show_default=False,
        callback=in_range(1, 100_000), rich_help_panel=SERVER)] = 64,
    max_input: Annotated[int, typer.Option(
        metavar="CHARS", help="Longest input (default 4096, as OpenAI's).", show_default=False,
        callback=in_range(1, 1_000_000), rich_help_panel=SERVER)] = 4096,
    voice_map: Annotated[list[str] | None, typer.Option(
        metavar="NAME=VOICE", help="Map a voice name (alloy, nova, ...) to a Bark voice; repeatable.",
        show_default=False, rich_help_panel=SERVER)] = None,
    grace: Annotated[float, typer.Option(
        metavar="SECONDS", help="On Ctrl-C or SIGTERM, time left to requests in flight (default 10).",
        show_default=False, callback=in_range(0, 3600), rich_help_panel=SERVER)] = 10.0,
    log_text: Annotated[bool, typer.Option(
        "--log-text", help="Put each request's text in the access log.", rich_help_panel=SERVER)] = False,
    model: ModelOpt = DEFAULT_MODEL,
    revision: RevisionOpt = None,
    sampling: SamplingOptions = SamplingOptions(),
    max_segment_chars: Annotated[int, typer.Option(
        metavar="N", show_default=False, callback=in_range(1, 10_000), rich_help_panel=LONG,
        help=f"Longest segment in letters (default {DEFAULT_MAX_CHARS}: ~13 s).")] = DEFAULT_MAX_CHARS,
    gap: GapOpt = 0.25,
    hardware: DeviceOptions = DeviceOptions(),
) -> None:
    """Serve OpenAI's speech API (POST /v1/audio/speech) and a page to try it.

    Concurrent requests share generation batches. Point any OpenAI client at http://HOST:PORT/v1.
    Ctrl-C or SIGTERM lets requests in flight finish for --grace seconds, then exits 130 or 143.
    """
    from .. import presets
    from ..server.schema import parse_voice_map

    voices = parse_voice_map(voice_map or [])
    for name, target in voices.items():
        try:
            presets.find_voice(target, model, revision, fetch=False)
        except InputError as exc:
            if name in dict(pair.partition("=")[::2] for pair in voice_map or []):
                raise InputError(f"--voice-map {name}={target}: {exc.message}", exc.hint) from None
            print_warning(f"voice {name} maps to {target}, which {model} lacks; requests for it will fail")
    if api_key is not None and len(api_key) < MIN_KEY_CHARS:
        raise InputError(f"the API key is {len(api_key)} characters", f"use at least {MIN_KEY_CHARS}, random")
    if api_key is None and not _loopback(host):
        print_warning(f"{host} is reachable from other machines and no --api-key is set: anyone there can use it")
    listener = _listen(host, port)
    _run(listener, host, model, revision, hardware, sampling, voices, api_key, max_batch, max_queue, max_input,
         max_segment_chars, gap, grace, log_text)


def _run(listener, host, model, revision, hardware, sampling, voices, api_key, max_batch, max_queue, max_input,
         max_segment_chars, gap, grace, log_text) -> None:
    import uvicorn

    from ..server.app import Settings, create_app
    from ..server.metrics import Metrics
    from ..server.scheduler import Scheduler

    metrics = Metrics()
    scheduler = Scheduler(_loader(model, revision, hardware), max_batch=max_batch, max_queue=max_queue,
                          metrics=metrics)
    settings = Settings(model_id=str(model), voice_map=voices, api_key=api_key, max_input=max_input, gap=gap,
                        max_segment_chars=max_segment_chars, sampling=sampling, grace=grace, log_text=log_text)
    app = create_app(settings, scheduler, metrics)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=int(grace) or 1,
                            lifespan="on")
    server = uvicorn.Server(config)
    url = _url(host, listener.getsockname()[1])
    print(f"bark serve: {url} (loading {printable(model)})", file=sys.stderr, flush=True)
    threading.Thread(target=_announce, args=(scheduler, server, url, api_key), daemon=True).start()
    server.run(sockets=[listener])
    if scheduler.load_error is not None:
        raise scheduler.load_error


def _loader(model: str, revision: str | None, hardware: DeviceOptions):
    """The one place the server loads its model; called in the generation thread."""

    def load():
        import torch

        from ..pipeline import Bark

        if hardware.threads:
            torch.set_num_threads(hardware.threads)
        return Bark.load(model, hardware, revision=revision)

    return load


def _announce(scheduler, server, url: str, api_key: str | None) -> None:
    """Once the model is in: the ready line and a curl to paste; a failed load stops the server."""
    scheduler.ready.wait()
    if scheduler.load_error is not None:
        server.should_exit = True
        return
    key = ' -H "Authorization: Bearer $BARK_API_KEY"' if api_key else ""
    print(f"ready: {url}/  (page)  {url}/v1  (OpenAI base URL)\n"
          f"try: curl {url}/v1/audio/speech{key} -H 'Content-Type: application/json' "
          f"-d '{{\"model\": \"tts-1\", \"input\": \"Hello there.\", \"voice\": \"alloy\"}}' -o hello.mp3",
          file=sys.stderr, flush=True)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a taken port is one clear line, before the model loads."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                         "pick another --port, or an address of this machine for --host") from None
    sock.set_inheritable(True)
    return sock


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"
