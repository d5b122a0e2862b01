"""Loading Hub-layout checkpoints: every key maps, .bin and .safetensors agree, errors name keys."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from bark_cli import checkpoint
from bark_cli.errors import CheckpointError
from tiny_bark import build_tiny_model, legacy_state_dict


def copy_without_weights(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in ["config.json", "generation_config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json"]:
        shutil.copyfile(src / name, dst / name)
    return dst


def all_tensors(weights: checkpoint.BarkWeights) -> dict[str, torch.Tensor]:
    out = {}
    for name in ("semantic", "coarse", "fine", "codec"):
        for key, value in getattr(weights, name).state_dict().items():
            out[f"{name}.{key}"] = value
    return out


def test_every_key_maps_none_missing_or_left_over(tiny_checkpoint):
    """Each checkpoint tensor lands in exactly one of our parameters, and each parameter is filled."""
    state = checkpoint.load_state_dict(tiny_checkpoint)
    parts = checkpoint.split_state_dict(state)
    assert sum(len(p) for p in parts.values()) == len(state)
    weights = checkpoint.load_weights(tiny_checkpoint)
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
    from_bin = all_tensors(checkpoint.load_weights(folder))
    from_safetensors = all_tensors(checkpoint.load_weights(tiny_checkpoint))
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
    sharded = all_tensors(checkpoint.load_weights(folder))
    whole = all_tensors(checkpoint.load_weights(tiny_checkpoint))
    assert all(torch.equal(sharded[k], whole[k]) for k in whole)


def write_state(tiny_checkpoint, tmp_path, state) -> Path:
    folder = copy_without_weights(tiny_checkpoint, tmp_path / "edited")
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    return folder


def test_missing_key_is_named(tiny_checkpoint, tmp_path):
    state = load_file(str(tiny_checkpoint / "model.safetensors"))
    del state["coarse_acoustics.layers.1.attn.out_proj.weight"]
    with pytest.raises(CheckpointError, match=r"coarse_acoustics\.layers\.1\.attn\.out_proj\.weight"):
        checkpoint.load_weights(write_state(tiny_checkpoint, tmp_path, state))


def test_unexpected_key_is_named(tiny_checkpoint, tmp_path):
    state = load_file(str(tiny_checkpoint / "model.safetensors"))
    state["semantic.layers.0.attn.extra_proj.weight"] = torch.zeros(2, 2)
    with pytest.raises(CheckpointError, match=r"semantic\.layers\.0\.attn\.extra_proj\.weight"):
        checkpoint.load_weights(write_state(tiny_checkpoint, tmp_path, state))


def test_foreign_prefix_is_named(tiny_checkpoint, tmp_path):
    state = load_file(str(tiny_checkpoint / "model.safetensors"))
    state["vocoder.weight"] = torch.zeros(2)
    with pytest.raises(CheckpointError, match=r"vocoder\.weight"):
        checkpoint.load_weights(write_state(tiny_checkpoint, tmp_path, state))


def test_misshaped_key_is_named(tiny_checkpoint, tmp_path):
    state = load_file(str(tiny_checkpoint / "model.safetensors"))
    state["fine_acoustics.position_embeds_layer.weight"] = torch.zeros(512, 32)
    with pytest.raises(CheckpointError, match=r"fine_acoustics\.position_embeds_layer\.weight.*\(512, 32\)"):
        checkpoint.load_weights(write_state(tiny_checkpoint, tmp_path, state))


def test_half_weight_norm_pair_is_named(tiny_checkpoint, tmp_path):
    state = load_file(str(tiny_checkpoint / "model.safetensors"))
    del state["codec_model.decoder.layers.3.conv.parametrizations.weight.original1"]
    with pytest.raises(CheckpointError, match=r"decoder\.layers\.3\.conv"):
        checkpoint.load_weights(write_state(tiny_checkpoint, tmp_path, state))


def test_folder_without_weights_or_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({}))
    with pytest.raises(CheckpointError, match="model.safetensors or pytorch_model.bin"):
        checkpoint.load_weights(tmp_path)
    with pytest.raises(CheckpointError, match="config.json"):
        checkpoint.read_configs(tmp_path / "nothing-here")


def test_generation_constants_come_from_the_file(tiny_checkpoint, tmp_path):
    folder = copy_without_weights(tiny_checkpoint, tmp_path / "cfg")
    data = json.loads((folder / "generation_config.json").read_text())
    data["semantic_config"]["max_new_tokens"] = 500
    data["semantic_config"]["temperature"] = 0.6
    data["coarse_acoustics_config"]["sliding_window_len"] = 40
    data["fine_acoustics_config"]["temperature"] = 0.4
    (folder / "generation_config.json").write_text(json.dumps(data))
    _, gen = checkpoint.read_configs(folder)
    assert (gen.max_new_tokens, gen.semantic_temperature, gen.sliding_window_len, gen.fine_temperature) == (
        500, 0.6, 40, 0.4)
    assert gen.coarse_temperature == 0.7 and gen.semantic_top_k == 50 and gen.min_eos_p == 0.2
    (folder / "generation_config.json").unlink()
    _, defaults = checkpoint.read_configs(folder)  # absent file: the spec's values
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
    folder = checkpoint.resolve_model("suno/bark-small")
    assert (folder / "model.safetensors").is_file()
    with pytest.raises(CheckpointError, match="suno/bark.*not in the local cache"):
        checkpoint.resolve_model("suno/bark")


@pytest.mark.parametrize("bad", ["./no/such/folder", "not a model id", "a/b/c"])
def test_bad_model_names(bad):
    with pytest.raises(CheckpointError):
        checkpoint.resolve_model(bad)


def test_reduced_precision_load(tiny_checkpoint):
    weights = checkpoint.load_weights(tiny_checkpoint, torch.bfloat16)
    assert weights.semantic.lm_head.weight.dtype == torch.bfloat16
    assert weights.fine.lm_heads[0].weight.dtype == torch.bfloat16
    assert next(weights.codec.parameters()).dtype == torch.float32


def test_tiny_model_is_random_not_default_init():
    """Guard for the fixture: rescaled weights, not transformers' 0.02 init."""
    model = build_tiny_model(seed=5)
    assert model.semantic.input_embeds_layer.weight.std() > 0.5
    head = model.coarse_acoustics.lm_head.weight
    torch.testing.assert_close(head[12_048:], 0.5 * head[11_024:11_072])
