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
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .config import GenerationConfig, Progress, Sampling
from .decoding import GraphCache, kv_cache
from .models.fine import FineGPT
from .models.gpt import GPT
from .voice import VoicePrompt

# The semantic loop asks the device whether every item has stopped once per this many steps,
# not every step: the question waits for all queued work, which idles a GPU between steps.
# Items that stopped keep stepping meanwhile, as in a batch, so the tokens are the same.
EOS_CHECK_EVERY = 16


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


Generators = torch.Generator | Sequence[torch.Generator] | None
"""Where a stage's noise comes from: one generator for the whole batch, or one per row (each
row then draws exactly what it would draw alone, so a batch repeats each item's solo run)."""


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


def draw(probs: torch.Tensor, generator: Generators) -> torch.Tensor:
    """One draw per row: argmax of probs / Exp(1) noise picks index i with probability probs[i],
    without the host sync of torch.multinomial."""
    # Exp(1) as -log(U): several times faster on a CPU than exponential_. U = 0 (one value in
    # 2**24) is clamped, which gives that entry a large noise instead of an infinite one.
    noise = uniform(probs.shape, generator, probs.device, probs.dtype)
    noise = noise.clamp_(min=torch.finfo(probs.dtype).tiny).log_().neg_()
    return (probs / noise).argmax(-1)


def sample(logits: torch.Tensor, sampling: Sampling, generator: Generators) -> torch.Tensor:
    if sampling.greedy:
        return logits.argmax(-1)
    return draw(distribution(logits, sampling), generator)


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
    vocab, eos = config.semantic_vocab_size, config.semantic_eos_token
    prefix = semantic_prefix(model, text_ids, voice, config)
    # The last fed position is block_size - 1 (bark-spec §12.24).
    max_new_tokens = min(max_new_tokens, model.config.block_size - prefix.shape[1] + 1)
    check_eos_p = bool(min_eos_p) and allow_early_stop
    with kv_cache(model, batch, graphed) as decode:
        logits = model(embeds=prefix, start=0)[:, -1]
        tokens = torch.zeros(batch, max(max_new_tokens, 0), dtype=torch.long, device=device)
        lengths = torch.full((batch,), max(max_new_tokens, 0), dtype=torch.long, device=device)
        done = torch.zeros(batch, dtype=torch.bool, device=device)
        for step in range(max_new_tokens):
            # Allowed: the semantic ids and EOS, which sits at index `vocab` of this view.
            allowed = torch.cat([logits[:, :vocab], logits[:, eos : eos + 1]], dim=-1)
            if not allow_early_stop:
                allowed = allowed[:, :vocab]
            probs = None
            if sampling.greedy:
                token = allowed.argmax(-1)
                if check_eos_p:
                    probs = distribution(allowed, sampling)
            else:
                probs = distribution(allowed, sampling)
                token = draw(probs, generator)
            stop = token == vocab
            if check_eos_p:
                stop |= probs[:, vocab] > min_eos_p
            lengths = torch.where(stop & ~done, step, lengths)
            done |= stop
            tokens[:, step] = token
            if progress:
                progress("semantic", step + 1, max_new_tokens)
            # The one host sync, every eos_check_every steps: whether every item has stopped.
            if step + 1 == max_new_tokens or ((step + 1) % eos_check_every == 0 and bool(done.all())):
                break
            fed = torch.where(token == vocab, eos, token)
            logits = decode(fed[:, None], prefix.shape[1] + step)
    return [tokens[row, : int(lengths[row])].cpu().numpy() for row in range(batch)]


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
    ratio = config.semantic_to_coarse_ratio
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

    def block(step: int) -> slice:
        """Output ids of the codebook that coarse step `step` emits."""
        low = config.semantic_vocab_size + (step % n_books) * book_size
        return slice(low, low + book_size)

    with kv_cache(model, batch, graphed) as decode:
        done, cached_starts, position = 0, None, 0
        while done < total:
            # Semantic context: from up to 209 tokens before the current point, 256 long.
            index = len(semantic_history) + int(round(done / ratio))
            semantic_start = max(0, index - config.max_semantic_history)
            history_start = max(0, n_history + done - config.max_coarse_history)
            # Steps alternate codebooks; each may only emit its own 1024 ids (as original Bark),
            # so only that slice of the LM head is computed.
            rows = block(done)
            if cached_starts == (semantic_start, history_start):
                # Same semantic window and history start: this window's prompt is the cached
                # sequence plus the last sampled token, so one step replaces a full prefill.
                last = coarse[:, n_history + done - 1 : n_history + done]
                logits = decode(last, position, rows)
                position += 1
            else:
                window = semantic_all[:, semantic_start : semantic_start + window_len]
                window = F.pad(window, (0, window_len - window.shape[1]), value=config.coarse_semantic_pad_token)
                recent = coarse[:, history_start : n_history + done]
                prompt = torch.cat([window.to(device), infer, recent], dim=1)
                logits = model(ids=prompt, start=0, rows=rows)[:, -1]
                position = prompt.shape[1]
                cached_starts = (semantic_start, history_start)
            steps_here = min(config.sliding_window_len, total - done)
            if position + steps_here > model.config.block_size:
                cached_starts = None  # no room to keep extending: the next window prefills
            for step in range(steps_here):
                token = sample(logits, sampling, generator) + rows.start
                coarse[:, n_history + done] = token
                done += 1
                if step + 1 < steps_here:
                    rows = block(done)
                    logits = decode(token[:, None], position, rows)
                    position += 1
            if progress:
                progress("coarse", done, total)

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
