"""The library API: load a Bark model once, generate many times.

    from bark_cli import Bark
    bark = Bark.load("suno/bark-small")           # or a local folder; device/dtype "auto"
    result = bark.generate("Hello [laughter]", voice="v2/en_speaker_6", seed=1)
    result.audio, result.sample_rate              # float32 (N,), 24000

Bark runs the stages in order, each on the device and timed, from one seed. Where and how they
run is runtime.py's choice, the token loops are generation.py's, long texts longform.py's.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from . import decoding, generation, hub, presets
from .config import DeviceOptions, GenerationConfig, Progress, SamplingOptions
from .errors import InputError
from .models import kernels
from .models.codec import codec_dtype
from .models.quantize import quantize_int8
from .runtime import Runtime
from .text import load_tokenizer
from .voice import VoicePrompt, validate_voice
from .weights import BarkWeights

VoiceLike = VoicePrompt | Mapping[str, Any] | str | os.PathLike | None
# The sub-model each timed stage runs, in order.
STAGE_MODELS = {"semantic": "semantic", "coarse": "coarse", "fine": "fine", "decode": "codec"}
# Children that stay on the CPU under offload (Runtime.on_device): the semantic token table.
CPU_CHILDREN = {"semantic": ("input_embeds_layer",)}


def fresh_seed() -> int:
    """A seed for a run the caller left unseeded; it is reported back, so the run can be repeated."""
    return random.SystemRandom().randrange(2**31)


def stage_seed(seed: int, stage: str) -> int:
    """The seed of one item's generator for one stage: the first 8 bytes of BLAKE2b over
    "SEED/STAGE", as an unsigned integer. Each stage has its own stream, so how many draws an
    earlier stage made (a batch keeps stepping items that are done) cannot shift a later one."""
    digest = hashlib.blake2b(f"{int(seed)}/{stage}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def item_generators(seeds: Sequence[int], stage: str, device: torch.device) -> list[torch.Generator]:
    """One generator per item for `stage`, each seeded with `stage_seed(item's seed, stage)`."""
    return [torch.Generator(device).manual_seed(stage_seed(seed, stage)) for seed in seeds]


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


class Bark:
    """A loaded Bark model. Build it with `load` (a Hub id or a folder) or `from_weights`.

    Construction fits the weights to the runtime: the GPT stages take its dtype, int8 swaps the
    semantic and coarse linears in place, and without offload everything moves to the device.
    """

    def __init__(self, weights: BarkWeights, tokenizer, runtime: Runtime, *,
                 folder: str | os.PathLike | None = None, model_id: str | None = None, revision: str | None = None):
        self.weights = weights
        self.tokenizer = tokenizer
        self.runtime = runtime
        self.folder = Path(folder) if folder is not None else None
        self.model_id = model_id or (str(folder) if folder is not None else None)
        self.revision = revision
        self.config: GenerationConfig = weights.generation
        for module in (weights.semantic, weights.coarse, weights.fine):
            module.to(runtime.dtype)  # a no-op for weights loaded in it
        if runtime.quantize == "int8":
            # Only the decode-bound GPT stages: their steps read every weight per token.
            quantize_int8(weights.semantic, runtime.dtype)
            quantize_int8(weights.coarse, runtime.dtype)
        if not runtime.offload:
            for name in STAGE_MODELS.values():
                getattr(weights, name).to(runtime.device)
        if runtime.device.type == "cuda" and not runtime.offload:
            # The codec in the models' 16-bit dtype where it stays within 1e-3 of float32
            # (offload keeps its float32 home copies, so it stays float32 there).
            weights.codec.to(codec_dtype(weights.codec, runtime.dtype, runtime.device))
        if runtime.device.type == "cpu":
            kernels.calibrated()  # which CPU kernel runs each product: measured once per CPU kind
        # Under offload each sub-model's CPU copies are made (and pinned, on CUDA) once, here.
        self.homes = {name: runtime.host_home(getattr(weights, name)) for name in STAGE_MODELS.values()
                      if runtime.offload}
        # The decode-step graphs (and the KV caches they point at) live as long as the model.
        # Not under offload: each stage's upload puts the weights at new addresses, which a
        # graph cannot follow, and a cache kept on the device would undo offload's saving.
        self.graphs = decoding.GraphCache() if runtime.cuda_graphs and not runtime.offload else None

    @classmethod
    def load(cls, model: str | os.PathLike = hub.DEFAULT_MODEL, options: DeviceOptions | None = None, *,
             revision: str | None = None, progress: Callable[[str], None] | None = None) -> "Bark":
        """Find (or download) and load a model, to run where `options` say (DeviceOptions;
        None: its defaults, "auto" throughout). Raises CheckpointError / DeviceError.

        `options.cuda_graphs` replays each semantic and coarse decode step as a captured CUDA
        graph (decoding.GraphStep): far fewer kernel launches per token on a GPU. The graphs are
        captured once per stage, batch size and 128-position bucket and kept with the model.
        None (the default) turns them on where the device is CUDA; False keeps eager steps.

        `options.quantize="int8"` stores the semantic and coarse weights as int8 (per-channel
        scales): their decode steps read a quarter of the bytes. It needs bfloat16 or float16
        activations; with dtype "auto" on the CPU it picks bfloat16.
        """
        # Every choice is checked before anything downloads.
        runtime = Runtime.choose(options)
        folder = hub.resolve_model(model, revision=revision, progress=progress)
        from . import suno  # Suno's original files carry no tokenizer: it finds one, before the weights load

        tokenizer = load_tokenizer(suno.tokenizer_folder(folder))
        if progress:
            progress(f"loading {model}")
        weights = suno.load_folder(folder, runtime.dtype)
        return cls(weights, tokenizer, runtime, folder=folder, model_id=str(model), revision=revision)

    @classmethod
    def from_weights(cls, weights: BarkWeights, tokenizer, options: DeviceOptions | None = None, *,
                     folder: str | os.PathLike | None = None, model_id: str | None = None,
                     revision: str | None = None) -> "Bark":
        """A model from weights already in memory (weights.random_weights, a converted state
        dict), checked as `load` checks. Without `folder`, voices are files or user voices only."""
        return cls(weights, tokenizer, Runtime.choose(options), folder=folder, model_id=model_id, revision=revision)

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def dtype(self) -> torch.dtype:
        return self.runtime.dtype

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    # --- inputs ------------------------------------------------------------------------------

    def resolve_voice(self, voice: VoiceLike) -> VoicePrompt | None:
        """A voice from a VoicePrompt, a dict of arrays, a preset name or an .npz path."""
        if voice is None or isinstance(voice, VoicePrompt):
            return voice
        if isinstance(voice, Mapping):
            return validate_voice(voice, config=self.config)
        return presets.find_voice(str(voice), self.model_id, self.revision, folder=self.folder).prompt

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
                "use bark_cli.longform.speak for long texts, or truncate=True to keep the first tokens",
            )
        return ids[:limit], [f"text cut from {len(ids)} to {limit} tokens; the rest is not spoken"]

    # --- generation --------------------------------------------------------------------------

    @contextlib.contextmanager
    def stage(self, name: str, seconds: dict[str, float] | None = None) -> Iterator[torch.nn.Module]:
        """Run one stage ("semantic", "coarse", "fine" or "decode"): its sub-model on the device,
        under the chosen attention kernels. With `seconds`, its wall time lands in seconds[name]."""
        module = getattr(self.weights, STAGE_MODELS[name])
        start = time.perf_counter()
        with self.runtime.attention_kernels(), self.runtime.on_device(module, CPU_CHILDREN.get(name, ()),
                                                                        self.homes.get(STAGE_MODELS[name])):
            yield module
        if seconds is not None:
            self.runtime.sync()
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start  # a stage may run in pieces

    def generate(self, text: str, *, voice: VoiceLike = None, seed: int | None = None,
                 sampling: SamplingOptions | None = None, truncate: bool = False, allow_early_stop: bool = True,
                 progress: Progress | None = None) -> Generation:
        """Speak one text (at most 256 tokens). The options are `generate_batch`'s."""
        return self.generate_batch([text], voice=voice, seed=seed, sampling=sampling, truncate=truncate,
                                   allow_early_stop=allow_early_stop, progress=progress)[0]

    def generate_batch(self, texts: Sequence[str], *, voice: VoiceLike = None, seed: int | None = None,
                       seeds: Sequence[int] | None = None, sampling: SamplingOptions | None = None,
                       truncate: bool = False, allow_early_stop: bool = True,
                       progress: Progress | None = None) -> list[Generation]:
        """Speak several texts with one voice, as one batch through every stage.

        `sampling`: config.SamplingOptions (None: the model's defaults; `temperature=0` is
        greedy), checked when it was built. Every item has a seed of its own: `seeds`, one per text, or else
        `seed + i` for item i (`seed` drawn at random when neither is given). An item's noise
        comes from its own generators (`stage_seed`), so on the same device and dtype it is the
        item `generate(text, seed=its seed)` makes alone, whatever else is in the batch.
        `allow_early_stop=False` holds EOS off, so exactly `max_semantic_tokens` are made.
        """
        run = self.start_batch(texts, voice=voice, seed=seed, seeds=seeds, sampling=sampling, truncate=truncate,
                               allow_early_stop=allow_early_stop, progress=progress)
        while not run.done:
            run.step(whole_stage=True)
        return run.results()

    def start_batch(self, texts: Sequence[str], *, voice: VoiceLike = None, seed: int | None = None,
                    seeds: Sequence[int] | None = None, sampling: SamplingOptions | None = None,
                    truncate: bool = False, allow_early_stop: bool = True,
                    progress: Progress | None = None) -> "BatchRun":
        """`generate_batch` one stage a call (BatchRun.step), for a caller that runs other work
        between stages or drops items no longer wanted. The texts and voice are checked here."""
        if seeds is not None and len(seeds) != len(texts):
            raise InputError(f"{len(seeds)} seeds for {len(texts)} texts", "give one seed per text")
        voice_prompt = self.resolve_voice(voice)
        tokenized = [self.tokenize(text, truncate) for text in texts]
        if seeds is None:
            seed = fresh_seed() if seed is None else seed
            seeds = [seed + i for i in range(len(texts))]
        return BatchRun(self, tokenized, voice_prompt, [int(s) for s in seeds],
                        sampling if sampling is not None else SamplingOptions(), allow_early_stop, progress)

    def reserve_graphs(self, batch_size: int) -> None:
        """Size the graphed steps' KV caches for batches of up to `batch_size` items at once, so
        that the batch sizes of a run of batches (longform's 1, then B, then the rest) keep their
        graphs side by side instead of a larger batch replacing them. Nothing without graphs."""
        if self.graphs is not None:
            for name in ("semantic", "coarse"):
                self.graphs.reserve(getattr(self.weights, name), batch_size)

    @torch.inference_mode()
    def prepare_graphs(self, batch_sizes: Sequence[int] = (1,), sampling: SamplingOptions | None = None,
                       allow_early_stop: bool = True) -> int:
        """Capture now every decode step graph that runs of these batch sizes and sampling options
        can reach (every bucket and codebook), so that no run waits for a capture: for a
        long-lived process, such as a server, after load. Returns how many steps are ready; 0
        without CUDA graphs (or under offload, where graphs are not kept)."""
        if self.graphs is None or not batch_sizes:
            return 0
        options = sampling or SamplingOptions()
        cfg, stages = self.config, options.stages(self.config)
        semantic = self.weights.semantic
        prefix = cfg.max_input_semantic_length + 1
        max_new = min(options.max_tokens_for(cfg), semantic.config.block_size - prefix + 1)
        pick = generation.semantic_pick(cfg, stages["semantic"], options.min_eos_p_for(cfg), allow_early_stop)
        plans = {"semantic": generation.semantic_plan(prefix, max_new, semantic.config.block_size, pick),
                 "coarse": generation.coarse_plan_all(cfg, self.weights.coarse.config.block_size,
                                                      generation.Pick(stages["coarse"]))}
        self.reserve_graphs(max(batch_sizes))
        for name, plan in plans.items():
            with self.stage(name) as model:
                for batch_size in sorted(set(batch_sizes)):
                    with decoding.kv_cache(model, batch_size, self.graphs, plan):
                        pass
        return sum(len(plan) for plan in plans.values()) * len(set(batch_sizes))

    @torch.inference_mode()
    def decode(self, fine_tokens: np.ndarray) -> np.ndarray:
        """Audio (float32, 24 kHz) for (8, T) EnCodec codes."""
        return self.decode_batch([fine_tokens])[0]

    @torch.inference_mode()
    def decode_batch(self, fine_tokens: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Audio (float32, 24 kHz) for several (8, T) code arrays (EncodecDecoder.decode_items),
        brought to the host in one copy."""
        codec = self.weights.codec
        device = next(codec.parameters()).device
        items = [torch.from_numpy(np.asarray(codes, dtype=np.int64)) for codes in fine_tokens]
        present = [i for i, codes in enumerate(items) if codes.shape[-1] > 0]
        audio = [np.zeros(0, dtype=np.float32) for _ in items]
        if present:
            # One padded batch on a GPU (launches, not bytes, set its pace); item by item on the
            # CPU, where the padded batch measured slower (bench/codec.py).
            waves = codec.decode_items([items[i].to(device) for i in present], padded=device.type != "cpu")
            lengths = [w.shape[-1] for w in waves]
            joined = torch.cat([w.float() for w in waves], dim=-1).cpu().numpy()  # the one wait
            for i, piece in zip(present, np.split(joined, np.cumsum(lengths)[:-1], axis=-1)):
                audio[i] = piece
        return audio


class BatchRun:
    """One batch on its way through the stages: `step()` runs the next piece of work and returns
    its stage's name ("semantic", "coarse", "fine", "decode"), `drop(items)` takes items out
    (what is left is the batch those items would make without them: each item's noise is its
    own), and `results()` gives one Generation per item, None for a dropped one.

    A step is a whole stage, except the fine stage, which steps one forward pass at a time where
    its model stays on the device (not under offload): it keeps nothing in the model between
    passes, so another run's stages may come between them. The KV-cached stages always run
    whole, so their caches and CUDA graphs never mix. Items dropped during the fine stage leave
    at its end."""

    STAGES = ("semantic", "coarse", "fine", "decode")

    def __init__(self, bark: Bark, tokenized: list[tuple[list[int], list[str]]], voice: VoicePrompt | None,
                 seeds: list[int], options: SamplingOptions, allow_early_stop: bool, progress: Progress | None):
        self.bark, self.voice, self.seeds, self.options = bark, voice, seeds, options
        self.allow_early_stop, self.progress = allow_early_stop, progress
        self.warnings = [list(w) for _, w in tokenized]
        self.items = list(range(len(seeds)))  # the items still wanted, in batch order
        self.tokens: dict[str, list] = {"text": [ids for ids, _ in tokenized]}  # each stage's output, by item
        self.generators = {stage: item_generators(seeds, stage, bark.device) for stage in ("semantic", "coarse", "fine")}
        self.seconds: dict[str, float] = {}
        self.stage = 0
        self._passes = None  # the fine stage under way: generation.fine_passes
        self._leaving: set[int] = set()  # items dropped while it is under way

    @property
    def done(self) -> bool:
        return self.stage == len(self.STAGES) or not self.items

    @property
    def next_stage(self) -> str | None:
        return None if self.done else self.STAGES[self.stage]

    def drop(self, items) -> None:
        """Take these items (indices of the texts given) out of the work still to run."""
        gone = (set(items) | self._leaving) & set(self.items)
        if self._passes is not None and gone != set(self.items):
            self._leaving = gone
            return
        if self._passes is not None:  # nobody is left to finish the fine stage for
            self._passes.close()
            self._passes, self._leaving = None, set()
        keep = [k for k, item in enumerate(self.items) if item not in gone]
        self.items = [self.items[k] for k in keep]
        for name, values in self.tokens.items():
            self.tokens[name] = [values[k] for k in keep]
        for name, values in self.generators.items():
            self.generators[name] = [values[k] for k in keep]

    @torch.inference_mode()
    def step(self, whole_stage: bool = False) -> str:
        """Run the next stage (or fine pass) for the items still wanted; returns its stage's name.
        `whole_stage` runs the fine stage at once, as a caller with nothing to put between its
        passes wants (no stage context and, on CUDA, no wait for the device per pass)."""
        name = self.STAGES[self.stage]
        bark, cfg, options = self.bark, self.bark.config, self.options
        stages = options.stages(cfg)
        graphed = bark.graphs if bark.graphs is not None else bark.runtime.cuda_graphs
        with bark.stage(name, self.seconds) as model:
            if name == "semantic":
                made = generation.generate_semantic(
                    model, self.tokens["text"], self.voice, cfg, stages["semantic"],
                    min_eos_p=options.min_eos_p_for(cfg), max_new_tokens=options.max_tokens_for(cfg),
                    generator=self.generators["semantic"], progress=self.progress,
                    allow_early_stop=self.allow_early_stop, graphed=graphed)
            elif name == "coarse":
                made = generation.generate_coarse(model, self.tokens["semantic"], self.voice, cfg, stages["coarse"],
                                                  generator=self.generators["coarse"], progress=self.progress,
                                                  graphed=graphed)
            elif name == "fine":
                if self._passes is None:
                    self._passes = generation.fine_passes(model, self.tokens["coarse"], self.voice, cfg,
                                                          stages["fine"], self.generators["fine"], self.progress)
                try:
                    # Under offload the stage runs whole: the model leaves the device after it.
                    while True:
                        next(self._passes)
                        if not (whole_stage or bark.runtime.offload):
                            return name
                except StopIteration as end:
                    made = end.value
                self._passes = None
            else:
                made = bark.decode_batch(self.tokens["fine"])
                if self.progress:
                    self.progress("decode", len(made), len(made))
        self.tokens[name] = list(made)
        self.stage += 1
        if self._leaving:
            leaving, self._leaving = self._leaving, set()
            self.drop(leaving)
        return name

    def results(self) -> list[Generation | None]:
        """One Generation per text given (None where dropped); after the last step."""
        if not self.done:
            raise RuntimeError("the batch has stages still to run")
        made: list[Generation | None] = [None] * len(self.seeds)
        for k, i in enumerate(self.items):
            # Items of one batch share one timing dict: the batch's time, not each item's.
            made[i] = Generation(audio=self.tokens["decode"][k], sample_rate=self.bark.sample_rate,
                                 semantic_tokens=self.tokens["semantic"][k].astype(np.int64),
                                 coarse_tokens=self.tokens["coarse"][k].astype(np.int64),
                                 fine_tokens=self.tokens["fine"][k].astype(np.int64), seed=self.seeds[i],
                                 seconds=self.seconds, warnings=self.warnings[i])
        return made
