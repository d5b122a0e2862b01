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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from . import checkpoint, generation, presets
from .audio import join_segments
from .text import DEFAULT_MAX_CHARS, load_tokenizer, plan_segments
from .config import GenerationConfig
from .errors import DeviceError, InputError
from .generation import Sampling
from .models.gpt import SDPA_BACKENDS
from .models.quantize import quantize_int8
from .presets import VoicePrompt

Progress = Callable[[str, int, int], None]
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
VoiceLike = VoicePrompt | Mapping[str, Any] | str | os.PathLike | None
QUANTIZATIONS = (None, "int8")


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


@dataclass
class Speech:
    """A text of any length, spoken segment by segment and joined with short silences."""

    audio: np.ndarray  # float32 (N,)
    sample_rate: int
    segments: list[str]
    parts: list[Generation]
    voice: VoicePrompt | None  # the voice every segment was conditioned on (fixed mode)
    seed: int
    warnings: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate

    @property
    def seconds(self) -> dict[str, float]:
        """Wall time per stage, summed over batches (items of one batch share their time)."""
        total: dict[str, float] = {}
        seen = set()
        for part in self.parts:
            if id(part.seconds) in seen:
                continue
            seen.add(id(part.seconds))
            for stage, value in part.seconds.items():
                total[stage] = total.get(stage, 0.0) + value
        return total


VOICE_MODES = ("fixed", "chain")


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


def check_cuda_graphs(cuda_graphs: bool, device: torch.device) -> None:
    if cuda_graphs and device.type != "cuda":
        raise DeviceError("CUDA graphs need a CUDA device", "leave out --cuda-graphs, or use --device cuda")


class Bark:
    """A loaded Bark model. Sub-models wait on the CPU when offloaded and move to the device
    only while their stage runs."""

    def __init__(self, weights: checkpoint.BarkWeights, tokenizer, folder: Path, device: torch.device,
                 dtype: torch.dtype, offload: bool = False, attention: str = "auto", model_id: str | None = None,
                 revision: str | None = None, cuda_graphs: bool = False):
        check_cuda_graphs(cuda_graphs, device)
        self.weights = weights
        self.tokenizer = tokenizer
        self.folder = folder
        self.device = device
        self.dtype = dtype
        self.offload = offload and device.type != "cpu"
        self.attention = attention
        self.cuda_graphs = cuda_graphs
        self.model_id = model_id or str(folder)
        self.revision = revision
        self.config: GenerationConfig = weights.generation
        if not self.offload:
            for module in self._modules():
                module.to(device)

    @classmethod
    def load(cls, model: str | os.PathLike = checkpoint.DEFAULT_MODEL, *, device: str = "auto",
             dtype: str = "auto", offload: bool = False, attention: str = "auto", quantize: str | None = None,
             cuda_graphs: bool = False, revision: str | None = None,
             progress: Callable[[str], None] | None = None) -> "Bark":
        """Find (or download) and load a model. Raises CheckpointError / DeviceError.

        `cuda_graphs` replays each semantic and coarse decode step as a captured CUDA graph
        (generation.GraphStep): far fewer kernel launches per token on a GPU.

        `quantize="int8"` stores the semantic and coarse weights as int8 (per-channel scales):
        their decode steps read a quarter of the bytes. It needs bfloat16 or float16
        activations; with dtype "auto" on the CPU it picks bfloat16.
        """
        chosen = pick_device(device)
        if quantize not in QUANTIZATIONS:
            raise DeviceError(f"unknown quantization {quantize!r}", "use int8, or leave it out")
        if quantize and dtype == "auto" and chosen.type == "cpu":
            dtype = "bfloat16"
        torch_dtype = pick_dtype(dtype, chosen)
        if quantize and torch_dtype == torch.float32:
            raise DeviceError("int8 weights need bfloat16 or float16 activations", "add --dtype bfloat16")
        check_attention(attention, chosen, torch_dtype)
        check_cuda_graphs(cuda_graphs, chosen)
        folder = checkpoint.resolve_model(model, revision=revision, progress=progress)
        if progress:
            progress(f"loading {model}")
        weights = checkpoint.load_weights(folder, torch_dtype)
        if quantize == "int8":
            quantize_int8(weights.semantic, torch_dtype)
            quantize_int8(weights.coarse, torch_dtype)
        tokenizer = load_tokenizer(folder)
        return cls(weights, tokenizer, folder, chosen, torch_dtype, offload, attention,
                   model_id=str(model), revision=revision, cuda_graphs=cuda_graphs)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    def _modules(self):
        w = self.weights
        return (w.semantic, w.coarse, w.fine, w.codec)

    @contextlib.contextmanager
    def _on_device(self, module: torch.nn.Module):
        """Run a stage with its sub-model on the device; with offload, send it back afterwards.

        Under offload the semantic token table (130k rows, 30% of suno/bark's semantic model)
        stays on the CPU: a step reads one row of it, and the stage's peak GPU memory drops by
        its size. Not with CUDA graphs, which cannot capture the copy to the CPU.
        """
        if self.offload and module is self.weights.semantic and not self.cuda_graphs:
            for name, child in module.named_children():  # a GPT's tensors all sit in children
                if name != "input_embeds_layer":
                    child.to(self.device)
        elif self.offload:
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
                "use Bark.speak for long texts, or truncate=True to keep the first tokens",
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
                    min_eos_p, max_tokens, generator, progress, allow_early_stop, self.cuda_graphs)
            self._sync()
            seconds["semantic"] = time.perf_counter() - start

            start = time.perf_counter()
            with self._on_device(w.coarse):
                coarse = generation.generate_coarse(w.coarse, semantic, voice_prompt, cfg, stages["coarse"],
                                                    generator, progress, self.cuda_graphs)
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
            # Items of one batch share one timing dict: the batch's time, not each item's.
            Generation(audio=audio[i], sample_rate=self.sample_rate, semantic_tokens=semantic[i].astype(np.int64),
                       coarse_tokens=coarse[i].astype(np.int64), fine_tokens=fine[i].astype(np.int64), seed=seed,
                       seconds=seconds, warnings=list(tokenized[i][1]))
            for i in range(len(texts))
        ]

    # --- long form -------------------------------------------------------------------------

    def split(self, text: str, max_segment_chars: int = DEFAULT_MAX_CHARS) -> list[tuple[str, int]]:
        """The segments a long text is spoken in, each with its token count."""
        return plan_segments(self.tokenizer, text, max_segment_chars, self.config.max_input_semantic_length)

    def auto_batch_size(self, limit: int = 16) -> int:
        """How many segments fit in one batch: each item holds a KV cache of block_size positions
        and a fine window's activations; use at most half of the free memory."""
        config = self.weights.config
        width = max(config.semantic.hidden_size, config.coarse.hidden_size, config.fine.hidden_size)
        layers = max(config.semantic.num_layers, config.coarse.num_layers)
        positions = config.semantic.block_size
        element = torch.finfo(self.dtype).bits // 8
        per_item = 2 * layers * positions * width * element  # keys and values
        per_item += positions * (16 * width + 2 * config.fine.num_heads * positions) * 4  # fine activations
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
        else:
            free = _available_memory()
        return max(1, min(limit, int(free * 0.5 // per_item)))

    def speak(
        self,
        text: str,
        *,
        voice: VoiceLike = None,
        voice_mode: str = "fixed",
        split: bool = True,
        max_segment_chars: int = DEFAULT_MAX_CHARS,
        gap: float = 0.25,
        batch_size: int | None = 1,
        seed: int | None = None,
        progress: Progress | None = None,
        **options,
    ) -> Speech:
        """Speak a text of any length in one voice (bark-spec §11.1).

        The text is split at sentence ends into segments of about 13 s. `voice_mode="fixed"`
        conditions every segment on `voice` (Suno's recipe) or, without one, on the first
        segment's own generation; `"chain"` conditions each segment on the one before. Segments
        that share a voice run in batches of `batch_size` (None: chosen from free memory).
        `split=False` speaks one segment and cuts it at the token window, with a warning.
        Other options are `generate_batch`'s.
        """
        if voice_mode not in VOICE_MODES:
            raise InputError(f"unknown voice mode {voice_mode!r}", "use fixed or chain")
        if gap < 0:
            raise InputError(f"gap {gap} is negative", "use a silence of 0 seconds or more")
        if batch_size is not None and batch_size < 1:
            raise InputError(f"batch size {batch_size} is below 1", "use a positive batch size or auto")
        segments = [s for s, _ in self.split(text, max_segment_chars)] if split else [text]
        batch_size = batch_size or self.auto_batch_size()
        seed = random.SystemRandom().randrange(2**31) if seed is None else seed
        given = self.resolve_voice(voice)
        current = given
        parts: list[Generation] = []

        def run(texts: list[str], voice_prompt: VoicePrompt | None) -> list[Generation]:
            # One seed per call, derived from the run's seed, so a run repeats exactly.
            made = self.generate_batch(texts, voice=voice_prompt, seed=seed + len(parts), truncate=True,
                                       progress=progress, **options)
            parts.extend(made)
            if progress:
                progress("segments", len(parts), len(segments))
            return made

        if voice_mode == "chain":
            for segment in segments:
                current = run([segment], current)[0].voice
            used = given if given is not None else parts[0].voice
        else:
            queue = list(segments)
            if current is None:
                current = run([queue.pop(0)], None)[0].voice
            used = current
            while queue:
                run(queue[:batch_size], current)
                del queue[:batch_size]
        audio = join_segments([p.audio for p in parts], self.sample_rate, gap)
        warnings = [w for p in parts for w in p.warnings]
        return Speech(audio, self.sample_rate, segments, parts, used, seed, warnings)

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
        if self.cuda_graphs and self.attention == "flash":
            # A graphed decode step attends under a mask, which the flash kernel cannot take;
            # prefills keep flash (SDPA tries the kernels in its own order, flash first).
            backends = [*backends, torch.nn.attention.SDPBackend.EFFICIENT_ATTENTION]
        return torch.nn.attention.sdpa_kernel(backends)


def _available_memory() -> int:
    """Bytes of memory the OS can give without swapping (Linux), else a cautious 4 GiB."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 2**30
