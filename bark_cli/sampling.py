"""How a stage turns logits into tokens: temperature, top-k, top-p, the draw, and `Pick`, all
that a decode step does after its LM head, so that a captured step holds it too.

A draw needs U[0, 1) noise; `Noise` draws it ahead, a block of steps at a time, from one
generator for the batch or one per row (each row then draws what it would draw alone). On the
CPU a block holds exactly what the same generators give step by step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from .config import Sampling

Generators = torch.Generator | Sequence[torch.Generator] | None
"""Where a stage's noise comes from: one generator for the whole batch, or one per row (each
row then draws exactly what it would draw alone, so a batch repeats each item's solo run)."""


def _filter(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Mask all but the top-k logits, then all outside the top-p nucleus (the top one always stays)."""
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        remove = cumulative > top_p
        remove[..., 1:] = remove[..., :-1].clone()  # keep the entry that crosses top_p
        remove[..., 0] = False
        logits = logits.masked_fill(remove.scatter(-1, order, remove), -math.inf)
    return logits


def distribution(logits: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    """The probabilities a stage draws from. Under greedy decoding: the softmax of the raw logits
    (transformers computes Bark's EOS probability that way)."""
    logits = logits.float()
    if sampling.greedy:
        return logits.softmax(-1)
    return _filter(logits / sampling.temperature, sampling.top_k, sampling.top_p).softmax(-1)


def uniform(shape: torch.Size, generator: Generators, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """U[0, 1) noise of `shape`; with one generator per row, row r comes from generator[r]."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.rand(shape, generator=generator, device=device, dtype=dtype)
    if len(generator) != shape[0]:
        raise ValueError(f"{len(generator)} generators for {shape[0]} rows")
    out = torch.empty(shape, device=device, dtype=dtype)
    for row, row_generator in zip(out, generator):
        row.uniform_(generator=row_generator)  # what torch.rand(row.shape, generator=...) draws
    return out


def draw_with(probs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """One draw per row from U[0, 1) `noise` of probs' shape: argmax of probs / Exp(1) noise
    picks index i with probability probs[i], without the host sync of torch.multinomial."""
    # Exp(1) as -log(U): several times faster on a CPU than exponential_. U = 0 (one value in
    # 2**24) is clamped, which gives that entry a large noise instead of an infinite one.
    exponential = noise.clamp(min=torch.finfo(noise.dtype).tiny).log().neg()
    return (probs / exponential).argmax(-1)


def draw(probs: torch.Tensor, generator: Generators) -> torch.Tensor:
    """One draw per row (draw_with), its noise drawn now from `generator`."""
    return draw_with(probs, uniform(probs.shape, generator, probs.device, probs.dtype))


def sample(logits: torch.Tensor, sampling: Sampling, generator: Generators) -> torch.Tensor:
    if sampling.greedy:
        return logits.argmax(-1)
    return draw(distribution(logits, sampling), generator)


class Noise:
    """The U[0, 1) noise of a stage's draws, `ahead` steps at a time: (batch, width) per step.

    Drawing a block at once spares a step the per-row loop of launches (one per generator) and
    leaves a captured step a plain copy. Row r's block is torch.rand((ahead, width)) from its
    generator: on the CPU, where a generator hands out values in order, that is exactly the
    values of `ahead` draws of `width` in turn; on a GPU a block's values differ from step-by-step
    draws, but still come from the row's generator alone, so a batch repeats each item's run.
    """

    def __init__(self, generator: Generators, batch: int, width: int, device: torch.device, ahead: int = 16,
                 needed: bool = True):
        if not (generator is None or isinstance(generator, torch.Generator)) and len(generator) != batch:
            raise ValueError(f"{len(generator)} generators for {batch} rows")
        self.generator, self.batch, self.width, self.device, self.ahead = generator, batch, width, device, ahead
        self.needed = needed
        self.block: torch.Tensor | None = None
        self.used = ahead

    def next(self) -> torch.Tensor | None:
        """The next step's noise, (batch, width) float32; None where no draw needs it (greedy)."""
        if not self.needed:
            return None
        if self.used == self.ahead:
            shape = (self.ahead, self.batch, self.width)
            if self.generator is None or isinstance(self.generator, torch.Generator):
                self.block = torch.rand(shape, generator=self.generator, device=self.device)
            else:
                block = torch.empty((self.batch, self.ahead, self.width), device=self.device)
                for row, row_generator in zip(block, self.generator):
                    row.uniform_(generator=row_generator)
                self.block = block.transpose(0, 1)
            self.used = 0
        self.used += 1
        return self.block[self.used - 1]


@dataclass(frozen=True)
class Pick:
    """What a decode step does after its LM head: a stage's sampling, and the semantic stage's
    allowed ids and end of speech. Frozen and hashable: a captured step is keyed by it.

    `vocab` (semantic): only ids below it, plus EOS at index `vocab` of the allowed view, whose
    logit is the model's `eos`; `eos` None leaves EOS out (no early stop). `min_eos_p`: stop too
    where EOS's probability exceeds it. Coarse picks leave all three None.
    """

    sampling: Sampling
    vocab: int | None = None
    eos: int | None = None
    min_eos_p: float | None = None

    @property
    def needs_noise(self) -> bool:
        return not self.sampling.greedy

    def __call__(self, logits: torch.Tensor, noise: torch.Tensor | None = None,
                 offset: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(token, fed, stop) for logits (B, V): the token in the allowed view plus `offset`,
        the id a next step feeds (EOS's own id for the semantic end), and whether a row stops
        (None for a coarse pick). `noise`: (B, width of the allowed view), needed unless greedy."""
        allowed = logits
        if self.vocab is not None:
            allowed = logits[:, : self.vocab]
            if self.eos is not None:
                allowed = torch.cat([allowed, logits[:, self.eos : self.eos + 1]], dim=-1)
        check_eos_p = bool(self.min_eos_p) and self.eos is not None
        probs = distribution(allowed, self.sampling) if check_eos_p or self.needs_noise else None
        token = allowed.argmax(-1) if self.sampling.greedy else draw_with(probs, noise)
        if self.vocab is None:
            token = token + offset if offset else token
            return token, token, None
        stop = token == self.vocab
        if check_eos_p:
            stop = stop | (probs[:, self.vocab] > self.min_eos_p)
        fed = torch.where(token == self.vocab, self.eos, token) if self.eos is not None else token
        return token, fed, stop

    def width(self, rows: slice | None, vocab_size: int) -> int:
        """Columns of the allowed view: the noise a step draws."""
        if self.vocab is not None:
            return self.vocab + (self.eos is not None)
        return rows.stop - rows.start if rows is not None else vocab_size
