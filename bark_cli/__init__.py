"""bark-cli: Suno's Bark text-to-speech in plain PyTorch.

    from bark_cli import Bark, speak
    bark = Bark.load("suno/bark-small")
    result = bark.generate("Hello [laughter]", voice="v2/en_speaker_6", seed=1)
    story = speak(bark, open("story.txt").read(), voice="v2/en_speaker_6")

The names that need PyTorch load on first use, so that `import bark_cli` (and the `bark` command's
help, version and listings) stay fast and work without touching it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it, imported on first access. Even the light ones wait:
# the `bark` script imports this package before it can catch Ctrl-C, so it must load nothing.
_LAZY = {
    "Bark": "pipeline",
    "Generation": "pipeline",
    "Speech": "longform",
    "speak": "longform",
    "VoicePrompt": "voice",
    "SamplingOptions": "config",
    "DeviceOptions": "config",
    **{name: "errors" for name in ("BarkError", "CheckpointError", "DeviceError", "GenerationError", "InputError",
                                   "OutputError", "PresetError")},
}

if TYPE_CHECKING:
    from .config import DeviceOptions, SamplingOptions
    from .errors import BarkError, CheckpointError, DeviceError, GenerationError, InputError, OutputError, PresetError
    from .longform import Speech, speak
    from .pipeline import Bark, Generation
    from .voice import VoicePrompt


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "Bark", "Generation", "Speech", "speak", "SamplingOptions", "DeviceOptions", "VoicePrompt", "BarkError",
    "CheckpointError", "DeviceError",
    "GenerationError", "InputError", "OutputError", "PresetError", "__version__",
]
