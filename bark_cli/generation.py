"""Sampling and Bark's three token stages (bark-spec §3, §4, §5).

Every stage takes a batch of items that share one voice. The semantic and coarse loops run the
items in lockstep (an item that is done keeps stepping and its extra tokens are dropped, which
cannot change its earlier tokens: attention is causal). The fine stage runs each item's own
windows, so a short item never sees a longer item's frames. Under greedy decoding an item's
tokens are therefore those of running it alone; under sampling too when each row draws from a
generator of its own (a list of generators, one per row).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .config import GenerationConfig, Progress, Sampling
from .decoding import GraphCache, StepKey, kv_cache, step_key
from .models.fine import FineGPT
from .models.gpt import GPT
from .voice import VoicePrompt
from .sampling import Generators, Noise, Pick, sample

# The semantic loop asks the device whether every item has stopped once per this many steps,
# not every step: the question waits for all queued work, which idles a GPU between steps.
# Items that stopped keep stepping meanwhile, as in a batch, so the tokens are the same.
EOS_CHECK_EVERY = 16


# --- stage 1: text -> semantic -------------------------------------------------------------


def semantic_prefix(model: GPT, text_ids: Sequence[Sequence[int]], voice: VoicePrompt | None,
                    config: GenerationConfig) -> torch.Tensor:
    """Embeddings of Bark's merged context (bark-spec §3.1-3.2): text ids + offset right-padded
    to 256, plus the last 256 history tokens at the same positions (a sum, not a concatenation),
    then the infer token. Returns (B, 257, C)."""
    device = model.position_embeds_layer.weight.device
    length = config.max_input_semantic_length
    text = torch.full((len(text_ids), length), config.text_pad_token, dtype=torch.long)
    for row, ids in enumerate(text_ids):
        ids = list(ids)[:length]
        text[row, : len(ids)] = torch.tensor(ids, dtype=torch.long) + config.text_encoding_offset
    history = torch.full((length,), config.semantic_pad_token, dtype=torch.long)
    if voice is not None:
        tail = torch.from_numpy(voice.semantic_prompt[-length:])
        history[: len(tail)] = tail
    infer = torch.full((len(text_ids), 1), config.semantic_infer_token, dtype=torch.long)
    merged = model.embed(text.to(device)) + model.embed(history.to(device))[None]
    return torch.cat([merged, model.embed(infer.to(device))], dim=1)


def generate_semantic(
    model: GPT,
    text_ids: Sequence[Sequence[int]],
    voice: VoicePrompt | None,
    config: GenerationConfig,
    sampling: Sampling,
    min_eos_p: float | None,
    max_new_tokens: int,
    generator: Generators = None,
    progress: Progress | None = None,
    allow_early_stop: bool = True,
    graphed: bool | GraphCache = False,
    eos_check_every: int = EOS_CHECK_EVERY,
) -> list[np.ndarray]:
    """Semantic tokens for each text, without the final EOS (int64 arrays). With
    `allow_early_stop` off, EOS is never chosen and every item runs `max_new_tokens` steps
    (benchmarks need exact counts). `graphed`: decode steps through decoding.GraphStep (a
    decoding.GraphCache keeps them across runs). The loop checks for the end every
    `eos_check_every` steps; up to that many - 1 extra steps may draw from `generator`, so a
    later stage needs a generator of its own."""
    batch = len(text_ids)
    device = model.position_embeds_layer.weight.device
    prefix = semantic_prefix(model, text_ids, voice, config)
    # The last fed position is block_size - 1 (bark-spec §12.24).
    max_new_tokens = min(max_new_tokens, model.config.block_size - prefix.shape[1] + 1)
    pick = semantic_pick(config, sampling, min_eos_p, allow_early_stop)
    noise = Noise(generator, batch, pick.width(None, model.config.output_vocab_size), device, needed=pick.needs_noise)
    plan = semantic_plan(prefix.shape[1], max_new_tokens, model.config.block_size, pick)
    with kv_cache(model, batch, graphed, plan) as decode:
        logits = model(embeds=prefix, start=0)[:, -1]
        token, fed, stop = pick(logits, noise.next())
        tokens = torch.zeros(batch, max(max_new_tokens, 0), dtype=torch.long, device=device)
        lengths = torch.full((batch,), max(max_new_tokens, 0), dtype=torch.long, device=device)
        done = torch.zeros(batch, dtype=torch.bool, device=device)
        for step in range(max_new_tokens):
            lengths = torch.where(stop & ~done, step, lengths)
            done |= stop
            tokens[:, step] = token
            if progress:
                progress("semantic", step + 1, max_new_tokens)
            # The one host sync, every eos_check_every steps: whether every item has stopped.
            if step + 1 == max_new_tokens or ((step + 1) % eos_check_every == 0 and bool(done.all())):
                break
            token, fed, stop = decode.pick(fed[:, None], prefix.shape[1] + step, None, pick,
                                           noise.next())
    return [tokens[row, : int(lengths[row])].cpu().numpy() for row in range(batch)]


def semantic_pick(config: GenerationConfig, sampling: Sampling, min_eos_p: float | None,
                  allow_early_stop: bool = True) -> Pick:
    """The semantic stage's pick: the semantic ids and EOS, which sits at index
    `semantic_vocab_size` of the pick's view (left out where early stop is off)."""
    eos = config.semantic_eos_token if allow_early_stop else None
    return Pick(sampling, config.semantic_vocab_size, eos, min_eos_p if allow_early_stop else None)


def semantic_plan(prefix_length: int, max_new_tokens: int, block_size: int, pick: Pick) -> list[StepKey]:
    """The decode steps a semantic run takes: one per position from the prefix's end until the
    token before the last (the last token is never fed back)."""
    positions = range(prefix_length, prefix_length + max_new_tokens - 1)
    return list(dict.fromkeys(step_key(p, block_size, None, pick) for p in positions))


# --- stage 2: semantic -> coarse -----------------------------------------------------------


def coarse_history(voice: VoicePrompt | None, config: GenerationConfig) -> tuple[np.ndarray, np.ndarray]:
    """The voice's semantic and flattened coarse history, trimmed and aligned (bark-spec §4.1)."""
    if voice is None:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    ratio = config.semantic_to_coarse_ratio
    semantic = voice.semantic_prompt
    offsets = np.arange(config.n_coarse_codebooks)[:, None] * config.codebook_size
    # (2, T) -> frame-major c0, c1, c0, c1, ... with codebook k at semantic_vocab_size + k * 1024
    coarse = (voice.coarse_prompt + offsets).T.reshape(-1) + config.semantic_vocab_size
    n_semantic = min(config.max_semantic_history, len(semantic) - len(semantic) % 2,
                     int(math.floor(len(coarse) / ratio)))
    n_coarse = int(round(n_semantic * ratio))
    semantic = semantic[len(semantic) - n_semantic :]
    coarse = coarse[len(coarse) - n_coarse :][:-2]  # drop one frame: Bark's time-alignment hack
    return semantic, coarse


def coarse_steps(n_semantic: int, config: GenerationConfig) -> int:
    """Flattened coarse tokens for n semantic tokens: floor to whole frames (bark-spec §4.1)."""
    frames = math.floor(n_semantic * config.semantic_to_coarse_ratio / config.n_coarse_codebooks)
    return int(round(frames * config.n_coarse_codebooks))


def padded_rows(rows: Sequence[np.ndarray], pad: int) -> torch.Tensor:
    """(len(rows), longest) int64 tensor: each row's tokens, then `pad`."""
    out = torch.full((len(rows), max(len(row) for row in rows)), pad, dtype=torch.long)
    for index, row in enumerate(rows):
        out[index, : len(row)] = torch.from_numpy(np.asarray(row, dtype=np.int64))
    return out


def coarse_rows(step: int, config: GenerationConfig) -> slice:
    """Output ids of the codebook coarse step `step` emits. Steps alternate codebooks; each may
    only emit its own 1024 ids (as original Bark), so only that slice of the LM head is computed."""
    low = config.semantic_vocab_size + (step % config.n_coarse_codebooks) * config.codebook_size
    return slice(low, low + config.codebook_size)


@dataclass(frozen=True)
class CoarseWindow:
    """One window of the coarse loop (bark-spec §4.1): `steps` tokens from token `done` on.
    A prefill window runs its prompt (semantic context from `semantic_start`, coarse history
    from `history_start`) and then decode steps at positions `position`.. ; a cached one
    extends the cache: its first token is a decode step at `position`."""

    done: int
    steps: int
    semantic_start: int
    history_start: int
    prefill: bool
    position: int  # the first decode step's position


def coarse_windows(n_semantic_history: int, n_history: int, total: int, config: GenerationConfig,
                   block_size: int) -> list[CoarseWindow]:
    """The coarse loop's windows for `total` tokens, in order: where each starts reading, and
    whether it prefills or extends the cache (it extends while its starts stay those cached)."""
    windows, done, cached_starts, position = [], 0, None, 0
    while done < total:
        # Semantic context: from up to 209 tokens before the current point, 256 long.
        index = n_semantic_history + int(round(done / config.semantic_to_coarse_ratio))
        semantic_start = max(0, index - config.max_semantic_history)
        history_start = max(0, n_history + done - config.max_coarse_history)
        prefill = cached_starts != (semantic_start, history_start)
        steps = min(config.sliding_window_len, total - done)
        if prefill:
            # the prompt: the semantic window, the infer token, the coarse history read
            first = after_first = config.max_coarse_input_length + 1 + n_history + done - history_start
            cached_starts = (semantic_start, history_start)
        else:
            first, after_first = position, position + 1
        if after_first + steps > block_size:
            cached_starts = None  # no room to keep extending: the next window prefills
        windows.append(CoarseWindow(done, steps, semantic_start, history_start, prefill, first))
        position = after_first + steps - 1  # the next position to write
        done += steps
    return windows


def coarse_plan(windows: Sequence[CoarseWindow], config: GenerationConfig, block_size: int,
                pick: Pick) -> list[StepKey]:
    """The decode steps the windows take: (bucket, codebook rows) of each."""
    keys = []
    for w in windows:
        for k in range(0 if not w.prefill else 1, w.steps):
            position = w.position + k - (1 if w.prefill else 0)
            keys.append(step_key(position, block_size, coarse_rows(w.done + k, config), pick))
    return list(dict.fromkeys(keys))


def coarse_plan_all(config: GenerationConfig, block_size: int, pick: Pick) -> list[StepKey]:
    """Every decode step any coarse run can take: both codebooks' rows in every bucket from the
    shortest prompt's (the semantic window and the infer token) to the block's end."""
    first = config.max_coarse_input_length + 1
    return list(dict.fromkeys(step_key(p, block_size, coarse_rows(book, config), pick)
                              for p in range(first, block_size) for book in range(config.n_coarse_codebooks)))


def generate_coarse(
    model: GPT,
    semantic: Sequence[np.ndarray],
    voice: VoicePrompt | None,
    config: GenerationConfig,
    sampling: Sampling,
    generator: Generators = None,
    progress: Progress | None = None,
    graphed: bool | GraphCache = False,
) -> list[np.ndarray]:
    """The first two codebooks, (2, T) codes per item, in 60-token windows that re-read the
    semantic context and the last 630 coarse tokens (bark-spec §4.1)."""
    device = model.position_embeds_layer.weight.device
    n_books, book_size = config.n_coarse_codebooks, config.codebook_size
    semantic_history, history = coarse_history(voice, config)
    steps = [coarse_steps(len(s), config) for s in semantic]
    total = max(steps, default=0)
    batch = len(semantic)
    if total == 0:
        return [np.zeros((n_books, 0), dtype=np.int64) for _ in semantic]

    semantic_all = padded_rows([np.concatenate([semantic_history, tokens]) for tokens in semantic],
                               config.coarse_semantic_pad_token)
    n_history = len(history)
    coarse = torch.zeros(batch, n_history + total, dtype=torch.long, device=device)
    coarse[:, :n_history] = torch.from_numpy(history).to(device)
    infer = torch.full((batch, 1), config.coarse_infer_token, dtype=torch.long, device=device)
    window_len = config.max_coarse_input_length

    pick = Pick(sampling)
    noise = Noise(generator, batch, book_size, device, needed=pick.needs_noise)
    windows = coarse_windows(len(semantic_history), n_history, total, config, model.config.block_size)
    plan = coarse_plan(windows, config, model.config.block_size, pick)
    with kv_cache(model, batch, graphed, plan) as decode:
        for window in windows:
            rows = coarse_rows(window.done, config)
            if window.prefill:
                semantic_window = semantic_all[:, window.semantic_start : window.semantic_start + window_len]
                semantic_window = F.pad(semantic_window, (0, window_len - semantic_window.shape[1]),
                                        value=config.coarse_semantic_pad_token)
                recent = coarse[:, window.history_start : n_history + window.done]
                prompt = torch.cat([semantic_window.to(device), infer, recent], dim=1)
                logits = model(ids=prompt, start=0, rows=rows)[:, -1]
                token = pick(logits, noise.next(), rows.start)[0]
            else:
                # Same semantic window and history start: this window's prompt is the cached
                # sequence plus the last sampled token, so one step replaces a full prefill.
                last = coarse[:, n_history + window.done - 1 : n_history + window.done]
                token = decode.pick(last, window.position, rows, pick, noise.next())[0]
            for step in range(window.steps):
                coarse[:, n_history + window.done + step] = token
                if step + 1 < window.steps:
                    rows = coarse_rows(window.done + step + 1, config)
                    token = decode.pick(token[:, None], window.position + step + (not window.prefill), rows, pick,
                                        noise.next())[0]
            if progress:
                progress("coarse", window.done + window.steps, total)

    offsets = torch.arange(n_books, device=device)[:, None] * book_size + config.semantic_vocab_size
    result = []
    for row, n in enumerate(steps):
        codes = coarse[row, n_history : n_history + n].view(-1, n_books).T - offsets  # (2, T)
        result.append(codes.cpu().numpy())
    return result


# --- stage 3: coarse -> fine ---------------------------------------------------------------


def _rows(generator: Generators, rows: list[int]) -> Generators:
    """The generators of the batch rows a step runs (per-row generators follow their rows)."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    return [generator[i] for i in rows]


def generate_fine(
    model: FineGPT,
    coarse: Sequence[np.ndarray],
    voice: VoicePrompt | None,
    config: GenerationConfig,
    sampling: Sampling,
    generator: Generators = None,
    progress: Progress | None = None,
) -> list[np.ndarray]:
    """All eight codebooks, (8, T) per item: codebooks 2..7 predicted in turn over 1024-frame
    windows with a 512-frame stride, after up to 512 frames of the voice's history (bark-spec §5.1)."""
    passes = fine_passes(model, coarse, voice, config, sampling, generator, progress)
    while True:
        try:
            next(passes)
        except StopIteration as end:
            return end.value


def fine_passes(
    model: FineGPT,
    coarse: Sequence[np.ndarray],
    voice: VoicePrompt | None,
    config: GenerationConfig,
    sampling: Sampling,
    generator: Generators = None,
    progress: Progress | None = None,
) -> Iterator[None]:
    """generate_fine one forward pass at a time: it yields between passes (one codebook of one
    window loop, for every item) and returns the codes. The stage keeps no state in the model
    (no KV cache), so other work may run on it between passes."""
    device = model.position_embeds_layer.weight.device
    n_books, book_size = config.n_fine_codebooks, config.codebook_size
    window, stride = config.max_fine_input_length, config.max_fine_history_length
    history = np.zeros((n_books, 0), dtype=np.int64)
    if voice is not None:
        history = voice.fine_prompt[:, -stride:]
    n_history = history.shape[1]

    buffers, plans = [], []
    for codes in coarse:
        n_given, frames = codes.shape
        padded = np.full((n_books, frames), book_size, dtype=np.int64)  # 1024 = "not known yet"
        padded[:n_given] = codes
        full = np.concatenate([history, padded], axis=1)
        if full.shape[1] < window:
            full = np.pad(full, ((0, 0), (0, window - full.shape[1])), constant_values=book_size)
        buffers.append(torch.from_numpy(full.T.copy()).to(device))  # (L, 8)
        n_loops = max(0, math.ceil((frames - (window - n_history)) / stride)) + 1
        plans.append(n_loops)
    n_given = coarse[0].shape[0] if coarse else config.n_coarse_codebooks

    total = max(plans, default=0)
    for loop in range(total):
        active = [i for i, n in enumerate(plans) if loop < n]
        starts, fills = [], []
        for i in active:
            length = buffers[i].shape[0]
            starts.append(min(loop * stride, length - window))
            fills.append(min(n_history + loop * stride, length - stride))
        batch = torch.stack([buffers[i][s : s + window] for i, s in zip(active, starts)])  # (b, 1024, 8)
        keep = torch.stack([torch.arange(window, device=device) >= f - s for s, f in zip(starts, fills)])
        for book in range(n_given, n_books):
            if loop or book > n_given:
                yield
            logits = model(book, batch, rows=slice(0, book_size))  # the rest of the vocabulary is never kept
            predicted = sample(logits, sampling, _rows(generator, active))
            # Write in place so the next codebook is conditioned on this one's predictions.
            batch[:, :, book] = torch.where(keep, predicted, batch[:, :, book])
        for j, i in enumerate(active):
            rel = fills[j] - starts[j]
            buffers[i][fills[j] : fills[j] + window - rel, n_given:] = batch[j, rel:, n_given:]
        if progress:
            progress("fine", loop + 1, total)
    return [
        buffers[i][n_history : n_history + codes.shape[1]].T.cpu().numpy()
        for i, codes in enumerate(coarse)
    ]
