"""Voices a request may name: OpenAI's names (mapped to Bark voices by the server's owner), the
model's presets and the user's saved voices. Never a path: a name from the network that is not
one of these is refused before any file is opened."""

from __future__ import annotations

from .. import catalog, presets, voice
from ..errors import BarkError
from .schema import ApiError


def model_presets(bark) -> list[str]:
    """The presets the loaded model has files for (its speaker_embeddings_path.json)."""
    return sorted(presets.read_voice_map(bark.folder))


def listing(bark, voice_map: dict[str, str]) -> list[dict[str, str]]:
    """/v1/audio/voices: OpenAI's names first (named after what they map to), then presets, then user voices."""
    rows = [{"id": name, "name": f"{name} ({target})"} for name, target in voice_map.items()]
    rows += [{"id": name, "name": name} for name in model_presets(bark) if name not in voice_map]
    rows += [{"id": name, "name": f"{name} (yours)"} for name, _ in presets.list_user_voices() if name not in voice_map]
    return rows


def resolve(bark, name: str, voice_map: dict[str, str]):
    """The VoicePrompt a request's `voice` names, or a 400 naming the field."""
    if name in voice_map:
        return _load(bark, voice_map[name], name)  # the owner's choice: any voice `bark say` takes
    user = presets.user_voice_path(name)
    if user is not None:
        try:
            return voice.load_voice_file(user)
        except BarkError as exc:
            raise ApiError(400, f"voice {name!r} cannot be used: {exc.message}", "voice", "invalid_voice") from None
    if catalog.is_suno_name(name) or name in presets.read_voice_map(bark.folder):
        return _load(bark, name, name)
    raise ApiError(400, f"unknown voice {name!r}: see GET /v1/audio/voices", "voice", "invalid_voice")


def _load(bark, spec: str, name: str):
    try:
        return bark.resolve_voice(spec)
    except BarkError as exc:
        raise ApiError(400, f"voice {name!r} cannot be used: {exc.message}", "voice", "invalid_voice") from None
