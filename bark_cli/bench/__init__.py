"""`bark bench`: what each of bark-cli's stages takes on this machine, to size hardware with.

    from bark_cli.bench import BenchOptions, run_benchmark, format_report
    report = run_benchmark(BenchOptions(config="bark-small", tokens=[150, 300]))
    print("\\n".join(format_report(report)))
    report.to_json()

Weights are random at the real sizes of a checkpoint (`bark-small`, `bark`; `tiny` for tests) or
a real model (a folder or a Hub id). EOS is held off, so every run makes exactly the semantic
tokens asked for. Per token count the report gives seconds and rates per stage, the real-time
factor (processing seconds per audio second: below 1 is faster than real time), peak memory,
and the decode step of each GPT stage against two memory-bandwidth floors.

Everything runs through the library's public API (`Bark.load`, `Bark.from_weights`,
`generate_batch`, `decoding.kv_cache`), so the figures are those of bark-cli as users run it.
The pieces are public too: bench/compare.py runs transformers beside them. Nothing here
prints: `format_report` returns text lines and `BenchReport.to_json` the JSON.

One job per module: `results` (options and what is found), `model` (the model and the
machine), `probes` (memory, bandwidth, the decode step), `roofline`, `runs` (the timed runs and
the benchmark), `report` (text).
"""

from .model import (
    FIXED_TEXT_IDS, SIZES, TINY_CODEC, FixedTokenizer, bark_config, count_parameters, cpu_name, dtype_label,
    environment, is_random, load_model, model_info, weights_bytes,
)
from .probes import (
    MemoryProbe, decode_floor, decode_step_bytes, kv_step_bytes, measure_bandwidth, measure_floors, measured,
    merge_memory, reset_peak_rss, step_positions, time_decode_steps,
)
from .report import floor_lines, format_report, header_lines, memory_text, ms, rate_text, roofline_lines, run_lines, seconds_text
from .results import (
    DEFAULT_TEXT, GEMM_SHAPE, STAGES, Bandwidth, BenchOptions, BenchReport, DecodeFloor, GemmPeak, RunResult,
    StageRoofline, Status, Timing, options_dict, to_json,
)
from .roofline import (
    block_matrix_params, cpu_flags, fine_pass_counts, gpt_step_counts, has_int8_dot, measure_gemm_peak,
    measure_peaks, peak_dtypes, stage_counts, stage_rooflines,
)
from .runs import median_step, report_notes, run_bark, run_benchmark, summarize, timed_run, torch_threads, warm_up
