"""The text tokenizer against transformers' BERT tokenizers on the real bert-base-multilingual-cased
vocabulary (bark-spec §2).

Oracles, from most to least independent of ours:
- `BertTokenizerLegacy`: transformers' pure-Python BERT tokenizer, the slow `BertTokenizer` that
  Suno's code calls (transformers 5 renamed it). Ours must match it on every line.
- `BertTokenizer` (in transformers 5 the Rust-backed fast one; `BertTokenizerFast` is an alias)
  built from vocab.txt, and `AutoTokenizer` on tokenizer.json + tokenizer_config.json, the route
  HF's BarkProcessor takes. These skip the slow tokenizer's NFC step, so they are fed NFC text.
"""

from __future__ import annotations

import ast
import json
import random
import unicodedata
from pathlib import Path

import pytest

from bark_cli.errors import CheckpointError
from bark_cli.text import TextTokenizer, load_tokenizer, normalize_whitespace

from tiny_bark import REAL_REASON, real_reference  # noqa: E402

REAL = real_reference() or Path("/nonexistent-reference")  # absent: the tests below skip
TOKENIZER_DIR = REAL / "tokenizer"
HF_CONFIGS = REAL / "hf-configs"
N_LINES = 1200


def _need_reference() -> None:
    for path in (TOKENIZER_DIR / "vocab.txt", TOKENIZER_DIR / "tokenizer.json",
                 HF_CONFIGS / "bark-tokenizer_config.json", HF_CONFIGS / "bark-special_tokens_map.json"):
        if not path.is_file():
            pytest.skip(REAL_REASON)


def _folder(tmp: Path, *, tokenizer_json: bool, vocab: bool, config: dict | None = None) -> Path:
    """A checkpoint-like folder in tmp: links to the shared files (never copies in the repo)."""
    tmp.mkdir(parents=True, exist_ok=True)
    if tokenizer_json:
        (tmp / "tokenizer.json").symlink_to(TOKENIZER_DIR / "tokenizer.json")
    if vocab:
        (tmp / "vocab.txt").symlink_to(TOKENIZER_DIR / "vocab.txt")
    (tmp / "special_tokens_map.json").symlink_to(HF_CONFIGS / "bark-special_tokens_map.json")
    if config is None:
        (tmp / "tokenizer_config.json").symlink_to(HF_CONFIGS / "bark-tokenizer_config.json")
    else:
        (tmp / "tokenizer_config.json").write_text(json.dumps(config))
    return tmp


def _bare_vocab_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "vocab.txt").symlink_to(TOKENIZER_DIR / "vocab.txt")
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    _need_reference()
    root = tmp_path_factory.mktemp("tok")
    return {
        "json": _folder(root / "json", tokenizer_json=True, vocab=True),
        "vocab": _folder(root / "vocab", tokenizer_json=False, vocab=True),
        "bare": _bare_vocab_folder(root / "bare"),
    }


@pytest.fixture(scope="module")
def ours(folders) -> TextTokenizer:
    return load_tokenizer(folders["json"])


@pytest.fixture(scope="module")
def ours_vocab(folders) -> TextTokenizer:
    return load_tokenizer(folders["vocab"])


@pytest.fixture(scope="module")
def legacy():
    _need_reference()
    pytest.importorskip("transformers", reason="transformers is the test oracle (pip install -e '.[test]')")
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    return BertTokenizerLegacy(
        str(TOKENIZER_DIR / "vocab.txt"), do_lower_case=False, tokenize_chinese_chars=True, strip_accents=None
    )


@pytest.fixture(scope="module")
def fast():
    _need_reference()
    pytest.importorskip("transformers", reason="transformers is the test oracle (pip install -e '.[test]')")
    from transformers import BertTokenizer, BertTokenizerFast

    assert BertTokenizer is BertTokenizerFast  # transformers 5: one Rust-backed class
    return BertTokenizer(
        vocab=str(TOKENIZER_DIR / "vocab.txt"),
        do_lower_case=False, tokenize_chinese_chars=True, strip_accents=None,
    )


# ----------------------------------------------------------------------------------------------
# A deterministic multilingual corpus

_ENGLISH = (
    "Hello world the quick brown fox jumps over lazy dog I am so happy today it's don't can't "
    "well um uh Bark speech laughing music singing everyone tomorrow unbelievable internationalization "
    "tokenizer WordPiece CAPITALS McDonald's O'Neil e-mail state-of-the-art ok OK a an of to"
).split()
_ACCENTED = ("café naïve Ångström façade Dvořák crème brûlée São Paulo Müller résumé Łódź Ærøskøbing "
             "jalapeño Zürich coöperate Ελλάδα Việt Nam Tiếng Việt über Straße").split()
_CYRILLIC = "Привет мир Ёлка щука Москва съешь же ещё этих мягких булок".split()
_ARABIC = ("مرحبا", "بالعالم", "مَرْحَبًا", "السلام عليكم", "١٢٣", "كتاب")
_KOREAN = ("안녕하세요", "세계", "한국어", "감사합니다", "사랑해")
_JAPANESE = ("こんにちは", "ありがとう", "カタカナ", "ひらがな", "東京タワー", "ラーメン")
_EMOJI = ("😀", "🎉", "👍🏽", "❤️", "🇫🇷", "👨\u200d👩\u200d👧", "🐶", "✨", "🙏")  # all in Unicode ≤ 12
_CUES = ("[laughter]", "[sighs]", "[music]", "[laughs]", "[clears throat]", "[gasps]", "[MAN]", "[WOMAN]",
         "♪", "♪ la la la ♪", "—", "...")
_PUNCT = tuple(".,!?;:'\"()-—…«»「」。、！？·@#$%^&*_+=/\\|~`<>{}[]")
_CONTROL = ("\x00", "\x01", "\x07", "\x1b", "\x7f", "\x85", "\ufffd", "\u200b", "\u200d", "\ufeff", "\u00ad",
            "\u2060", "\ue000")
_SPACES = (" ", "\t", "\u00a0", "\u3000", "\n", "\r\n", "\u2028", "\u2009", "\x0b", "\x0c", "  ", " \n\n ")


def _pick_run(rng: random.Random, lo: int, hi: int, n_max: int) -> str:
    return "".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, n_max)))


def _fragment(rng: random.Random) -> str:
    kind = rng.randrange(17)
    if kind <= 3:
        word = rng.choice(_ENGLISH)
        return word.capitalize() if rng.random() < 0.2 else word
    if kind == 4:
        return _pick_run(rng, 0x4E00, 0x9FA5, 8)  # CJK ideographs
    if kind == 5:
        if rng.random() < 0.5:
            return rng.choice(_JAPANESE)
        return _pick_run(rng, 0x3041, 0x3096, 6) + _pick_run(rng, 0x30A1, 0x30FA, 4)  # kana
    if kind == 6:
        word = rng.choice(_KOREAN) if rng.random() < 0.6 else _pick_run(rng, 0xAC00, 0xD7A3, 4)
        return unicodedata.normalize("NFD", word) if rng.random() < 0.2 else word  # NFD: conjoining jamo
    if kind == 7:
        word = rng.choice(_ACCENTED)
        return unicodedata.normalize("NFD", word) if rng.random() < 0.4 else word
    if kind == 8:
        return rng.choice(_CYRILLIC) if rng.random() < 0.6 else _pick_run(rng, 0x0410, 0x044F, 7)
    if kind == 9:
        return rng.choice(_ARABIC)
    if kind == 10:
        return rng.choice(_EMOJI)
    if kind == 11:
        return rng.choice(_CUES)
    if kind == 12:
        return rng.choice((str(rng.randint(0, 10**rng.randint(1, 9))), f"{rng.random() * 100:.2f}",
                           "1,000", "2nd", "50%", "3.14159", "10:30", "1990s", "№5"))
    if kind == 13:
        return "".join(rng.choice(_PUNCT) for _ in range(rng.randint(1, 3)))
    if kind == 14:
        return rng.choice(_CONTROL)
    if kind == 15:  # a word over WordPiece's 100-character limit, CJK compatibility forms, CJK Ext. E
        return rng.choice(("x" * 120, "supercalifragilistic" * 6, "\uf900\uf901", "\U0002B740\U0002B920")
                          + ("a\U0002B820b",) * (rng.random() < 0.05))
    return rng.choice(_SPACES)


def make_lines(n: int = N_LINES, seed: int = 1234) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 25)):
            parts.append(_fragment(rng))
            parts.append(rng.choice((" ", " ", " ", " ", "", rng.choice(_SPACES))))
        if rng.random() < 0.3:
            parts.insert(0, rng.choice(_SPACES))
        lines.append("".join(parts))
    return lines


LINES = make_lines()


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _rust_gap(text: str) -> bool:
    """Characters the Rust normaliser forgets to space out (see test_cjk_extension_e_gap)."""
    return any(0x2B820 <= ord(c) <= 0x2B91F for c in text)


FAST_LINES = [line for line in LINES if not _rust_gap(line)]


# ----------------------------------------------------------------------------------------------
# Agreement with the oracles


def test_corpus_is_varied():
    text = "".join(LINES)
    assert len(LINES) >= 1000
    for needle in ("[laughter]", "♪", "\u3000", "\u00a0", "\u200b", "\t", "\n", "e\u0301", "\x00", "😀"):
        assert needle in text, needle
    assert sum(unicodedata.normalize("NFC", line) != line for line in LINES) > 50  # NFD forms


def test_matches_slow_bert_tokenizer(ours, legacy):
    mismatches = []
    for line in LINES:
        got, want = ours.encode(line), legacy.encode(normalize_whitespace(line), add_special_tokens=False)
        if got != want:
            mismatches.append((line, got, want))
    assert not mismatches[:5], f"{len(mismatches)} lines differ"


def test_matches_fast_bert_tokenizer(ours, fast):
    assert len(FAST_LINES) > 1000
    for line in FAST_LINES:
        want = fast.encode(_nfc(normalize_whitespace(line)), add_special_tokens=False)
        assert ours.encode(line) == want, repr(line)


def test_matches_auto_tokenizer_from_hub_files(ours, folders):
    """AutoTokenizer reads tokenizer.json and tokenizer_config.json, as HF's BarkProcessor does."""
    pytest.importorskip("transformers", reason="transformers is the test oracle (pip install -e '.[test]')")
    from transformers import AutoTokenizer

    auto = AutoTokenizer.from_pretrained(str(folders["json"]))
    assert auto.do_lower_case is False
    for line in FAST_LINES[:300]:
        assert ours.encode(line) == auto.encode(_nfc(normalize_whitespace(line)), add_special_tokens=False)


def test_vocab_txt_path_matches_tokenizer_json_path(ours, ours_vocab, legacy, folders):
    assert ours_vocab.vocab_size == ours.vocab_size == 119_547
    assert ours_vocab.encode_batch(LINES) == ours.encode_batch(LINES)
    bare = load_tokenizer(folders["bare"])  # vocab.txt alone: Bark's settings, default specials
    for line in LINES[:300]:
        assert bare.encode(line) == legacy.encode(normalize_whitespace(line), add_special_tokens=False)


def test_tokenizer_json_without_config(ours):
    """The shared folder itself has tokenizer.json and vocab.txt but no tokenizer_config.json:
    tokenizer.json's own normaliser (cased) must hold."""
    _need_reference()
    plain = load_tokenizer(TOKENIZER_DIR)
    assert plain.encode_batch(LINES[:200]) == ours.encode_batch(LINES[:200])


# ----------------------------------------------------------------------------------------------
# Known ids and edge cases


def test_known_ids_and_no_special_tokens(ours):
    assert ours.encode("Hello world") == [31178, 11356]
    assert ours.encode("Hello") == [31178]
    assert ours.encode("world") == [11356]
    assert ours.encode("  Hello \n\t world  ") == [31178, 11356]
    for ids in ours.encode_batch(LINES):
        assert 101 not in ids and 102 not in ids  # [CLS], [SEP]: never added (no literal ones in LINES)


def test_cues_and_notes_are_plain_text(ours):
    assert ours.encode("[laughter]") == [164, 27207, 45953, 166]  # "[", "laugh", "##ter", "]"
    assert ours.encode("♪") == [1873]


def test_literal_special_token_text_behaves_like_suno(ours, legacy):
    """A literal "[SEP]" in the text is that token, in Suno's slow tokenizer and in ours."""
    for text in ("[CLS] hi [SEP]", "x[MASK]y", "[UNK]", "[PAD]", "[cls]"):
        assert ours.encode(text) == legacy.encode(text, add_special_tokens=False)


def test_nfd_input_is_composed_like_the_slow_tokenizer(ours, legacy, fast):
    nfd = unicodedata.normalize("NFD", "café Dvořák 한국")
    assert ours.encode(nfd) == ours.encode("café Dvořák 한국")
    assert ours.encode(nfd) == legacy.encode(nfd, add_special_tokens=False)
    assert fast.encode(nfd, add_special_tokens=False) != ours.encode(nfd)  # the gap we close


def test_cjk_extension_e_gap(ours, legacy, fast):
    """tokenizers' BertNormalizer starts CJK Extension E at U+2B920, not U+2B820; we follow Suno's."""
    text = "a\U0002B820b \U0002B91Fc"
    assert ours.encode(text) == legacy.encode(text, add_special_tokens=False)
    assert fast.encode(text, add_special_tokens=False) != ours.encode(text)


def test_empty_and_blank_text(ours):
    assert ours.encode("") == []
    assert ours.encode(" \t\n\u3000\u00a0 ") == []
    assert ours.encode("\u200b\x00") == []  # only characters the cleaning drops
    assert ours.count_tokens("") == 0
    assert ours.encode_batch(["", "Hello", " "]) == [[], [31178], []]


def test_count_tokens(ours):
    for line in LINES[:100]:
        assert ours.count_tokens(line) == len(ours.encode(line))


def test_long_text_is_not_truncated(ours):
    assert len(ours.encode("Hello " * 1000)) == 1000  # truncation to 256 is the pipeline's job


def test_normalize_whitespace():
    assert normalize_whitespace("  a\t\tb\n\nc\u00a0d\u3000e\u2028f \r\n ") == "a b c d e f"
    assert normalize_whitespace("a\u200bb") == "a\u200bb"  # zero-width space is not whitespace
    assert normalize_whitespace("") == ""
    assert normalize_whitespace(" \n ") == ""


# ----------------------------------------------------------------------------------------------
# tokenizer_config.json wins; missing or broken files


@pytest.mark.parametrize("with_json", [True, False])
def test_config_settings_win(tmp_path, with_json, legacy):
    _need_reference()
    pytest.importorskip("transformers", reason="transformers is the test oracle (pip install -e '.[test]')")
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    folder = _folder(tmp_path, tokenizer_json=with_json, vocab=True,
                     config={"do_lower_case": True, "tokenize_chinese_chars": False})
    lower = load_tokenizer(folder)
    oracle = BertTokenizerLegacy(
        str(TOKENIZER_DIR / "vocab.txt"), do_lower_case=True, tokenize_chinese_chars=False
    )
    for text in ("Hello World Éclair", "中文字符 mixed", "ÀÉÎ naïve"):
        assert lower.encode(text) == oracle.encode(text, add_special_tokens=False)
    assert lower.encode("Hello") != legacy.encode("Hello", add_special_tokens=False)


def test_missing_files_name_the_folder(tmp_path):
    empty = tmp_path / "empty-checkpoint"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="empty-checkpoint") as info:
        load_tokenizer(empty)
    assert info.value.hint
    with pytest.raises(CheckpointError, match="nowhere"):
        load_tokenizer(tmp_path / "nowhere")


def test_broken_files(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    (tmp_path / "vocab.txt").write_text("[PAD]\nhello\n")
    with pytest.raises(CheckpointError, match=r"\[UNK\]"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="tokenizer_config.json"):
        load_tokenizer(tmp_path)


def _imported_roots(source: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_text_module_never_imports_transformers():
    package = Path(__file__).resolve().parents[1] / "bark_cli" / "text"
    sources = sorted(package.glob("*.py"))
    assert {p.name for p in sources} >= {"__init__.py", "tokenizer.py", "splitter.py"}
    for source in sources:
        assert "transformers" not in _imported_roots(source), source.name
    assert "tokenizers" in _imported_roots(package / "tokenizer.py")
