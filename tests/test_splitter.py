"""The long-form splitter (bark-spec §11.1): limits, where it breaks, and that no text is lost."""

from __future__ import annotations

import random
import re

import pytest

from bark_cli.errors import InputError
from bark_cli.text import DEFAULT_MAX_CHARS, normalize_whitespace, spoken_length, split_text

from tiny_bark import REAL_REASON, real_reference  # noqa: E402
CUE = re.compile(r"\[[^\[\]]*\]")
CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def assert_reconstructs(text: str, segments: list[str]) -> None:
    """Each segment is the next slice of the normalised text, and consecutive segments were
    separated there by exactly one space or (only between CJK characters) by nothing."""
    norm = normalize_whitespace(text)
    pos = 0
    for k, seg in enumerate(segments):
        assert seg and seg == normalize_whitespace(seg), repr(seg)
        if k:
            if norm[pos] == " ":
                pos += 1
            else:  # no space in the text here: a break beside a CJK character or after a CJK stop
                before, after = segments[k - 1][-1], seg[0]
                assert CJK.match(before) or CJK.match(after) or before in "。！？；，、：", (before, after)
        assert norm.startswith(seg, pos), (seg, norm[pos : pos + len(seg) + 20])
        pos += len(seg)
    assert pos == len(norm)


def assert_spaced_join(text: str, segments: list[str]) -> None:
    """For space-separated text: joining with single spaces gives back the normalised input."""
    assert " ".join(segments) == normalize_whitespace(text)
    assert_reconstructs(text, segments)


def assert_cjk_join(text: str, segments: list[str]) -> None:
    """For CJK text: all non-space characters come back, in order."""
    assert re.sub(r"\s", "", "".join(segments)) == re.sub(r"\s", "", text)
    assert_reconstructs(text, segments)


def no_word_cut(text: str, segments: list[str]) -> None:
    words = set(normalize_whitespace(text).split(" "))
    for seg in segments:
        assert set(seg.split(" ")) <= words, seg


ENGLISH = (
    "Bark is a transformer-based text-to-audio model created by Suno. It can generate highly "
    "realistic, multilingual speech as well as other audio, including music, background noise and "
    "simple sound effects. The model can also produce nonverbal communications like laughing, "
    "sighing and crying.\n\nTo support the research community, we are providing access to "
    "pretrained model checkpoints, which are ready for inference and available for commercial use. "
    "Below is a list of some known non-speech sounds. Is it perfect? No! But it works… most of the time."
)


def test_english_paragraphs():
    segments = split_text(ENGLISH)
    assert_spaced_join(ENGLISH, segments)
    assert all(len(s) <= DEFAULT_MAX_CHARS for s in segments)
    for seg in segments:
        assert seg[-1] in ".!?…", seg  # every sentence fits, so every break is a sentence end
    for a, b in zip(segments, segments[1:]):
        assert len(a) + 1 + len(b) > DEFAULT_MAX_CHARS  # merged as far as the limit allows
    assert len(segments) == 4  # 545 characters in 8 sentences


def test_short_sentences_are_merged_and_short_text_is_one_segment():
    assert split_text("Hi. How are you? Fine!") == ["Hi. How are you? Fine!"]
    assert split_text("One.\nTwo.\nThree.") == ["One. Two. Three."]
    # a line break is a sentence end
    assert split_text("Line one\nLine two", max_chars=10) == ["Line one", "Line two"]


def test_empty_text():
    assert split_text("") == []
    assert split_text(" \n\t\u3000 ") == []


def test_bad_limits():
    with pytest.raises(InputError):
        split_text("hello", max_chars=0)
    with pytest.raises(InputError):
        split_text("hello", max_tokens=10)  # no counter
    with pytest.raises(InputError):
        split_text("hello", count_tokens=len, max_tokens=0)


def test_abbreviations_are_weak_breaks():
    text = "I met Mr. Smith today. It was nice."
    assert split_text(text, max_chars=25) == ["I met Mr. Smith today.", "It was nice."]


def test_long_sentence_splits_at_commas_first():
    clauses = [f"clause number {i} keeps going for a while longer" for i in range(12)]
    text = ", ".join(clauses) + "."
    assert len(text) > 2 * DEFAULT_MAX_CHARS
    segments = split_text(text)
    assert_spaced_join(text, segments)
    assert len(segments) >= 3
    assert all(len(s) <= DEFAULT_MAX_CHARS for s in segments)
    assert all(s.endswith(",") for s in segments[:-1]), segments
    # semicolons and colons count too
    text = "; ".join(clauses[:3]) + ": " + clauses[3]
    segments = split_text(text, max_chars=60)
    assert all(s[-1] in ";:" for s in segments[:-1]), segments


def test_no_punctuation_at_all():
    rng = random.Random(7)
    words = ["".join(rng.choice("abcdefghijklmnop") for _ in range(rng.randint(1, 12))) for _ in range(400)]
    text = " ".join(words)
    segments = split_text(text)
    assert_spaced_join(text, segments)
    no_word_cut(text, segments)
    assert all(len(s) <= DEFAULT_MAX_CHARS for s in segments)
    # balanced: no stub segment at the end
    assert min(len(s) for s in segments) > DEFAULT_MAX_CHARS // 2


def random_words(count: int, seed: int = 11) -> str:
    rng = random.Random(seed)
    pool = "the of and to in is was that for on with as by at from it this be are or an have which".split()
    words = []
    for i in range(count):
        if rng.random() < 0.7:
            word = rng.choice(pool)
        else:
            word = "".join(rng.choice("etaoinshrdlu") for _ in range(rng.randint(2, 14)))
        r = rng.random()
        words.append(word + ("." if r < 0.06 else "," if r < 0.12 else "?" if r < 0.13 else ""))
    return " ".join(words)


class CountingList(list):
    """A list that counts its reads: how many candidate breaks the search weighs."""

    reads = 0

    def __getitem__(self, index):
        self.reads += 1
        return super().__getitem__(index)


def candidates_weighed(text: str) -> tuple[int, int]:
    """(atoms, candidate segments the break search weighs) for `text`: each candidate reads
    its start's break cost once."""
    from bark_cli.text.splitter import _atoms, _best_breaks, spoken_length

    atoms, joiners, costs = _atoms(text)
    counted = CountingList(costs)
    _best_breaks([spoken_length(a) for a in atoms], joiners, counted, None, DEFAULT_MAX_CHARS, None)
    return len(atoms), counted.reads


def test_five_thousand_words_in_linear_work():
    """The break search weighs a bounded number of candidates per word (a segment holds at most
    max_chars / 2 atoms of a letter and a space), so its work grows linearly with the text:
    counted, not timed, so that a loaded machine cannot fail it."""
    text = random_words(5000)
    segments = split_text(text)
    assert_spaced_join(text, segments)
    no_word_cut(text, segments)
    assert all(len(s) <= DEFAULT_MAX_CHARS for s in segments)
    atoms, weighed = candidates_weighed(text)
    assert weighed <= atoms * (DEFAULT_MAX_CHARS // 2 + 2)
    double_atoms, double_weighed = candidates_weighed(random_words(10_000))
    assert double_weighed / weighed <= 1.2 * double_atoms / atoms


def test_a_300_character_word_is_kept_whole():
    word = "".join(random.Random(3).choice("abcdefghij") for _ in range(300))
    text = f"Here is a long one. {word} And that was it."
    segments = split_text(text)
    assert_spaced_join(text, segments)
    assert word in segments
    assert split_text(word) == [word]
    assert split_text(word, count_tokens=len, max_tokens=20) == [word]  # over the token limit too: kept whole


def test_cues_stay_with_their_sentence():
    text = "That's hilarious! [laughter] Okay, moving on. [sighs] I am tired. Well [clears throat] hello."
    for max_chars in (200, 40, 25, 12, 1):
        segments = split_text(text, max_chars=max_chars)
        assert_spaced_join(text, segments)
        for seg in segments:
            assert re.search(r"\w", CUE.sub("", seg)), (max_chars, segments)  # never a cue alone
        assert any("[clears throat]" in s for s in segments)  # a cue is never cut inside
    assert split_text(text, max_chars=40) == [
        "That's hilarious!",
        "[laughter] Okay, moving on.",  # a cue after a sentence end opens the next sentence
        "[sighs] I am tired.",
        "Well [clears throat] hello.",
    ]
    assert split_text("Great joke. [laughter]\nNext line here.", max_chars=25) == [
        "Great joke. [laughter]",  # at a line's (or the text's) end it closes its sentence
        "Next line here.",
    ]
    assert split_text("[music]") == ["[music]"]
    assert split_text("[laughs] [sighs]", max_chars=1) == ["[laughs] [sighs]"]  # all cues: the whole text
    assert split_text("Hello.\n[music]\nWorld.", max_chars=8) == ["Hello. [music]", "World."]


def test_lyrics_stay_whole():
    lyric = "♪ In the jungle, the mighty jungle. The lion sleeps tonight ♪"
    text = f"Here we go. Listen to this. {lyric} That was a song. [laughs] Did you like it?"
    for max_chars in (len(lyric), len(lyric) + 20, 120, DEFAULT_MAX_CHARS):
        segments = split_text(text, max_chars=max_chars)
        assert_spaced_join(text, segments)
        assert any(lyric in s for s in segments), (max_chars, segments)
    # lyric lines
    song = "♪ Twinkle, twinkle, little star ♪\n♪ How I wonder what you are ♪\n♪ Up above the world so high ♪"
    segments = split_text(song, max_chars=70)
    assert_spaced_join(song, segments)
    assert len(segments) == 2
    for line in song.splitlines():
        assert any(line in seg for seg in segments)
    # a lyric longer than the limit is still split, with its ♪ marks glued to words
    segments = split_text(lyric, max_chars=30)
    assert_spaced_join(lyric, segments)
    assert "♪" not in segments
    assert segments[0].startswith("♪ In") and segments[-1].endswith("tonight ♪")


def test_chinese_without_spaces():
    text = ("今天天气很好，我们一起去公园散步吧。公园里有很多人，有的在跑步，有的在打太极拳！"
            "你想喝点什么吗？我想要一杯绿茶；他想要咖啡。") * 6
    segments = split_text(text)
    assert_cjk_join(text, segments)
    assert len(segments) > 1
    assert all(spoken_length(s) <= DEFAULT_MAX_CHARS for s in segments)
    for seg in segments[:-1]:
        assert seg[-1] in "。！？；", seg
    # no punctuation: split between characters
    plain = "我们今天去公园散步天气很好阳光明媚你想一起去吗" * 20
    segments = split_text(plain, max_chars=50)
    assert_cjk_join(plain, segments)
    assert all(spoken_length(s) <= 50 for s in segments)


def test_cjk_weights_and_mixed_scripts():
    assert spoken_length("abc") == 3
    assert spoken_length("中文") == 8 and spoken_length("한국") == 6 and spoken_length("かな") == 4
    text = "これは日本語の文です。東京タワーに行きました。Hello there. 안녕하세요 여러분. 他说：「你好」。"
    for max_chars in (10, 30, 80):
        segments = split_text(text, max_chars=max_chars)
        assert_reconstructs(text, segments)
        # punctuation stays with what it ends
        assert all(not s.startswith(("」", "。", "、")) for s in segments)


def test_max_tokens_with_the_real_tokenizer():
    if real_reference() is None:
        pytest.skip(REAL_REASON)
    from bark_cli.text import load_tokenizer

    tokenizer = load_tokenizer(real_reference() / "tokenizer")
    # Punctuation-heavy text: few characters per token, so tokens bind before characters do.
    rng = random.Random(5)
    text = " ".join(f"{rng.randint(0, 99)},{rng.randint(0, 9)}%!" for _ in range(600))
    for max_tokens in (256, 40, 7):
        segments = split_text(
            text, max_chars=10_000, count_tokens=tokenizer.count_tokens, max_tokens=max_tokens
        )
        assert_spaced_join(text, segments)
        assert all(tokenizer.count_tokens(s) <= max_tokens for s in segments)
    # CJK at the defaults, max_tokens defaulting to the model's 256-token window
    cjk = "我们今天去公园散步。天气很好，阳光明媚！" * 40
    segments = split_text(cjk, count_tokens=tokenizer.count_tokens)
    assert_cjk_join(cjk, segments)
    assert all(tokenizer.count_tokens(s) <= 256 for s in segments)
    segments = split_text(ENGLISH, count_tokens=tokenizer.count_tokens, max_tokens=30)
    assert all(tokenizer.count_tokens(s) <= 30 for s in segments)
    # One space-free "word" of 599 tokens: kept whole (never cut inside a word); the caller warns.
    numbers = ",".join(str(i) for i in range(300))
    assert tokenizer.count_tokens(numbers) > 256
    segments = split_text(f"Count with me. {numbers} Done.", count_tokens=tokenizer.count_tokens)
    assert segments == ["Count with me.", numbers, "Done."]


def test_a_counter_that_does_not_add_up_is_still_respected():
    """Token counts are summed per word; a counter where that underestimates (here: characters,
    spaces included) is caught by the final check, which halves what overflows."""
    text = " ".join(["word"] * 200)
    segments = split_text(text, max_chars=10_000, count_tokens=len, max_tokens=50)
    assert_spaced_join(text, segments)
    assert all(len(s) <= 50 for s in segments)


def _random_text(rng: random.Random) -> str:
    pool = ["Hello", "world.", "yes,", "no;", "maybe:", "[laughs]", "[clears throat]", "♪", "—", "...", "中文",
            "你好。", "很好，", "こんにちは。", "안녕", "Привет!", "3.14", "Mr.", "U.S.", "(aside)", "«quote»",
            "「引用」", "\n", "\n\n", "\t", "\u3000", "word" * 30, "?!"]
    return "".join(rng.choice(pool) + rng.choice([" ", " ", "", "\n"]) for _ in range(rng.randint(0, 60)))


def test_random_texts_keep_every_character():
    rng = random.Random(2024)
    for _ in range(300):
        text = _random_text(rng)
        max_chars = rng.choice([1, 5, 20, 60, 220])
        segments = split_text(text, max_chars=max_chars)
        assert_reconstructs(text, segments)
        for seg in segments:
            if len(segments) > 1:
                assert re.search(r"\w", CUE.sub("", seg)), (text, segments)  # no segment of only cues/marks
            if spoken_length(seg) > max_chars:  # only an unbreakable word (with its glued marks) overflows
                assert split_text(seg, max_chars=max_chars) == [seg], (max_chars, seg)
