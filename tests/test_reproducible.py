"""Every item is reproducible alone: its own seed, its own noise, under sampling as under greedy."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from bark_cli.config import SamplingOptions
from bark_cli.cli import app
from bark_cli.sampling import draw
from bark_cli.longform import plan_text, speak
from bark_cli.pipeline import stage_seed

SAMPLED = dict(sampling=SamplingOptions(temperature=0.8, max_semantic_tokens=8))
TEXTS = ["Hello there.", "A longer sentence about a small dog [laughter].", "Third one, short."]


def test_each_row_draws_from_its_own_generator():
    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(3, 50), -1)
    seeds = [5, 9, 13]
    picked = draw(probs, [torch.Generator().manual_seed(s) for s in seeds])
    for row, seed in enumerate(seeds):
        # Independent oracle: the row's noise is what a fresh generator with its seed gives first.
        uniform = torch.rand(50, generator=torch.Generator().manual_seed(seed))
        expected = int((probs[row] / -uniform.clamp(min=torch.finfo(torch.float32).tiny).log()).argmax())
        assert int(picked[row]) == expected
    with pytest.raises(ValueError):
        draw(probs, [torch.Generator()])


def test_stage_seeds_follow_the_documented_rule():
    digest = hashlib.blake2b(b"7/coarse", digest_size=8).digest()
    assert stage_seed(7, "coarse") == int.from_bytes(digest, "big")
    seeds = {stage_seed(s, stage) for s in range(50) for stage in ("semantic", "coarse", "fine")}
    assert len(seeds) == 150  # no two items or stages share a stream


def test_a_sampled_batch_equals_each_item_alone(bark):
    voice = "v2/en_speaker_1"
    batch = bark.generate_batch(TEXTS, voice=voice, seed=100, **SAMPLED)
    assert [g.seed for g in batch] == [100, 101, 102]
    lengths = {len(g.semantic_tokens) for g in batch}
    for i, text in enumerate(TEXTS):
        alone = bark.generate(text, voice=voice, seed=100 + i, **SAMPLED)
        np.testing.assert_array_equal(batch[i].semantic_tokens, alone.semantic_tokens)
        np.testing.assert_array_equal(batch[i].coarse_tokens, alone.coarse_tokens)
        np.testing.assert_array_equal(batch[i].fine_tokens, alone.fine_tokens)
        np.testing.assert_array_equal(batch[i].audio, alone.audio)
    # The comparison means something: another seed samples other tokens.
    other = bark.generate(TEXTS[0], voice=voice, seed=999, **SAMPLED)
    assert not np.array_equal(other.fine_tokens, batch[0].fine_tokens)
    assert lengths  # items of different lengths share the batch (EOS allowed)


def test_explicit_seeds_and_order_do_not_matter(bark):
    forward = bark.generate_batch(TEXTS, seeds=[7, 3, 5], **SAMPLED)
    backward = bark.generate_batch(TEXTS[::-1], seeds=[5, 3, 7], **SAMPLED)
    for a, b in zip(forward, backward[::-1]):
        assert a.seed == b.seed
        np.testing.assert_array_equal(a.fine_tokens, b.fine_tokens)


def test_long_text_segments_are_their_seeds_alone(bark):
    story = ("The dog barked at a cloud. The cloud did not answer. "
             "So the dog barked louder. Then the rain came down on both of them.")
    voice = "v2/en_speaker_2"
    count = len(plan_text(bark, story, 50))
    speech = speak(bark, story, voice=voice, max_segment_chars=50, batch_size=count, seed=50, **SAMPLED)
    # The first segment runs alone (its audio can go out at once), the rest as one batch.
    assert len(speech.segments) == count > 2 and len({id(p.seconds) for p in speech.parts}) == 2
    for j, (segment, part) in enumerate(zip(speech.segments, speech.parts)):
        assert part.seed == 50 + j
        alone = bark.generate(segment, voice=voice, seed=50 + j, truncate=True, **SAMPLED)
        np.testing.assert_array_equal(part.fine_tokens, alone.fine_tokens)


CLI_SAMPLED = ["--temperature", "0.8", "--max-semantic-tokens", "8", "--device", "cpu", "-q"]


def test_a_batch_item_is_bark_say_with_its_seed(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BARK_VOICES_DIR", str(tmp_path / "voices"))
    Path("lines.txt").write_text("\n".join(TEXTS) + "\n")
    common = ["--model", str(tiny_checkpoint), "--voice", "v2/en_speaker_1", *CLI_SAMPLED]
    result = CliRunner().invoke(app, ["batch", "lines.txt", "--output-dir", "out", "--seed", "20",
                                      "--batch-size", "3", "--report", "r.jsonl", *common])
    assert result.exit_code == 0, result.output
    report = [json.loads(line) for line in Path("r.jsonl").read_text().splitlines()]
    assert [r["seed"] for r in report] == [20, 21, 22]
    for row in report[1:]:  # the items batched behind another
        text = TEXTS[row["index"]]
        said = CliRunner().invoke(app, ["say", text, "--seed", str(row["seed"]), "-o", f"say{row['index']}.wav",
                                        *common])
        assert said.exit_code == 0, said.output
        batch_audio, _ = sf.read(row["path"], dtype="int16")
        say_audio, _ = sf.read(f"say{row['index']}.wav", dtype="int16")
        np.testing.assert_array_equal(batch_audio, say_audio)


def test_an_unseeded_batch_reports_seeds_that_repeat_it(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BARK_VOICES_DIR", str(tmp_path / "voices"))
    Path("lines.txt").write_text("\n".join(TEXTS[:2]) + "\n")
    common = ["--model", str(tiny_checkpoint), *CLI_SAMPLED]
    result = CliRunner().invoke(app, ["batch", "lines.txt", "--output-dir", "out", "--report", "r.jsonl", *common])
    assert result.exit_code == 0, result.output
    report = [json.loads(line) for line in Path("r.jsonl").read_text().splitlines()]
    assert report[1]["seed"] == report[0]["seed"] + 1
    said = CliRunner().invoke(app, ["say", TEXTS[1], "--seed", str(report[1]["seed"]), "-o", "again.wav", *common])
    assert said.exit_code == 0, said.output
    np.testing.assert_array_equal(sf.read(report[1]["path"], dtype="int16")[0], sf.read("again.wav", dtype="int16")[0])
