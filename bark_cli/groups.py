"""How a batch's items are grouped and spoken with one loaded model: the local `bark batch` and
each Ray actor run the very same code, so their files are byte-equal."""

from __future__ import annotations

from . import batch as runner
from .config import SamplingOptions


class Speaker:
    """Speaks a group of items with `bark`: one voice per group, each voice resolved once."""

    def __init__(self, bark, voice: str | None, gap: float, batch_size: int | None, sampling: SamplingOptions):
        self.bark, self.voice, self.gap, self.batch_size, self.sampling = bark, voice, gap, batch_size, sampling
        self.voices: dict[str | None, object] = {}
        self.progress = None  # a Progress callback (the CLI's stage bars), once there is one

    def voice_of(self, item: runner.Item):
        name = item.voice or self.voice
        if name not in self.voices:
            self.voices[name] = self.bark.resolve_voice(name)
        return self.voices[name]

    def group_key(self, item: runner.Item):
        """Every item draws from its own seeded generators, so items of one voice batch together
        and each still sounds as it would alone; long items run alone (their segments batch)."""
        from . import longform

        if len(longform.plan_text(self.bark, item.text)) != 1:
            return None
        return ("voice", item.voice or self.voice)

    def speak_group(self, group: list[runner.Item]):
        from . import longform

        prompt = self.voice_of(group[0])
        if len(group) == 1:
            speech = longform.speak(self.bark, group[0].text, voice=prompt, gap=self.gap, batch_size=self.batch_size,
                                    seed=group[0].seed, sampling=self.sampling, progress=self.progress)
            return [(speech, speech.seed)]
        made = self.bark.generate_batch([item.text for item in group], voice=prompt,
                                        seeds=[item.seed for item in group], sampling=self.sampling,
                                        progress=self.progress)
        return [(generation, generation.seed) for generation in made]
