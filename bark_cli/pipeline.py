"""The library API: load a Bark model once, generate many times.

    from bark_cli import Bark
    bark = Bark.load("suno/bark-small")           # or a local folder; device/dtype "auto"
    result = bark.generate("Hello [laughter]", voice="v2/en_speaker_6", seed=1)
    result.audio, result.sample_rate              # float32 (N,), 24000

The pipeline owns orchestration: device and precision, offload of idle sub-models, the attention
backend, seeds, timing. The token loops live in generation.py.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from . import checkpoint, generation, presets
from .text import load_tokenizer
from .config import GenerationConfig
from .errors import DeviceError, InputError
from .generation import Sampling
from .models.gpt import SDPA_BACKENDS
from .presets import VoicePrompt

Progress = Callable[[str, int, int], None]
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
VoiceLike = VoicePrompt | Mapping[str, Any] | str | os.PathLike | None


@dataclass
class Generation:
    """One generated utterance: audio, and each stage's tokens in the voice-prompt layout."""

    audio: np.ndarray  # float32 (N,)
    sample_rate: int
    semantic_tokens: np.ndarray  # (S,) int64 semantic ids, EOS excluded
    coarse_tokens: np.ndarray  # (2, T) int64 codes 0..1023
    fine_tokens: np.ndarray  # (8, T) int64 codes 0..1023
    seed: int
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage
    warnings: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate

    @property
    def voice(self) -> VoicePrompt:
        """This generation as a voice prompt that conditions later ones."""
        return VoicePrompt(
            semantic_prompt=self.semantic_tokens.astype(np.int64),
            coarse_prompt=self.coarse_tokens.astype(np.int64),
            fine_prompt=self.fine_tokens.astype(np.int64),
        )


def pick_device(device: str = "auto") -> torch.device:
    """`auto`: CUDA where there is a GPU, else the CPU. Anything named must exist here."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise DeviceError(f"unknown device {device!r}", "use auto, cpu, cuda, cuda:N or mps") from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("CUDA is not available on this machine", "use --device cpu")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise DeviceError(f"there is no {device}", f"this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif chosen.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("MPS is not available on this machine", "use --device cpu")
    elif chosen.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"unsupported device {device!r}", "use auto, cpu, cuda, cuda:N or mps")
    return chosen


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto`: float16 on a GPU, float32 on the CPU."""
    if dtype == "auto":
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    if dtype not in DTYPES:
        raise DeviceError(f"unknown dtype {dtype!r}", "use auto, float32, float16 or bfloat16")
    if dtype == "bfloat16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError("this GPU cannot run bfloat16", "use --dtype float16")
    return DTYPES[dtype]


def check_attention(attention: str, device: torch.device, dtype: torch.dtype) -> str:
    if attention not in SDPA_BACKENDS:
        raise DeviceError(f"unknown attention backend {attention!r}", "use auto, sdpa, flash or math")
    if attention == "flash" and (device.type != "cuda" or dtype not in (torch.float16, torch.bfloat16)):
        raise DeviceError(
            "flash attention needs a CUDA device with float16 or bfloat16",
            "use --attention sdpa, or --device cuda with --dtype float16",
        )
    return attention


class Bark:
    """A loaded Bark model. Sub-models wait on the CPU when offloaded and move to the device
    only while their stage runs."""

    def __init__(self, weights: checkpoint.BarkWeights, tokenizer, folder: Path, device: torch.device,
                 dtype: torch.dtype, offload: bool = False, attention: str = "auto", model_id: str | None = None,
                 revision: str | None = None):
        self.weights = weights
        self.tokenizer = tokenizer
        self.folder = folder
        self.device = device
        self.dtype = dtype
        self.offload = offload and device.type != "cpu"
        self.attention = attention
        self.model_id = model_id or str(folder)
        self.revision = revision
        self.config: GenerationConfig = weights.generation
        if not self.offload:
            for module in self._modules():
                module.to(device)

    @classmethod
    def load(cls, model: str | os.PathLike = checkpoint.DEFAULT_MODEL, *, device: str = "auto",
             dtype: str = "auto", offload: bool = False, attention: str = "auto", revision: str | None = None,
             progress: Callable[[str], None] | None = None) -> "Bark":
        """Find (or download) and load a model. Raises CheckpointError / DeviceError."""
        chosen = pick_device(device)
        torch_dtype = pick_dtype(dtype, chosen)
        check_attention(attention, chosen, torch_dtype)
        folder = checkpoint.resolve_model(model, revision=revision, progress=progress)
        if progress:
            progress(f"loading {model}")
        weights = checkpoint.load_weights(folder, torch_dtype)
        tokenizer = load_tokenizer(folder)
        return cls(weights, tokenizer, folder, chosen, torch_dtype, offload, attention,
                   model_id=str(model), revision=revision)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    def _modules(self):
        w = self.weights
        return (w.semantic, w.coarse, w.fine, w.codec)

    @contextlib.contextmanager
    def _on_device(self, module: torch.nn.Module):
        """Run a stage with its sub-model on the device; with offload, send it back afterwards."""
        if self.offload:
            module.to(self.device)
        try:
            yield module
        finally:
            if self.offload:
                module.to("cpu")
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # --- inputs ------------------------------------------------------------------------------

    def resolve_voice(self, voice: VoiceLike) -> VoicePrompt | None:
        """A voice from a VoicePrompt, a dict of arrays, a preset name or an .npz path."""
        if voice is None or isinstance(voice, VoicePrompt):
            return voice
        if isinstance(voice, Mapping):
            return presets.validate_voice(voice, config=self.config)
        return presets.resolve_voice(str(voice), model_folder=self.folder, model_id=self.model_id,
                                     revision=self.revision)

    def tokenize(self, text: str, truncate: bool = False) -> tuple[list[int], list[str]]:
        """BERT ids of one text, and warnings. Longer than the 256-token window is an error
        unless `truncate`, which keeps the head as Suno does."""
        ids = self.tokenizer.encode(text)
        if not ids:
            raise InputError("the text is empty", "give some text to speak")
        limit = self.config.max_input_semantic_length
        if len(ids) <= limit:
            return ids, []
        if not truncate:
            raise InputError(
                f"the text is {len(ids)} tokens, more than the model's {limit}-token window",
                "shorten it or split it into several texts",
            )
        return ids[:limit], [f"text cut from {len(ids)} to {limit} tokens; the rest is not spoken"]

    def sampling(self, temperature: float | None = None, semantic_temperature: float | None = None,
                 coarse_temperature: float | None = None, fine_temperature: float | None = None,
                 top_k: int | None = None, top_p: float | None = None) -> dict[str, Sampling]:
        """Per-stage sampling: a stage's own temperature, else `temperature`, else the default."""
        c = self.config

        def pick(own, default):
            value = own if own is not None else (temperature if temperature is not None else default)
            if value < 0:
                raise InputError(f"temperature {value} is negative", "use 0 for greedy or a positive value")
            return value

        if top_k is not None and top_k < 1:
            raise InputError(f"top-k {top_k} is below 1", "use a positive top-k")
        if top_p is not None and not 0 < top_p <= 1:
            raise InputError(f"top-p {top_p} is outside (0, 1]", "use a top-p in (0, 1]")
        return {
            "semantic": Sampling(pick(semantic_temperature, c.semantic_temperature),
                                 top_k if top_k is not None else c.semantic_top_k,
                                 top_p if top_p is not None else c.semantic_top_p),
            "coarse": Sampling(pick(coarse_temperature, c.coarse_temperature),
                               top_k if top_k is not None else c.coarse_top_k,
                               top_p if top_p is not None else c.coarse_top_p),
            "fine": Sampling(pick(fine_temperature, c.fine_temperature),
                             top_k if top_k is not None else c.fine_top_k,
                             top_p if top_p is not None else c.fine_top_p),
        }

    # --- generation --------------------------------------------------------------------------

    def generate(self, text: str, **options) -> Generation:
        """Speak one text (at most 256 tokens). See `generate_batch` for the options."""
        return self.generate_batch([text], **options)[0]

    @torch.inference_mode()
    def generate_batch(
        self,
        texts: Sequence[str],
        *,
        voice: VoiceLike = None,
        seed: int | None = None,
        temperature: float | None = None,
        semantic_temperature: float | None = None,
        coarse_temperature: float | None = None,
        fine_temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        min_eos_p: float | None = None,
        max_semantic_tokens: int | None = None,
        truncate: bool = False,
        allow_early_stop: bool = True,
        progress: Progress | None = None,
    ) -> list[Generation]:
        """Speak several texts with one voice, as one batch through every stage.

        Temperatures of 0 mean greedy decoding; `min_eos_p` 0 turns off the early stop on
        EOS probability; `seed` makes sampling repeatable on the same device and dtype.
        `allow_early_stop=False` holds EOS off, so exactly `max_semantic_tokens` are made.
        """
        if not texts:
            return []
        voice_prompt = self.resolve_voice(voice)
        tokenized = [self.tokenize(t, truncate) for t in texts]
        stages = self.sampling(temperature, semantic_temperature, coarse_temperature, fine_temperature, top_k, top_p)
        min_eos_p = self.config.min_eos_p if min_eos_p is None else min_eos_p
        if not 0 <= min_eos_p <= 1:
            raise InputError(f"min-eos-p {min_eos_p} is outside [0, 1]", "use a probability, 0 to turn it off")
        max_tokens = self.config.max_new_tokens if max_semantic_tokens is None else max_semantic_tokens
        if max_tokens < 1:
            raise InputError(f"max semantic tokens {max_tokens} is below 1", "use a positive count")
        if seed is None:
            seed = random.SystemRandom().randrange(2**31)
        generator = torch.Generator(self.device).manual_seed(seed)
        seconds: dict[str, float] = {}
        w, cfg = self.weights, self.config

        with self._attention():
            start = time.perf_counter()
            with self._on_device(w.semantic):
                semantic = generation.generate_semantic(
                    w.semantic, [ids for ids, _ in tokenized], voice_prompt, cfg, stages["semantic"],
                    min_eos_p, max_tokens, generator, progress, allow_early_stop)
            self._sync()
            seconds["semantic"] = time.perf_counter() - start

            start = time.perf_counter()
            with self._on_device(w.coarse):
                coarse = generation.generate_coarse(w.coarse, semantic, voice_prompt, cfg, stages["coarse"],
                                                    generator, progress)
            self._sync()
            seconds["coarse"] = time.perf_counter() - start

            start = time.perf_counter()
            with self._on_device(w.fine):
                fine = generation.generate_fine(w.fine, coarse, voice_prompt, cfg, stages["fine"], generator, progress)
            self._sync()
            seconds["fine"] = time.perf_counter() - start

        start = time.perf_counter()
        audio = []
        with self._on_device(w.codec):
            for i, codes in enumerate(fine):
                audio.append(self.decode(codes))
                if progress:
                    progress("decode", i + 1, len(fine))
        seconds["decode"] = time.perf_counter() - start

        return [
            Generation(audio=audio[i], sample_rate=self.sample_rate, semantic_tokens=semantic[i].astype(np.int64),
                       coarse_tokens=coarse[i].astype(np.int64), fine_tokens=fine[i].astype(np.int64), seed=seed,
                       seconds=dict(seconds), warnings=list(tokenized[i][1]))
            for i in range(len(texts))
        ]

    @torch.inference_mode()
    def decode(self, fine_tokens: np.ndarray) -> np.ndarray:
        """Audio (float32, 24 kHz) for (8, T) EnCodec codes."""
        codec = self.weights.codec
        device = next(codec.parameters()).device
        if fine_tokens.shape[-1] == 0:
            return np.zeros(0, dtype=np.float32)
        codes = torch.from_numpy(np.asarray(fine_tokens, dtype=np.int64))[None].to(device)
        return codec.decode(codes)[0].float().cpu().numpy()

    def _attention(self):
        backends = SDPA_BACKENDS[self.attention]
        if backends is None:
            return contextlib.nullcontext()
        return torch.nn.attention.sdpa_kernel(backends)
