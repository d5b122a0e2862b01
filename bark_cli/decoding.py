"""The decode step of the causal stages: one token through the GPT with its KV cache.

`kv_cache` sets the cache up for one stage run and yields the step. Two steps compute the same
logits: EagerStep, a plain forward over the positions written so far (GPT's sliced step), and
GraphStep, GPT's static step, whose shapes never change, captured once as a CUDA graph.
"""

from __future__ import annotations

import contextlib

import torch

from .models.gpt import GPT


@contextlib.contextmanager
def kv_cache(model: GPT, batch_size: int, graphed: bool = False):
    """A KV cache for one stage run, dropped afterwards (it holds up to block_size positions).
    Yields the decode step: `step(ids (B, 1), position, rows=None)` -> logits (B, V) of that
    token; `graphed` makes it a GraphStep."""
    model.setup_cache(batch_size)
    try:
        yield GraphStep(model, batch_size) if graphed else EagerStep(model)
    finally:
        model.clear_cache()


class EagerStep:
    """A decode step as a plain forward: the cache is sliced to the positions written so far."""

    def __init__(self, model: GPT):
        self.model = model

    def __call__(self, ids: torch.Tensor, position: int, rows: slice | None = None) -> torch.Tensor:
        return self.model(ids=ids, start=position, rows=rows)[:, -1]


class GraphStep:
    """A decode step with fixed shapes, captured once as a CUDA graph and replayed per token.

    Launching a step's few hundred small kernels one by one costs more than running them on a
    GPU; a replay launches them all at once. The graph reads its token and position from tensors
    that each call overwrites, and attends over the whole cache with the unwritten positions
    masked (GPT.forward with a tensor `start`). Off CUDA the same static step runs eagerly, which
    is how the CPU tests check it. The LM head runs outside the graph, so a coarse step still
    computes only its codebook's rows.
    """

    def __init__(self, model: GPT, batch_size: int):
        device = model.position_embeds_layer.weight.device
        for block in model.layers:
            # Masked positions weigh 0, but 0 times a stale NaN in a fresh buffer is NaN.
            block.attn.kv_cache.kv.zero_()
        self.model = model
        self.ids = torch.zeros(batch_size, 1, dtype=torch.long, device=device)
        self.position = torch.zeros((), dtype=torch.long, device=device)
        self.capture = device.type == "cuda"
        self.graph: torch.cuda.CUDAGraph | None = None
        self.hidden: torch.Tensor | None = None

    def _forward(self) -> torch.Tensor:
        return self.model.hidden(ids=self.ids, start=self.position)

    def _capture(self) -> None:
        # Warm-up runs on a side stream first (cuBLAS handles, kernel choices); they write the
        # same keys and values at the same position as the replay will.
        stream = torch.cuda.Stream(self.ids.device)
        stream.wait_stream(torch.cuda.current_stream(self.ids.device))
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._forward()
        torch.cuda.current_stream(self.ids.device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.hidden = self._forward()

    def __call__(self, ids: torch.Tensor, position: int, rows: slice | None = None) -> torch.Tensor:
        if position >= self.model.config.block_size:
            raise ValueError(f"position {position} exceeds block size {self.model.config.block_size}")
        self.ids.copy_(ids)
        self.position.fill_(position)
        if not self.capture:
            hidden = self._forward()
        else:
            if self.graph is None:
                self._capture()
            self.graph.replay()
            hidden = self.hidden
        return self.model.head(hidden, rows)[:, -1]
