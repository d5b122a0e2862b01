"""Tiny random Bark checkpoints in the exact Hugging Face Hub layout, written by transformers.

Real vocabulary sizes and the real tokenizer and voice prompts from ../shared; tiny widths.
Weights are rescaled so that every greedy decision has a margin far above float error: with
transformers' default 0.02 init, argmax would be decided by rounding and parity would prove
nothing.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

# ../shared beside the checkout; BARK_SHARED names another copy (a machine the checkout travels
# to alone, such as a GPU machine, gets one carried inside an ignored folder).
SHARED = Path(os.environ.get("BARK_SHARED") or Path(__file__).resolve().parents[1].parent / "shared").resolve()
REFERENCE = SHARED / "reference"
SHARED_REASON = f"needs the reference data in {SHARED} (real vocabulary, Hub configs, voice prompts)"

TINY_WIDTH = dict(hidden_size=32, num_heads=2, num_layers=2, block_size=1024, bias=False)
TINY_CODEC = dict(hidden_size=32, num_filters=8, codebook_dim=32)


def shared_available() -> bool:
    return (REFERENCE / "tokenizer" / "vocab.txt").is_file() and (
        REFERENCE / "hf-configs" / "bark-small-generation_config.json"
    ).is_file()


def tiny_config(**width):
    from transformers import BarkConfig

    sub = {**TINY_WIDTH, **width}
    return BarkConfig(
        semantic_config=dict(sub, input_vocab_size=129_600, output_vocab_size=10_048),
        coarse_acoustics_config=dict(sub, input_vocab_size=12_096, output_vocab_size=12_096),
        fine_acoustics_config=dict(
            sub, input_vocab_size=1056, output_vocab_size=1056, n_codes_total=8, n_codes_given=1
        ),
        codec_config=dict(TINY_CODEC),
    )


@torch.no_grad()
def _rescale(model, seed: int) -> None:
    """Give the GPT stages weights with decisive logits: unit-variance embeddings, 1/sqrt(fan_in)
    linears, non-trivial LayerNorm scales and biases."""
    gen = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        if name.startswith("codec_model"):
            continue
        if "layernorm" in name and name.endswith("weight"):
            param.copy_(0.5 + torch.rand(param.shape, generator=gen))
        elif name.endswith("bias"):
            param.copy_(0.1 * torch.randn(param.shape, generator=gen))
        elif "embeds_layer" in name:
            # fine embeddings double as its heads (tied): a smaller scale keeps logits moderate
            scale = 0.5 if name.startswith("fine_acoustics.input_embeds_layers") else 1.0
            param.copy_(scale * torch.randn(param.shape, generator=gen))
        else:  # linear weights (out, in); lm heads get a larger gain for a wide logit spread
            gain = 1.5 if "lm_head" in name else 1.0
            param.copy_(gain * torch.randn(param.shape, generator=gen) / param.shape[1] ** 0.5)
    # The codec: random codebooks (buffers, zero at init) and weight-norm scales and biases
    # away from their init values, so the audio depends strongly on the codes.
    for name, buffer in model.named_buffers():
        if name.endswith("codebook.embed"):
            buffer.copy_(torch.randn(buffer.shape, generator=gen))
    for name, param in model.codec_model.named_parameters():
        if name.endswith("original0"):
            param.mul_(1 + torch.rand(param.shape, generator=gen))
        elif name.endswith("bias"):
            param.add_(0.1 * torch.randn(param.shape, generator=gen))
    # transformers lets coarse codebook-1 steps reach ids 12048..12095, original Bark does not.
    # Make those rows half of a valid codebook-1 row, so neither rule's range decides a token.
    head = model.coarse_acoustics.lm_head.weight
    extra = head.shape[0] - 12_048
    head[12_048:] = 0.5 * head[11_024 : 11_024 + extra]


def build_tiny_model(seed: int = 0, **width):
    from transformers import BarkModel

    torch.manual_seed(seed)
    model = BarkModel(tiny_config(**width)).eval()
    _rescale(model, seed)
    return model


def write_tokenizer_files(folder: Path) -> None:
    """The Hub's tokenizer files: vocab.txt, tokenizer.json, tokenizer_config.json, special_tokens_map.json."""
    shutil.copyfile(REFERENCE / "tokenizer" / "vocab.txt", folder / "vocab.txt")
    shutil.copyfile(REFERENCE / "tokenizer" / "tokenizer.json", folder / "tokenizer.json")
    shutil.copyfile(REFERENCE / "hf-configs" / "bark-tokenizer_config.json", folder / "tokenizer_config.json")
    shutil.copyfile(
        REFERENCE / "hf-configs" / "bark-special_tokens_map.json", folder / "special_tokens_map.json"
    )


def write_speaker_embeddings(folder: Path) -> int:
    """Lay the real Suno prompts out as the Hub's speaker_embeddings/ folder and its JSON map
    (the files transformers' BarkProcessor reads). Returns the number of presets."""
    prompts = REFERENCE / "suno-prompts"
    mapping: dict[str, object] = {"repo_or_path": str(folder)}
    names = [p.stem for p in sorted(prompts.glob("*.npz")) if not p.stem.startswith("speaker_")]
    names += [f"v2/{p.stem}" for p in sorted((prompts / "v2").glob("*.npz"))]
    for name in names:
        entry = {}
        with np.load(prompts / f"{name}.npz") as data:
            for key in ("semantic_prompt", "coarse_prompt", "fine_prompt"):
                rel = f"speaker_embeddings/{name}_{key}.npy"
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                np.save(folder / rel, data[key])
                entry[key] = rel
        mapping[name] = entry
    (folder / "speaker_embeddings_path.json").write_text(json.dumps(mapping))
    return len(names)


def write_tiny_checkpoint(folder: Path, seed: int = 0, speakers: bool = True, **width) -> Path:
    """A complete local model folder in the Hub layout (model.safetensors)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = build_tiny_model(seed, **width)
    model.save_pretrained(folder)
    # The Hub's own generation_config.json (one file serves both suno/bark and suno/bark-small).
    shutil.copyfile(
        REFERENCE / "hf-configs" / "bark-small-generation_config.json", folder / "generation_config.json"
    )
    write_tokenizer_files(folder)
    if speakers:
        write_speaker_embeddings(folder)
    return folder


def legacy_state_dict(model) -> dict[str, torch.Tensor]:
    """The state dict as the 2023 Hub `pytorch_model.bin` holds it: weight norm as
    weight_g/weight_v, tied fine heads stored under both names, causal-mask buffers included."""
    out = {}
    for key, value in model.state_dict().items():
        key = key.replace("parametrizations.weight.original0", "weight_g")
        key = key.replace("parametrizations.weight.original1", "weight_v")
        out[key] = value.clone()
    return out
