#!/usr/bin/env python
"""Time to first audio (TTFA) and total time of a 10-segment text, streamed and not, on random weights.

    python bench/stream.py                        # tiny model, 40 semantic tokens a segment
    python bench/stream.py --size bark-small --tokens 50 --batch-size 4
    python bench/stream.py --size bark --device cuda --tokens 100   # float16, CUDA graphs

Streamed is what `bark say -o -` does: longform.stream feeding audio.SegmentStream, whose writer
thread sends each segment's WAV bytes out while the next is made. Unstreamed is speak() and one
WAV written at the end. TTFA is the moment the first byte of audio reaches the output (a sink
that counts bytes), from the call. One segment's generation time alone is the yardstick: a
streamed TTFA near it means batching and writing did not hold the first audio back.
Targets: streamed TTFA at most 1.2x one segment alone, streamed total at most 1.05x unstreamed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from bark_cli import audio
from bark_cli.weights import random_weights
from bark_cli.bench import FixedTokenizer, bark_config, cpu_name
from bark_cli.config import DeviceOptions, GenerationConfig, SamplingOptions
from bark_cli.longform import speak, stream
from bark_cli.pipeline import Bark

SEGMENTS = 10
TEXT = " ".join(f"Here is sentence {i} of ten." for i in range(SEGMENTS))


class Tokenizer(FixedTokenizer):
    """FixedTokenizer (every text the same ids), with the count the text splitter asks for."""

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))


class Sink:
    """Takes bytes as a pipe's reader would, noting when the first arrived."""

    def __init__(self, start: float):
        self.start, self.first, self.bytes = start, None, 0

    def write(self, data: bytes) -> int:
        if self.first is None and data:
            self.first = time.perf_counter() - self.start
        self.bytes += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def seekable(self) -> bool:
        return False


def run(bark: Bark, options, streamed: bool) -> tuple[float, float, int]:
    """(TTFA, total seconds, bytes out) of one run."""
    common = dict(max_segment_chars=40, batch_size=options.batch_size, seed=1,
                  sampling=SamplingOptions(max_semantic_tokens=options.tokens, min_eos_p=0))
    start = time.perf_counter()
    sink = Sink(start)
    if streamed:
        with audio.SegmentStream(sink, bark.sample_rate, gap_seconds=0.25) as out:
            count = 0
            for part in stream(bark, TEXT, **common):
                out.put(part.audio)
                count += 1
        assert count == SEGMENTS, count
    else:
        speech = speak(bark, TEXT, gap=0.25, **common)
        assert len(speech.segments) == SEGMENTS, len(speech.segments)
        audio.write_all(sink, audio.encode(speech.audio, speech.sample_rate))
    return sink.first, time.perf_counter() - start, sink.bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny", choices=["tiny", "bark-small", "bark"], help="random weights at this size")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (float16 with CUDA graphs there)")
    parser.add_argument("--figures", help="also write the streamed figures to this file, for bench/cuda_report.py")
    parser.add_argument("--tokens", type=int, default=40, help="semantic tokens a segment (random weights never stop)")
    parser.add_argument("--batch-size", type=int, default=4, help="segments a batch after the first")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each; medians are printed")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()

    import torch

    if options.threads:
        torch.set_num_threads(options.threads)
    dtype = "float32" if options.device == "cpu" else "float16"
    weights = random_weights(bark_config(options.size), GenerationConfig(), seed=0, dtype=getattr(torch, dtype))
    bark = Bark.from_weights(weights, Tokenizer(), DeviceOptions(options.device, dtype), model_id=options.size)
    segment = "Here is sentence 0 of ten."
    fast = dict(sampling=SamplingOptions(max_semantic_tokens=options.tokens, min_eos_p=0))
    # Warm-up: every batch shape once, both ways, before anything is timed.
    run(bark, options, streamed=False)
    run(bark, options, streamed=True)
    ones, plain, streamed = [], [], []
    for _ in range(options.runs):  # interleaved, so that a change in the machine's load hits all three
        start = time.perf_counter()
        bark.generate(segment, seed=1, **fast)
        ones.append(time.perf_counter() - start)
        plain.append(run(bark, options, streamed=False))
        streamed.append(run(bark, options, streamed=True))
    assert {r[2] for r in plain} == {r[2] for r in streamed}, "streamed and whole output differ in length"
    one = statistics.median(ones)
    # Ratios within each round, then their median: a change in the machine's load between rounds
    # moves both sides of a ratio alike.
    ttfa_ratio = statistics.median(s[0] / o for s, o in zip(streamed, ones))
    total_ratio = statistics.median(s[1] / p[1] for s, p in zip(streamed, plain))
    plain_ttfa, plain_total = (statistics.median(r[i] for r in plain) for i in (0, 1))
    stream_ttfa, stream_total = (statistics.median(r[i] for r in streamed) for i in (0, 1))
    figures = {
        "cpu": cpu_name(), "threads": torch.get_num_threads(), "size": options.size, "segments": SEGMENTS,
        "device": options.device if options.device == "cpu" else torch.cuda.get_device_name(options.device),
        "tokens_per_segment": options.tokens, "batch_size": options.batch_size, "runs": options.runs,
        "one_segment_s": round(one, 3),
        "unstreamed": {"ttfa_s": round(plain_ttfa, 3), "total_s": round(plain_total, 3)},
        "streamed": {"ttfa_s": round(stream_ttfa, 3), "total_s": round(stream_total, 3)},
        "ttfa_over_one_segment": round(ttfa_ratio, 3),
        "streamed_total_over_unstreamed": round(total_ratio, 3),
    }
    if options.figures:
        with open(options.figures, "w") as out:
            json.dump({"figures": {"ten segments ttfa streamed s": stream_ttfa,
                                   "ten segments total streamed s": stream_total}}, out)
    if options.json:
        print(json.dumps(figures))
        return
    print(f"device: {figures['device']}; CPU: {figures['cpu']} ({figures['threads']} threads); random {options.size}, {SEGMENTS} segments "
          f"of {options.tokens} semantic tokens, batch size {options.batch_size}, median of {options.runs} runs")
    print(f"one segment alone     {one:8.2f} s")
    print(f"unstreamed  TTFA      {plain_ttfa:8.2f} s   total {plain_total:8.2f} s")
    print(f"streamed    TTFA      {stream_ttfa:8.2f} s   total {stream_total:8.2f} s")
    print(f"TTFA / one segment    {ttfa_ratio:8.2f}   (median of the rounds' ratios; target <= 1.2)")
    print(f"total streamed / not  {total_ratio:8.2f}   (median of the rounds' ratios; target <= 1.05)")


if __name__ == "__main__":
    main()
