"""EnCodec's residual vector quantizer (bark-spec §8.2): encode and decode at each level, as in
Meta's `quantization/core_vq.py`. The decoder uses `decode`; cloning's encoder uses `encode`.

Keys: `quantizer.layers.{n}.codebook.embed` [codebook_size, codebook_dim]. Only `embed` is kept:
EnCodec's other buffers (`inited`, `cluster_size`, `embed_avg`) serve k-means training and are
dropped at load.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import CodecConfig


class Codebook(nn.Module):
    """One codebook's rows; `encode` picks the nearest row by Euclidean distance."""

    def __init__(self, codebook_size: int, dim: int) -> None:
        super().__init__()
        self.embed = nn.Buffer(torch.zeros(codebook_size, dim))

    def encode(self, x: Tensor) -> Tensor:  # (N, dim) -> (N,)
        # ‖x‖² − 2·x·e + ‖e‖², negated and maximised, term for term as EnCodec computes it, so
        # that a near tie falls the same way as in the reference implementation.
        embed = self.embed.t()
        dist = -(x.pow(2).sum(1, keepdim=True) - 2 * x @ embed + embed.pow(2).sum(0, keepdim=True))
        return dist.max(dim=-1).indices

    def decode(self, codes: Tensor) -> Tensor:  # (...) -> (..., dim)
        return F.embedding(codes, self.embed)


class VectorQuantization(nn.Module):
    """Holds one `Codebook` under the checkpoint's name `codebook`."""

    def __init__(self, codebook_size: int, dim: int) -> None:
        super().__init__()
        self.codebook = Codebook(codebook_size, dim)


class ResidualVectorQuantizer(nn.Module):
    """All `num_quantizers` codebooks (32 for 24 kHz); Bark uses the first 8 (6 kbps)."""

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        dim = config.codebook_dim or config.hidden_size
        self.layers = nn.ModuleList(
            VectorQuantization(config.codebook_size, dim) for _ in range(config.num_quantizers)
        )

    def encode(self, latent: Tensor, n_q: int) -> Tensor:
        """(B, dim, T) → (B, n_q, T): codebook i quantizes the residual the first i left."""
        b, dim, t = latent.shape
        residual = latent.transpose(1, 2).reshape(b * t, dim)  # (B, dim, T) -> (B·T, dim)
        codes = []
        for layer in self.layers[:n_q]:
            index = layer.codebook.encode(residual)
            residual = residual - layer.codebook.decode(index)
            codes.append(index.view(b, t))
        return torch.stack(codes, dim=1)

    def decode(self, codes: Tensor) -> Tensor:
        """(B, n_q, T) codes → (B, dim, T): the sum of each codebook's looked-up rows."""
        out = sum(self.layers[i].codebook.decode(codes[:, i]) for i in range(codes.shape[1]))
        return out.transpose(1, 2)  # (B, T, dim) -> (B, dim, T)
