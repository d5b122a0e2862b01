"""OpenAI's speech API as bark serve reads it: the request, the voice names, the error body.

Everything a request may say is checked here, before it queues, and every failure is an ApiError
that app.py turns into OpenAI's body, `{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import dataclasses

import json
import math
from dataclasses import dataclass
from typing import Any

from ..config import SamplingOptions
from ..errors import InputError
from .encoders import FORMATS, MAX_SPEED, MIN_SPEED

# OpenAI's voices, each mapped to a Suno preset by default; `bark serve --voice-map` changes any.
# Suno's English v2 speakers are all male but 9: OpenAI's female voices share it.
VOICE_MAP = {
    "alloy": "v2/en_speaker_6", "ash": "v2/en_speaker_1", "ballad": "v2/en_speaker_2",
    "coral": "v2/en_speaker_9", "echo": "v2/en_speaker_3", "fable": "v2/en_speaker_5",
    "nova": "v2/en_speaker_9", "onyx": "v2/en_speaker_8", "sage": "v2/en_speaker_9",
    "shimmer": "v2/en_speaker_9", "verse": "v2/en_speaker_7",
}
# OpenAI's model names, all answered by the loaded model.
MODEL_ALIASES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
STREAM_FORMATS = ("audio", "sse")
# As `bark say` bounds --seed and --max-semantic-tokens.
MAX_SEED = 2**63 - 1
MAX_SEMANTIC_TOKENS = 4096
SAMPLING_FIELDS = ("temperature", "semantic_temperature", "coarse_temperature", "fine_temperature", "top_k",
                   "top_p", "min_eos_p", "max_semantic_tokens")
_INTEGERS = {"top_k", "max_semantic_tokens", "seed"}
_STRINGS = ("model", "input", "voice", "response_format", "stream_format", "instructions")


class ApiError(Exception):
    """A request answered with OpenAI's error body."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error", headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def bad(param: str | None, message: str, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, param, code)


@dataclass(frozen=True)
class SpeechRequest:
    model: str
    input: str
    voice: str
    response_format: str = "mp3"
    speed: float = 1.0
    stream_format: str = "audio"
    instructions: str | None = None  # accepted, not used: Bark takes no style prompt
    seed: int | None = None
    stream: bool = True  # extension: false sends the body whole, with its length
    sampling: SamplingOptions = SamplingOptions()


def parse_speech(body: bytes, max_input: int, defaults: SamplingOptions) -> SpeechRequest:
    """A SpeechRequest from a JSON body, or the ApiError naming the field at fault. Fields it does
    not know are ignored, as front ends send extras of their own."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad(None, f"the body is not valid JSON: {exc}", "invalid_json") from None
    if not isinstance(data, dict):
        raise bad(None, "the body must be a JSON object", "invalid_json")
    for name in ("model", "input", "voice"):
        if data.get(name) is None:
            raise bad(name, f"missing required field {name!r}", "missing_required_parameter")
    for name in _STRINGS:
        if data.get(name) is not None and not isinstance(data[name], str):
            raise bad(name, f"{name} must be a string", "invalid_type")
    text = data["input"]
    if not text.strip():
        raise bad("input", "input is empty: give some text to speak", "empty_input")
    if len(text) > max_input:
        raise bad("input", f"input is {len(text)} characters, over this server's limit of {max_input}",
                  "string_above_max_length")
    fmt = data.get("response_format") or "mp3"
    if fmt not in FORMATS:
        raise bad("response_format", f"response_format {fmt!r} is not one of {', '.join(FORMATS)}")
    stream_format = data.get("stream_format") or "audio"
    if stream_format not in STREAM_FORMATS:
        raise bad("stream_format", f"stream_format {stream_format!r} is not one of {', '.join(STREAM_FORMATS)}")
    speed = _number(data, "speed", 1.0)
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise bad("speed", f"speed {speed:g} is out of range: it must be within {MIN_SPEED:g}..{MAX_SPEED:g}")
    seed = _number(data, "seed", None)
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise bad("seed", f"seed {seed} is out of range: it must be within 0..2^63-1")
    fields = {name: _number(data, name, None) for name in SAMPLING_FIELDS}
    if fields["max_semantic_tokens"] is not None and fields["max_semantic_tokens"] > MAX_SEMANTIC_TOKENS:
        raise bad("max_semantic_tokens", f"max_semantic_tokens is at most {MAX_SEMANTIC_TOKENS}")
    try:
        # replace() builds a new value, so SamplingOptions checks it as it is made.
        sampling = dataclasses.replace(defaults or SamplingOptions(),
                                       **{name: value for name, value in fields.items() if value is not None})
    except InputError as exc:
        param = next((name for name in SAMPLING_FIELDS if name.replace("_", "-") in exc.message
                      or name.replace("_", " ") in exc.message), None)
        raise bad(param, f"{exc.message} ({exc.hint})" if exc.hint else exc.message) from None
    stream = data.get("stream", True)
    if not isinstance(stream, bool):
        raise bad("stream", "stream must be true or false", "invalid_type")
    return SpeechRequest(data["model"], text, data["voice"], fmt, speed, stream_format, data.get("instructions"),
                         seed, stream, sampling)


def _number(data: dict, name: str, default):
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad(name, f"{name} must be a number", "invalid_type")
    if name in _INTEGERS:
        if value != int(value):
            raise bad(name, f"{name} must be a whole number", "invalid_type")
        return int(value)
    return float(value)


def parse_voice_map(pairs: list[str]) -> dict[str, str]:
    """The default VOICE_MAP with `NAME=VOICE` pairs set over it (InputError for a malformed pair)."""
    voices = dict(VOICE_MAP)
    for pair in pairs:
        name, sep, voice = pair.partition("=")
        if not sep or not name.strip() or not voice.strip():
            raise InputError(f"--voice-map {pair!r} is not NAME=VOICE", "e.g. --voice-map alloy=v2/en_speaker_6")
        voices[name.strip()] = voice.strip()
    return voices
