"""Suno's original checkpoints: the three .pt files, EnCodec's own codec file and Suno-format
voices, loaded, converted and imported.

The Suno files here are written from the very tensors of the tiny Hub-layout folder, renamed
by hand after Suno's bark/model.py, bark/model_fine.py and the encodec package's module tree
(bark-spec §7.2, §8.4), in Suno's file format: a dict of model_args, the state dict under
torch.compile's `_orig_mod.` prefix with nanoGPT's causal-mask buffers, iter_num,
best_val_loss as a NumPy scalar, and some optimizer state.
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from bark_cli import catalog, hub, presets, suno
from bark_cli.config import DeviceOptions, GenerationConfig, SamplingOptions
from bark_cli.weights import BarkWeights, generation_json
from bark_cli.weights import load_weights as load_hub_layout
from bark_cli.cli import app
from bark_cli.errors import CheckpointError, NotCachedError, PresetError
from tiny_bark import make_prompt

SIZE_FILES = {"semantic": "text_2.pt", "coarse": "coarse_2.pt", "fine": "fine_2.pt"}
HUB_PREFIX = {"semantic": "semantic.", "coarse": "coarse_acoustics.", "fine": "fine_acoustics."}
TEXTS = ["Hello, my dog is cute.", "Once upon a time there was a small cloud.", "How are you today?"]


# --- writing Suno's files from a Hub-layout folder ----------------------------------------------


def suno_gpt_key(key: str) -> str:
    """A Hub sub-model key as Suno's GPT/FineGPT names it (the HF converter's renames, reversed)."""
    key = re.sub(r"^layers\.(\d+)\.", r"transformer.h.\1.", key)
    for hub, theirs in [("layernorm_1", "ln_1"), ("layernorm_2", "ln_2"), ("attn.att_proj", "attn.c_attn"),
                        ("attn.out_proj", "attn.c_proj"), ("mlp.in_proj", "mlp.c_fc"), ("mlp.out_proj", "mlp.c_proj"),
                        ("layernorm_final", "transformer.ln_f"), ("position_embeds_layer", "transformer.wpe"),
                        ("input_embeds_layers", "transformer.wtes"), ("input_embeds_layer", "transformer.wte")]:
        key = key.replace(hub, theirs)
    return "_orig_mod." + key


def encodec_key(key: str, transposed: set[int]) -> str:
    """A Hub codec key as the encodec package names it: SConv1d.conv.conv / SConvTranspose1d.convtr.convtr,
    `vq.layers.N._codebook`, legacy weight_g/weight_v."""
    key = key.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1",
                                                                               "weight_v")
    quantizer = re.fullmatch(r"quantizer\.layers\.(\d+)\.codebook\.(\w+)", key)
    if quantizer:
        return f"quantizer.vq.layers.{quantizer[1]}._codebook.{quantizer[2]}"
    part, index, rest = re.fullmatch(r"(encoder|decoder)\.layers\.(\d+)\.(.+)", key).groups()
    if rest.startswith("conv."):
        wrapper = "convtr.convtr." if part == "decoder" and int(index) in transposed else "conv.conv."
        rest = wrapper + rest[len("conv."):]
    else:
        rest = re.sub(r"^(block\.\d+|shortcut)\.conv\.", r"\1.conv.conv.", rest)
    return f"{part}.model.{index}.{rest}"


def model_args(section: dict, stage: str) -> dict:
    args = {"n_layer": section["num_layers"], "n_head": section["num_heads"], "n_embd": section["hidden_size"],
            "block_size": section["block_size"], "bias": section["bias"], "dropout": 0.0}
    if stage == "fine":  # the older single vocab_size, which Suno's loader copies into both
        return {**args, "vocab_size": section["input_vocab_size"], "n_codes_total": 8, "n_codes_given": 1}
    return {**args, "input_vocab_size": section["input_vocab_size"], "output_vocab_size": section["output_vocab_size"]}


def suno_checkpoint(args: dict, state: dict) -> dict:
    first = next(iter(state.values()))
    return {"model": state, "model_args": args, "iter_num": 123_456, "best_val_loss": np.float64(2.3456),
            "config": {"dataset": "bark", "compile": True},
            "optimizer": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros_like(first)}},
                          "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.95), "params": [0]}]}}


def write_suno_folder(hub_folder: Path, folder: Path, hf_model, files: dict[str, str] = SIZE_FILES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    hub = load_file(hub_folder / "model.safetensors")
    sections = json.loads((hub_folder / "config.json").read_text())
    for stage, section_name in [("semantic", "semantic_config"), ("coarse", "coarse_acoustics_config"),
                                ("fine", "fine_acoustics_config")]:
        prefix, state = HUB_PREFIX[stage], OrderedDict()
        for key, value in hub.items():
            if key.startswith(prefix) and not key.endswith("attn.bias"):
                state[suno_gpt_key(key[len(prefix):])] = value
        section = sections[section_name]
        if stage == "fine":  # Suno's FineGPT state dict holds each tied pair under both names
            for j in range(7):
                state[f"_orig_mod.lm_heads.{j}.weight"] = state[f"_orig_mod.transformer.wtes.{j + 1}.weight"]
        else:  # nanoGPT's causal mask, registered when SDPA is missing
            size = section["block_size"]
            mask = torch.tril(torch.ones(size, size)).view(1, 1, size, size)
            for i in range(section["num_layers"]):
                state[f"_orig_mod.transformer.h.{i}.attn.bias"] = mask
        torch.save(suno_checkpoint(model_args(section, stage), state), folder / files[stage])
    layers = hf_model.codec_model.decoder.layers
    transposed = {i for i, layer in enumerate(layers) if "Transpose" in type(layer).__name__}
    codec = OrderedDict((encodec_key(k[len("codec_model."):], transposed), v)
                        for k, v in hub.items() if k.startswith("codec_model."))
    torch.save(codec, folder / suno.CODEC_FILE)
    return folder


@pytest.fixture(scope="module")
def suno_folder(tiny_checkpoint, hf_tiny, tmp_path_factory) -> Path:
    return write_suno_folder(tiny_checkpoint, tmp_path_factory.mktemp("suno") / "bark_v0", hf_tiny)


@pytest.fixture(scope="module")
def loaded(suno_folder, tiny_checkpoint) -> tuple[BarkWeights, BarkWeights]:
    """load_weights of Suno's files and of the Hub folder they were written from."""
    return suno.load_weights(suno_folder), load_hub_layout(tiny_checkpoint)


@pytest.fixture(autouse=True)
def isolated(tiny_checkpoint, tmp_path, monkeypatch):
    """The tokenizer from the tiny folder, no torch hub or Suno cache of this machine."""
    monkeypatch.setenv(suno.TOKENIZER_ENV, str(tiny_checkpoint))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("BARK_VOICES_DIR", str(tmp_path / "voices"))


def all_tensors(weights: BarkWeights) -> dict[str, torch.Tensor]:
    return {f"{name}.{key}": value for name in ("semantic", "coarse", "fine", "codec")
            for key, value in getattr(weights, name).state_dict().items()}


def copy_folder(src: Path, dst: Path, skip: str | None = None) -> Path:
    dst.mkdir(parents=True)
    for path in src.iterdir():
        if path.name != skip:
            (dst / path.name).symlink_to(path)
    return dst


# --- the written files are Suno's format --------------------------------------------------------


def test_the_files_are_in_suno_format(suno_folder):
    data = torch.load(suno_folder / "text_2.pt", weights_only=False)
    assert set(data) >= {"model", "model_args", "iter_num", "best_val_loss"}
    assert isinstance(data["best_val_loss"], np.floating)
    assert all(key.startswith("_orig_mod.transformer.") or key == "_orig_mod.lm_head.weight" for key in data["model"])
    assert "_orig_mod.transformer.h.1.attn.bias" in data["model"]
    fine = torch.load(suno_folder / "fine_2.pt", weights_only=False)
    assert "vocab_size" in fine["model_args"] and "input_vocab_size" not in fine["model_args"]
    codec = torch.load(suno_folder / suno.CODEC_FILE, weights_only=True)
    assert "decoder.model.3.convtr.convtr.weight_g" in codec and "quantizer.vq.layers.0._codebook.embed" in codec


# --- loading ---------------------------------------------------------------------------------------


def test_suno_files_load_to_the_hub_folders_tensors(loaded):
    ours, hub = loaded
    assert (ours.config.semantic, ours.config.coarse, ours.config.fine, ours.config.codec) == (
        hub.config.semantic, hub.config.coarse, hub.config.fine, hub.config.codec)
    a, b = all_tensors(ours), all_tensors(hub)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert ours.fine.lm_heads[2].weight is ours.fine.input_embeds_layers[3].weight  # tied as in the Hub layout


def test_the_numpy_allowance_is_for_the_load_only(suno_folder, loaded):
    assert not any("numpy" in repr(g) for g in torch.serialization.get_safe_globals())
    with pytest.raises(pickle.UnpicklingError):
        torch.load(suno_folder / "text_2.pt", weights_only=True)


@torch.no_grad()
def test_logits_equal(loaded):
    ours, hub = loaded
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 129_600, (2, 40), generator=gen)
    assert torch.equal(ours.semantic(ids, all_logits=True), hub.semantic(ids, all_logits=True))
    ids = torch.randint(0, 12_096, (2, 40), generator=gen)
    assert torch.equal(ours.coarse(ids, all_logits=True), hub.coarse(ids, all_logits=True))
    codes = torch.randint(0, 1056, (2, 40, 8), generator=gen)
    for codebook in range(1, 8):
        assert torch.equal(ours.fine(codebook, codes), hub.fine(codebook, codes))


@pytest.fixture(scope="module")
def barks(suno_folder, tiny_checkpoint):
    from bark_cli import Bark

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(suno.TOKENIZER_ENV, str(tiny_checkpoint))
        return (Bark.load(suno_folder, DeviceOptions(device="cpu", dtype="float32")),
                Bark.load(tiny_checkpoint, DeviceOptions(device="cpu", dtype="float32")))


GREEDY = dict(sampling=SamplingOptions(temperature=0.0, max_semantic_tokens=24, min_eos_p=0))


@pytest.mark.parametrize("voice", [None, "generated"])
@pytest.mark.parametrize("text", TEXTS)
def test_greedy_tokens_of_every_stage_equal_the_hub_folders(barks, text, voice):
    prompt = make_prompt("v2/en_speaker_6") if voice else None
    ours, hub = (bark.generate(text, voice=prompt, seed=1, **GREEDY) for bark in barks)
    assert ours.semantic_tokens.size > 0
    np.testing.assert_array_equal(ours.semantic_tokens, hub.semantic_tokens)
    np.testing.assert_array_equal(ours.coarse_tokens, hub.coarse_tokens)
    np.testing.assert_array_equal(ours.fine_tokens, hub.fine_tokens)
    np.testing.assert_array_equal(ours.audio, hub.audio)


def test_suno_files_sample_with_suno_defaults(barks):
    from bark_cli.config import Sampling
    from bark_cli.sampling import distribution

    ours, hub = barks
    assert (ours.config.semantic_temperature, ours.config.coarse_temperature, ours.config.fine_temperature,
            ours.config.min_eos_p) == (0.7, 0.7, 0.5, 0.2)
    # Suno's code applies no top-k: the whole vocabulary is kept, where the Hub files keep 50.
    assert (ours.config.semantic_top_k, ours.config.coarse_top_k) == (10_048, 12_096)
    logits = torch.randn(3, 10_001, generator=torch.Generator().manual_seed(0))
    kept = distribution(logits, Sampling(0.7, ours.config.semantic_top_k, ours.config.semantic_top_p))
    assert torch.equal(kept, (logits / 0.7).softmax(-1))
    assert (distribution(logits, Sampling(0.7, 50)) > 0).sum(-1).tolist() == [50, 50, 50]
    # Every other constant is the Hub folder's.
    assert {**vars(ours.config), "semantic_top_k": 50, "coarse_top_k": 50} == vars(hub.config)


def test_generation_json_round_trips(loaded):
    config = loaded[0].config
    for gen in (GenerationConfig(), suno.generation_config(config)):
        assert GenerationConfig.from_dict(generation_json(gen)) == gen


# --- the codec ------------------------------------------------------------------------------------


@torch.no_grad()
def test_encodec_package_codec_decodes_as_the_hub_codec(suno_folder, loaded):
    from bark_cli.models.codec import EncodecDecoder, codec_state_dict

    config, state = suno.read_codec(suno_folder, download=False)
    assert any(k.endswith("weight_g") for k in state)
    codec = EncodecDecoder(config)
    codec.load_state_dict({k: v for k, v in codec_state_dict(state).items()}, strict=True)
    hub = loaded[1].codec
    codes = torch.randint(0, 1024, (2, 8, 30), generator=torch.Generator().manual_seed(3))
    reference = hub.decode(codes)
    assert reference.abs().max() > 0
    assert torch.equal(codec.eval().decode(codes), reference)


def test_codec_from_torch_hubs_cache(suno_folder, loaded, tmp_path, monkeypatch):
    folder = copy_folder(suno_folder, tmp_path / "models", skip=suno.CODEC_FILE)
    hub_dir = tmp_path / "torch-home" / "hub" / "checkpoints"
    hub_dir.mkdir(parents=True)
    shutil.copyfile(suno_folder / suno.CODEC_FILE, hub_dir / suno.CODEC_FILE)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    weights = suno.load_weights(folder)
    assert torch.equal(weights.codec.quantizer.layers[5].codebook.embed,
                       loaded[0].codec.quantizer.layers[5].codebook.embed)


def test_no_codec_offline_says_how_to_get_it(suno_folder, tmp_path, monkeypatch):
    folder = copy_folder(suno_folder, tmp_path / "models", skip=suno.CODEC_FILE)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    with pytest.raises(NotCachedError) as caught:
        suno.load_weights(folder)
    assert suno.CODEC_REPO in caught.value.message
    assert suno.CODEC_FILE in caught.value.hint and str(tmp_path / "torch") in caught.value.hint


def offline_cache(tmp_path: Path, monkeypatch, repo: str, files: dict[str, Path | bytes]) -> Path:
    """A huggingface_hub cache holding `files` of `repo`, laid out as a download leaves it; offline."""
    cache = tmp_path / "hub"
    root = cache / ("models--" + repo.replace("/", "--"))
    snapshot = root / "snapshots" / ("b" * 40)
    snapshot.mkdir(parents=True)
    for name, content in files.items():
        if isinstance(content, bytes):
            (snapshot / name).write_bytes(content)
        else:
            shutil.copyfile(content, snapshot / name)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text("b" * 40)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return snapshot


def test_codec_from_the_hubs_encodec_24khz(suno_folder, tiny_checkpoint, loaded, tmp_path, monkeypatch):
    """Without EnCodec's own file, the Hugging Face port (config.json, model.safetensors) serves."""
    from safetensors.torch import save_file

    folder = copy_folder(suno_folder, tmp_path / "models", skip=suno.CODEC_FILE)
    hub = load_file(tiny_checkpoint / "model.safetensors")
    codec = {k[len("codec_model."):]: v for k, v in hub.items() if k.startswith("codec_model.")}
    save_file(codec, str(tmp_path / "model.safetensors"))
    codec_config = json.loads((tiny_checkpoint / "config.json").read_text())["codec_config"]
    offline_cache(tmp_path, monkeypatch, suno.CODEC_REPO, {
        "config.json": json.dumps(codec_config).encode(), "model.safetensors": tmp_path / "model.safetensors"})
    weights = suno.load_weights(folder)
    a, b = all_tensors(weights), all_tensors(loaded[1])
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("codec."))


def test_tokenizer_from_the_hubs_bark_small(suno_folder, tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.delenv(suno.TOKENIZER_ENV)
    snapshot = offline_cache(tmp_path, monkeypatch, suno.TOKENIZER_REPO,
                             {name: tiny_checkpoint / name for name in hub.TOKENIZER_FILES})
    assert suno.tokenizer_folder(suno_folder) == snapshot


# --- finding the files ---------------------------------------------------------------------------


def test_suno_original_is_suno_cache_folder(suno_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with pytest.raises(CheckpointError, match="holds no Bark checkpoints"):
        hub.resolve_model("suno-original")
    (tmp_path / "xdg" / "suno").mkdir(parents=True)
    (tmp_path / "xdg" / "suno" / "bark_v0").symlink_to(suno_folder)
    assert hub.resolve_model("suno-original") == tmp_path / "xdg" / "suno" / "bark_v0"


def test_small_file_names(suno_folder, loaded, tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    for stage, name in SIZE_FILES.items():
        (folder / suno.SIZES["small"][stage]).symlink_to(suno_folder / name)
    (folder / suno.CODEC_FILE).symlink_to(suno_folder / suno.CODEC_FILE)
    assert suno.stage_files(folder)["coarse"].name == "coarse.pt"
    assert torch.equal(suno.load_weights(folder).coarse.lm_head.weight,
                       loaded[0].coarse.lm_head.weight)


@pytest.mark.parametrize("present, missing", [
    (["text_2.pt", "coarse_2.pt"], "fine_2.pt"),
    (["text.pt"], "coarse.pt, fine.pt"),
    (["fine_2.pt", "text.pt", "coarse.pt"], "fine.pt"),  # the set with more files present
])
def test_an_incomplete_set_names_what_is_missing(suno_folder, tmp_path, present, missing):
    folder = tmp_path / "partial"
    folder.mkdir()
    for name in present:
        (folder / name).symlink_to(suno_folder / "text_2.pt")
    with pytest.raises(CheckpointError, match=f"lacks {missing} of Suno's"):
        suno.load_weights(folder)


# --- what a file may hold --------------------------------------------------------------------------


class Payload:
    """Unpickling this calls open(marker, 'w'): a file appears if any code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("name", ["text_2.pt", "fine_2.pt", suno.CODEC_FILE])
def test_a_pickled_payload_is_refused_and_never_runs(suno_folder, tmp_path, name):
    folder = copy_folder(suno_folder, tmp_path / "models", skip=name)
    marker = tmp_path / "ran"
    if name == suno.CODEC_FILE:
        torch.save({"decoder.model.0.conv.conv.bias": torch.zeros(2), "note": Payload(marker)}, folder / name)
    else:
        torch.save({"model_args": {"n_layer": 1}, "model": {}, "best_val_loss": Payload(marker)}, folder / name)
    with pytest.raises(CheckpointError, match=rf"{name} holds a pickled object bark-cli will not load \(io.open\)"):
        suno.load_weights(folder)
    assert not marker.exists()
    result = CliRunner().invoke(app, ["models", "info", str(folder)])
    assert result.exit_code == 2 and not marker.exists()
    assert result.stderr.count("\n") == 1 and "(io.open)" in result.stderr
    torch.load(folder / name, weights_only=False)  # the payload is live: an unsafe load runs it
    assert marker.exists()


def rewrite(folder: Path, name: str, change) -> None:
    target = folder / name
    data = torch.load(target.resolve(), weights_only=False)
    change(data["model"])
    target.unlink()
    torch.save(data, target)


def test_a_missing_key_is_named(suno_folder, tmp_path):
    folder = copy_folder(suno_folder, tmp_path / "models")
    rewrite(folder, "coarse_2.pt", lambda model: model.pop("_orig_mod.transformer.h.1.mlp.c_fc.weight"))
    with pytest.raises(CheckpointError, match=r"coarse_2.pt lacks key _orig_mod.transformer.h.1.mlp.c_fc.weight"):
        suno.load_weights(folder)


def test_an_unexpected_key_is_named(suno_folder, tmp_path):
    folder = copy_folder(suno_folder, tmp_path / "models")
    rewrite(folder, "text_2.pt", lambda model: model.update({"_orig_mod.transformer.h.0.attn.q_norm.weight":
                                                             torch.zeros(3)}))
    with pytest.raises(CheckpointError, match=r"text_2.pt has unexpected key _orig_mod.transformer.h.0.attn.q_norm"):
        suno.load_weights(folder)


def test_a_misshaped_key_is_named(suno_folder, tmp_path):
    folder = copy_folder(suno_folder, tmp_path / "models")
    rewrite(folder, "fine_2.pt", lambda model: model.update({"_orig_mod.transformer.h.1.attn.c_attn.weight":
                                                             torch.zeros(96, 16)}))
    with pytest.raises(CheckpointError, match=r"fine_2.pt: _orig_mod.transformer.h.1.attn.c_attn.weight has shape "
                                              r"\(96, 16\), model_args imply \(96, 32\)"):
        suno.load_weights(folder)


def test_impossible_model_args_are_named(suno_folder, tmp_path):
    folder = copy_folder(suno_folder, tmp_path / "models", skip="coarse_2.pt")
    data = torch.load(suno_folder / "coarse_2.pt", weights_only=False)
    data["model_args"]["n_head"] = 3  # 32 wide: not a multiple
    torch.save(data, folder / "coarse_2.pt")
    with pytest.raises(CheckpointError, match=r"coarse_2.pt: model_args hidden_size is 32: must be a multiple"):
        suno.load_weights(folder)
    del data["model_args"]["n_embd"]
    torch.save(data, folder / "coarse_2.pt")
    with pytest.raises(CheckpointError, match=r"coarse_2.pt: model_args lack n_embd"):
        suno.load_weights(folder)


def test_an_unknown_codec_key_is_named(suno_folder, tmp_path):
    folder = copy_folder(suno_folder, tmp_path / "models", skip=suno.CODEC_FILE)
    state = torch.load(suno_folder / suno.CODEC_FILE, weights_only=True)
    state["decoder.model.0.conv.norm.weight"] = torch.zeros(3)
    torch.save(state, folder / suno.CODEC_FILE)
    with pytest.raises(CheckpointError, match="has unexpected key decoder.model.0.conv.norm.weight"):
        suno.load_weights(folder)


# --- the tokenizer ----------------------------------------------------------------------------------


def test_tokenizer_beside_the_files_or_named(suno_folder, tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.delenv(suno.TOKENIZER_ENV)
    folder = copy_folder(suno_folder, tmp_path / "models")
    (folder / "vocab.txt").symlink_to(tiny_checkpoint / "vocab.txt")
    assert suno.tokenizer_folder(folder) == folder
    monkeypatch.setenv(suno.TOKENIZER_ENV, str(tmp_path / "nothing"))
    with pytest.raises(CheckpointError, match=f"{suno.TOKENIZER_ENV}=.* holds no vocab.txt"):
        suno.tokenizer_folder(folder)
    assert suno.tokenizer_folder(tiny_checkpoint) == tiny_checkpoint  # a Hub folder: its own


def test_no_tokenizer_offline_is_a_clear_error(suno_folder, tmp_path, monkeypatch):
    monkeypatch.delenv(suno.TOKENIZER_ENV)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    with pytest.raises(NotCachedError) as caught:
        suno.tokenizer_folder(suno_folder)
    assert "suno/bark-small" in caught.value.message and suno.TOKENIZER_ENV in caught.value.hint


# --- converting ---------------------------------------------------------------------------------------


def test_convert_round_trips(suno_folder, loaded, barks, tmp_path):
    from bark_cli import Bark

    target = suno.convert(suno_folder, tmp_path / "converted")
    assert sorted(p.name for p in target.iterdir()) == sorted(
        ["config.json", "generation_config.json", "model.safetensors", *hub.TOKENIZER_FILES])
    a, b = all_tensors(load_hub_layout(target)), all_tensors(loaded[0])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    converted = Bark.load(target, DeviceOptions(device="cpu", dtype="float32"))
    original = barks[0]
    assert converted.config == original.config
    # greedy, and sampled with Suno's defaults
    for text, options in ((TEXTS[0], GREEDY), (TEXTS[1], dict(sampling=SamplingOptions(max_semantic_tokens=16)))):
        x, y = (bark.generate(text, seed=7, **options) for bark in (converted, original))
        np.testing.assert_array_equal(x.semantic_tokens, y.semantic_tokens)
        np.testing.assert_array_equal(x.fine_tokens, y.fine_tokens)
        np.testing.assert_array_equal(x.audio, y.audio)


def test_convert_loads_in_transformers(suno_folder, hf_tiny, tmp_path):
    from transformers import BarkModel

    target = suno.convert(suno_folder, tmp_path / "converted")
    model = BarkModel.from_pretrained(target)
    reference = hf_tiny.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference[key]), key


def test_convert_refuses_an_existing_folder_and_leaves_nothing(suno_folder, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    result = CliRunner().invoke(app, ["models", "convert", str(suno_folder), str(tmp_path / "taken")])
    assert result.exit_code == 2 and "already exists" in result.stderr
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["keep.txt"]
    broken = copy_folder(suno_folder, tmp_path / "broken", skip="fine_2.pt")
    result = CliRunner().invoke(app, ["models", "convert", str(broken), str(tmp_path / "out")])
    assert result.exit_code == 2 and "lacks fine_2.pt" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "taken"]


def test_cli_convert_and_info(suno_folder, tiny_checkpoint, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["models", "convert", str(suno_folder), str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out" / "model.safetensors").is_file()
    infos = []
    for model in (suno_folder, tiny_checkpoint, tmp_path / "out"):
        result = runner.invoke(app, ["models", "info", str(model), "--json"])
        assert result.exit_code == 0, result.stderr
        infos.append(json.loads(result.stdout)["stages"])
    assert infos[0] == infos[1] == infos[2]


# --- voices -------------------------------------------------------------------------------------------


def write_voices(folder: Path, names: list[str]) -> None:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        np.savez(folder / f"{name}.npz", **make_prompt(name))


def test_import_keeps_the_folder_structure_under_a_prefix(tmp_path):
    write_voices(tmp_path / "prompts", ["announcer", "en_speaker_1", "v2/en_speaker_6"])
    written = dict(presets.import_voices(tmp_path / "prompts"))
    assert sorted(written) == ["suno.announcer", "suno.en_speaker_1", "suno.v2.en_speaker_6"]
    found = presets.find_voice("suno.v2.en_speaker_6")
    assert found.source == "user"
    np.testing.assert_array_equal(found.prompt.fine_prompt, make_prompt("v2/en_speaker_6")["fine_prompt"])
    assert not catalog.is_suno_name("suno.announcer")
    # A Suno name keeps meaning Suno's preset, never the import.
    assert presets.user_voice_path("v2/en_speaker_6") is None


def test_import_one_file_with_a_prefix_and_overwrite(tmp_path):
    write_voices(tmp_path, ["narrator"])
    runner = CliRunner()
    result = runner.invoke(app, ["presets", "import", str(tmp_path / "narrator.npz"), "--prefix", "mine"])
    assert result.exit_code == 0, result.stderr
    assert "imported voice mine.narrator" in result.stdout
    result = runner.invoke(app, ["presets", "import", str(tmp_path / "narrator.npz"), "--prefix", "mine"])
    assert result.exit_code == 2 and "already have a voice named mine.narrator" in result.stderr
    result = runner.invoke(app, ["presets", "import", str(tmp_path / "narrator.npz"), "-p", "mine", "--overwrite"])
    assert result.exit_code == 0


def test_import_writes_nothing_unless_every_voice_is_valid(tmp_path):
    write_voices(tmp_path / "prompts", ["a", "b/c"])
    bad = make_prompt("d")
    bad["coarse_prompt"] = bad["coarse_prompt"][:1]
    np.savez(tmp_path / "prompts" / "d.npz", **bad)
    with pytest.raises(PresetError, match=r"d.npz: coarse_prompt has shape"):
        presets.import_voices(tmp_path / "prompts")
    assert not (tmp_path / "voices").exists()
    result = CliRunner().invoke(app, ["presets", "import", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "does not exist" in result.stderr
