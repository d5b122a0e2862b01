"""`bark serve` through the official `openai` client, against real server processes on the tiny
model: every format decodes to the expected length, streams start before the last segment is
made, seeded requests equal `bark say`'s audio alone or batched, and every refusal is OpenAI's
error body. Each segment is fixed at 8 semantic tokens (`--max-semantic-tokens 8 --min-eos-p 0`),
so lengths are known exactly."""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json

import httpx
import numpy as np
import pytest
from serving import Server, decode, expected_samples, metric, wait_for

openai = pytest.importorskip("openai")

KEY = "test-key-0123456789"
TWO = "The first sentence. And the second one."  # two segments at --max-segment-chars 30
LONG = " ".join(f"Sentence number {n} is here." for n in range(1, 11))  # ten segments


@pytest.fixture(scope="module")
def servers(tiny_checkpoint):
    """Two servers, started side by side (each takes seconds to load): a wide one with a key,
    and a narrow one, one request at a time and one segment per batch, whose queue fills."""
    started = (Server(tiny_checkpoint, "--max-batch", "4", "--api-key", KEY),
               Server(tiny_checkpoint, "--max-batch", "1", "--max-queue", "1", "--grace", "60"))
    try:
        yield tuple(s.wait() for s in started)
    finally:
        for running in started:
            running.stop()


@pytest.fixture(scope="module")
def server(servers):
    return servers[0]


@pytest.fixture(scope="module")
def narrow(servers):
    return servers[1]


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=120)


def segments_of(text: str, model) -> int:
    """How many segments `bark say` splits a text into, from the tokenizer alone."""
    from bark_cli.longform import plan_text
    from bark_cli.text import load_tokenizer

    return len(plan_text(load_tokenizer(model), text, 30))


def speech(client, text=TWO, **options) -> bytes:
    extra = {key: options.pop(key) for key in ("seed", "stream") if key in options}
    return client.audio.speech.create(model="tts-1", input=text, voice=options.pop("voice", "alloy"),
                                      extra_body=extra, **options).read()


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_every_format_decodes_to_24khz_mono_of_the_expected_length(client, tiny_checkpoint, fmt):
    count = segments_of(TWO, tiny_checkpoint)
    assert count == 2
    samples, rate, channels = decode(speech(client, response_format=fmt, seed=4), fmt)
    assert channels == 1
    expected = expected_samples(count)
    if fmt == "opus":  # Opus decodes at 48 kHz whatever it was given (RFC 7845); the server gives it 24 kHz
        assert rate == 48_000
        expected *= 2
    else:
        assert rate == 24_000
    if fmt in ("wav", "pcm", "flac"):
        assert len(samples) == expected
        assert np.abs(samples).max() > 0
    else:  # lossy codecs add their encoder delay and pad the last frame
        assert expected <= len(samples) <= expected + 2 * 1152 * rate // 24_000


@pytest.mark.parametrize("fmt", ["wav", "pcm", "flac", "mp3"])
def test_a_streamed_body_equals_the_unstreamed_one(client, fmt):
    streamed = speech(client, response_format=fmt, seed=11)
    whole = speech(client, response_format=fmt, seed=11, stream=False)
    if fmt == "wav":  # the samples are the same bytes; only the whole file's header knows its sizes
        assert streamed[:4] == whole[:4] == b"RIFF" and streamed[4:8] == b"\xff\xff\xff\xff"
        streamed, whole = streamed[44:], whole[44:]
    if fmt == "flac":  # the same frames; only the whole file's STREAMINFO holds the length (and MD5)
        assert np.array_equal(decode(streamed, fmt)[0], decode(whole, fmt)[0])
        import soundfile as sf

        assert sf.info(io.BytesIO(whole)).frames == expected_samples(2)
        return
    assert streamed == whole


@pytest.mark.parametrize("speed", [0.5, 2.0])
def test_speed_changes_the_length_by_its_factor(client, speed):
    samples, rate, _ = decode(speech(client, response_format="wav", seed=4, speed=speed), "wav")
    assert rate == 24_000
    # atempo works in windows of ~40 ms (its default): the end may lose part of one.
    assert abs(len(samples) - expected_samples(2) / speed) <= 0.01 * expected_samples(2) / speed + 0.05 * rate


def test_a_seeded_request_is_what_bark_say_makes(client, bark):
    """`bark say`'s own path (longform.speak, same text, voice, seed, model, device and dtype),
    on one thread as the server runs: PyTorch's CPU sums may round differently on two."""
    import torch

    from bark_cli.audio import pcm
    from bark_cli.config import SamplingOptions
    from bark_cli.longform import speak

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        said = speak(bark, TWO, voice="v2/en_speaker_6", seed=21, gap=0.1, max_segment_chars=30,
                     sampling=SamplingOptions(max_semantic_tokens=8, min_eos_p=0))
    finally:
        torch.set_num_threads(threads)
    assert speech(client, response_format="pcm", seed=21, voice="alloy") == pcm(said.audio, 24_000)


def test_eight_concurrent_seeded_requests_equal_their_solo_runs(client):
    texts = [f"Request {n} speaks." for n in range(8)]
    asks = [dict(text=text, seed=100 + n, voice=("alloy", "echo")[n % 2], response_format="pcm")
            for n, text in enumerate(texts)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda ask: speech(client, **ask), asks))
    alone = [speech(client, **ask) for ask in asks]
    assert [len(a) for a in together] == [len(a) for a in alone]
    assert together == alone
    assert len(set(together)) == 8


def test_sse_events_parse_and_join_to_the_same_audio(client):
    with client.audio.speech.with_streaming_response.create(
            model="tts-1", input=TWO, voice="alloy", response_format="pcm", stream_format="sse",
            instructions="Speak cheerfully.", extra_body={"seed": 5}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[len("data: "):]) for line in response.iter_lines() if line.startswith("data: ")]
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1)
    done = events[-1]
    assert done["type"] == "speech.audio.done"
    assert done["usage"]["output_tokens"] == 2 * 8
    assert done["usage"]["total_tokens"] == done["usage"]["input_tokens"] + 16
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert audio == speech(client, response_format="pcm", seed=5)


def test_the_stream_starts_before_the_last_segment_is_made(client, server, tiny_checkpoint):
    """An ordering the scheduler guarantees, not a timing: request B is sent once A's first
    bytes are in. B's first segment goes ahead of A's segments not yet started, so if A's body
    began before A was all made, A's last segment runs in B's batch or later. A server that made
    all of A before sending it would have run A's every batch before B's."""
    count = segments_of(LONG, tiny_checkpoint)
    assert count == 10  # the first alone, then more than two batches of four
    with client.audio.speech.with_streaming_response.create(
            model="tts-1", input=LONG, voice="alloy", response_format="pcm", stream_format="sse",
            extra_body={"seed": 9}) as response:
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        b = client.audio.speech.with_raw_response.create(model="tts-1", input="Second request.", voice="alloy",
                                                         response_format="pcm", extra_body={"stream": False})
        events = [json.loads(first[6:])] + [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    b_batch = int(b.headers["x-bark-batches"])
    a_batches = events[-1]["bark"]["batches"]
    assert len(a_batches) == count
    assert a_batches[-1] >= b_batch > a_batches[0]
    audio = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
    assert len(audio) == 2 * expected_samples(count)


def test_the_lists_open_webui_and_the_client_read(client, server, tiny_checkpoint):
    ids = [m.id for m in client.models.list().data]
    assert ids[0] == str(tiny_checkpoint) and {"tts-1", "tts-1-hd", "gpt-4o-mini-tts"} <= set(ids)
    headers = {"Authorization": f"Bearer {KEY}"}
    voices = httpx.get(f"{server.url}/v1/audio/voices", headers=headers).json()["voices"]
    names = [v["id"] for v in voices]
    assert names[:11] == ["alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer",
                          "verse"]
    assert "v2/en_speaker_6" in names and all(set(v) == {"id", "name"} for v in voices)
    models = httpx.get(f"{server.url}/v1/audio/models", headers=headers).json()["models"]
    assert [m["id"] for m in models] == ids
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"


def test_metrics_count_requests_batches_and_audio(server):
    text = httpx.get(f"{server.url}/metrics").text
    assert metric(text, 'bark_requests_total{status="200"}') >= 1
    assert metric(text, "bark_segments_total") >= 2
    assert metric(text, "bark_audio_seconds_total") > 0
    assert metric(text, "bark_batch_size_count") >= 1
    assert "bark_queue_depth" in text and "bark_real_time_factor_bucket" in text


def assert_openai_error(response: httpx.Response, status: int, param=None, code=None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"] and "Traceback" not in response.text
    assert body["error"]["param"] == param
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


BAD_BODIES = [
    (b"{not json", 400, None, "invalid_json"),
    (b"[1, 2]", 400, None, "invalid_json"),
    ({"input": "Hi.", "voice": "alloy"}, 400, "model", "missing_required_parameter"),
    ({"model": "tts-1", "input": 5, "voice": "alloy"}, 400, "input", "invalid_type"),
    ({"model": "tts-1", "input": "   ", "voice": "alloy"}, 400, "input", "empty_input"),
    ({"model": "tts-1", "input": "x" * 4097, "voice": "alloy"}, 400, "input", "string_above_max_length"),
    ({"model": "tts-1", "input": "Hi.", "voice": "nobody"}, 400, "voice", "invalid_voice"),
    ({"model": "tts-1", "input": "Hi.", "voice": "../../etc/passwd"}, 400, "voice", "invalid_voice"),
    ({"model": "tts-1", "input": "Hi.", "voice": "/tmp/voice.npz"}, 400, "voice", "invalid_voice"),
    ({"model": "tts-1", "input": "Hi.", "voice": "alloy", "response_format": "ogg"}, 400, "response_format", None),
    ({"model": "tts-1", "input": "Hi.", "voice": "alloy", "stream_format": "chunks"}, 400, "stream_format", None),
    ({"model": "tts-1", "input": "Hi.", "voice": "alloy", "speed": 5}, 400, "speed", None),
    ({"model": "tts-1", "input": "Hi.", "voice": "alloy", "speed": "fast"}, 400, "speed", "invalid_type"),
    ({"model": "tts-1", "input": "Hi.", "voice": "alloy", "seed": -1}, 400, "seed", None),
    ({"model": "tts-1", "input": "Hi.", "voice": "alloy", "top_p": 2}, 400, "top_p", None),
    ({"model": "tts-1", "input": "Hi.", "voice": "alloy", "top_k": 1.5}, 400, "top_k", "invalid_type"),
    ({"model": "whisper-1", "input": "Hi.", "voice": "alloy"}, 404, "model", "model_not_found"),
]


@pytest.mark.parametrize("body, status, param, code", BAD_BODIES, ids=range(len(BAD_BODIES)))
def test_every_refusal_is_openai_error_body(server, body, status, param, code):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.post(f"{server.url}/v1/audio/speech", content=content,
                          headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert_openai_error(response, status, param, code)


def test_other_refusals_are_openai_error_bodies(server):
    headers = {"Authorization": f"Bearer {KEY}"}
    assert_openai_error(httpx.post(f"{server.url}/v1/audio/speech", content=b" " * (2 << 20), headers=headers),
                        413, code="request_too_large")
    assert_openai_error(httpx.get(f"{server.url}/v1/nothing", headers=headers), 404, code="unknown_url")
    assert_openai_error(httpx.get(f"{server.url}/v1/audio/speech", headers=headers), 405)


def test_v1_needs_the_key(server):
    for headers in ({}, {"Authorization": "Bearer wrong-key-0123456789"}, {"Authorization": KEY}):
        error = assert_openai_error(httpx.get(f"{server.url}/v1/models", headers=headers), 401, code="invalid_api_key")
        assert KEY not in error["message"]
    wrong = openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong-key-0123456789", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        speech(wrong)
    assert httpx.get(f"{server.url}/health").status_code == 200  # health and the page need none
    assert httpx.get(f"{server.url}/").status_code == 200


def test_the_access_log_has_one_line_per_request_and_no_text(server, client):
    speech(client, text="A secret sentence.", response_format="pcm", seed=1)
    line = wait_for(lambda: next((l for l in reversed(server.lines) if "POST /v1/audio/speech 200" in l), None))
    assert line and "segments=1" in line and "audio=" in line and "batch=" in line
    assert "secret" not in server.stderr


def test_a_full_queue_answers_429_with_retry_after(narrow):
    plain = openai.OpenAI(base_url=f"{narrow.url}/v1", api_key="none", max_retries=0, timeout=120)
    with httpx.stream("POST", f"{narrow.url}/v1/audio/speech", json={
            "model": "tts-1", "input": LONG, "voice": "alloy", "response_format": "pcm"}, timeout=120) as first:
        body = first.iter_raw()  # kept: an iterator dropped half-read closes the connection
        next(body)  # the first request holds the only slot
        with pytest.raises(openai.RateLimitError) as refused:
            speech(plain, text="Too many.")
    assert refused.value.status_code == 429
    assert int(refused.value.response.headers["retry-after"]) >= 1
    assert refused.value.body["code"] == "rate_limit_exceeded"


def test_a_disconnected_request_frees_its_slot_and_stops(narrow, tiny_checkpoint):
    count = segments_of(LONG, tiny_checkpoint)
    before = httpx.get(f"{narrow.url}/metrics").text
    with httpx.stream("POST", f"{narrow.url}/v1/audio/speech", json={
            "model": "tts-1", "input": LONG, "voice": "alloy", "response_format": "pcm"}, timeout=120) as first:
        next(first.iter_raw())
    # Closed after its first segment: the next request is let in (its slot was the only one) ...
    served = wait_for(lambda: (r := httpx.post(f"{narrow.url}/v1/audio/speech", timeout=120, json={
        "model": "tts-1", "input": "Let in.", "voice": "alloy", "response_format": "pcm"})).status_code == 200 and r)
    assert served and len(served.content) == 2 * expected_samples(1)
    after = httpx.get(f"{narrow.url}/metrics").text
    # ... and the first's remaining segments were dropped, not made. (The counts may also hold
    # the one segment the last test's cancelled request had in progress.)
    made = metric(after, "bark_segments_total") - metric(before, "bark_segments_total") - 1
    dropped = metric(after, "bark_segments_dropped_total") - metric(before, "bark_segments_dropped_total")
    assert 1 <= made <= count - 2 and dropped >= count - made - 1


def test_sigterm_lets_the_request_in_flight_finish_then_exits_143(narrow):
    with httpx.stream("POST", f"{narrow.url}/v1/audio/speech", json={
            "model": "tts-1", "input": TWO, "voice": "alloy", "response_format": "pcm"}, timeout=120) as response:
        body = response.iter_raw()
        chunks = [next(body)]
        code_box = concurrent.futures.ThreadPoolExecutor(1).submit(narrow.stop, 120)
        chunks += list(body)
    assert len(b"".join(chunks)) == 2 * expected_samples(2)
    assert code_box.result() == 143
    assert "Traceback" not in narrow.stderr and narrow.stderr.rstrip().endswith("terminated")


@pytest.mark.parametrize("args, message", [
    (["--port", "70000"], "--port 70000 is out of range"),
    (["--voice-map", "alloy"], "--voice-map 'alloy' is not NAME=VOICE"),
    (["--voice-map", "alloy=nobody-here"], "unknown voice 'nobody-here'"),
    (["--api-key", "short"], "the API key is 5 characters"),
    (["--max-batch", "0"], "--max-batch 0 is out of range"),
], ids=["port", "map-form", "map-voice", "key", "batch"])
def test_bad_options_are_one_line_and_exit_2_before_loading(tiny_checkpoint, args, message):
    from typer.testing import CliRunner

    from bark_cli.cli import app

    result = CliRunner().invoke(app, ["serve", "--model", str(tiny_checkpoint), *args])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: ") and message in result.output
    assert "Traceback" not in result.output


def test_a_taken_port_is_one_line_and_exit_2(tiny_checkpoint):
    import socket

    from typer.testing import CliRunner

    from bark_cli.cli import app

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", "--model", str(tiny_checkpoint), "--port", str(port)])
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.output and "Traceback" not in result.output
