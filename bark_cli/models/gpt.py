"""Bark's causal GPT (the semantic and coarse stages), with a preallocated KV cache.

Module and parameter names are transformers' `BarkCausalModel` names, so a Hub state dict loads
without renaming (bark-spec §6.1, §7.1). Attention runs through PyTorch's
`scaled_dot_product_attention`, which picks flash or memory-efficient kernels where it can.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import GPTConfig
from .kernels import Linear


class KVCache(nn.Module):
    """Keys and values of every position so far, in one buffer allocated once per run.

    Keys and values share the buffer (index 0 and 1) so that one copy writes both. `update`
    writes new positions in place; the caller says where, so nothing is allocated in the decode
    loop.
    """

    def __init__(self, batch_size: int, num_heads: int, max_len: int, head_dim: int, dtype, device,
                 kv: torch.Tensor | None = None):
        super().__init__()
        # Left uninitialized: a step never reads past what was written (decoding.GraphStep
        # zeroes it first, since its masked reads still multiply by the stale values). `kv`: a
        # buffer of that shape to use instead (a view of a larger batch's, decoding.GraphCache).
        if kv is None:
            kv = torch.empty((2, batch_size, num_heads, max_len, head_dim), dtype=dtype, device=device)
        self.register_buffer("kv", kv, persistent=False)
        self.register_buffer("positions", torch.arange(max_len, device=device), persistent=False)

    def step_mask(self, start: torch.Tensor, end: int) -> torch.Tensor:
        """A static step's additive attention mask (1, 1, 1, end): 0 over the positions written
        so far, -inf beyond, in the cache's dtype. Built once per step for every layer (GPT.hidden),
        and as a float mask, which SDPA adds as it is, where a boolean one it converts per layer."""
        mask = torch.full((end,), -math.inf, dtype=self.kv.dtype, device=self.kv.device)
        return mask.masked_fill_(self.positions[:end] <= start, 0.0)[None, None, None]

    def update(self, start: int | torch.Tensor, kv: torch.Tensor, static: bool = False,
               end: int | None = None, mask: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Write `kv` (2, B, H, T, D) at positions start..start+T-1; return the keys and values
        attention reads, and its mask (None: all of them).

        Sliced (`static` off, `start` an int): the keys and values written so far, no mask.
        Static (one position in a 0-dim tensor, see GPT.forward): the buffer up to `end` (the
        whole of it by default), with the step's mask (`step_mask`, made here if not given), so
        no shape depends on the position within a bucket of positions.
        """
        if static:
            self.kv.index_copy_(3, start.view(1), kv.to(self.kv.dtype))
            end = self.kv.shape[3] if end is None else end
            mask = self.step_mask(start, end) if mask is None else mask
            return self.kv[0, :, :, :end], self.kv[1, :, :, :end], mask
        self.kv.narrow(3, start, kv.shape[3]).copy_(kv)
        written = self.kv.narrow(3, 0, start + kv.shape[3])
        return written[0], written[1], None


class SelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, causal: bool):
        super().__init__()
        self.num_heads = config.num_heads
        self.head_dim = config.hidden_size // config.num_heads
        self.causal = causal
        self.att_proj = Linear(config.hidden_size, 3 * config.hidden_size, bias=config.bias)
        self.out_proj = Linear(config.hidden_size, config.hidden_size, bias=config.bias)
        self.kv_cache: KVCache | None = None

    def forward(self, x: torch.Tensor, start: int | torch.Tensor = 0, static: bool = False,
                end: int | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, length, width = x.shape
        # (B, T, 3C) -> (3, B, H, T, D): queries, keys and values as views, no copies
        qkv = self.att_proj(x).view(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, kv = qkv[0], qkv[1:]
        if self.kv_cache is None:
            k, v, mask = kv[0], kv[1], None
        else:
            k, v, mask = self.kv_cache.update(start, kv, static, end, mask)
        if q.dtype != k.dtype:  # a float32 cache under bfloat16 activations (GPT.cache_dtype)
            q = q.to(k.dtype)
        # A prefill (from position 0, GPT.hidden checks) needs the causal mask; a one-token step
        # appended to the cache may see every cached position, so it needs none.
        is_causal = self.causal and length > 1
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
        if y.dtype != x.dtype:
            y = y.to(x.dtype)
        y = y.transpose(1, 2).reshape(batch, length, width)  # (B, H, T, D) -> (B, T, C)
        return self.out_proj(y)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.in_proj = Linear(config.hidden_size, 4 * config.hidden_size, bias=config.bias)
        self.out_proj = Linear(4 * config.hidden_size, config.hidden_size, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.in_proj(x, gelu_out=True))


class Block(nn.Module):
    """Pre-LayerNorm transformer block. The fine model's LayerNorms always carry a bias, even
    when its linears do not (bark-spec §6.2)."""

    def __init__(self, config: GPTConfig, causal: bool, layernorm_bias: bool):
        super().__init__()
        self.layernorm_1 = nn.LayerNorm(config.hidden_size, bias=layernorm_bias)
        self.attn = SelfAttention(config, causal)
        self.layernorm_2 = nn.LayerNorm(config.hidden_size, bias=layernorm_bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, start: int | torch.Tensor = 0, static: bool = False,
                end: int | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.layernorm_1(x), start, static, end, mask)
        return x + self.mlp(self.layernorm_2(x))


class GPT(nn.Module):
    """Causal GPT: token + learned position embeddings, blocks, final LayerNorm, LM head."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.input_embeds_layer = nn.Embedding(config.input_vocab_size, config.hidden_size)
        self.position_embeds_layer = nn.Embedding(config.block_size, config.hidden_size)
        self.layers = nn.ModuleList(
            [Block(config, causal=True, layernorm_bias=config.bias) for _ in range(config.num_layers)]
        )
        self.layernorm_final = nn.LayerNorm(config.hidden_size, bias=config.bias)
        self.lm_head = Linear(config.hidden_size, config.output_vocab_size, bias=False)
        self.cache_batch_size = 0

    def setup_cache(self, batch_size: int) -> None:
        """Allocate a KV cache for `batch_size` rows of `block_size` positions, unless one exists.
        A stage sets it up and clears it when done, so the model is cache-free between runs."""
        if self.cache_batch_size == batch_size:
            return
        head_dim = self.config.hidden_size // self.config.num_heads
        device = self.position_embeds_layer.weight.device
        for block in self.layers:
            block.attn.kv_cache = KVCache(
                batch_size, self.config.num_heads, self.config.block_size, head_dim, self.cache_dtype, device
            )
        self.cache_batch_size = batch_size

    @property
    def cache_dtype(self) -> torch.dtype:
        """The KV cache's dtype: the activations' (linears may be int8), except on the CPU under
        bfloat16, where it stays float32: PyTorch's CPU attention over a bfloat16 cache runs at
        well under half its float32 speed on the CPUs measured (docs/guide/performance.md)."""
        weight = self.position_embeds_layer.weight
        if weight.device.type == "cpu" and weight.dtype == torch.bfloat16:
            return torch.float32
        return weight.dtype

    def clear_cache(self) -> None:
        for block in self.layers:
            block.attn.kv_cache = None
        self.cache_batch_size = 0

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        table = self.input_embeds_layer.weight
        if ids.device == table.device:
            return self.input_embeds_layer(ids)
        # Offload may leave the token table on the CPU while the rest runs on a GPU: a step
        # needs one row of it, so it is looked up there.
        return self.input_embeds_layer(ids.to(table.device)).to(ids.device)

    def forward(
        self,
        ids: torch.Tensor | None = None,
        embeds: torch.Tensor | None = None,
        start: int | torch.Tensor = 0,
        all_logits: bool = False,
        rows: slice | None = None,
    ) -> torch.Tensor:
        """Logits for `ids` (B, T) or ready `embeds` (B, T, C) placed at positions start..start+T-1.

        Only the last position goes through the LM head unless `all_logits`: generation never
        reads the others. `rows` computes only those vocabulary entries (a coarse step needs
        1024 of 12096). Returns (B, 1 or T, output_vocab_size or the rows' count).

        With a KV cache set up there are two kinds of step, told apart by `start`'s type alone:
        - an int makes a sliced step: attention reads only the positions written so far, fewer
          bytes than the whole cache, so it is the step where no graph is captured
          (decoding.EagerStep); a multi-token one is a prefill from position 0;
        - a 0-dim tensor makes a static step: one token, written into the cache at that position,
          attending over the whole cache with the unwritten part masked. Its shapes never change
          with the position, so it can be captured once as a CUDA graph (decoding.GraphStep).
        """
        return self.head(self.hidden(ids, embeds, start, all_logits), rows)

    def hidden(self, ids: torch.Tensor | None = None, embeds: torch.Tensor | None = None,
               start: int | torch.Tensor = 0, all_logits: bool = False, end: int | None = None) -> torch.Tensor:
        """The final LayerNorm's output: (B, T, C) with `all_logits`, else the last position's (B, 1, C).
        A static step attends over the cache's first `end` positions (all by default): the caller
        promises `start` < `end`, so a step early in the run skips the cache's unwritten tail."""
        x = self.embed(ids) if embeds is None else embeds
        length = x.shape[1]
        # The one switch between the two kinds of step (see forward), decided here for every layer.
        static = isinstance(start, torch.Tensor)
        if static:
            if length != 1:
                raise ValueError("a static step takes one token")
            x = x + self.position_embeds_layer(start.view(1))
            cache = self.layers[0].attn.kv_cache
            # one mask for every layer (they share positions); none without a cache
            mask = None if cache is None else cache.step_mask(start, cache.kv.shape[3] if end is None else end)
        else:
            mask = None
            if start + length > self.config.block_size:
                raise ValueError(f"positions up to {start + length} exceed block size {self.config.block_size}")
            if length > 1 and start != 0:  # attention's causal mask assumes a prefill from position 0
                raise ValueError("a multi-token step must start at position 0")
            # rows start..start+length-1 of the position table (a slice: no index tensor per step)
            x = x + self.position_embeds_layer.weight[start : start + length]
        for block in self.layers:
            x = block(x, start, static, end, mask)
        if not all_logits and length > 1:
            x = x[:, -1:]
        return self.layernorm_final(x)

    def head(self, x: torch.Tensor, rows: slice | None = None) -> torch.Tensor:
        """LM head over hidden states; `rows` computes only those vocabulary entries."""
        return self.lm_head(x, rows)
