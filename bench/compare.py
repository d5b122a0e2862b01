#!/usr/bin/env python
"""bark-cli against transformers' BarkModel: the same weights, the same token counts, one process.

    python bench/compare.py --tokens 150 --tokens 300
    python bench/compare.py --tokens 150 --batch-size 8 --transformers-runs 1
    python bench/compare.py --config suno/bark-small --dtype bfloat16 --json > results.json
    python bench/compare.py --config bark --device cuda --dtype float16 --tokens 150 --batch-size 16 \\
        --cuda-graphs --transformers-batched

It takes every option of `bark bench`, whose measuring code (bark_cli/bench/) it runs for
bark-cli, and adds transformers' own. Each token count gets a table of both side by side, with
speedup = transformers' seconds / bark-cli's seconds per stage.

Random weights at a size are transformers' own init (seeded), saved with a tokenizer and a
generation config into a temporary folder in the Hub layout, which bark-cli loads with
`Bark.load` like any model folder: both run the very same weights. A real model: both load its
folder. EOS is held off on both sides (bark-cli: `allow_early_stop=False`; transformers:
`min_new_tokens` = `max_new_tokens` = N), and the semantic tokens, coarse and fine frames and
audio samples of both are checked to be equal.

On the CPU, where the peak RSS can be reset per run (Linux), each bark-cli run is followed by its
transformers run, so both see the same load from other processes. Elsewhere bark-cli runs first,
every token count, then hands the device to transformers: the device holds one implementation
at a time, and a process-wide peak never charges transformers' memory to bark-cli.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import re
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Annotated, Any, Callable, Sequence

import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torch  # noqa: E402

from bark_cli import bench  # noqa: E402
from bark_cli.bench import BenchOptions, BenchReport, RunResult, Status, Timing  # noqa: E402
from bark_cli.cli.bench import bench_options  # noqa: E402
from bark_cli.cli.errors import exit_code, print_error  # noqa: E402
from bark_cli.cli.options import JsonOpt, QuietOpt  # noqa: E402
from bark_cli.config import BarkConfig, DeviceOptions, GenerationConfig  # noqa: E402
from bark_cli.errors import BarkError, GenerationError, InputError  # noqa: E402
from bark_cli.pipeline import Bark  # noqa: E402
from bark_cli.runtime import Runtime  # noqa: E402

TRANSFORMERS = "Transformers"  # help panel
TORCH_DTYPES = ("float32", "float16", "bfloat16")


# --- transformers --------------------------------------------------------------------------


def import_transformers():
    """transformers, or a clear error: it is a test extra, not a dependency of bark-cli."""
    try:
        transformers = importlib.import_module("transformers")
        transformers.BarkModel  # noqa: B018 - fails early on a transformers without Bark
    except (ImportError, AttributeError):
        raise BarkError("the comparison needs the transformers package, which is not installed",
                        "pip install 'transformers>=4.45' (or install bark-cli with the [test] extra)") from None
    return transformers


def generation_config_classes() -> dict[str, type]:
    """transformers' Bark generation-config classes (not exported at its top level)."""
    import_transformers()
    module = importlib.import_module("transformers.models.bark.generation_configuration_bark")
    return {name: getattr(module, name) for name in (
        "BarkGenerationConfig", "BarkSemanticGenerationConfig", "BarkCoarseGenerationConfig", "BarkFineGenerationConfig")}


def transformers_config(config: BarkConfig):
    """transformers' BarkConfig with the same shapes."""
    return import_transformers().BarkConfig(
        semantic_config=asdict(config.semantic), coarse_acoustics_config=asdict(config.coarse),
        fine_acoustics_config=asdict(config.fine), codec_config=asdict(config.codec))


def generation_config_dict(gen: GenerationConfig) -> dict[str, Any]:
    """bark-cli's values in the layout of the Hub's generation_config.json: sampling on,
    temperatures 0.7 / 0.7 / 0.5, top-k 50 for the semantic and coarse stages."""
    semantic = dict(
        do_sample=True, renormalize_logits=True, temperature=gen.semantic_temperature, top_k=gen.semantic_top_k,
        top_p=gen.semantic_top_p if gen.semantic_top_p is not None else 1.0, eos_token_id=gen.semantic_eos_token,
        max_new_tokens=gen.max_new_tokens, max_input_semantic_length=gen.max_input_semantic_length,
        semantic_infer_token=gen.semantic_infer_token, semantic_pad_token=gen.semantic_pad_token,
        semantic_rate_hz=gen.semantic_rate_hz, semantic_vocab_size=gen.semantic_vocab_size,
        text_encoding_offset=gen.text_encoding_offset, text_pad_token=gen.text_pad_token, use_cache=True)
    coarse = dict(
        do_sample=True, renormalize_logits=True, temperature=gen.coarse_temperature, top_k=gen.coarse_top_k,
        top_p=gen.coarse_top_p if gen.coarse_top_p is not None else 1.0,
        coarse_infer_token=gen.coarse_infer_token, coarse_rate_hz=gen.coarse_rate_hz,
        coarse_semantic_pad_token=gen.coarse_semantic_pad_token, max_coarse_history=gen.max_coarse_history,
        max_coarse_input_length=gen.max_coarse_input_length, n_coarse_codebooks=gen.n_coarse_codebooks,
        sliding_window_len=gen.sliding_window_len, use_cache=True)
    fine = dict(
        do_sample=False, temperature=gen.fine_temperature, top_k=50, top_p=1.0,
        max_fine_history_length=gen.max_fine_history_length, max_fine_input_length=gen.max_fine_input_length,
        n_fine_codebooks=gen.n_fine_codebooks, use_cache=True)
    return dict(semantic_config=semantic, coarse_acoustics_config=coarse, fine_acoustics_config=fine,
                sample_rate=gen.sample_rate, codebook_size=gen.codebook_size)


def transformers_generation_config(gen: GenerationConfig):
    return generation_config_classes()["BarkGenerationConfig"](**generation_config_dict(gen))


@torch.no_grad()
def random_transformers_model(config: BarkConfig, seed: int = 0):
    """transformers' BarkModel at `config`'s shapes with its own random init (seeded), float32."""
    torch.manual_seed(seed)
    model = import_transformers().BarkModel(transformers_config(config)).eval()
    # EnCodec's quantizer tables start as zeros; give the decoder some signal.
    generator = torch.Generator().manual_seed(seed)
    for name, buffer in model.codec_model.named_buffers():
        if name.endswith("codebook.embed"):
            buffer.copy_(torch.randn(buffer.shape, generator=generator))
    return model


def write_model_folder(model, gen: GenerationConfig, folder: Path, text: str) -> Path:
    """`model` in the Hub layout (config.json, model.safetensors, generation_config.json with
    `gen`'s values) with a BERT tokenizer whose vocabulary covers `text`'s words (timing does not
    depend on the ids). `model` takes `gen` as its generation config too."""
    model.save_pretrained(folder)
    # Written by hand: transformers cannot save a BarkGenerationConfig (it validates fields that
    # only its generic GenerationConfig has).
    (folder / "generation_config.json").write_text(json.dumps(generation_config_dict(gen), indent=2))
    model.generation_config = transformers_generation_config(gen)
    words = sorted(set(re.findall(r"\w+|[^\w\s]", text)))
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    import_transformers().BertTokenizerFast(vocab_file=str(vocab), do_lower_case=False).save_pretrained(folder)
    return folder


def load_both(options: BenchOptions, folder: Path, say: Status) -> tuple[Bark, Any]:
    """bark-cli and transformers on the same weights: random ones through `folder`, or a real model."""
    transformers = import_transformers()
    if bench.is_random(options):
        made = []

        def transformers_folder(runtime: Runtime) -> Path:
            say(f"building transformers' BarkModel ({options.config}, random weights)")
            made.append(random_transformers_model(bench.bark_config(options.config), options.seed))
            say("saving it for bark-cli")
            return write_model_folder(made[0], GenerationConfig(), folder, options.text)

        return bench.load_model(options, say, model_folder=transformers_folder), made[0]
    bark = bench.load_model(options, say)
    say(f"loading {options.config} into transformers")
    hf = transformers.BarkModel.from_pretrained(bark.folder, dtype=torch.float32).eval()
    hf.generation_config = transformers_generation_config(bark.config)
    return bark, hf


class _StepStamps:
    """A transformers StoppingCriteria that never stops and notes the time of every step."""

    def __init__(self):
        self.stamps: list[float] = []

    def __call__(self, input_ids, scores, **kwargs):
        self.stamps.append(time.perf_counter())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


@torch.no_grad()
def run_transformers(hf, text_ids: list[int], n_tokens: int, batch: int, seed: int, runtime: Runtime) -> Timing:
    """BarkModel.generate's chain (semantic, coarse, fine, codec_decode), each stage timed, with
    EOS held off for exactly `n_tokens` semantic tokens."""
    transformers = import_transformers()
    classes = generation_config_classes()
    gen = hf.generation_config

    def sub(name: str, value):  # a sub-config object, or the dict a loaded file leaves there
        cls = classes[name]
        return value if isinstance(value, cls) else cls(**value)

    semantic_cfg = sub("BarkSemanticGenerationConfig", gen.semantic_config)
    coarse_cfg = sub("BarkCoarseGenerationConfig", gen.coarse_acoustics_config)
    fine_cfg = sub("BarkFineGenerationConfig", gen.fine_acoustics_config)
    length = semantic_cfg.max_input_semantic_length
    ids = torch.zeros(batch, length, dtype=torch.long)
    ids[:, : len(text_ids)] = torch.tensor(text_ids[:length])
    mask = (torch.arange(length) < len(text_ids)).long()[None].repeat(batch, 1)
    ids, mask = ids.to(runtime.device), mask.to(runtime.device)
    stamper = _StepStamps()

    class Stamp(transformers.StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return stamper(input_ids, scores, **kwargs)

    torch.manual_seed(seed)
    seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(name: str):
        runtime.sync()
        start = time.perf_counter()
        yield
        runtime.sync()
        seconds[name] = time.perf_counter() - start

    begin = time.perf_counter()
    with stage("semantic"):
        semantic = hf.semantic.generate(
            ids, attention_mask=mask, history_prompt=None, semantic_generation_config=semantic_cfg,
            min_eos_p=None, min_new_tokens=n_tokens, max_new_tokens=n_tokens,
            stopping_criteria=transformers.StoppingCriteriaList([Stamp()]))
    with stage("coarse"):
        coarse = hf.coarse_acoustics.generate(
            semantic, history_prompt=None, semantic_generation_config=semantic_cfg,
            coarse_generation_config=coarse_cfg, codebook_size=gen.codebook_size)
    with stage("fine"):
        fine = hf.fine_acoustics.generate(
            coarse, history_prompt=None, semantic_generation_config=semantic_cfg, coarse_generation_config=coarse_cfg,
            fine_generation_config=fine_cfg, codebook_size=gen.codebook_size)
    with stage("decode"):
        audio = hf.codec_decode(fine)
    seconds["total"] = time.perf_counter() - begin
    has_eos = bool((semantic == semantic_cfg.eos_token_id).any())
    if has_eos or semantic.shape[1] != n_tokens:
        raise GenerationError(
            f"transformers made {semantic.shape[1]} semantic tokens (EOS inside: {has_eos}), not {n_tokens}")
    counts = dict(semantic_tokens=semantic.shape[1], coarse_frames=coarse.shape[1] // coarse_cfg.n_coarse_codebooks,
                  fine_frames=fine.shape[-1], audio_samples=audio.shape[-1])
    return Timing(counts, seconds, bench.median_step(stamper.stamps), gen.sample_rate)


@contextlib.contextmanager
def quiet_transformers():
    """transformers' warnings (unused sampling flags and the like) and progress bars off while it runs."""
    logging = import_transformers().logging
    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


# --- options and results -------------------------------------------------------------------


@dataclass
class CompareOptions:
    """How transformers runs beside `bark bench`'s options."""

    transformers_dtype: str | None = None  # None: float32 on the CPU, else the same as bark-cli's
    transformers_batched: bool = False  # batch > 1: transformers runs the batch in one call
    transformers_runs: int | None = None  # one by one: calls timed (None: all); fewer are scaled up

    def validate(self) -> None:
        if self.transformers_runs is not None and self.transformers_runs < 1:
            raise InputError("transformers runs must be at least 1", "or leave it unset for one run per item")
        if self.transformers_dtype not in (None, *TORCH_DTYPES):
            raise InputError(f"unknown transformers dtype {self.transformers_dtype!r}",
                             f"use {', '.join(TORCH_DTYPES)}")


@dataclass(kw_only=True)  # after RunResult's fields, whose `implementation` is a constant
class TransformersRun(RunResult):
    """transformers at one token count. One by one, a batch is `calls` calls, of which only
    `scaled_from` may have been timed (the seconds then scaled up to all of them)."""

    implementation: str = "transformers"
    calls: int = 1
    scaled_from: int | None = None


@dataclass
class Comparison:
    """Both implementations at one token count."""

    tokens: int
    ours: RunResult
    transformers: TransformersRun

    def speedup(self) -> dict[str, float]:
        """Per stage and end to end: transformers' seconds / ours for the same items (> 1: ours
        is faster; for a batch, the throughput ratio)."""
        return {k: _ratio(self.transformers.seconds[k], self.ours.seconds[k]) for k in (*bench.STAGES, "total")}

    def time_ratio(self) -> dict[str, float]:
        """Per stage and end to end: ours / transformers' seconds (< 1: ours is faster)."""
        return {k: _ratio(self.ours.seconds[k], self.transformers.seconds[k]) for k in (*bench.STAGES, "total")}

    def to_dict(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "bark_cli": self.ours.to_dict(), "transformers": self.transformers.to_dict(),
                "speedup": self.speedup(), "time_ratio_ours_over_transformers": self.time_ratio()}


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("inf")


@dataclass
class CompareReport:
    bench: BenchReport  # bark-cli's side, as `bark bench` reports it
    compare: CompareOptions
    comparisons: list[Comparison]
    notes: list[str] = field(default_factory=list)  # bench.notes, then the comparison's

    def to_dict(self) -> dict[str, Any]:
        out = self.bench.to_dict()
        out["options"].update(asdict(self.compare))
        out["results"] = [c.to_dict() for c in self.comparisons]
        out["notes"] = list(self.notes)
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return bench.to_json(self.to_dict(), indent)


# --- the comparison ------------------------------------------------------------------------


class TransformersSide:
    """transformers' runs: one call per item, or the whole batch in one call."""

    def __init__(self, hf, text_ids: list[int], options: BenchOptions, compare: CompareOptions, runtime: Runtime):
        self.hf, self.text_ids, self.options, self.runtime = hf, text_ids, options, runtime
        batch = options.batch_size
        self.dtype = compare.transformers_dtype or ("float32" if runtime.device.type == "cpu" else runtime.dtype_name)
        self.sequential = not compare.transformers_batched and batch > 1
        self.call_batch = 1 if self.sequential or batch == 1 else batch
        self.calls = min(compare.transformers_runs or batch, batch) if self.sequential else 1

    def to_device(self) -> None:
        self.hf.to(device=self.runtime.device, dtype=getattr(torch, self.dtype))

    def warm_up(self, say: Status) -> None:
        say(f"transformers warm-up ({self.options.warmup_tokens} tokens, batch {self.call_batch})")
        run_transformers(self.hf, self.text_ids, self.options.warmup_tokens, self.call_batch, self.options.seed,
                         self.runtime)

    def timed_run(self, n_tokens: int, repeat: int, say: Status) -> tuple[Timing, dict[str, Any]]:
        def calls() -> Timing:
            parts = []
            for c in range(self.calls):
                say(f"transformers: {n_tokens} tokens, batch {self.call_batch}, run {repeat + 1}/"
                    f"{self.options.repeats}" + (f", item {c + 1}/{self.calls}" if self.calls > 1 else ""))
                parts.append(run_transformers(self.hf, self.text_ids, n_tokens, self.call_batch,
                                              self.options.seed + repeat * self.calls + c, self.runtime))
            steps = [p.step for p in parts if p.step is not None]
            seconds = {k: sum(p.seconds[k] for p in parts) for k in (*bench.STAGES, "total")}
            return Timing(parts[0].counts, seconds, statistics.median(steps) if steps else None, parts[0].sample_rate)

        return bench.measured(self.runtime.device, calls)

    def summarize(self, runs, ours: RunResult) -> TransformersRun:
        """The median over the repeats, scaled from the calls timed to the whole batch; the fine
        windows are bark-cli's (transformers does not report them, and the frames are equal)."""
        batch = self.options.batch_size
        scale = batch / self.calls if self.sequential else 1.0
        run = bench.summarize(self.dtype, batch, runs)
        values = {f.name: getattr(run, f.name) for f in fields(run)}
        values.update(fine_windows=ours.fine_windows, seconds={k: scale * v for k, v in run.seconds.items()})
        return TransformersRun(**values, calls=batch if self.sequential else 1,
                               scaled_from=self.calls if self.sequential and self.calls < batch else None)


Runs = dict[int, list[tuple[Timing, dict[str, Any]]]]


def measure_interleaved(bark: Bark, theirs: TransformersSide, options: BenchOptions, say: Status):
    """Each bark-cli run followed by its transformers run (both on the CPU)."""
    theirs.to_device()
    if options.warmup:
        bench.warm_up(bark, options, say)
        theirs.warm_up(say)
    bandwidth, floors = bench.measure_floors(bark, options, say)
    ours_runs: Runs = {n: [] for n in options.tokens}
    their_runs: Runs = {n: [] for n in options.tokens}
    for n in options.tokens:
        for r in range(options.repeats):
            ours_runs[n].append(bench.timed_run(bark, options, n, r, say))
            their_runs[n].append(theirs.timed_run(n, r, say))
    return bandwidth, floors, ours_runs, their_runs


def measure_in_turn(bark: Bark, theirs: TransformersSide, options: BenchOptions, say: Status):
    """Every bark-cli run, then bark-cli's weights leave the device and transformers runs."""
    if options.warmup:
        bench.warm_up(bark, options, say)
    bandwidth, floors = bench.measure_floors(bark, options, say)
    ours_runs: Runs = {n: [bench.timed_run(bark, options, n, r, say) for r in range(options.repeats)]
                       for n in options.tokens}
    w = bark.weights
    for module in (w.semantic, w.coarse, w.fine, w.codec):
        module.to("cpu")
    if bark.device.type == "cuda":
        torch.cuda.empty_cache()
    theirs.to_device()
    if options.warmup:
        theirs.warm_up(say)
    their_runs: Runs = {n: [theirs.timed_run(n, r, say) for r in range(options.repeats)] for n in options.tokens}
    return bandwidth, floors, ours_runs, their_runs


def compare_counts(n: int, ours: RunResult, theirs: RunResult) -> None:
    mine = (ours.semantic_tokens, ours.coarse_frames, ours.fine_frames, ours.audio_samples)
    other = (theirs.semantic_tokens, theirs.coarse_frames, theirs.fine_frames, theirs.audio_samples)
    if mine != other:
        raise GenerationError(f"token counts differ at {n} tokens: bark-cli (semantic, coarse frames, fine frames, "
                              f"samples) {mine}, transformers {other}")


def measure(bark: Bark, hf, options: BenchOptions, compare: CompareOptions, say: Status) -> CompareReport:
    theirs = TransformersSide(hf, bark.tokenize(options.text)[0], options, compare, bark.runtime)
    # (transformers' Bark has eager and flash-attention-2 paths, no SDPA one)
    notes = [f"transformers' BarkModel attention: {getattr(hf.semantic.config, '_attn_implementation', None)}"]
    interleave = bark.device.type == "cpu" and bench.reset_peak_rss()
    model, label, env = bench.model_info(bark, options), bench.dtype_label(bark), bench.environment(bark.device)
    in_order = measure_interleaved if interleave else measure_in_turn
    bandwidth, floors, ours_runs, their_runs = in_order(bark, theirs, options, say)
    comparisons = []
    for n in options.tokens:
        ours = bench.summarize(label, options.batch_size, ours_runs[n])
        other = theirs.summarize(their_runs[n], ours)
        compare_counts(n, ours, other)
        comparisons.append(Comparison(n, ours, other))
        if other.scaled_from:
            notes.append(f"transformers at {n} tokens: {other.scaled_from} of {options.batch_size} sequential runs "
                         f"timed, times scaled to {options.batch_size} items")
    notes.append("run order: " + ("interleaved (bark-cli run, then its transformers run)" if interleave
                                  else "bark-cli first, then transformers"))
    results = [c.ours for c in comparisons]
    report = BenchReport(options=options, environment=env | {"transformers": import_transformers().__version__},
                         model=model, bandwidth=bandwidth, floors=floors, results=results,
                         notes=bench.report_notes(results, floors))
    return CompareReport(report, compare, comparisons, report.notes + notes)


def run_comparison(options: BenchOptions, compare: CompareOptions, status: Status | None = None) -> CompareReport:
    """bark-cli and transformers at every token count. Raises bark-cli's errors, and BarkError
    without transformers."""
    options.validate()
    compare.validate()
    import_transformers()
    options = replace(options, tokens=[int(n) for n in options.tokens])
    say = status or (lambda message: None)
    with bench.torch_threads(options.hardware.threads), tempfile.TemporaryDirectory(prefix="bark-compare-") as folder:
        with quiet_transformers():
            bark, hf = load_both(options, Path(folder), say)
            return measure(bark, hf, options, compare, say)


Column = tuple[str, RunResult]  # a heading and its run


def _each(columns: Sequence[Column], text: Callable[[RunResult], str]) -> str:
    return "; ".join(f"{name} {text(run)}" for name, run in columns)


def run_lines(columns: Sequence[Column], env: dict[str, Any], extra: tuple[str, dict[str, float]]) -> list[str]:
    """One token count, as `bark bench` prints it with a column per implementation and one of
    ratios (the speedup): seconds and rate per stage, real-time factor, in-run step, memory, CPU."""
    first = columns[0][1]
    lines = ["", f"{first.semantic_tokens} semantic tokens x {first.batch_size}: {first.coarse_frames} coarse "
                 f"frames, {first.fine_frames} fine frames, {first.fine_windows} fine window(s), "
                 f"{first.audio_seconds:.2f} s of audio (same counts in both)"]
    widths = [max(10, len(name)) for name, _ in columns]
    lines.append(f"  {'stage':<9}" + "".join(f"{name:>{w}}  {'rate':<16}" for (name, _), w in zip(columns, widths))
                 + f"{extra[0]:>8}")
    for stage in (*bench.STAGES, "total"):
        lines.append(f"  {stage:<9}" + "".join(
            f"{bench.seconds_text(run.seconds[stage]):>{w}}  {bench.rate_text(run, stage):<16}"
            for (_, run), w in zip(columns, widths)) + f"{extra[1][stage]:>7.2f}x")
    lines.append("  real-time factor (processing seconds per audio second): " + _each(
        columns, lambda r: f"{r.rates()['real_time_factor']:.3f} ({r.rates()['x_faster_than_real_time']:.2f}x "
                           "faster than real time)"))
    lines.append("  semantic step in run: " + _each(columns, lambda r: bench.ms(r.semantic_step_seconds)))
    lines.append("  peak memory: " + _each(columns, bench.memory_text))
    if env["device"] == "cpu" and first.cpu_cores_used is not None:
        lines.append("  CPU cores used: " + _each(columns, lambda r: f"{r.cpu_cores_used:.2f}")
                     + f" of {env['torch_threads']} thread(s); load average "
                     + _each(columns, lambda r: "-" if r.load_average is None else f"{r.load_average:.2f}"))
    return lines


def format_comparison(report: CompareReport) -> list[str]:
    env = report.bench.environment
    lines = bench.header_lines(report.bench, title="bark-cli vs transformers")
    lines[1] += f", transformers {env['transformers']}"
    for comp in report.comparisons:
        theirs = comp.transformers
        tag = "transformers"
        if theirs.calls > 1:
            tag += f" ({theirs.calls} runs" + (f", {theirs.scaled_from} timed)" if theirs.scaled_from else ")")
        lines += run_lines([("bark-cli", comp.ours), (tag, theirs)], env, extra=("speedup", comp.speedup()))
    lines += bench.floor_lines(report.bench)
    lines += [f"note: {note}" for note in report.notes]
    return [line.rstrip() for line in lines]


# --- the command ---------------------------------------------------------------------------


@bench_options
def main(
    options: Any,  # a BenchOptions, from `bark bench`'s options
    transformers_dtype: Annotated[str | None, typer.Option(
        help="transformers' dtype (default: float32 on the CPU, else bark-cli's).", show_default=False,
        rich_help_panel=TRANSFORMERS)] = None,
    transformers_batched: Annotated[bool, typer.Option(
        help="With --batch-size: transformers runs the whole batch in one call too (else one by one).",
        rich_help_panel=TRANSFORMERS)] = False,
    transformers_runs: Annotated[int | None, typer.Option(
        min=1, help="One by one: time only this many transformers calls and scale up.", show_default=False,
        rich_help_panel=TRANSFORMERS)] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """bark-cli and transformers' BarkModel side by side on the same weights and token counts."""
    start = time.perf_counter()

    def status(message: str) -> None:
        if not quiet:
            print(f"[{time.perf_counter() - start:7.1f}s] {message}", file=sys.stderr, flush=True)

    try:
        report = run_comparison(options, CompareOptions(transformers_dtype, transformers_batched, transformers_runs),
                                status)
    except BarkError as exc:
        print_error(exc.message, exc.hint)
        raise typer.Exit(exit_code(exc)) from None
    print(report.to_json(indent=None) if as_json else "\n".join(format_comparison(report)), flush=True)


if __name__ == "__main__":
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                      context_settings={"help_option_names": ["-h", "--help"]})
    app.command()(main)
    app()
