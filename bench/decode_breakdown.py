#!/usr/bin/env python
"""Where a decode step's time goes: the model's step beside stripped-down steps on the same weights.

    python bench/decode_breakdown.py                      # bark-small semantic, float32, position 332
    python bench/decode_breakdown.py --stage coarse --position 512 --batch-size 8

Every variant runs one token through the same random weights at the same position, interleaved
round by round so that a slow moment of the machine hits them all alike; the median of each is
printed with its ratio to the strict bandwidth floor (the weights a step reads, at the fastest
rate memory was seen to move, as `bark bench` prints it). The variants:

    model            GPT.forward, as generation runs it
    fused            the same arithmetic written out with no modules (2-D products through
                     the model's kernel, oneDNN where PyTorch has it): what remains is kernels
    fused-mkl        the same with torch.mm/addmm, which PyTorch sends to MKL
    matmuls          only the matrix products of the fused step (the weight traffic)
    matmuls-mkl      the same through torch.mm
    + attention      matmuls, cache write and SDPA over the cache
    + norms          matmuls and the LayerNorms
    + gelu           matmuls and the GELU
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from bark_cli import decoding  # noqa: E402
from bark_cli.bench import SIZES, bark_config, decode_step_bytes, measure_bandwidth  # noqa: E402
from bark_cli.config import DeviceOptions  # noqa: E402
from bark_cli.models import kernels  # noqa: E402
from bark_cli.models.gpt import GPT  # noqa: E402
from bark_cli.models.kernels import ONEDNN_LINEAR, gelu  # noqa: E402
from bark_cli.runtime import Runtime  # noqa: E402


def product(x: torch.Tensor, weight: torch.Tensor, mkl: bool) -> torch.Tensor:
    """x @ weight.T on oneDNN (as the model's Linear runs it) or, with `mkl`, through torch.mm."""
    if mkl or not ONEDNN_LINEAR:
        return torch.mm(x, weight.t())
    return torch.ops.mkldnn._linear_pointwise(x, weight, None, "none", [], "")


def fused_step(model: GPT, ids: torch.Tensor, pos: int, attention=True, norms=True, with_gelu=True,
               mkl=False) -> torch.Tensor:
    """One token through `model`'s weights without modules; parts can be left out."""
    c = model.config
    heads, width = c.num_heads, c.hidden_size
    x = model.input_embeds_layer.weight[ids[:, 0]] + model.position_embeds_layer.weight[pos]  # (B, C)
    batch = x.shape[0]

    def norm(h, layer):
        return F.layer_norm(h, (width,), layer.weight, layer.bias) if norms else h

    for block in model.layers:
        qkv = product(norm(x, block.layernorm_1), block.attn.att_proj.weight, mkl)
        if attention:
            kv = block.attn.kv_cache.kv
            qkv = qkv.view(batch, 3, heads, 1, width // heads).transpose(0, 1)
            kv[:, :, :, pos : pos + 1].copy_(qkv[1:])
            y = F.scaled_dot_product_attention(qkv[0], kv[0, :, :, : pos + 1], kv[1, :, :, : pos + 1])
            y = y.reshape(batch, width)
        else:
            y = qkv[:, :width]
        x = x + product(y, block.attn.out_proj.weight, mkl)
        h = product(norm(x, block.layernorm_2), block.mlp.in_proj.weight, mkl)
        x = x + product(gelu(h) if with_gelu else h, block.mlp.out_proj.weight, mkl)
    return product(norm(x, model.layernorm_final), model.lm_head.weight, mkl)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="bark-small", choices=list(SIZES))
    p.add_argument("--stage", default="semantic", choices=["semantic", "coarse"])
    p.add_argument("--position", type=int, default=332, help="tokens already in the cache")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    kernels.calibrated()  # the CPU kernels the product would run here
    torch.manual_seed(0)
    model = GPT(getattr(bark_config(args.config), args.stage)).eval()
    bandwidth = measure_bandwidth(Runtime.choose(DeviceOptions("cpu", "float32")))
    floor = decode_step_bytes(model) / bandwidth.strict_bytes_per_s
    b, pos = args.batch_size, args.position
    variants = {
        "model": lambda ids, at: model(ids=ids, start=at),
        "fused": lambda ids, at: fused_step(model, ids, at),
        "fused-mkl": lambda ids, at: fused_step(model, ids, at, mkl=True),
        "matmuls": lambda ids, at: fused_step(model, ids, at, attention=False, norms=False, with_gelu=False),
        "matmuls-mkl": lambda ids, at: fused_step(model, ids, at, attention=False, norms=False, with_gelu=False,
                                                  mkl=True),
        "+ attention": lambda ids, at: fused_step(model, ids, at, norms=False, with_gelu=False),
        "+ norms": lambda ids, at: fused_step(model, ids, at, attention=False, with_gelu=False),
        "+ gelu": lambda ids, at: fused_step(model, ids, at, attention=False, norms=False),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    with torch.inference_mode(), decoding.kv_cache(model, b):
        model(ids=torch.zeros(b, pos, dtype=torch.long), start=0)
        ids = torch.randint(0, 1000, (b, 1), generator=torch.Generator().manual_seed(1))
        expected = model(ids=ids, start=pos)[:, 0]
        for mkl in (False, True):  # the fused step is the same step
            torch.testing.assert_close(fused_step(model, ids, pos, mkl=mkl), expected, rtol=1e-4, atol=1e-4)
        for r in range(args.rounds):
            at = min(pos + 1 + r, model.config.block_size - 1)
            for name, step in variants.items():
                start = time.perf_counter()
                step(ids, at)
                times[name].append(time.perf_counter() - start)
    print(f"{args.config} {args.stage} decode step, batch {b}, position {pos}, float32, "
          f"{torch.get_num_threads()} thread(s)")
    print(f"floor {floor * 1e3:.1f} ms (strict): {decode_step_bytes(model) / 1e6:.0f} MB of weights at "
          f"{bandwidth.strict_bytes_per_s / 1e9:.1f} GB/s")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:<13}{median * 1e3:8.2f} ms {median / floor:6.2f}x floor")
    return 0


if __name__ == "__main__":
    sys.exit(main())
