"""`bark bench`: size your hardware. bench/compare.py takes the same options (BENCH_OPTIONS) and
runs transformers beside it."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .options import (
    Attention, AttentionOpt, CudaGraphsOpt, DeviceOpt, Dtype, DtypeOpt, JsonOpt, OffloadOpt, OptionGroup, Quantize,
    QuantizeOpt, QuietOpt, ThreadsOpt, option_group,
)
from ..config import DeviceOptions
from .output import Output, examples

if TYPE_CHECKING:  # bark_cli.bench imports torch: only once the command runs
    from ..bench import BenchOptions, BenchReport

MEASURE = "Measurement"
BENCH_EXAMPLES = examples(
    "bark bench",
    "bark bench --config bark --tokens 100",
    "bark bench --tokens 150 --tokens 300 --batch-size 8",
    "bark bench --quantize int8 --json",
)

# `bark bench`'s options, declared once: bench/compare.py adds its own to the same set.
BENCH_OPTIONS: OptionGroup = (
    ("config", Annotated[str, typer.Option(
        help="Random weights at a size (bark-small, bark, tiny), or a model folder or Hub id.")], "bark-small"),
    ("tokens", Annotated[list[int], typer.Option(
        "--tokens", "-t", min=1, help="Exact semantic tokens per item (repeat the option for several runs).")], [150]),
    ("batch_size", Annotated[int, typer.Option(min=1, help="Items generated together.")], 1),
    ("device", DeviceOpt, "cpu"),
    ("dtype", DtypeOpt, Dtype.auto),
    ("attention", AttentionOpt, Attention.auto),
    ("quantize", QuantizeOpt, None),
    ("cuda_graphs", CudaGraphsOpt, None),
    ("offload", OffloadOpt, False),
    ("threads", ThreadsOpt, None),
    ("repeats", Annotated[int, typer.Option(
        min=1, help="Timed runs per token count (the median is kept).", rich_help_panel=MEASURE)], 1),
    ("warmup", Annotated[bool, typer.Option(
        help="One short untimed run first.", rich_help_panel=MEASURE)], True),
    ("warmup_tokens", Annotated[int, typer.Option(
        min=1, help="Semantic tokens of the warm-up run.", rich_help_panel=MEASURE)], 16),
    ("seed", Annotated[int, typer.Option(help="Seed of the weights and of sampling.", rich_help_panel=MEASURE)], 0),
    ("text", Annotated[str | None, typer.Option(
        help="Text to speak (real models; random weights take fixed ids).", show_default=False,
        rich_help_panel=MEASURE)], None),
    ("bandwidth_mb", Annotated[int, typer.Option(
        min=0, help="Size of the memory-bandwidth probe in MB (0: no floors).", rich_help_panel=MEASURE)], 512),
    ("decode_steps", Annotated[int, typer.Option(
        min=0, help="Decode steps timed directly per GPT stage (0: floors only).", rich_help_panel=MEASURE)], 32),
)


def _bench_options(*, device: str, dtype: Dtype, attention: Attention, quantize: Quantize | None,
                   cuda_graphs: bool | None, offload: bool, threads: int | None, text: str | None,
                   tokens: list[int], **values) -> BenchOptions:
    from ..bench import BenchOptions

    if text is not None:
        values["text"] = text
    hardware = DeviceOptions(device=device, dtype=dtype.value, offload=offload, attention=attention.value,
                             quantize=quantize.value if quantize else None, cuda_graphs=cuda_graphs, threads=threads)
    return BenchOptions(tokens=tuple(tokens), hardware=hardware, **values)


bench_options = option_group("options", BENCH_OPTIONS, _bench_options)
"""Adds `bark bench`'s options; the command takes them as `options: BenchOptions`."""


def progress_printer(out: Output):
    """Status lines on stderr, on a terminal only."""

    def status(message: str) -> None:
        if out.interactive:
            print(message, file=sys.stderr, flush=True)

    return status


def show(out: Output, report: BenchReport, lines: list[str]) -> None:
    if out.as_json:
        print(report.to_json(indent=None), flush=True)
    else:
        out.result("\n".join(lines))


# `options` is a bark_cli.bench.BenchOptions, annotated Any: option_group evaluates this
# signature, and naming the class would import that module, and torch with it.
@bench_options
def bench(options: Any, as_json: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Measure each stage: seconds, tokens per second, real-time factor (seconds per audio
    second), peak memory, and the memory-bandwidth floors of one decode step. EOS is held off
    so token counts are exact."""
    from .. import bench as measure

    out = Output(quiet, as_json)
    report = measure.run_benchmark(options, status=progress_printer(out))
    show(out, report, measure.format_report(report))
