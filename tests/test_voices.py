"""Voice prompts: all 271 real Suno presets load; bad arrays are refused with a clear error."""

from __future__ import annotations

import numpy as np
import pytest

from bark_cli.errors import PresetError
from bark_cli.voice import load_voice_file, save_voice, validate_voice
from tiny_bark import REAL_PRESETS, REAL_REASON, REFERENCE

PROMPTS = REFERENCE / "suno-prompts"


def prompt_files():
    if not PROMPTS.is_dir():
        return []
    return sorted(PROMPTS.glob("*.npz")) + sorted((PROMPTS / "v2").glob("*.npz"))


@pytest.mark.skipif(not REAL_PRESETS, reason=REAL_REASON)
def test_all_271_suno_prompts_load():
    files = prompt_files()
    assert len(files) == 271
    dtypes = set()
    for path in files:
        with np.load(path) as raw:
            dtypes.update(str(raw[k].dtype) for k in raw.files)
            raw_semantic = raw["semantic_prompt"]
        voice = load_voice_file(path)
        assert voice.semantic_prompt.dtype == np.int64 and voice.fine_prompt.dtype == np.int64
        assert voice.coarse_prompt.shape[0] == 2 and voice.fine_prompt.shape[0] == 8
        assert voice.coarse_prompt.shape[1] == voice.fine_prompt.shape[1]
        np.testing.assert_array_equal(voice.semantic_prompt, raw_semantic.astype(np.int64))
    assert {"int64", "int32", "uint16"} <= dtypes  # the casts are exercised


def valid(rng, frames=30):
    return {
        "semantic_prompt": rng.integers(0, 10_000, 20),
        "coarse_prompt": rng.integers(0, 1024, (2, frames)),
        "fine_prompt": rng.integers(0, 1024, (8, frames)),
    }


@pytest.mark.parametrize("edit,message", [
    (lambda a: a.pop("fine_prompt"), "lacks fine_prompt"),
    (lambda a: a.update(semantic_prompt=np.zeros((2, 5), int)), "semantic_prompt has shape"),
    (lambda a: a.update(coarse_prompt=np.zeros((3, 30), int)), r"coarse_prompt must be \(2, T\)"),
    (lambda a: a.update(fine_prompt=np.zeros((8, 29), int)), "cover the same frames"),
    (lambda a: a.update(semantic_prompt=np.array([5, 10_000])), "ids 5..10000"),
    (lambda a: a.update(coarse_prompt=-np.ones((2, 30), int)), "ids -1..-1"),
    (lambda a: a.update(fine_prompt=np.full((8, 30), 0.5)), "dtype float64"),
    (lambda a: a.update(semantic_prompt=np.zeros(0, int)), "is empty"),
])
def test_bad_voices_are_refused(edit, message):
    arrays = valid(np.random.default_rng(0))
    edit(arrays)
    with pytest.raises(PresetError, match=message):
        validate_voice(arrays)


def test_save_and_reload_round_trip(tmp_path):
    voice = validate_voice(valid(np.random.default_rng(1)))
    path = save_voice(voice, tmp_path / "me.npz")
    again = load_voice_file(path)
    for key, value in voice.as_dict().items():
        np.testing.assert_array_equal(getattr(again, key), value)
    assert [p.name for p in tmp_path.iterdir()] == ["me.npz"]


def test_unreadable_file(tmp_path):
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"not a zip")
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    single = tmp_path / "semantic.npy"  # one array, as np.save writes it: np.load returns no archive
    np.save(single, np.zeros(3, dtype=np.int64))
    for path in (bad, empty, single):
        with pytest.raises(PresetError, match="is not a .npz archive"):
            load_voice_file(path)
    corrupt = tmp_path / "corrupt.npz"  # a zip whose member's header is overwritten
    np.savez(corrupt, semantic_prompt=np.zeros(30, dtype=np.int64))
    data = bytearray(corrupt.read_bytes())
    data[:30] = bytes(30)
    corrupt.write_bytes(bytes(data))
    with pytest.raises(PresetError, match="cannot read voice file"):
        load_voice_file(corrupt)
    with pytest.raises(PresetError, match="does not exist"):
        load_voice_file(tmp_path / "absent.npz")
