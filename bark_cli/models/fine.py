"""Bark's fine stage: a non-causal transformer that fills EnCodec codebooks 2..7 (bark-spec §5.2, §6.2)."""

from __future__ import annotations

import torch
from torch import nn

from ..config import FineConfig
from .gpt import Block
from .kernels import Linear


class FineGPT(nn.Module):
    """One embedding table per codebook; the input at each position is the sum of the embeddings
    of codebooks 0..k when predicting codebook k. Head i predicts codebook i + n_codes_given and
    shares its weight with embedding table i + n_codes_given."""

    def __init__(self, config: FineConfig):
        super().__init__()
        self.config = config
        self.input_embeds_layers = nn.ModuleList(
            [nn.Embedding(config.input_vocab_size, config.hidden_size) for _ in range(config.n_codes_total)]
        )
        self.position_embeds_layer = nn.Embedding(config.block_size, config.hidden_size)
        self.layers = nn.ModuleList(
            [Block(config, causal=False, layernorm_bias=True) for _ in range(config.num_layers)]
        )
        self.layernorm_final = nn.LayerNorm(config.hidden_size)
        self.lm_heads = nn.ModuleList(
            [
                Linear(config.hidden_size, config.output_vocab_size, bias=False)
                for _ in range(config.n_codes_given, config.n_codes_total)
            ]
        )
        self.tie_weights()

    def tie_weights(self) -> None:
        for i, head in enumerate(self.lm_heads):
            head.weight = self.input_embeds_layers[i + self.config.n_codes_given].weight

    @staticmethod
    def tied_keys(config: FineConfig) -> dict[str, str]:
        """Head key -> the embedding key it shares storage with (a checkpoint may hold either)."""
        return {
            f"lm_heads.{i}.weight": f"input_embeds_layers.{i + config.n_codes_given}.weight"
            for i in range(config.n_codes_total - config.n_codes_given)
        }

    def forward(self, codebook: int, codes: torch.Tensor, rows: slice | None = None) -> torch.Tensor:
        """Logits (B, T, output_vocab_size) for `codebook`, from `codes` (B, T, n_codes_total);
        `rows` computes only those vocabulary entries (generation keeps the first 1024 of 1056)."""
        if not self.config.n_codes_given <= codebook < self.config.n_codes_total:
            raise ValueError(f"the fine model predicts codebooks {self.config.n_codes_given}..{self.config.n_codes_total - 1}")
        x = self.input_embeds_layers[0](codes[:, :, 0])
        for k in range(1, codebook + 1):
            x = x + self.input_embeds_layers[k](codes[:, :, k])
        positions = torch.arange(codes.shape[1], device=codes.device)
        x = x + self.position_embeds_layer(positions)
        for block in self.layers:
            x = block(x)
        return self.lm_heads[codebook - self.config.n_codes_given](self.layernorm_final(x), rows)
