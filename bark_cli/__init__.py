"""bark-cli: Suno's Bark text-to-speech in plain PyTorch.

    from bark_cli import Bark
    bark = Bark.load("suno/bark-small")
    result = bark.generate("Hello [laughter]", voice="v2/en_speaker_6", seed=1)
"""

__version__ = "0.1.0"

from .errors import BarkError, CheckpointError, DeviceError, GenerationError, InputError, OutputError, PresetError
from .pipeline import Bark, Generation
from .presets import VoicePrompt

__all__ = [
    "Bark", "Generation", "VoicePrompt", "BarkError", "CheckpointError", "DeviceError",
    "GenerationError", "InputError", "OutputError", "PresetError", "__version__",
]
