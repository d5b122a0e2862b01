"""The long-form splitter (bark-spec §11.1): long text cut into pieces Bark can speak in one call
(about 13 s).

It never drops, adds or reorders text: each piece is a slice of the whitespace-normalised input,
and neighbouring pieces were separated there by one space, or by nothing where the text had no
space (beside a CJK character).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable
from typing import Any

from ..config import GenerationConfig
from ..errors import InputError
from .tokenizer import TextTokenizer, normalize_whitespace


# 220 characters of English is about 13 s of speech at ~16 characters (2.7 words) a second, the
# length Bark's README says one call handles well; the semantic stage stops at 768 tokens
# (15.4 s at 49.9 Hz). Other scripts say more per character, so `spoken_length` weighs them.
DEFAULT_MAX_CHARS = 220

# Extra weight per character, on top of 1: a CJK ideograph is ~1 spoken syllable of Mandarin
# (~4.5 a second, so ~55 fit in 13 s), a Hangul block ~1 syllable (~6 a second), a kana 1 mora
# (~7.5 a second). Ranges are BERT's "Chinese character" ranges, the ones split one per token.
_CJK_CLASS = (
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\U00020000-\U0002a6df\U0002a700-\U0002ceaf\U0002f800-\U0002fa1f"
)
_CJK = re.compile(f"[{_CJK_CLASS}]")
_HANGUL = re.compile("[\uac00-\ud7a3]")
_KANA = re.compile("[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9d]")
_WEIGHTED = ((_CJK, 3), (_HANGUL, 2), (_KANA, 1))


def spoken_length(text: str) -> int:
    """Length of `text` in English-equivalent characters, the unit of `split_text`'s `max_chars`:
    1 per character, 4 per CJK ideograph, 3 per Hangul syllable, 2 per kana."""
    return len(text) + sum(w * len(p.findall(text)) for p, w in _WEIGHTED)


# A Bark cue such as [laughter], [clears throat] or [MAN]: kept whole, glued to a neighbour.
_CUE = re.compile(r"\[[^\[\]\n]{0,32}\]")
# A space-separated word whose cues stay whole: "[clears throat]" is one word.
_WORD = re.compile(r"(?:\[[^\[\]\n]{0,32}\]|[^ \[]|\[)+")
_HAS_WORD_CHAR = re.compile(r"\w")
_CJK_BREAK_AFTER = "。！？；｡，、："  # a CJK text may continue after these without a space
_MAY_SPLIT_WORD = re.compile(f"[{_CJK_CLASS}{_CJK_BREAK_AFTER}]")
_ATTACH_LEFT = ("Pe", "Pf", "Po", "Pd")  # closing, final, other punctuation and dashes
_ATTACH_RIGHT = ("Ps", "Pi")  # opening and initial punctuation
_CLOSERS = "\"'”’»›)]}」』）】〕〉》"
_OPENERS = "\"'“‘«‹([{「『（【〔〈《"
_SENTENCE_END = "。！？；｡.!?…‼⁇⁈⁉"
_CLAUSE_END = ",;:，、：﹐﹑﹕"
_DASHES = ("-", "--", "–", "—", "―")
_ABBREVIATIONS = frozenset(
    "mr. mrs. ms. dr. prof. sr. jr. st. vs. mt. gen. col. lt. sgt. capt. rev. hon. approx. cf.".split()
)
_INITIALS = re.compile(r"(?:[^\W\d_]\.)+")  # J. / U.S. / e.g.

# Boundary kinds and what breaking there costs (a new segment costs 1, a badly filled one up to
# 1 more). Inside a ♪ lyric every break costs 8 more, dearer than any break outside, so a lyric
# is only broken when it alone is over a limit.
_LINE, _SENTENCE, _CLAUSE, _WORDGAP = 0, 1, 2, 3
_COST = {_LINE: 0.0, _SENTENCE: 0.0, _CLAUSE: 2.0, _WORDGAP: 6.0}
_LYRIC_COST = {kind: cost + 8.0 for kind, cost in _COST.items()}


def split_text(
    text: str,
    max_chars: int = DEFAULT_MAX_CHARS,
    count_tokens: Callable[[str], int] | None = None,
    max_tokens: int | None = None,
) -> list[str]:
    """Split long text into segments Bark can speak one at a time (bark-spec §11.1).

    Each segment is at most `max_chars` long, counted by `spoken_length` (so ~220 letters of
    English or ~55 Chinese characters, each about 13 s of speech) and, with `count_tokens`, at
    most `max_tokens` tokens (default: the 256-token text window). Breaks go, best first: at
    sentence ends (`. ! ? …`, CJK `。！？；`) and line breaks, at `, ; :` and CJK `，、：` and
    dashes, then between words (between any two CJK ideographs, each being a word); never inside
    a word. Within those limits short sentences are merged, and the breaks are chosen all at once
    (line-breaking by dynamic programming) so segments come out evenly filled, with no stub at
    the end.

    Cues (`[laughter]`, `[sighs]`, ...) and `♪` marks stay glued to the words beside them (to the
    sentence they open or close), and a `♪ ... ♪` lyric (or a line from a `♪` to its end) is
    broken only when it alone exceeds a limit. A single word over a limit, such as a 300-letter
    word, is kept whole as its own segment, even when it has more than `max_tokens` tokens (a
    long run of digits and punctuation without spaces can): cutting it would change what is
    said, so the caller, which sees the count, warns or refuses (Suno would keep the first 256
    tokens). Joining the segments with a space (nothing where the text had none, between CJK
    characters) gives back `normalize_whitespace(text)`.

    Runs in O(words × words per segment); 5 000 words take well under a second.
    """
    if max_chars < 1:
        raise InputError(f"max_chars must be at least 1, got {max_chars}", "use e.g. 220")
    if count_tokens is not None and max_tokens is None:
        max_tokens = GenerationConfig().max_input_semantic_length
    if max_tokens is not None:
        if count_tokens is None:
            raise InputError("max_tokens needs count_tokens", "pass the tokenizer's count_tokens")
        if max_tokens < 1:
            raise InputError(f"max_tokens must be at least 1, got {max_tokens}", "use e.g. 256")

    atoms, joiners, costs = _atoms(text)
    if not atoms:
        return []
    tokens = None
    if count_tokens is not None:
        cache: dict[str, int] = {}
        tokens = [cache[a] if a in cache else cache.setdefault(a, count_tokens(a)) for a in atoms]
    lengths = [spoken_length(a) for a in atoms]
    ranges = _best_breaks(lengths, joiners, costs, tokens, max_chars, max_tokens)
    if count_tokens is not None:
        # Token counts were added up atom by atom; exact for BERT (atoms are cut where BERT cuts
        # words), only an estimate for other counters, so check and halve what overflows.
        ranges = _enforce_tokens(ranges, atoms, joiners, costs, count_tokens, max_tokens)
    return [_join(atoms, joiners, i, j) for i, j in ranges]


def _join(atoms: list[str], joiners: list[str], i: int, j: int) -> str:
    return atoms[i] + "".join(joiners[k] + atoms[k] for k in range(i + 1, j))


def _units(word: str) -> list[str]:
    """Split a space-free word between CJK ideographs (and after CJK commas and stops), keeping
    punctuation with the character it follows, openers with the one they precede, cues whole."""
    if not _MAY_SPLIT_WORD.search(word):
        return [word]
    in_cue = set()
    for m in _CUE.finditer(word):
        in_cue.update(range(m.start() + 1, m.end()))
    pieces, start = [], 0
    for p in range(1, len(word)):
        a, b = word[p - 1], word[p]
        if not (_CJK.match(a) or _CJK.match(b) or a in _CJK_BREAK_AFTER) or p in in_cue:
            continue
        if unicodedata.category(b) in _ATTACH_LEFT or unicodedata.category(a) in _ATTACH_RIGHT:
            continue  # "好，" and "「你" stay together
        pieces.append(word[start:p])
        start = p
    pieces.append(word[start:])
    return pieces


def _kind_after(unit: str) -> int:
    """What kind of boundary follows this unit, judged by how it ends."""
    core = unit.rstrip(_CLOSERS)
    if not core:
        return _WORDGAP
    last = core[-1]
    if last in _SENTENCE_END:
        if last == ".":
            bare = core.lstrip(_OPENERS)
            if bare.lower() in _ABBREVIATIONS or _INITIALS.fullmatch(bare):
                return _WORDGAP
        return _SENTENCE
    if last in _CLAUSE_END or core in _DASHES or last in "–—―":
        return _CLAUSE
    return _WORDGAP


def _is_glue(unit: str) -> bool:
    """Cues, ♪ and bare punctuation: nothing to say on their own."""
    return not _HAS_WORD_CHAR.search(_CUE.sub("", unit))


def _atoms(text: str) -> tuple[list[str], list[str], list[float]]:
    """Cut text into atoms, the pieces a segment is made of, with the joiner (" " or "") and the
    break cost before each atom (index 0: "" and 0)."""
    units: list[str] = []
    joiners: list[str] = []
    kinds: list[int] = []  # kind of the boundary before each unit
    lyric: list[bool] = []  # that boundary lies inside a ♪ lyric
    for line in text.splitlines():
        notes = 0  # ♪ seen so far on this line; odd = inside a lyric
        first_of_line = True
        closed_lyric = False  # the last unit closed a ♪ lyric: a sentence end
        for word in _WORD.findall(normalize_whitespace(line)):
            for n, unit in enumerate(_units(word)):
                if units:
                    joiners.append(" " if n == 0 else "")
                    if first_of_line:
                        kinds.append(_LINE)
                    else:
                        kinds.append(_SENTENCE if closed_lyric else _kind_after(units[-1]))
                    lyric.append(notes % 2 == 1 and not first_of_line)
                else:
                    joiners.append("")
                    kinds.append(_LINE)
                    lyric.append(False)
                first_of_line = False
                was_open = notes % 2 == 1
                notes += unit.count("♪")
                closed_lyric = was_open and notes % 2 == 0
                units.append(unit)

    # Glue each cue / ♪ / bare-punctuation unit to a neighbour: forward when it opens a sentence
    # or a lyric (or starts the text), else backward onto what it closes.
    atoms: list[list[Any]] = []  # [text, joiner, kind, lyric] per atom
    carry: list[Any] | None = None
    n_units = len(units)
    for i, unit in enumerate(units):
        entry = [unit, joiners[i], kinds[i], lyric[i]]
        if carry is not None:
            entry = [carry[0] + joiners[i] + unit, carry[1], carry[2], carry[3]]
            carry = None
        if _is_glue(unit):
            after = kinds[i + 1] if i + 1 < n_units else _LINE
            strong_before = entry[2] in (_LINE, _SENTENCE)
            strong_after = after in (_LINE, _SENTENCE)
            opens_lyric = i + 1 < n_units and lyric[i + 1] and not entry[3]
            if i + 1 < n_units and (not atoms or (strong_before and not strong_after) or opens_lyric):
                carry = entry
                continue
            if atoms:
                atoms[-1][0] += entry[1] + entry[0]
                continue
        atoms.append(entry)

    costs = [0.0] + [
        (_LYRIC_COST if lyr else _COST)[kind] for _, _, kind, lyr in atoms[1:]
    ]
    return [a[0] for a in atoms], [a[1] for a in atoms], costs


def _best_breaks(
    lengths: list[int],
    joiners: list[str],
    costs: list[float],
    tokens: list[int] | None,
    max_chars: int,
    max_tokens: int | None,
) -> list[tuple[int, int]]:
    """Pick segment ranges [i, j) of atoms minimising the sum over segments of
    1 + (unused share of max_chars)² + cost of the break it starts at, subject to the limits;
    a segment of a single atom is always allowed (a word is never cut)."""
    n = len(lengths)
    pos = [0] * (n + 1)  # pos[k]: length of atoms[:k] with their joiners
    tok = [0] * (n + 1)
    for k in range(n):
        pos[k + 1] = pos[k] + len(joiners[k]) + lengths[k]
        tok[k + 1] = tok[k] + (tokens[k] if tokens is not None else 0)
    jl = [len(x) for x in joiners]
    token_limit = math.inf if max_tokens is None else max_tokens
    best = [0.0] + [math.inf] * n
    back = [0] * (n + 1)
    for j in range(1, n + 1):
        end, end_tok = pos[j], tok[j]
        best_j, back_j = math.inf, j - 1
        for i in range(j - 1, -1, -1):
            length = end - pos[i] - jl[i]
            if length > max_chars or end_tok - tok[i] > token_limit:
                if i < j - 1:
                    break  # longer candidates only grow
                unused = 0.0  # one atom over a limit: allowed, never cut
            else:
                unused = (max_chars - length) / max_chars
            cost = best[i] + 1.0 + unused * unused + costs[i]
            if cost < best_j:
                best_j, back_j = cost, i
        best[j], back[j] = best_j, back_j
    ranges = []
    j = n
    while j > 0:
        ranges.append((back[j], j))
        j = back[j]
    return ranges[::-1]


def _enforce_tokens(
    ranges: list[tuple[int, int]],
    atoms: list[str],
    joiners: list[str],
    costs: list[float],
    count_tokens: Callable[[str], int],
    max_tokens: int,
) -> list[tuple[int, int]]:
    """Halve any multi-atom segment whose real token count overflows, at its cheapest break
    nearest the middle, until all fit (or are single atoms)."""
    out: list[tuple[int, int]] = []
    todo = list(reversed(ranges))
    while todo:
        i, j = todo.pop()
        if j - i == 1 or count_tokens(_join(atoms, joiners, i, j)) <= max_tokens:
            out.append((i, j))
            continue
        mid = (i + j) / 2
        k = min(range(i + 1, j), key=lambda k: (costs[k], abs(k - mid)))
        todo += [(k, j), (i, k)]
    return out


def plan_segments(tokenizer: TextTokenizer, text: str, max_chars: int = DEFAULT_MAX_CHARS,
                  max_tokens: int = 256) -> list[tuple[str, int]]:
    """The segments a long text is spoken in, each with its token count; empty text raises."""
    segments = split_text(text, max_chars, count_tokens=tokenizer.count_tokens, max_tokens=max_tokens)
    if not segments:
        raise InputError("the text is empty", "give some text to speak")
    return [(segment, tokenizer.count_tokens(segment)) for segment in segments]
