"""presets.py: the Suno catalog, the user's voices folder, `--voice` resolution, on-disk flags."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bark_cli import catalog, presets
from bark_cli.errors import NotCachedError, PresetError
from bark_cli.voice import MAX_PROMPT_TOKENS, PROMPT_KEYS, load_voice_file, save_voice
from tiny_bark import REAL_REASON, real_reference

ROOT = Path(__file__).resolve().parents[1]
LANGUAGES = "en de es fr hi it ja ko pl pt ru tr zh".split()


@pytest.fixture(autouse=True)
def voices_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "voices"
    monkeypatch.setenv("BARK_VOICES_DIR", str(folder))
    return folder


def make_voice(path: Path, semantic=12, frames=18, **overrides) -> Path:
    rng = np.random.default_rng(0)
    arrays = {
        "semantic_prompt": rng.integers(0, 10_000, semantic),
        "coarse_prompt": rng.integers(0, 1024, (2, frames)),
        "fine_prompt": rng.integers(0, 1024, (8, frames)).astype(np.int32),
    }
    np.savez(path, **{**arrays, **overrides})
    return path


# --- catalog ----------------------------------------------------------------------------------


def test_catalog_has_all_261_suno_names():
    names = [e.name for e in catalog.suno_catalog()]
    assert len(names) == len(set(names)) == 261
    expected = {"announcer"} | {f"{v}{lang}_speaker_{n}" for v in ("", "v2/") for lang in LANGUAGES for n in range(10)}
    assert set(names) == expected
    assert {e.language for e in catalog.suno_catalog()} == set(LANGUAGES)


def test_catalog_matches_the_hub_voice_map():
    """Every name transformers' BarkProcessor knows (the Hub's speaker_embeddings_path.json)."""
    if real_reference() is None:
        pytest.skip(REAL_REASON)
    hub_map = real_reference() / "hf-configs" / "bark-speaker_embeddings_path.json"
    keys = set(json.loads(hub_map.read_text())) - {"repo_or_path"}
    assert keys == {e.name for e in catalog.suno_catalog()}


def test_presets_folder_holds_the_catalog():
    """presets/suno.json is the catalog as a file; regenerate it with catalog.catalog_json()."""
    text = (ROOT / "presets" / "suno.json").read_text()
    assert text == catalog.catalog_json()
    data = json.loads(text)
    assert len(data["presets"]) == 261 and set(data["languages"]) == set(LANGUAGES)
    assert all(set(row) == {"name", "language"} for row in data["presets"])  # names and languages only


# --- user voices ------------------------------------------------------------------------------


def test_voices_dir(monkeypatch, tmp_path):
    assert presets.user_voices_dir() == tmp_path / "voices"
    monkeypatch.delenv("BARK_VOICES_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    if presets.sys.platform.startswith("linux"):
        assert presets.user_voices_dir() == tmp_path / "data" / "bark-cli" / "voices"
    assert presets.user_voices_dir().parts[-2:] == ("bark-cli", "voices")


def test_add_show_remove_round_trip(tmp_path, voices_dir):
    source = make_voice(tmp_path / "mine.npz")
    stored = presets.add_user_voice(source, "narrator")
    assert stored == voices_dir / "narrator.npz"
    assert [name for name, _ in presets.list_user_voices()] == ["narrator"]
    found = presets.find_voice("narrator")  # no model needed for a user voice
    assert found.source == "user" and found.files == (stored,)
    np.testing.assert_array_equal(found.prompt.fine_prompt, np.load(source)["fine_prompt"])
    assert found.prompt.fine_prompt.dtype == np.int64
    assert presets.add_user_voice(source).name == "mine.npz"  # default name: the file's stem
    with pytest.raises(PresetError, match="already have a voice named narrator"):
        presets.add_user_voice(source, "narrator")
    presets.add_user_voice(source, "narrator", overwrite=True)
    assert presets.remove_user_voice("narrator") == stored
    assert not stored.exists()
    with pytest.raises(PresetError, match="no voice named 'narrator'"):
        presets.remove_user_voice("narrator")


@pytest.mark.parametrize("name", ["en_speaker_1", "announcer", "v2/en_speaker_1", "../escape", "a b", "", "x.npz"])
def test_bad_user_voice_names(tmp_path, voices_dir, name):
    with pytest.raises(PresetError):
        presets.add_user_voice(make_voice(tmp_path / "v.npz"), name)
    assert not voices_dir.exists() or not any(voices_dir.iterdir())


def test_add_validates_before_copying(tmp_path, voices_dir):
    bad = make_voice(tmp_path / "bad.npz", coarse_prompt=np.zeros((3, 18), dtype=np.int64))
    with pytest.raises(PresetError, match=r"coarse_prompt has shape \(3, 18\)"):
        presets.add_user_voice(bad, "bad")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(PresetError, match="is not a .npz archive"):
        presets.add_user_voice(tmp_path / "junk.npz", "junk")
    assert not voices_dir.exists()


def test_remove_refuses_suno_names():
    with pytest.raises(PresetError, match="is a Suno preset"):
        presets.remove_user_voice("v2/en_speaker_6")


# --- resolution order -------------------------------------------------------------------------


def test_resolution_order(tmp_path, tiny_checkpoint, monkeypatch):
    path = make_voice(tmp_path / "file.npz", semantic=7)
    assert presets.find_voice(str(path), tiny_checkpoint).source == "file"
    presets.add_user_voice(make_voice(tmp_path / "u.npz", semantic=9), "mine")
    user = presets.find_voice("mine", tiny_checkpoint)
    assert user.source == "user" and len(user.prompt.semantic_prompt) == 9
    suno = presets.find_voice("v2/en_speaker_6", tiny_checkpoint)
    assert suno.source == "suno" and len(suno.files) == 3
    assert all(f.is_relative_to(tiny_checkpoint) for f in suno.files)
    # The library entry point used by Bark.resolve_voice follows the same order.
    assert len(presets.find_voice("mine", tiny_checkpoint).prompt.semantic_prompt) == 9
    monkeypatch.chdir(tmp_path)
    assert len(presets.find_voice("file.npz", tiny_checkpoint).prompt.semantic_prompt) == 7


def test_unknown_name_suggests_a_close_one(tiny_checkpoint):
    with pytest.raises(PresetError, match="unknown voice 'v2/en_speakr_6'") as info:
        presets.find_voice("v2/en_speakr_6", tiny_checkpoint)
    assert "did you mean v2/en_speaker_6" in info.value.hint
    with pytest.raises(PresetError, match="does not exist"):
        presets.find_voice("missing.npz", tiny_checkpoint)


def test_model_voice_without_a_cached_hub_model():
    """A Suno name on a Hub id that is not cached: a clear error offline, never a download."""
    with pytest.raises(NotCachedError, match="not cached and downloads are off"):
        presets.find_voice("v2/en_speaker_6", "bark-cli-tests/not-cached")
    with pytest.raises(PresetError, match="unknown voice"):
        presets.find_voice("nobody", "bark-cli-tests/not-cached")


def test_without_fetch_a_hub_preset_waits_for_the_model(tiny_checkpoint):
    """`bark say` checks --voice before the model loads: nothing is downloaded for it."""
    assert presets.find_voice("v2/en_speaker_6", "bark-cli-tests/not-cached", fetch=False) is None
    with pytest.raises(PresetError, match="unknown voice 'nobody'"):
        presets.find_voice("nobody", "bark-cli-tests/not-cached", fetch=False)
    local = presets.find_voice("v2/en_speaker_6", tiny_checkpoint, fetch=False)  # a folder's own files: read now
    assert local.source == "suno" and all(f.is_relative_to(tiny_checkpoint) for f in local.files)


# --- listing ----------------------------------------------------------------------------------


def test_list_voices_on_disk_and_language(tmp_path, tiny_checkpoint):
    presets.add_user_voice(make_voice(tmp_path / "v.npz"), "mine")
    entries = presets.list_voices(tiny_checkpoint)
    assert len(entries) == 262 and all(e.on_disk for e in entries)
    assert entries[-1] == presets.VoiceEntry("mine", None, "user", True, presets.user_voices_dir() / "mine.npz")
    german = presets.list_voices(tiny_checkpoint, language="de")
    assert len(german) == 20 and {e.language for e in german} == {"de"}
    with pytest.raises(PresetError, match="no voices for language"):
        presets.list_voices(tiny_checkpoint, language="xx")


def test_on_disk_is_false_for_an_uncached_hub_model(tmp_path):
    flags = presets.suno_on_disk("bark-cli-tests/not-cached")
    assert len(flags) == 261 and not any(flags.values())
    assert not any(presets.suno_on_disk(tmp_path).values())  # a folder without speaker_embeddings/
    assert not any(presets.suno_on_disk("not a repo id!").values())


def test_saved_voice_round_trips(tmp_path):
    voice = load_voice_file(make_voice(tmp_path / "a.npz"))
    saved = save_voice(voice, tmp_path / "sub" / "b.npz")
    again = load_voice_file(saved)
    for key in PROMPT_KEYS:
        np.testing.assert_array_equal(getattr(again, key), getattr(voice, key))
    assert saved.stat().st_mode & 0o044  # readable like any file, not mkstemp's 0600


# --- sizes are checked from the .npy header, before any data is read ---------------------------


def _npz_with_header(path: Path, key: str, header: dict, data: bytes = b"") -> Path:
    """A voice .npz whose `key` member has a hand-made header over `data` (the other two are fine)."""
    import io
    import zipfile

    good = {"semantic_prompt": np.arange(10, dtype=np.int64), "coarse_prompt": np.zeros((2, 6), np.int64),
            "fine_prompt": np.zeros((8, 6), np.int64)}
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in good.items():
            member = io.BytesIO()
            if name == key:
                np.lib.format.write_array_header_1_0(member, header)
                member.write(data)
            else:
                np.save(member, array)
            archive.writestr(f"{name}.npy", member.getvalue())
    return path


@pytest.mark.parametrize("key,header,message", [
    ("semantic_prompt", {"descr": "<i8", "fortran_order": False, "shape": (2**40,)}, "more than the 4096"),
    ("semantic_prompt", {"descr": "<i8", "fortran_order": False, "shape": (MAX_PROMPT_TOKENS + 1,)},
     "more than the 4096"),
    ("coarse_prompt", {"descr": "<i8", "fortran_order": False, "shape": (2, 10**9)}, "frames, more than"),
    ("fine_prompt", {"descr": "<i8", "fortran_order": False, "shape": (8, 4, 4)}, "has shape (8, 4, 4)"),
    ("coarse_prompt", {"descr": "<f4", "fortran_order": False, "shape": (2, 6)}, "has dtype float32"),
    ("semantic_prompt", {"descr": "<U3", "fortran_order": False, "shape": (3,)}, "has dtype <U3"),
])
def test_voice_sizes_and_types_are_refused_from_the_header(tmp_path, key, header, message):
    # The member holds 8 bytes of data whatever its header claims: a refusal from the header is
    # the only way to name the size (reading would fail as "cut short" instead).
    path = _npz_with_header(tmp_path / "v.npz", key, header, b"\x00" * 8)
    with pytest.raises(PresetError) as caught:
        load_voice_file(path)
    assert message in caught.value.message and key in caught.value.message


def test_a_voice_at_the_limit_loads_and_a_cut_one_is_refused(tmp_path):
    limit = MAX_PROMPT_TOKENS
    path = _npz_with_header(tmp_path / "big.npz", "semantic_prompt",
                            {"descr": "<i2", "fortran_order": False, "shape": (limit,)},
                            np.full(limit, 9, np.int16).tobytes())
    voice = load_voice_file(path)
    assert voice.semantic_prompt.shape == (limit,) and voice.semantic_prompt.dtype == np.int64
    assert set(voice.semantic_prompt.tolist()) == {9}
    cut = _npz_with_header(tmp_path / "cut.npz", "semantic_prompt",
                           {"descr": "<i2", "fortran_order": False, "shape": (100,)}, b"\x01\x00" * 10)
    with pytest.raises(PresetError, match="cut short"):
        load_voice_file(cut)


def test_fortran_ordered_voice_arrays_read_as_numpy_does(tmp_path):
    coarse = np.asfortranarray(np.arange(12, dtype=np.int64).reshape(2, 6))
    np.savez(tmp_path / "f.npz", semantic_prompt=np.arange(4), coarse_prompt=coarse,
             fine_prompt=np.asfortranarray(np.arange(48, dtype=np.int64).reshape(8, 6) % 1024))
    voice = load_voice_file(tmp_path / "f.npz")
    with np.load(tmp_path / "f.npz") as data:  # numpy's own reader is the oracle
        for key in PROMPT_KEYS:
            np.testing.assert_array_equal(getattr(voice, key), data[key])


def test_a_preset_npy_is_checked_from_its_header(tiny_checkpoint, tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, folder)
    rel = presets.read_voice_map(folder)["v2/en_speaker_0"]["semantic_prompt"]
    with open(folder / rel, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<i8", "fortran_order": False, "shape": (10**8,)})
    with pytest.raises(PresetError, match="more than the 4096"):
        presets.find_voice("v2/en_speaker_0", folder)
