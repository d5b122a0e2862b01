"""Suno's voice library (bark-spec §10.2): the 261 preset names and their languages.

`announcer`, and ten speakers per language in two generations, `{lang}_speaker_{n}` (v1) and
`v2/{lang}_speaker_{n}`. presets/suno.json holds the same list as a file (`catalog_json`); a test
keeps the two equal. Data only: nothing here reads a file or imports another module of ours.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

SUNO_LANGUAGES = {
    "en": "English", "de": "German", "es": "Spanish", "fr": "French", "hi": "Hindi",
    "it": "Italian", "ja": "Japanese", "ko": "Korean", "pl": "Polish", "pt": "Portuguese",
    "ru": "Russian", "tr": "Turkish", "zh": "Chinese",
}
SPEAKERS_PER_LANGUAGE = 10


@dataclass(frozen=True)
class CatalogEntry:
    """A Suno preset: its name (as speaker_embeddings_path.json keys it) and language code."""

    name: str
    language: str


def suno_catalog() -> list[CatalogEntry]:
    """The 261 Suno presets: announcer (English), then v2 and v1 speakers per language."""
    entries = [CatalogEntry("announcer", "en")]
    for prefix in ("v2/", ""):
        for lang in SUNO_LANGUAGES:
            entries += [CatalogEntry(f"{prefix}{lang}_speaker_{n}", lang) for n in range(SPEAKERS_PER_LANGUAGE)]
    return entries


def catalog_json() -> str:
    """The catalog as presets/suno.json stores it."""
    rows = ",\n".join(f'    {{"name": "{e.name}", "language": "{e.language}"}}' for e in suno_catalog())
    return (
        "{\n"
        '  "source": "https://github.com/suno-ai/bark/tree/main/bark/assets/prompts (MIT, Suno, Inc)",\n'
        f'  "languages": {json.dumps(SUNO_LANGUAGES)},\n'
        f'  "presets": [\n{rows}\n  ]\n'
        "}\n"
    )


def is_suno_name(name: str) -> bool:
    return name in {e.name for e in suno_catalog()}
