from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Tests never touch the network: huggingface_hub answers from its cache or fails fast.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# Nor the user's caches (the CPU kernel choices, Suno's folder): one folder for the session,
# shared with the `bark` processes the tests start, so the CPU kernels are measured once.
_CACHE = tempfile.mkdtemp(prefix="bark-tests-cache-")
os.environ["XDG_CACHE_HOME"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)

from tiny_bark import write_tiny_checkpoint  # noqa: E402


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny random suno/bark-style model folder (safetensors, Hub layout, a generated vocabulary
    of the real size and generated voice prompts as speaker_embeddings/)."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-bark"), seed=0)


@pytest.fixture(scope="session")
def hf_tiny(tiny_checkpoint):
    """transformers' own BarkModel on the very same files: the reference oracle."""
    from transformers import BarkModel

    return BarkModel.from_pretrained(tiny_checkpoint).eval()


@pytest.fixture(scope="session")
def bark(tiny_checkpoint):
    """Our pipeline on the tiny checkpoint, float32 on the CPU, loaded once."""
    from bark_cli import Bark
    from bark_cli.config import DeviceOptions

    return Bark.load(tiny_checkpoint, DeviceOptions("cpu", "float32"))
