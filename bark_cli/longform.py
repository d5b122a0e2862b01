"""Texts of any length (bark-spec §11.1): split at sentence ends into segments of about 13 s,
spoken in one voice, joined with short silences.

    from bark_cli import Bark
    from bark_cli.longform import speak
    speech = speak(Bark.load(), story, voice="v2/en_speaker_6", seed=1)
    speech.audio, speech.segments, speech.parts   # the joined audio, the texts, one Generation each
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .audio import join_segments
from .config import GenerationConfig, Progress, SamplingOptions
from .errors import InputError
from .pipeline import Bark, Generation, VoiceLike, fresh_seed
from .presets import VoicePrompt
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


def plan_text(source: Bark | TextTokenizer, text: str, max_chars: int = DEFAULT_MAX_CHARS) -> list[tuple[str, int]]:
    """The segments a long text is spoken in, each with its token count. `source` is a Bark, or
    a bare tokenizer with the default token window (a dry run need not load any weights)."""
    if isinstance(source, Bark):
        return plan_segments(source.tokenizer, text, max_chars, source.config.max_input_semantic_length)
    return plan_segments(source, text, max_chars, GenerationConfig().max_input_semantic_length)


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
    **sampling_fields,
) -> Speech:
    """Speak a text of any length in one voice.

    `voice_mode="fixed"` conditions every segment on `voice` (Suno's recipe) or, without one, on
    the first segment's own generation; `"chain"` conditions each segment on the one before.
    Segments that share a voice run in batches of `batch_size` (None: chosen from free memory).
    Segment j gets the seed `seed + j` (`Speech.parts[j].seed`) and noise of its own, so the batch
    size never changes the audio.
    `split=False` speaks one segment and cuts it at the token window, with a warning. `sampling`
    and its fields as keywords are Bark.generate_batch's.
    """
    if voice_mode not in VOICE_MODES:
        raise InputError(f"unknown voice mode {voice_mode!r}", "use fixed or chain")
    if gap < 0:
        raise InputError(f"gap {gap} is negative", "use a silence of 0 seconds or more")
    if batch_size is not None and batch_size < 1:
        raise InputError(f"batch size {batch_size} is below 1", "use a positive batch size or auto")
    sampling = SamplingOptions.build(sampling, **sampling_fields)
    segments = [s for s, _ in plan_text(bark, text, max_segment_chars)] if split else [text]
    batch_size = batch_size or bark.runtime.auto_batch_size(bark.weights.config)
    seed = fresh_seed() if seed is None else seed
    given = bark.resolve_voice(voice)
    parts: list[Generation] = []

    def run(texts: list[str], voice_prompt: VoicePrompt | None) -> list[Generation]:
        # Segment j has the seed `seed + j` and its own noise, so it is what `generate(segment,
        # seed=seed + j)` makes alone in the same voice, whatever batch it runs in.
        made = bark.generate_batch(texts, voice=voice_prompt, seeds=[seed + len(parts) + i for i in range(len(texts))],
                                   sampling=sampling, truncate=True, progress=progress)
        parts.extend(made)
        if progress:
            progress("segments", len(parts), len(segments))
        return made

    if voice_mode == "chain":
        current = given
        for segment in segments:
            current = run([segment], current)[0].voice
        used = given if given is not None else parts[0].voice
    else:
        queue = list(segments)
        used = given if given is not None else run([queue.pop(0)], None)[0].voice
        while queue:
            run(queue[:batch_size], used)
            del queue[:batch_size]
    audio = join_segments([p.audio for p in parts], bark.sample_rate, gap)
    warnings = [w for p in parts for w in p.warnings]
    return Speech(audio, bark.sample_rate, segments, parts, used, seed, warnings)
