"""Texts of any length (bark-spec §11.1): split at sentence ends into segments of about 13 s,
spoken in one voice, joined with short silences.

    from bark_cli import Bark
    from bark_cli.longform import speak
    speech = speak(Bark.load(), story, voice="v2/en_speaker_6", seed=1)
    speech.audio, speech.segments, speech.parts   # the joined audio, the texts, one Generation each

    for part in stream(bark, story, seed=1):       # each segment as soon as it is made, in order
        play(part.audio)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from .audio import join_segments
from .config import GenerationConfig, Progress, SamplingOptions
from .errors import InputError
from .pipeline import Bark, Generation, VoiceLike, fresh_seed
from .voice import VoicePrompt
from .text import DEFAULT_MAX_CHARS, TextTokenizer, plan_segments

VOICE_MODES = ("fixed", "chain")


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


@dataclass
class Part:
    """One segment of a speech, as `stream` yields it."""

    index: int
    text: str
    generation: Generation
    prompt: VoicePrompt | None  # the voice it was conditioned on (None: the first, without a voice)

    @property
    def audio(self) -> np.ndarray:
        return self.generation.audio


def plan_text(source: Bark | TextTokenizer, text: str, max_chars: int = DEFAULT_MAX_CHARS) -> list[tuple[str, int]]:
    """The segments a long text is spoken in, each with its token count. `source` is a Bark, or
    a bare tokenizer with the default token window (a dry run need not load any weights)."""
    if isinstance(source, Bark):
        return plan_segments(source.tokenizer, text, max_chars, source.config.max_input_semantic_length)
    return plan_segments(source, text, max_chars, GenerationConfig().max_input_semantic_length)


def stream(
    bark: Bark,
    text: str,
    *,
    voice: VoiceLike = None,
    voice_mode: str = "fixed",
    split: bool = True,
    max_segment_chars: int = DEFAULT_MAX_CHARS,
    batch_size: int | None = 1,
    seed: int | None = None,
    sampling: SamplingOptions | None = None,
    progress: Progress | None = None,
) -> Iterator[Part]:
    """Speak a text of any length in one voice, segment by segment: yields each segment's Part in
    order, as soon as it and every segment before it are made. The options are speak's (but `gap`:
    nothing is joined here), checked at the call, before anything is generated.

    The first segment runs alone, so its audio comes after one segment's time whatever the batch
    size; the rest run in batches of `batch_size`, each yielded when its batch is done.
    """
    if voice_mode not in VOICE_MODES:
        raise InputError(f"unknown voice mode {voice_mode!r}", "use fixed or chain")
    if batch_size is not None and batch_size < 1:
        raise InputError(f"batch size {batch_size} is below 1", "use a positive batch size or auto")
    sampling = sampling if sampling is not None else SamplingOptions()
    segments = [s for s, _ in plan_text(bark, text, max_segment_chars)] if split else [text]
    batch_size = batch_size or bark.runtime.auto_batch_size(bark.weights.config)
    seed = fresh_seed() if seed is None else seed
    given = bark.resolve_voice(voice)
    return _parts(bark, segments, given, voice_mode, batch_size, seed, sampling, progress)


def _parts(bark: Bark, segments: list[str], given: VoicePrompt | None, voice_mode: str, batch_size: int, seed: int,
           sampling: SamplingOptions, progress: Progress | None) -> Iterator[Part]:
    done = 0
    bark.reserve_graphs(min(batch_size, max(1, len(segments) - 1)))  # batches of 1, then up to batch_size

    def run(first: int, count: int, voice_prompt: VoicePrompt | None) -> list[Part]:
        # Segment j has the seed `seed + j` and its own noise, so it is what `generate(segment,
        # seed=seed + j)` makes alone in the same voice, whatever batch it runs in.
        nonlocal done
        texts = segments[first:first + count]
        made = bark.generate_batch(texts, voice=voice_prompt, seeds=[seed + first + i for i in range(len(texts))],
                                   sampling=sampling, truncate=True, progress=progress)
        done += len(made)
        if progress:
            progress("segments", done, len(segments))
        return [Part(first + i, texts[i], g, voice_prompt) for i, g in enumerate(made)]

    if voice_mode == "chain":
        current = given
        for index in range(len(segments)):
            part = run(index, 1, current)[0]
            current = part.generation.voice
            yield part
        return
    first = run(0, 1, given)[0]
    yield first
    used = given if given is not None else first.generation.voice
    for start in range(1, len(segments), batch_size):
        yield from run(start, batch_size, used)


def speak(
    bark: Bark,
    text: str,
    *,
    voice: VoiceLike = None,
    voice_mode: str = "fixed",
    split: bool = True,
    max_segment_chars: int = DEFAULT_MAX_CHARS,
    gap: float = 0.25,
    batch_size: int | None = 1,
    seed: int | None = None,
    sampling: SamplingOptions | None = None,
    progress: Progress | None = None,
) -> Speech:
    """Speak a text of any length in one voice.

    `voice_mode="fixed"` conditions every segment on `voice` (Suno's recipe) or, without one, on
    the first segment's own generation; `"chain"` conditions each segment on the one before.
    Segments that share a voice run in batches of `batch_size` (None: chosen from free memory).
    Segment j gets the seed `seed + j` (`Speech.parts[j].seed`) and noise of its own, so the batch
    size never changes the audio.
    `split=False` speaks one segment and cuts it at the token window, with a warning. `sampling`
    (SamplingOptions) is Bark.generate_batch's. `stream` gives the same segments one by one.
    """
    check_gap(gap)
    parts = list(stream(bark, text, voice=voice, voice_mode=voice_mode, split=split,
                        max_segment_chars=max_segment_chars, batch_size=batch_size, seed=seed, sampling=sampling,
                        progress=progress))
    return gather(parts, bark.sample_rate, gap)


def check_gap(gap: float) -> None:
    if gap < 0:
        raise InputError(f"gap {gap} is negative", "use a silence of 0 seconds or more")


def gather(parts: list[Part], sample_rate: int, gap: float = 0.25) -> Speech:
    """The Speech that a whole stream's parts make, joined with `gap` seconds of silence."""
    generations = [p.generation for p in parts]
    audio = join_segments([g.audio for g in generations], sample_rate, gap)
    first = parts[0]
    # Fixed mode conditions every segment after the first on this voice; chain mode starts from it.
    used = first.prompt if first.prompt is not None else first.generation.voice
    warnings = [w for g in generations for w in g.warnings]
    return Speech(audio, sample_rate, [p.text for p in parts], generations, used, first.generation.seed, warnings)
