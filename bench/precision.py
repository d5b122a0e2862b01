#!/usr/bin/env python
"""Reduced precision against float32: logit error and greedy token agreement.

    python bench/precision.py                  # bark-small sizes, random weights (logit error)
    python bench/precision.py --model FOLDER   # a real model: logit error and greedy agreement

Greedy agreement is the share of semantic tokens equal to float32's, up to the first
difference and overall (after a first difference the runs follow different histories).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bark_cli import Bark  # noqa: E402
from bark_cli.config import DeviceOptions, SamplingOptions  # noqa: E402
from bark_cli.bench import DEFAULT_TEXT, bark_config  # noqa: E402
from bark_cli.models.fine import FineGPT  # noqa: E402
from bark_cli.models.gpt import GPT  # noqa: E402
from bark_cli.models.quantize import quantize_int8  # noqa: E402

VARIANTS = {"bfloat16": (torch.bfloat16, False), "bfloat16+int8": (torch.bfloat16, True)}


def logit_error(model: GPT, ids: torch.Tensor) -> dict[str, float]:
    """Max and mean |logit - float32 logit| relative to float32's logit spread (std)."""
    out = {}
    with torch.inference_mode():
        reference = model(ids=ids, all_logits=True).float()
        for name, (dtype, int8) in VARIANTS.items():
            other = GPT(model.config)
            other.load_state_dict(model.state_dict())
            other = other.to(dtype).eval()
            if int8:
                quantize_int8(other, dtype)
            diff = (other(ids=ids, all_logits=True).float() - reference).abs()
            out[name] = {"max_rel": (diff.max() / reference.std()).item(), "mean_rel": (diff.mean() / reference.std()).item()}
    return out


def fine_logit_error(model: FineGPT, codes: torch.Tensor) -> dict[str, float]:
    """The fine stage's kept logits (1024 ids, codebooks 2..7) in bfloat16 against float32, as
    logit_error measures them (its weights stay bfloat16 under int8: int8 is for the GPT stages)."""
    other = FineGPT(model.config)
    other.load_state_dict(model.state_dict())
    other = other.to(torch.bfloat16).eval()
    worst, total, books = 0.0, 0.0, 0
    with torch.inference_mode():
        for book in range(2, model.config.n_codes_total):
            reference = model(book, codes, rows=slice(0, 1024)).float()
            diff = (other(book, codes, rows=slice(0, 1024)).float() - reference).abs()
            std = reference.std()
            worst, total = max(worst, (diff.max() / std).item()), total + (diff.mean() / std).item()
            books += 1
    return {"max_rel": worst, "mean_rel": total / books}


def agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    n = min(len(a), len(b))
    same = a[:n] == b[:n]
    prefix = int(np.argmin(same)) if not same.all() else n
    return prefix / max(n, 1), float(same.mean()) if n else 1.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="a model folder (else random weights at bark-small sizes)")
    p.add_argument("--tokens", type=int, default=100)
    args = p.parse_args()
    torch.manual_seed(0)
    if args.model is None:
        model = GPT(bark_config("bark-small").semantic).eval()
        ids = torch.randint(0, 10_000, (1, 300))
        for name, err in logit_error(model, ids).items():
            print(f"semantic logits, {name}: max {err['max_rel']:.3f}, mean {err['mean_rel']:.4f} of the logit std")
        fine = FineGPT(bark_config("bark-small").fine).eval()
        err = fine_logit_error(fine, torch.randint(0, 1024, (1, 1024, 8)))
        print(f"fine logits (codebooks 2-7), bfloat16: max {err['max_rel']:.3f}, mean {err['mean_rel']:.4f} "
              "of the logit std")
        return
    full = Bark.load(args.model, DeviceOptions("cpu", "float32"))
    ids = torch.randint(0, 10_000, (1, 300))
    for name, err in logit_error(full.weights.semantic, ids).items():
        print(f"semantic logits, {name}: max {err['max_rel']:.3f}, mean {err['mean_rel']:.4f} of the logit std")
    options = dict(sampling=SamplingOptions(temperature=0.0, max_semantic_tokens=args.tokens, min_eos_p=0))
    reference = full.generate(DEFAULT_TEXT, **options)
    for name, (dtype, int8) in VARIANTS.items():
        other = Bark.load(args.model, DeviceOptions("cpu", str(dtype).removeprefix("torch."),
                                                   quantize="int8" if int8 else None))
        result = other.generate(DEFAULT_TEXT, **options)
        prefix, overall = agreement(reference.semantic_tokens, result.semantic_tokens)
        print(f"greedy semantic tokens, {name}: {prefix:.0%} before the first difference, {overall:.0%} overall")


if __name__ == "__main__":
    main()
