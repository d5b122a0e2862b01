"""The model `bark bench` times: random weights at a published size (or a real model), placed
as the options ask, and what the report says about it and the machine."""

from __future__ import annotations

import os
import platform
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..config import BarkConfig, CodecConfig, GenerationConfig
from ..errors import InputError
from ..models import kernels as cpu_kernels
from ..models.kernels import cpu_name
from ..pipeline import Bark
from ..runtime import Runtime
from ..weights import BarkWeights, random_weights
from .results import BenchOptions, Status

# Widths of the published checkpoints (config.json of suno/bark-small and suno/bark; the three
# GPT stages share them). Everything else is bark_cli.config's defaults. `tiny` is for tests.
SIZES: dict[str, dict[str, int]] = {
    "bark-small": dict(num_layers=12, num_heads=12, hidden_size=768),
    "bark": dict(num_layers=24, num_heads=16, hidden_size=1024),
    "tiny": dict(num_layers=2, num_heads=2, hidden_size=32),
}
TINY_CODEC = dict(hidden_size=32, num_filters=8, codebook_dim=32)
# Random weights need no tokenizer: the text only fills the 256-slot context, whose length is fixed.
FIXED_TEXT_IDS = list(range(2000, 2024))


class FixedTokenizer:
    """Stands in for the BERT tokenizer with random weights: every text is the same ids
    (timing does not depend on the text: the semantic context is always 256 slots)."""

    def __init__(self, ids: Sequence[int] = FIXED_TEXT_IDS):
        self.ids = list(ids)

    def encode(self, text: str) -> list[int]:
        return list(self.ids)

def bark_config(size: str) -> BarkConfig:
    """The shapes of a named size, at the real vocabulary sizes."""
    if size not in SIZES:
        raise InputError(f"unknown size {size!r}", f"use one of {', '.join(SIZES)}, a model folder or a Hub id")
    base, width = BarkConfig(), SIZES[size]
    return BarkConfig(
        semantic=replace(base.semantic, **width),
        coarse=replace(base.coarse, **width),
        fine=replace(base.fine, **width),
        codec=CodecConfig(**TINY_CODEC) if size == "tiny" else base.codec,
    )


def is_random(options: BenchOptions) -> bool:
    return options.config in SIZES


def load_model(options: BenchOptions, say: Status,
               model_folder: Callable[[Runtime], Path] | None = None) -> Bark:
    """Random weights at a size, or a real model, placed as `options.hardware` asks: the one
    place the benchmark hands its device options to the library. `model_folder` (for random
    weights) writes other weights as a model folder to load instead (bench/compare.py:
    transformers' own init, so both run the very same weights)."""
    hardware = options.hardware
    if not is_random(options):
        return Bark.load(options.config, hardware, progress=say)
    # Check the device options before building weights (seconds for `bark`).
    runtime = Runtime.choose(hardware)
    if model_folder is not None:
        return Bark.load(str(model_folder(runtime)), hardware, progress=say)
    say(f"building random weights ({options.config})")
    weights = random_weights(bark_config(options.config), GenerationConfig(), seed=options.seed, dtype=runtime.dtype)
    return Bark.from_weights(weights, FixedTokenizer(), hardware, model_id=f"random {options.config}")


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())  # tied parameters are yielded once


def weights_bytes(weights: BarkWeights) -> int:
    seen, total = set(), 0
    for module in (weights.semantic, weights.coarse, weights.fine, weights.codec):
        for t in (*module.parameters(), *module.buffers()):
            if id(t) not in seen:
                seen.add(id(t))
                total += t.numel() * t.element_size()
    return total


def dtype_label(bark: Bark) -> str:
    """The dtype with what changes a step's kernels, e.g. `bfloat16+int8+graphs`."""
    runtime = bark.runtime
    return (runtime.dtype_name + (f"+{runtime.quantize}" if runtime.quantize else "")
            + ("+graphs" if runtime.cuda_graphs else ""))


def model_info(bark: Bark, options: BenchOptions) -> dict[str, Any]:
    w, c = bark.weights, bark.weights.config
    stages = {
        name: {"num_layers": sub.num_layers, "num_heads": sub.num_heads, "hidden_size": sub.hidden_size,
               "parameters": count_parameters(module)}
        for name, sub, module in (("semantic", c.semantic, w.semantic), ("coarse", c.coarse, w.coarse),
                                  ("fine", c.fine, w.fine))
    }
    return {
        "config": options.config,
        "weights": "random" if is_random(options) else "checkpoint",
        "stages": stages | {"codec": {"parameters": count_parameters(w.codec)}},
        "weights_bytes": weights_bytes(w),
        "dtype": bark.runtime.dtype_name,
        "quantize": bark.runtime.quantize,
        "cuda_graphs": bark.runtime.cuda_graphs,
        "offload": bark.runtime.offload,  # off on the CPU, where there is nothing to offload to
        "attention": bark.runtime.attention,
        # The SDPA kernel PyTorch picks for the GPT stages' shapes (theirs are the same).
        "sdpa_backends": bark.runtime.sdpa_backends(c.semantic, options.batch_size),
        # Which CPU kernel runs each product here (models.kernels.calibrate).
        "cpu_kernels": cpu_kernels.chosen.describe() if bark.device.type == "cpu" else None,
    }


def environment(device: torch.device) -> dict[str, Any]:
    cpu = cpu_name()
    env = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        # Other processes on the machine skew every figure: worth a look when numbers surprise.
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
    return env


# --- memory --------------------------------------------------------------------------------
