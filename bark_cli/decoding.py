"""The decode step of the causal stages: one token through the GPT with its KV cache, and
with the stage's sampling (sampling.Pick) when the loop asks for the next token.

`kv_cache` sets the cache up for one stage run and yields the step. Two steps compute the same
logits and tokens: EagerStep, a plain forward over the positions written so far (GPT's sliced
step), and GraphStep, GPT's static step, whose shapes change only at bucket borders, captured
as one CUDA graph per bucket of positions, LM head and sampling included. A run's loop says up
front which steps it will take (`StepKey`s), and they are captured then, never mid-run. A
GraphCache keeps each stage model's GraphSteps (their graphs, and the KV cache they point at)
for every batch size run, for the life of a loaded model.
"""

from __future__ import annotations

import contextlib
from typing import Iterable, NamedTuple

import torch
import torch.nn.functional as F

from .models.gpt import GPT, KVCache
from .sampling import Pick

# Positions per graph: a static step reads the cache only up to the end of its position's
# bucket, so early steps do not attend over all 1 024 positions; 8 graphs per stage at most.
BUCKET = 128


def bucket_end(position: int, block_size: int, bucket: int = BUCKET) -> int:
    """The end (exclusive) of the cache a static step at `position` reads."""
    return min(block_size, (position // bucket + 1) * bucket)


def placement(model: torch.nn.Module) -> tuple[int, ...]:
    """Where the model's tensors live: a graph replays reads of these addresses, so a model
    moved since its capture (offload uploads it afresh) needs new graphs."""
    buffers = [t for name, t in model.named_buffers() if "kv_cache." not in name]  # the cache is the step's own
    return tuple(t.data_ptr() for t in (*model.parameters(), *buffers))


def step_token_rows(model: GPT) -> torch.Tensor | None:
    """The token table rows a decode step looks up on the device, where offload left the table
    on the CPU (Runtime.on_device); None where the table is on the device already.

    A decode step feeds back an id the model itself put out, so it needs only the table's first
    output_vocab_size rows (the semantic model's 10 048 of 129 600): a copy of them on the device
    saves each step a blocking trip of its ids to the CPU and back.
    """
    table = model.input_embeds_layer.weight
    device = model.position_embeds_layer.weight.device
    if table.device == device:
        return None
    # From pinned memory under offload: the copy queues on the stream without waiting.
    return table[: model.config.output_vocab_size].to(device, non_blocking=True)


class StepKey(NamedTuple):
    """One captured graph: the bucket end a step reads to, the LM head rows it computes (None:
    all), and what it does with the logits (None: returns them)."""

    end: int
    rows: tuple[int, int] | None = None
    pick: Pick | None = None


def step_key(position: int, block_size: int, rows: slice | None = None, pick: Pick | None = None) -> StepKey:
    return StepKey(bucket_end(position, block_size), None if rows is None else (rows.start, rows.stop), pick)


@contextlib.contextmanager
def kv_cache(model: GPT, batch_size: int, graphed: "bool | GraphCache" = False, plan: Iterable[StepKey] = ()):
    """A KV cache for one stage run. Yields the decode step:
    `step(ids (B, 1), position, rows=None)` -> logits (B, V) of that token, and
    `step.pick(ids, position, rows, pick, noise)` -> sampling.Pick's (token, fed, stop).

    `graphed` False: an EagerStep over a cache dropped afterwards. True: a GraphStep whose
    graphs and cache are dropped afterwards. A GraphCache: that cache's GraphStep for
    (model, batch_size), kept there after the run with its graphs and KV cache. `plan`: the
    steps the run will take, captured now (GraphStep.prepare).
    """
    if isinstance(graphed, GraphCache):
        step = graphed.step(model, batch_size)
        step.install()
    elif graphed:
        step = GraphStep(model, batch_size)
    else:
        model.setup_cache(batch_size)
        step = EagerStep(model)
    try:
        step.prepare(plan)
        yield step
    finally:
        model.clear_cache()


class EagerStep:
    """A decode step as a plain forward: the cache is sliced to the positions written so far."""

    def __init__(self, model: GPT):
        self.model = model
        self.token_rows = step_token_rows(model)

    def prepare(self, keys: Iterable[StepKey]) -> None:
        """Nothing to capture."""

    def __call__(self, ids: torch.Tensor, position: int, rows: slice | None = None) -> torch.Tensor:
        if self.token_rows is not None:
            return self.model(embeds=F.embedding(ids, self.token_rows), start=position, rows=rows)[:, -1]
        return self.model(ids=ids, start=position, rows=rows)[:, -1]

    def pick(self, ids: torch.Tensor, position: int, rows: slice | None, pick: Pick,
             noise: torch.Tensor | None = None):
        """The next token after `ids`: Pick's (token, fed, stop) of this step's logits."""
        return pick(self(ids, position, rows), noise, 0 if rows is None else rows.start)


_capture_streams: dict[torch.device, torch.cuda.Stream] = {}


def capture_stream(device: torch.device) -> "torch.cuda.Stream":
    """The one stream graphs on `device` are captured on: the model's device, not the current
    device's (a model on cuda:1 is captured there), and one for all captures, since cuBLAS
    keeps a workspace on the device for every stream it has run on, for the process's life."""
    device = torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)
    if device not in _capture_streams:
        _capture_streams[device] = torch.cuda.Stream(device)
    return _capture_streams[device]


def step_caches(model: GPT, batch_size: int, storage: list[torch.Tensor] | None = None) -> list[KVCache]:
    """A static step's KV caches, zeroed: masked positions weigh 0, but 0 times a stale NaN in a
    fresh buffer is NaN. `storage`: one zeroed (2, B', H, L, D) buffer per layer, B' >= batch_size,
    whose first rows the caches use."""
    c = model.config
    head_dim, device = c.hidden_size // c.num_heads, model.position_embeds_layer.weight.device
    caches = []
    for layer in range(c.num_layers):
        kv = None if storage is None else storage[layer][:, :batch_size]
        cache = KVCache(batch_size, c.num_heads, c.block_size, head_dim, model.cache_dtype, device, kv=kv)
        if storage is None:
            cache.kv.zero_()
        caches.append(cache)
    return caches


class GraphStep:
    """A decode step with fixed shapes per bucket of positions, captured as a CUDA graph per
    StepKey (bucket, LM head rows, sampling) and replayed for every step with that key.

    Launching a step's few hundred small kernels one by one costs more than running them on a
    GPU; a replay launches them all at once: the layers, the LM head, and with a Pick its
    temperature, top-k, top-p, draw and end-of-speech test. The graph reads its token, position
    and noise from tensors that each call overwrites, and attends over the cache up to its
    bucket's end with the unwritten positions masked (GPT.hidden with a tensor `start` and
    `end`). Its outputs are valid until the next call. The step owns its KV cache (`install`
    lends it to the model for a run): the graphs hold its addresses.

    `prepare` captures the keys a run will reach before it starts; a key met unprepared is
    captured then (which waits for the GPU) and noted in `unplanned`. Off CUDA the same static
    step runs eagerly, which is how the CPU tests check it.
    """

    def __init__(self, model: GPT, batch_size: int, storage: list[torch.Tensor] | None = None):
        model.clear_cache()
        self.caches = step_caches(model, batch_size, storage)
        device = model.position_embeds_layer.weight.device
        self.model = model
        self.batch_size = batch_size
        self.placement = placement(model)
        self.ids = torch.zeros(batch_size, 1, dtype=torch.long, device=device)
        self.position = torch.zeros((), dtype=torch.long, device=device)
        self.noise: dict[int, torch.Tensor] = {}  # a pick's noise input, by its width
        self.token_rows = step_token_rows(model)
        self.capture = device.type == "cuda"
        self.stream = capture_stream(device) if self.capture else None
        self.pool = torch.cuda.graph_pool_handle() if self.capture else None  # one pool for all its graphs
        self.graphs: dict[int, dict[StepKey, torch.cuda.CUDAGraph]] = {}  # by bucket end, then key
        self.outputs: dict[StepKey, object] = {}  # each graph's output tensors
        self.planned: set[StepKey] = set()
        self.unplanned: list[StepKey] = []
        self.install()

    def install(self) -> None:
        """Lend this step's KV cache to the model for one stage run."""
        for block, cache in zip(self.model.layers, self.caches):
            block.attn.kv_cache = cache
        self.model.cache_batch_size = self.batch_size

    def _noise(self, key: StepKey) -> torch.Tensor | None:
        if key.pick is None or not key.pick.needs_noise:
            return None
        rows = None if key.rows is None else slice(*key.rows)
        width = key.pick.width(rows, self.model.config.output_vocab_size)
        if width not in self.noise:
            self.noise[width] = torch.full((self.batch_size, width), 0.5, device=self.ids.device)
        return self.noise[width]

    def _run(self, key: StepKey):
        """The step itself: layers, LM head, and the key's pick if any."""
        if self.token_rows is not None:
            hidden = self.model.hidden(embeds=F.embedding(self.ids, self.token_rows), start=self.position, end=key.end)
        else:
            hidden = self.model.hidden(ids=self.ids, start=self.position, end=key.end)
        rows = None if key.rows is None else slice(*key.rows)
        logits = self.model.head(hidden, rows)[:, -1]
        if key.pick is None:
            return logits
        return key.pick(logits, self._noise(key), 0 if rows is None else rows.start)

    def _capture(self, key: StepKey) -> None:
        device, stream = self.ids.device, self.stream
        with torch.cuda.device(device):
            # Warm-up runs first (cuBLAS handles, kernel choices); they write keys and values at
            # the step's position, which a run writes again before it reads them.
            stream.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(stream):
                for _ in range(2):
                    self._run(key)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool, stream=stream):
                self.outputs[key] = self._run(key)
            torch.cuda.current_stream(device).wait_stream(stream)
        self.graphs.setdefault(key.end, {})[key] = graph

    def prepare(self, keys: Iterable[StepKey]) -> None:
        """Capture these steps now (on CUDA), before the run that takes them."""
        for key in keys:
            if key in self.planned:
                continue
            self.planned.add(key)
            if self.capture and key not in self.graphs.get(key.end, {}):
                self.position.fill_(key.end - 1)  # a position of the bucket (written before read)
                self._noise(key)
                self._capture(key)

    def _step(self, ids: torch.Tensor, position: int, key: StepKey, noise: torch.Tensor | None):
        block_size = self.model.config.block_size
        if position >= block_size:
            raise ValueError(f"position {position} exceeds block size {block_size}")
        if key not in self.planned:
            self.unplanned.append(key)
            self.planned.add(key)
        self.ids.copy_(ids)
        self.position.fill_(position)
        if noise is not None:
            self._noise(key).copy_(noise)
        if not self.capture:
            return self._run(key)
        if key not in self.graphs.get(key.end, {}):
            self._capture(key)
        with torch.cuda.device(self.ids.device):
            self.graphs[key.end][key].replay()
        return self.outputs[key]

    def __call__(self, ids: torch.Tensor, position: int, rows: slice | None = None) -> torch.Tensor:
        return self._step(ids, position, step_key(position, self.model.config.block_size, rows), None)

    def pick(self, ids: torch.Tensor, position: int, rows: slice | None, pick: Pick,
             noise: torch.Tensor | None = None):
        """The next token after `ids`: Pick's (token, fed, stop), computed inside the graph."""
        key = step_key(position, self.model.config.block_size, rows, pick)
        return self._step(ids, position, key, noise if pick.needs_noise else None)


class GraphCache:
    """Each stage model's GraphSteps for the life of a loaded model (Bark owns one under CUDA
    graphs): one per batch size run, all over one KV buffer per model, sized for the largest
    batch (a smaller batch's cache is its first rows), so keeping several batch sizes costs
    graphs, not caches. A larger batch than the buffer holds, or weights moved since the
    captures (offload uploads them afresh), replaces the model's steps and buffer.

    `steps` holds each model's step of its latest run."""

    def __init__(self):
        self.steps: dict[GPT, GraphStep] = {}
        self.kept: dict[tuple[GPT, int], GraphStep] = {}
        self.storage: dict[GPT, list[torch.Tensor]] = {}

    def reserve(self, model: GPT, batch_size: int) -> None:
        """Make the model's KV buffer hold `batch_size` rows (dropping its steps if it must grow)."""
        storage = self.storage.get(model)
        stale = any(step.placement != placement(model) for (m, _), step in self.kept.items() if m is model)
        if storage is not None and storage[0].shape[1] >= batch_size and not stale:
            return
        for key in [key for key in self.kept if key[0] is model]:
            del self.kept[key]  # free the old graphs and buffer before allocating anew
        self.steps.pop(model, None)
        self.storage.pop(model, None)
        model.clear_cache()
        c = model.config
        shape = (2, batch_size, c.num_heads, c.block_size, c.hidden_size // c.num_heads)
        device = model.position_embeds_layer.weight.device
        self.storage[model] = [torch.zeros(shape, dtype=model.cache_dtype, device=device) for _ in model.layers]

    def step(self, model: GPT, batch_size: int) -> GraphStep:
        self.reserve(model, batch_size)
        step = self.kept.get((model, batch_size))
        if step is None:
            model.clear_cache()
            step = self.kept[(model, batch_size)] = GraphStep(model, batch_size, self.storage[model])
        self.steps[model] = step
        return step
