"""Text in: the BERT tokenizer (`tokenizer`) and the long-form splitter (`splitter`)."""

from .splitter import DEFAULT_MAX_CHARS, plan_segments, split_text, spoken_length
from .tokenizer import TextTokenizer, load_tokenizer, normalize_whitespace

__all__ = [
    "DEFAULT_MAX_CHARS", "TextTokenizer", "load_tokenizer", "normalize_whitespace", "plan_segments",
    "split_text", "spoken_length",
]
