"""Text to ids: Suno's whitespace clean-up and the BERT tokenizer (bark-spec §2).

The tokenizer is `bert-base-multilingual-cased` run by the `tokenizers` library (never
transformers). It reproduces the ids of the slow `BertTokenizer` Suno calls,
`tokenizer.encode(text, add_special_tokens=False)`: cased, CJK ideographs split one per token,
accents kept, no [CLS]/[SEP].
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordPiece

from ..errors import CheckpointError

_WHITESPACE = re.compile(r"\s+")


def normalize_whitespace(text: str) -> str:
    """Suno's `_normalize_whitespace`: each run of whitespace (`\\s+`: tabs, newlines, NBSP,
    U+3000, ...) becomes one space and the ends are stripped. Zero-width characters are not
    whitespace; the tokenizer's cleaning drops them later."""
    return _WHITESPACE.sub(" ", text).strip()


# Bark's tokenizer_config.json (bark-spec §2), used for anything a folder does not say itself.
_BARK_SETTINGS: dict[str, Any] = {
    "do_lower_case": False,
    "tokenize_chinese_chars": True,
    "strip_accents": None,  # None: strip only when lower-casing, as BERT does
}
_SPECIAL_TOKENS = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}


# tokenizers' BertNormalizer skips the first 256 characters of CJK Extension E (its range starts
# at 0x2B920, the slow tokenizer's at 0x2B820); we space them out as the slow one does.
_MISSED_CJK = re.compile("([\U0002B820-\U0002B91F])")


class TextTokenizer:
    """BERT WordPiece ids for Bark's text prompt, without special tokens.

    `encode` is Suno's `_tokenize(tokenizer, _normalize_whitespace(text))`: plain BERT ids,
    before Bark's +10 048 offset, truncation to 256 and padding (the pipeline's job).
    """

    def __init__(self, tokenizer: Tokenizer, tokenize_chinese_chars: bool = True) -> None:
        self._tokenizer = tokenizer
        self._tokenize_chinese_chars = tokenize_chinese_chars

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def _prepare(self, text: str) -> str:
        text = normalize_whitespace(text)
        if self._tokenize_chinese_chars:
            text = _MISSED_CJK.sub(r" \1 ", text)
        return text

    def encode(self, text: str) -> list[int]:
        """Ids of `text` after whitespace normalisation; [] for empty or blank text."""
        return self._tokenizer.encode(self._prepare(text), add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        encodings = self._tokenizer.encode_batch(
            [self._prepare(t) for t in texts], add_special_tokens=False
        )
        return [e.ids for e in encodings]

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))


def load_tokenizer(folder: str | Path) -> TextTokenizer:
    """Build the tokenizer from a checkpoint folder: `tokenizer.json` if present, else a BERT
    WordPiece tokenizer from `vocab.txt`.

    `tokenizer_config.json` (do_lower_case, tokenize_chinese_chars, strip_accents), when present,
    wins over the normaliser stored in tokenizer.json, as in transformers; without it the
    tokenizer.json normaliser holds, and a bare vocab.txt gets Bark's settings. Truncation and
    padding are switched off: the pipeline truncates to 256 ids itself, with a warning.
    """
    folder = Path(folder)
    config = _read_json(folder / "tokenizer_config.json")
    tokenizer_json, vocab_txt = folder / "tokenizer.json", folder / "vocab.txt"
    settings = dict(_BARK_SETTINGS)
    if tokenizer_json.is_file():
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_json))
        except Exception as exc:  # the Rust loader raises a bare Exception
            raise CheckpointError(
                f"cannot read {tokenizer_json}: {exc}", "download the tokenizer files again"
            ) from exc
        if not isinstance(tokenizer.model, WordPiece):
            raise CheckpointError(
                f"{tokenizer_json} is not a BERT WordPiece tokenizer",
                "use the tokenizer files of suno/bark or suno/bark-small",
            )
        if isinstance(tokenizer.normalizer, normalizers.BertNormalizer):
            settings.update(
                do_lower_case=tokenizer.normalizer.lowercase,
                tokenize_chinese_chars=tokenizer.normalizer.handle_chinese_chars,
                strip_accents=tokenizer.normalizer.strip_accents,
            )
        if tokenizer.pre_tokenizer is None:
            tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    elif vocab_txt.is_file():
        specials = {**_SPECIAL_TOKENS, **_read_json(folder / "special_tokens_map.json")}
        specials.update({k: config[k] for k in _SPECIAL_TOKENS if config.get(k)})
        tokenizer = _wordpiece_from_vocab(vocab_txt, {k: _token_text(v) for k, v in specials.items()})
    else:
        raise CheckpointError(
            f"no tokenizer in {folder}: expected tokenizer.json or vocab.txt",
            "point at a Bark checkpoint folder, or download the model again",
        )
    settings.update({k: config[k] for k in _BARK_SETTINGS if k in config})
    tokenizer.normalizer = _bert_normalizer(**settings)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return TextTokenizer(tokenizer, bool(settings["tokenize_chinese_chars"]))


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"cannot read {path}: {exc}", "download the tokenizer files again"
        ) from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not a JSON object", "download the tokenizer files again")
    return data


def _token_text(value: Any) -> str:
    """Special tokens are strings, or AddedToken dicts ({"content": "[UNK]", ...}) in newer files."""
    return value["content"] if isinstance(value, dict) else str(value)


def _wordpiece_from_vocab(vocab_txt: Path, specials: dict[str, str]) -> Tokenizer:
    # Read as transformers' `load_vocab` does: one token a line, id = line number.
    with open(vocab_txt, encoding="utf-8") as f:
        vocab = {line.rstrip("\n"): i for i, line in enumerate(f)}
    unk = specials["unk_token"]
    if unk not in vocab:
        raise CheckpointError(f"{vocab_txt} has no {unk} token", "download the tokenizer files again")
    tokenizer = Tokenizer(
        WordPiece(vocab, unk_token=unk, continuing_subword_prefix="##", max_input_chars_per_word=100)
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # As in tokenizer.json and the slow tokenizer, a literal "[MASK]" in the text is that token.
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in specials.values() if t in vocab]
    )
    return tokenizer


def _bert_normalizer(
    do_lower_case: bool, tokenize_chinese_chars: bool, strip_accents: bool | None
) -> normalizers.Normalizer:
    """The slow BertTokenizer's order: clean control characters and map whitespace to spaces,
    space out CJK ideographs, NFC-compose, then lower-case and strip accents.

    The NFC step is what the Rust BertNormalizer lacks: since transformers 4.29 the slow
    tokenizer (Suno's) composes "e" + U+0301 into "é" (one known token) where the fast one
    would emit "e", "##́". Cleaning comes first because a dropped zero-width character between a
    letter and its accent lets them compose.
    """
    steps = [
        normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=bool(tokenize_chinese_chars),
            strip_accents=False, lowercase=False,
        ),
        normalizers.NFC(),
    ]
    if do_lower_case or strip_accents:
        steps.append(normalizers.BertNormalizer(
            clean_text=False, handle_chinese_chars=False,
            strip_accents=strip_accents, lowercase=bool(do_lower_case),
        ))
    return normalizers.Sequence(steps)
