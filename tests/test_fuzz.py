"""Seeded fuzzing of the places outside input enters: the text splitter and tokenizer, the output
template, the voice reader and the config reader. Every generated input must give a result or
the documented typed error, never another exception. Seeds are fixed, so a failure repeats."""

from __future__ import annotations

import io
import json
import random
import zipfile

import numpy as np
import pytest

from bark_cli.batch import Template
from bark_cli.errors import CheckpointError, InputError, PresetError
from bark_cli.text import load_tokenizer, plan_segments
from bark_cli.voice import MAX_PROMPT_FRAMES, MAX_PROMPT_TOKENS, load_voice_file
from bark_cli.weights import weight_files, read_configs
from tiny_bark import make_prompt, write_tokenizer_files

# Pieces random texts are built from: words, Bark's markers, punctuation of several scripts,
# control and format characters, surrogate-free odd code points, long runs.
PIECES = ["Hello", "world", " ", "  ", ".", "!", "?", "...", "[laughter]", "[", "]", "♪", "。", "？", "，",
          "\n", "\t", "\r\n", "\x00", "\x0b", "\u200b", "\u202e", "\ufeff", "é", "ß", "日本語", "😀", "👩‍👩‍👧",
          "a" * 300, "-" * 50, "1234567890", "«", "»", "—", "'", '"', "\\", "{", "}", "\U0010ffff", "ﷺ"]


def random_text(rng: random.Random) -> str:
    if rng.random() < 0.3:  # raw code points, any plane (no lone surrogates: Python str allows them, UTF-8 not)
        return "".join(chr(rng.choice([rng.randrange(0x20), rng.randrange(0xD800), rng.randrange(0xE000, 0x110000)]))
                       for _ in range(rng.randrange(0, 60)))
    return "".join(rng.choice(PIECES) for _ in range(rng.randrange(0, 40)))


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokenizer")
    write_tokenizer_files(folder)
    return load_tokenizer(folder)


def test_fuzz_splitter_and_tokenizer(tokenizer):
    rng = random.Random(1)
    for _ in range(3000):
        text = random_text(rng)
        max_chars = rng.choice([1, 2, 5, 40, 220, 10**9, 0, -3])
        try:
            plan = plan_segments(tokenizer, text, max_chars, rng.choice([256, 8, 1]))
        except InputError:
            continue
        assert all(isinstance(s, str) and s.strip() and isinstance(n, int) and n >= 0 for s, n in plan)
        ids = tokenizer.encode(text)
        assert all(isinstance(i, int) and 0 <= i < tokenizer.vocab_size for i in ids)


TEMPLATE_PIECES = ["{index}", "{line}", "{stem}", "{index:05d}", "{line:012d}", "{", "}", "{{", "}}", ".wav",
                   "/", "..", "x", "{index:", ":", "d", "0", "{index.real}", "{stem[0]}", "{index!r}", "{0}",
                   "{index:0999999999999d}", "{index:-5d}", "%s", "\x00", "é", "{ index }"]


def test_fuzz_template(tmp_path):
    rng = random.Random(2)
    for _ in range(4000):
        if rng.random() < 0.2:
            text = "".join(chr(rng.randrange(0x20, 0x250)) for _ in range(rng.randrange(0, 20)))
        else:
            text = "".join(rng.choice(TEMPLATE_PIECES) for _ in range(rng.randrange(0, 8)))
        try:
            template = Template(text)
        except InputError as exc:
            assert "bad output template" in exc.message
            continue
        index, line = rng.randrange(10**6), rng.choice([None, 1, 99])
        # The language is a strict subset of str.format, so str.format is the oracle for what it accepts.
        assert template.render(index, line, "stem") == text.format(index=index, line=line or 0, stem="stem")


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _mutated_voice(rng: random.Random) -> bytes:
    """A voice archive with something wrong: bytes flipped or cut, huge or odd arrays, junk."""
    choice = rng.randrange(6)
    if choice == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 400)))
    good = _npz(make_prompt("v2/en_speaker_1"))
    if choice == 1:
        data = bytearray(good)
        for _ in range(rng.randrange(1, 20)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if choice == 2:
        return good[: rng.randrange(len(good))]
    if choice == 3:
        arrays = make_prompt("v2/en_speaker_1")
        key = rng.choice(list(arrays))
        arrays[key] = rng.choice([
            np.zeros((0,), np.int64), np.zeros((3, 3, 3), np.int64), np.array([1.5, 2.5]),
            np.array(["a", "b"]), np.array([-1, 2]), np.array([2**40]), np.zeros((2,), np.bool_),
            np.zeros((8, 5), np.uint16), np.zeros((2, 7), np.int8), np.array(7),
        ])
        return _npz(arrays)
    if choice == 4:  # a header that claims a huge array over a few bytes of data
        header = {"descr": "<i8", "fortran_order": False, "shape": (rng.choice([10**6, 2**40, MAX_PROMPT_TOKENS + 1]),)}
        buffer = io.BytesIO()
        np.lib.format.write_array_header_1_0(buffer, header)
        buffer.write(b"\x00" * 64)
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr("semantic_prompt.npy", buffer.getvalue())
            for key in ("coarse_prompt", "fine_prompt"):
                member = io.BytesIO()
                np.save(member, make_prompt("v2/en_speaker_1")[key])
                z.writestr(f"{key}.npy", member.getvalue())
        return archive.getvalue()
    # a header with a hand-written, possibly malformed dictionary
    dictionary = rng.choice(["{'descr': '<i8', 'fortran_order': False, 'shape': (5,), }",
                             "{'descr': 'O', 'fortran_order': False, 'shape': (2,), }",
                             "{'descr': '<i8', 'fortran_order': True, 'shape': (2, -3), }",
                             "{'descr': [('a', '<i8')], 'fortran_order': False, 'shape': (2,), }",
                             "__import__('os')", "{" * 500, "{'descr': '<i8'}", ""])
    body = dictionary.encode("latin1")
    body += b" " * (-(len(body) + 11) % 64) + b"\n"
    member = b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body + b"\x00" * 40
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        for key in ("semantic_prompt", "coarse_prompt", "fine_prompt"):
            z.writestr(f"{key}.npy", member)
    return archive.getvalue()


def test_fuzz_voice_reader(tmp_path):
    rng = random.Random(3)
    path = tmp_path / "voice.npz"
    outcomes = {"ok": 0, "refused": 0}
    for _ in range(1500):
        path.write_bytes(_mutated_voice(rng))
        try:
            voice = load_voice_file(path)
        except PresetError:
            outcomes["refused"] += 1
            continue
        outcomes["ok"] += 1
        assert voice.semantic_prompt.dtype == np.int64 and len(voice.semantic_prompt) <= MAX_PROMPT_TOKENS
        assert voice.coarse_prompt.shape[1] == voice.fine_prompt.shape[1] <= MAX_PROMPT_FRAMES
    assert outcomes["ok"] and outcomes["refused"]  # both outcomes were reached


ODD_VALUES = [0, -1, 1, 3, 7, 2**31, 10**30, 1e308, -1e-9, 0.5, 1.0, float("nan"), float("inf"), "12", "", None,
              [], [1], [0, 0], {}, {"a": 1}, True, False, 2.0000001]
CONFIG_KEYS = {
    "semantic_config": ["block_size", "input_vocab_size", "output_vocab_size", "num_layers", "num_heads",
                        "hidden_size", "dropout", "bias"],
    "fine_acoustics_config": ["n_codes_total", "n_codes_given", "num_heads", "hidden_size"],
    "codec_config": ["sampling_rate", "upsampling_ratios", "codebook_size", "target_bandwidths", "num_filters",
                     "pad_mode", "codebook_dim", "num_lstm_layers", "trim_right_ratio"],
}
GENERATION_KEYS = ["sample_rate", "codebook_size", "semantic_config.max_new_tokens", "semantic_config.temperature",
                   "semantic_config.top_k", "semantic_config.top_p", "fine_acoustics_config.max_fine_history_length",
                   "fine_acoustics_config.max_fine_input_length", "coarse_acoustics_config.sliding_window_len",
                   "semantic_config.semantic_rate_hz", "coarse_acoustics_config.n_coarse_codebooks",
                   "semantic_config.min_eos_p", "semantic_config.eos_token_id"]


def _set(data: dict, dotted: str, value) -> None:
    *sections, key = dotted.split(".")
    for section in sections:
        data = data.setdefault(section, {})
    data[key] = value


def test_fuzz_config_reader(tmp_path):
    rng = random.Random(4)
    outcomes = {"ok": 0, "refused": 0}
    for _ in range(2000):
        config: object = {}
        generation: object = {}
        for _ in range(rng.randrange(0, 4)):
            section = rng.choice(list(CONFIG_KEYS))
            _set(config, f"{section}.{rng.choice(CONFIG_KEYS[section])}", rng.choice(ODD_VALUES))
        for _ in range(rng.randrange(0, 3)):
            _set(generation, rng.choice(GENERATION_KEYS), rng.choice(ODD_VALUES))
        if rng.random() < 0.1:
            config = rng.choice(ODD_VALUES)
        if rng.random() < 0.1:
            config = {rng.choice(list(CONFIG_KEYS)): rng.choice(ODD_VALUES)}
        text = json.dumps(config)
        if rng.random() < 0.05:
            text = text[: rng.randrange(len(text) + 1)] + rng.choice(["", "{", "\x00", "]"])
        (tmp_path / "config.json").write_text(text)
        (tmp_path / "generation_config.json").write_text(json.dumps(generation))
        try:
            shapes, constants = read_configs(tmp_path)
        except CheckpointError:
            outcomes["refused"] += 1
            continue
        outcomes["ok"] += 1
        for sub in (shapes.semantic, shapes.coarse, shapes.fine):
            assert sub.hidden_size % sub.num_heads == 0 and sub.block_size >= 1
        assert constants.sample_rate >= 1 and constants.max_fine_history_length < constants.max_fine_input_length
    assert outcomes["ok"] and outcomes["refused"]


# --- known bad values, each refused with its key named ------------------------------------------


@pytest.mark.parametrize("config,key", [
    ({"semantic_config": {"num_heads": 0}}, "semantic_config.num_heads"),
    ({"semantic_config": {"num_heads": 5}}, "semantic_config.hidden_size"),
    ({"coarse_acoustics_config": {"block_size": 0}}, "coarse_acoustics_config.block_size"),
    ({"fine_acoustics_config": {"hidden_size": "768"}}, "fine_acoustics_config.hidden_size"),
    ({"fine_acoustics_config": {"n_codes_given": 9}}, "fine_acoustics_config.n_codes_given"),
    ({"semantic_config": [1, 2]}, "semantic_config"),
    ({"semantic_config": {"num_layers": 10**12}}, "semantic_config.num_layers"),
    ({"codec_config": {"upsampling_ratios": []}}, "codec_config.upsampling_ratios"),
    ({"codec_config": {"upsampling_ratios": [8, 0]}}, "codec_config.upsampling_ratios"),
    ({"codec_config": {"target_bandwidths": [0.001]}}, "codec_config.target_bandwidths"),
    ({"codec_config": {"sampling_rate": None, "codebook_size": 1}}, "codec_config.codebook_size"),
    ({"semantic_config": {"bias": "yes"}}, "semantic_config.bias"),
    ([], "the file"),
])
def test_bad_config_values_name_their_key(tmp_path, config, key):
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as caught:
        read_configs(tmp_path)
    assert key in caught.value.message and "config.json" in caught.value.message


@pytest.mark.parametrize("generation,key", [
    ({"sample_rate": 0}, "sample_rate"),
    ({"sample_rate": "24000"}, "sample_rate"),
    ({"fine_acoustics_config": {"max_fine_history_length": 1024}}, "max_fine_history_length"),
    ({"coarse_acoustics_config": {"sliding_window_len": 0}}, "sliding_window_len"),
    ({"semantic_config": {"top_p": 0}}, "semantic_top_p"),
    ({"semantic_config": {"temperature": -1}}, "semantic_temperature"),
    ({"semantic_config": 5}, "semantic_config"),
])
def test_impossible_generation_values_are_refused_at_load(tmp_path, generation, key):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "generation_config.json").write_text(json.dumps(generation))
    with pytest.raises(CheckpointError) as caught:
        read_configs(tmp_path)
    assert key in caught.value.message and "generation_config.json" in caught.value.message


@pytest.mark.parametrize("index,message", [
    ("{not json", "cannot read"),
    ('{"weight_map": []}', "weight_map"),
    ('{"weight_map": {"a": 3}}', "weight_map['a']"),
    ('[1]', "weight_map"),
    ('{"weight_map": {"a": "/etc/passwd"}}', "outside the model folder"),
    ('{"weight_map": {"a": "../model-1.safetensors"}}', "outside the model folder"),
    ('{"weight_map": {"a": "sub/../../x.safetensors"}}', "outside the model folder"),
])
def test_a_broken_shard_index_is_a_checkpoint_error(tmp_path, index, message):
    (tmp_path / "model.safetensors.index.json").write_text(index)
    with pytest.raises(CheckpointError) as caught:
        weight_files(tmp_path)
    assert message in caught.value.message


def test_a_shard_link_out_of_the_folder_is_refused(tmp_path):
    model, outside = tmp_path / "model", tmp_path / "outside.safetensors"
    model.mkdir()
    outside.write_bytes(b"x")
    (model / "model-1.safetensors").symlink_to(outside)
    (model / "model.safetensors.index.json").write_text('{"weight_map": {"a": "model-1.safetensors"}}')
    with pytest.raises(CheckpointError, match="outside the model folder"):
        weight_files(model)
    (model / "model-1.safetensors").unlink()
    (model / "model-1.safetensors").write_bytes(b"x")
    assert weight_files(model) == [model / "model-1.safetensors"]
