"""The decode step of the causal stages: one token through the GPT with its KV cache.

`kv_cache` sets the cache up for one stage run and yields the step. Two steps compute the same
logits: EagerStep, a plain forward over the positions written so far (GPT's sliced step), and
GraphStep, GPT's static step, whose shapes change only at bucket borders, captured as one CUDA
graph per bucket of positions. A GraphCache keeps each stage model's GraphStep (its graphs and
the KV cache they point at) for the life of a loaded model, so a model's graphs are captured
once, not once per stage run.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from .models.gpt import GPT

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


@contextlib.contextmanager
def kv_cache(model: GPT, batch_size: int, graphed: "bool | GraphCache" = False):
    """A KV cache for one stage run. Yields the decode step:
    `step(ids (B, 1), position, rows=None)` -> logits (B, V) of that token.

    `graphed` False: an EagerStep over a cache dropped afterwards. True: a GraphStep whose
    graphs and cache are dropped afterwards. A GraphCache: that cache's GraphStep for
    (model, batch_size), kept there after the run with its graphs and KV cache.
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
        yield step
    finally:
        model.clear_cache()


class EagerStep:
    """A decode step as a plain forward: the cache is sliced to the positions written so far."""

    def __init__(self, model: GPT):
        self.model = model
        self.token_rows = step_token_rows(model)

    def __call__(self, ids: torch.Tensor, position: int, rows: slice | None = None) -> torch.Tensor:
        if self.token_rows is not None:
            return self.model(embeds=F.embedding(ids, self.token_rows), start=position, rows=rows)[:, -1]
        return self.model(ids=ids, start=position, rows=rows)[:, -1]


_capture_streams: dict[torch.device, torch.cuda.Stream] = {}


def capture_stream(device: torch.device) -> "torch.cuda.Stream":
    """The one stream graphs on `device` are captured on: the model's device, not the current
    device's (a model on cuda:1 is captured there), and one for all captures, since cuBLAS
    keeps a workspace on the device for every stream it has run on, for the process's life."""
    device = torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)
    if device not in _capture_streams:
        _capture_streams[device] = torch.cuda.Stream(device)
    return _capture_streams[device]


class GraphStep:
    """A decode step with fixed shapes per bucket of positions, captured as a CUDA graph on the
    first step in that bucket and replayed for every later one.

    Launching a step's few hundred small kernels one by one costs more than running them on a
    GPU; a replay launches them all at once. The graph reads its token and position from tensors
    that each call overwrites, and attends over the cache up to its bucket's end with the
    unwritten positions masked (GPT.hidden with a tensor `start` and `end`). The step owns its
    KV cache (`install` lends it to the model for a run): the graphs hold its addresses.

    Off CUDA the same static step runs eagerly, which is how the CPU tests check it. The LM head
    runs outside the graph, so a coarse step still computes only its codebook's rows.
    """

    def __init__(self, model: GPT, batch_size: int):
        model.clear_cache()
        model.setup_cache(batch_size)
        self.caches = [block.attn.kv_cache for block in model.layers]
        for cache in self.caches:
            # Masked positions weigh 0, but 0 times a stale NaN in a fresh buffer is NaN.
            cache.kv.zero_()
        device = model.position_embeds_layer.weight.device
        self.model = model
        self.batch_size = batch_size
        self.placement = placement(model)
        self.ids = torch.zeros(batch_size, 1, dtype=torch.long, device=device)
        self.position = torch.zeros((), dtype=torch.long, device=device)
        self.token_rows = step_token_rows(model)
        self.capture = device.type == "cuda"
        self.stream = capture_stream(device) if self.capture else None
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}  # by bucket end
        self.hidden: dict[int, torch.Tensor] = {}  # each graph's output

    def install(self) -> None:
        """Lend this step's KV cache to the model for one stage run."""
        for block, cache in zip(self.model.layers, self.caches):
            block.attn.kv_cache = cache
        self.model.cache_batch_size = self.batch_size

    def _forward(self, end: int) -> torch.Tensor:
        if self.token_rows is not None:
            return self.model.hidden(embeds=F.embedding(self.ids, self.token_rows), start=self.position, end=end)
        return self.model.hidden(ids=self.ids, start=self.position, end=end)

    def _capture(self, end: int) -> None:
        device, stream = self.ids.device, self.stream
        with torch.cuda.device(device):
            # Warm-up runs first (cuBLAS handles, kernel choices); they write the same keys and
            # values at the same position as the replay will.
            stream.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(stream):
                for _ in range(2):
                    self._forward(end)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=stream):
                self.hidden[end] = self._forward(end)
            torch.cuda.current_stream(device).wait_stream(stream)
        self.graphs[end] = graph

    def __call__(self, ids: torch.Tensor, position: int, rows: slice | None = None) -> torch.Tensor:
        block_size = self.model.config.block_size
        if position >= block_size:
            raise ValueError(f"position {position} exceeds block size {block_size}")
        end = bucket_end(position, block_size)
        self.ids.copy_(ids)
        self.position.fill_(position)
        if not self.capture:
            hidden = self._forward(end)
        else:
            if end not in self.graphs:
                self._capture(end)
            with torch.cuda.device(self.ids.device):
                self.graphs[end].replay()
            hidden = self.hidden[end]
        return self.model.head(hidden, rows)[:, -1]


class GraphCache:
    """Each stage model's GraphStep for the life of a loaded model (Bark owns one under CUDA
    graphs). A model keeps its step while the batch size and its weights' placement stay the
    same; a new batch size (or weights moved since the capture) replaces the step, its graphs
    and its KV cache."""

    def __init__(self):
        self.steps: dict[GPT, GraphStep] = {}

    def step(self, model: GPT, batch_size: int) -> GraphStep:
        step = self.steps.get(model)
        if step is None or step.batch_size != batch_size or step.placement != placement(model):
            self.steps.pop(model, None)  # free the old graphs and cache before allocating anew
            model.clear_cache()
            step = self.steps[model] = GraphStep(model, batch_size)
        return step
