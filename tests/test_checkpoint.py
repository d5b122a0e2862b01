"""Loading Hub-layout checkpoints: every key maps, .bin and .safetensors agree, errors name keys."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from bark_cli import hub
from bark_cli import weights as ckpt
from bark_cli.config import BarkConfig, GenerationConfig
from bark_cli.errors import CheckpointError
from tiny_bark import TINY_CODEC, TINY_WIDTH, build_tiny_model, legacy_state_dict

# config.json's sub-model sections at tiny widths (Bark's vocabularies): runs without ../shared
TINY_CONFIG = {
    "semantic_config": dict(TINY_WIDTH, input_vocab_size=129_600, output_vocab_size=10_048),
    "coarse_acoustics_config": dict(TINY_WIDTH, input_vocab_size=12_096, output_vocab_size=12_096),
    "fine_acoustics_config": dict(TINY_WIDTH, input_vocab_size=1056, output_vocab_size=1056,
                                  n_codes_total=8, n_codes_given=1),
    "codec_config": dict(TINY_CODEC),
}


def copy_without_weights(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in ["config.json", "generation_config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json"]:
        shutil.copyfile(src / name, dst / name)
    return dst


def all_tensors(weights: ckpt.BarkWeights) -> dict[str, torch.Tensor]:
    out = {}
    for name in ("semantic", "coarse", "fine", "codec"):
        for key, value in getattr(weights, name).state_dict().items():
            out[f"{name}.{key}"] = value
    return out


def test_every_key_maps_none_missing_or_left_over(tiny_checkpoint):
    """Each checkpoint tensor lands in exactly one of our parameters, and each parameter is filled."""
    state = ckpt.load_state_dict(tiny_checkpoint)
    parts = ckpt.split_state_dict(state)
    assert sum(len(p) for p in parts.values()) == len(state)
    weights = ckpt.load_weights(tiny_checkpoint)
    for name, module in [("semantic", weights.semantic), ("coarse", weights.coarse), ("fine", weights.fine),
                         ("codec", weights.codec)]:
        for key, value in module.state_dict().items():
            assert value.device.type == "cpu", f"{name}.{key} left on the meta device"
    # Values are the checkpoint's: spot-check one tensor per sub-model.
    torch.testing.assert_close(weights.semantic.lm_head.weight, state["semantic.lm_head.weight"])
    torch.testing.assert_close(weights.coarse.layers[1].mlp.in_proj.weight,
                               state["coarse_acoustics.layers.1.mlp.in_proj.weight"])
    torch.testing.assert_close(weights.fine.lm_heads[6].weight, state["fine_acoustics.input_embeds_layers.7.weight"])
    torch.testing.assert_close(weights.codec.quantizer.layers[3].codebook.embed,
                               state["codec_model.quantizer.layers.3.codebook.embed"])


def test_legacy_bin_and_safetensors_load_identically(tiny_checkpoint, tmp_path):
    """The 2023 Hub .bin layout (weight_g/weight_v, both tied names, mask buffers) loads to the
    same tensors as the safetensors file."""
    from transformers import BarkModel

    reference = BarkModel.from_pretrained(tiny_checkpoint)
    folder = copy_without_weights(tiny_checkpoint, tmp_path / "bin")
    legacy = legacy_state_dict(reference)
    assert any(k.endswith("weight_g") for k in legacy) and "fine_acoustics.lm_heads.0.weight" in legacy
    torch.save(legacy, folder / "pytorch_model.bin")
    from_bin = all_tensors(ckpt.load_weights(folder))
    from_safetensors = all_tensors(ckpt.load_weights(tiny_checkpoint))
    assert from_bin.keys() == from_safetensors.keys()
    for key in from_bin:
        assert torch.equal(from_bin[key], from_safetensors[key]), key


def test_sharded_safetensors_with_index(tiny_checkpoint, tmp_path):
    folder = copy_without_weights(tiny_checkpoint, tmp_path / "sharded")
    state = load_file(str(tiny_checkpoint / "model.safetensors"))
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    weight_map = {}
    for name, shard_keys in shards.items():
        save_file({k: state[k].contiguous() for k in shard_keys}, str(folder / name))
        weight_map.update({k: name for k in shard_keys})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    sharded = all_tensors(ckpt.load_weights(folder))
    whole = all_tensors(ckpt.load_weights(tiny_checkpoint))
    assert all(torch.equal(sharded[k], whole[k]) for k in whole)


def write_state(tiny_checkpoint, tmp_path, state) -> Path:
    folder = copy_without_weights(tiny_checkpoint, tmp_path / "edited")
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    return folder


def test_missing_key_is_named(tiny_checkpoint, tmp_path):
    state = load_file(str(tiny_checkpoint / "model.safetensors"))
    del state["coarse_acoustics.layers.1.attn.out_proj.weight"]
    with pytest.raises(CheckpointError, match=r"coarse_acoustics\.layers\.1\.attn\.out_proj\.weight"):
        ckpt.load_weights(write_state(tiny_checkpoint, tmp_path, state))


def test_unexpected_key_is_named(tiny_checkpoint, tmp_path):
    state = load_file(str(tiny_checkpoint / "model.safetensors"))
    state["semantic.layers.0.attn.extra_proj.weight"] = torch.zeros(2, 2)
    with pytest.raises(CheckpointError, match=r"semantic\.layers\.0\.attn\.extra_proj\.weight"):
        ckpt.load_weights(write_state(tiny_checkpoint, tmp_path, state))


def test_foreign_prefix_is_named(tiny_checkpoint, tmp_path):
    state = load_file(str(tiny_checkpoint / "model.safetensors"))
    state["vocoder.weight"] = torch.zeros(2)
    with pytest.raises(CheckpointError, match=r"vocoder\.weight"):
        ckpt.load_weights(write_state(tiny_checkpoint, tmp_path, state))


def test_misshaped_key_is_named(tiny_checkpoint, tmp_path):
    state = load_file(str(tiny_checkpoint / "model.safetensors"))
    state["fine_acoustics.position_embeds_layer.weight"] = torch.zeros(512, 32)
    with pytest.raises(CheckpointError, match=r"fine_acoustics\.position_embeds_layer\.weight.*\(512, 32\)"):
        ckpt.load_weights(write_state(tiny_checkpoint, tmp_path, state))


def test_half_weight_norm_pair_is_named(tiny_checkpoint, tmp_path):
    state = load_file(str(tiny_checkpoint / "model.safetensors"))
    del state["codec_model.decoder.layers.3.conv.parametrizations.weight.original1"]
    with pytest.raises(CheckpointError, match=r"decoder\.layers\.3\.conv"):
        ckpt.load_weights(write_state(tiny_checkpoint, tmp_path, state))


def test_folder_without_weights_or_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({}))
    with pytest.raises(CheckpointError, match="model.safetensors or pytorch_model.bin"):
        ckpt.load_weights(tmp_path)
    with pytest.raises(CheckpointError, match="config.json"):
        ckpt.read_configs(tmp_path / "nothing-here")


def test_generation_constants_come_from_the_file(tiny_checkpoint, tmp_path):
    folder = copy_without_weights(tiny_checkpoint, tmp_path / "cfg")
    data = json.loads((folder / "generation_config.json").read_text())
    data["semantic_config"]["max_new_tokens"] = 500
    data["semantic_config"]["temperature"] = 0.6
    data["coarse_acoustics_config"]["sliding_window_len"] = 40
    data["fine_acoustics_config"]["temperature"] = 0.4
    (folder / "generation_config.json").write_text(json.dumps(data))
    _, gen = ckpt.read_configs(folder)
    assert (gen.max_new_tokens, gen.semantic_temperature, gen.sliding_window_len, gen.fine_temperature) == (
        500, 0.6, 40, 0.4)
    assert gen.coarse_temperature == 0.7 and gen.semantic_top_k == 50 and gen.min_eos_p == 0.2
    (folder / "generation_config.json").unlink()
    _, defaults = ckpt.read_configs(folder)  # absent file: the spec's values
    assert defaults.max_new_tokens == 768 and defaults.text_encoding_offset == 10_048


def test_hub_id_resolves_from_the_offline_cache(tiny_checkpoint, tmp_path, monkeypatch):
    """A Hub id is found in a huggingface_hub cache laid out as a download leaves it."""
    cache = tmp_path / "hub"
    snapshot = cache / "models--suno--bark-small" / "snapshots" / ("a" * 40)
    shutil.copytree(tiny_checkpoint, snapshot)
    (cache / "models--suno--bark-small" / "refs").mkdir()
    (cache / "models--suno--bark-small" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    folder = hub.resolve_model("suno/bark-small")
    assert (folder / "model.safetensors").is_file()
    with pytest.raises(CheckpointError, match="suno/bark.*not in the local cache"):
        hub.resolve_model("suno/bark")


@pytest.mark.parametrize("bad", ["./no/such/folder", "not a model id", "a/b/c"])
def test_bad_model_names(bad):
    with pytest.raises(CheckpointError):
        hub.resolve_model(bad)


def test_reduced_precision_load(tiny_checkpoint):
    weights = ckpt.load_weights(tiny_checkpoint, torch.bfloat16)
    assert weights.semantic.lm_head.weight.dtype == torch.bfloat16
    assert weights.fine.lm_heads[0].weight.dtype == torch.bfloat16
    assert next(weights.codec.parameters()).dtype == torch.float32


def test_tiny_model_is_random_not_default_init():
    """Guard for the fixture: rescaled weights, not transformers' 0.02 init."""
    model = build_tiny_model(seed=5)
    assert model.semantic.input_embeds_layer.weight.std() > 0.5
    head = model.coarse_acoustics.lm_head.weight
    torch.testing.assert_close(head[12_048:], 0.5 * head[11_024:11_072])


# --- random_weights ---------------------------------------------------------------------------


def test_random_weights_match_a_loaded_checkpoint(tiny_checkpoint):
    """Same modules, keys, shapes and dtypes as load_weights gives for the same config.json,
    finished the same way: nothing left on the meta device, eval mode, no gradients."""
    config, gen = ckpt.read_configs(tiny_checkpoint)
    for dtype in (torch.float32, torch.bfloat16):
        loaded = ckpt.load_weights(tiny_checkpoint, dtype)
        random = ckpt.random_weights(config, gen, seed=0, dtype=dtype)
        assert (random.config, random.generation) == (config, gen)
        ours, theirs = all_tensors(random), all_tensors(loaded)
        assert ours.keys() == theirs.keys()
        for key in theirs:
            assert (ours[key].shape, ours[key].dtype) == (theirs[key].shape, theirs[key].dtype), key
            assert ours[key].device.type == "cpu", key
        for name in ("semantic", "coarse", "fine", "codec"):
            module = getattr(random, name)
            assert not module.training
            assert not any(p.requires_grad for p in module.parameters())


def test_random_weights_tie_the_fine_heads():
    weights = ckpt.random_weights(BarkConfig.from_dict(TINY_CONFIG), GenerationConfig())
    fine = weights.fine
    given = fine.config.n_codes_given
    for i, head in enumerate(fine.lm_heads):
        assert head.weight is fine.input_embeds_layers[i + given].weight
    assert fine.lm_heads[0].weight.std() > 0.01  # random, not a zero or meta placeholder


def test_random_weights_are_seeded_and_leave_the_global_rng_alone():
    config = BarkConfig.from_dict(TINY_CONFIG)
    before = torch.get_rng_state()
    first = all_tensors(ckpt.random_weights(config, GenerationConfig(), seed=3))
    again = all_tensors(ckpt.random_weights(config, GenerationConfig(), seed=3))
    other = all_tensors(ckpt.random_weights(config, GenerationConfig(), seed=4))
    assert torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["semantic.lm_head.weight"], other["semantic.lm_head.weight"])
    assert not torch.equal(first["codec.decoder.layers.0.conv.weight"], other["codec.decoder.layers.0.conv.weight"])


@torch.no_grad()
def test_random_weights_run():
    """Every stage turns its input into finite output of the right shape."""
    config = BarkConfig.from_dict(TINY_CONFIG)
    weights = ckpt.random_weights(config, GenerationConfig(), seed=1)
    ids = torch.randint(0, 1000, (2, 5))
    logits = weights.semantic(ids, all_logits=True)
    assert logits.shape == (2, 5, config.semantic.output_vocab_size) and logits.isfinite().all()
    logits = weights.coarse(ids)
    assert logits.shape == (2, 1, config.coarse.output_vocab_size) and logits.isfinite().all()
    codes = torch.randint(0, 1024, (2, 6, 8))
    logits = weights.fine(3, codes)
    assert logits.shape[:2] == (2, 6) and logits.isfinite().all()
    audio = weights.codec.decode(codes.transpose(1, 2))
    assert audio.shape == (2, 6 * 320) and audio.isfinite().all() and audio.abs().max() > 0


# --- tensor_headers ---------------------------------------------------------------------------


def described(state: dict[str, torch.Tensor]) -> dict[str, ckpt.TensorInfo]:
    return {k: ckpt.TensorInfo(tuple(v.shape), str(v.dtype).removeprefix("torch."), v.numel() * v.element_size())
            for k, v in state.items()}


def test_tensor_headers_single_file(tiny_checkpoint):
    state = load_file(str(tiny_checkpoint / "model.safetensors"))
    headers = ckpt.tensor_headers(tiny_checkpoint)
    assert headers == described(state)
    assert math.prod(headers["semantic.lm_head.weight"].shape) == state["semantic.lm_head.weight"].numel()


def test_tensor_headers_sharded_mixed_dtypes_and_bin(tiny_checkpoint, tmp_path):
    state = load_file(str(tiny_checkpoint / "model.safetensors"))
    state = {k: (v.to(torch.bfloat16) if k.startswith("coarse") else v) for k, v in state.items()}
    state["semantic.layers.0.attn.bias"] = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    folder = copy_without_weights(tiny_checkpoint, tmp_path / "sharded")
    keys = sorted(state)
    weight_map = {}
    for n, shard_keys in enumerate((keys[::2], keys[1::2])):
        name = f"model-0000{n + 1}-of-00002.safetensors"
        save_file({k: state[k].contiguous() for k in shard_keys}, str(folder / name))
        weight_map.update({k: name for k in shard_keys})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    headers = ckpt.tensor_headers(folder)
    assert headers == described(state)
    assert headers["coarse_acoustics.lm_head.weight"].dtype_name == "bfloat16"
    assert headers["semantic.layers.0.attn.bias"].dtype_name == "bool"

    # load_weights' file rules: a stray shard the index does not name is not read
    save_file({"vocoder.weight": torch.zeros(2)}, str(folder / "model-00009-of-00009.safetensors"))
    assert ckpt.tensor_headers(folder) == headers

    bin_folder = copy_without_weights(tiny_checkpoint, tmp_path / "bin")
    torch.save(state, bin_folder / "pytorch_model.bin")
    assert ckpt.tensor_headers(bin_folder) == described(state)


def test_tensor_headers_errors(tiny_checkpoint, tmp_path):
    folder = copy_without_weights(tiny_checkpoint, tmp_path / "none")
    with pytest.raises(CheckpointError, match="model.safetensors or pytorch_model.bin"):
        ckpt.tensor_headers(folder)
    (folder / "model.safetensors").write_bytes((10**9).to_bytes(8, "little") + b"{}")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        ckpt.tensor_headers(folder)
    (folder / "model.safetensors").write_bytes((5).to_bytes(8, "little") + b"{oops")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        ckpt.tensor_headers(folder)
