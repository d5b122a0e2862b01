"""`bark bench`: size your hardware; bark-cli and transformers side by side on the same weights."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from .. import bench as measure
from .common import (
    DEVICE, Attention, AttentionOpt, CudaGraphsOpt, DeviceOpt, Dtype, OffloadOpt, Output, QuantizeOpt, QuietOpt, app,
    examples,
)

BENCH_EXAMPLES = examples(
    "bark bench",
    "bark bench --config bark --tokens 100",
    "bark bench --tokens 150 --tokens 300 --compare-transformers",
    "bark bench --tokens 150 --batch-size 8 --compare-transformers --transformers-runs 2",
    "bark bench --dtype bfloat16 --quantize int8 --json",
)


@app.command(epilog=BENCH_EXAMPLES)
def bench(
    config: Annotated[str, typer.Option(
        help=f"Random weights at a size ({', '.join(measure.SIZES)}), or a model folder or Hub id.")] = "bark-small",
    tokens: Annotated[list[int], typer.Option(
        "--tokens", "-t", min=1, help="Exact semantic tokens per item (repeat the option for several runs).")] = [150],
    batch_size: Annotated[int, typer.Option(
        min=1, help="Items in one bark-cli batch; transformers generates them one by one.")] = 1,
    compare_transformers: Annotated[bool, typer.Option(
        "--compare-transformers", help="Also run transformers' BarkModel on the same weights and counts.")] = False,
    transformers_runs: Annotated[int | None, typer.Option(
        min=1, help="With --batch-size: time only this many transformers runs and scale up.",
        show_default=False)] = None,
    device: DeviceOpt = "cpu",
    dtype: Annotated[Dtype, typer.Option(help="bark-cli's GPT stages.", rich_help_panel=DEVICE)] = Dtype.float32,
    attention: AttentionOpt = Attention.auto,
    quantize: QuantizeOpt = None,
    cuda_graphs: CudaGraphsOpt = False,
    offload: OffloadOpt = False,
    threads: Annotated[int | None, typer.Option(min=1, help="torch.set_num_threads.", show_default=False)] = None,
    repeats: Annotated[int, typer.Option(min=1, help="Timed runs per token count (the median is kept).")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Measure each stage: seconds, tokens per second, real-time factor, peak memory, and the
    memory-bandwidth floor of one decode step. EOS is held off so token counts are exact."""
    out = Output(quiet, as_json)
    dtype_name = dtype.value if dtype != Dtype.auto else "float32"
    options = measure.BenchOptions(
        config=config, tokens=tuple(tokens), batch_size=batch_size, device=device, dtype=dtype_name,
        attention=attention.value, compare_transformers=compare_transformers, transformers_runs=transformers_runs,
        threads=threads, repeats=repeats, quantize=quantize.value if quantize else None, cuda_graphs=cuda_graphs,
        offload=offload)

    def status(message: str) -> None:
        if out.interactive:
            print(message, file=sys.stderr, flush=True)

    report = measure.run_benchmark(options, status=status)
    if as_json:
        print(report.to_json(indent=None))
    else:
        out.result("\n".join(measure.format_report(report)))
