"""Options more than one command takes, each declared once.

Single options are `Annotated` aliases (`ModelOpt`, `VoiceOpt`, ...). The sampling knobs and the
device settings are groups: `@sampling_options` and `@device_options` put a group's options into a
command's signature in place of one parameter, and hand the command one value for the group
(`SamplingOptions`, `DeviceOptions`), so `say` and `batch` neither list nor pass them one by one.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
from enum import Enum
from typing import Annotated, Any, Callable

import typer

from ..config import DeviceOptions, SamplingOptions
from ..errors import InputError
from ..hub import DEFAULT_MODEL  # ModelOpt's default, for the commands' signatures
from .errors import BadValue

# Help panels. Options a command's help lists first take none (they land in "Options").
SAMPLING, DEVICE, OUTPUT, LONG = "Sampling", "Device", "Output", "Long texts"

# The largest seed: PyTorch's generators take a 64-bit seed, and JSON readers keep a signed one whole.
MAX_SEED = 2**63 - 1


def in_range(low: float | None = None, high: float | Callable[[], float] | None = None):
    """An option callback: the value (when given) is a finite number within [low, high]; `high`
    may be a function, read when the option is. Checked where the value enters, so that a bad one
    costs one line and exit 2 before anything loads."""

    def check(value):
        if value is None:
            return value
        top = high() if callable(high) else high
        if isinstance(value, float) and not math.isfinite(value):
            raise BadValue(f"{value} is not a finite number")
        if (low is not None and value < low) or (top is not None and value > top):
            lo, hi = _number(low), _number(top)
            bounds = (f"within {lo}..{hi}" if low is not None and top is not None
                      else f"at least {lo}" if low is not None else f"at most {hi}")
            raise BadValue(f"{_number(value)} is out of range: it must be {bounds}")
        return value

    return check


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def cpu_count() -> int:
    return os.cpu_count() or 1


class Dtype(str, Enum):
    auto = "auto"
    float32 = "float32"
    float16 = "float16"
    bfloat16 = "bfloat16"


class Attention(str, Enum):
    auto = "auto"
    sdpa = "sdpa"
    flash = "flash"
    math = "math"


class Quantize(str, Enum):
    int8 = "int8"


class Subtype(str, Enum):
    PCM_16 = "PCM_16"
    PCM_24 = "PCM_24"
    FLOAT = "FLOAT"


class VoiceMode(str, Enum):
    fixed = "fixed"
    chain = "chain"


# --- single options ---------------------------------------------------------------------------

ModelOpt = Annotated[str, typer.Option(
    "--model", "-m", envvar="BARK_MODEL", show_envvar=False, show_default=False, metavar="ID|DIR",
    help="Hub id or folder (default suno/bark-small).")]
RevisionOpt = Annotated[str | None, typer.Option(
    metavar="REV", help="Hub branch, tag or commit of the model.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing files.")]
VoiceOpt = Annotated[str | None, typer.Option(
    "--voice", "-v", show_default=False, metavar="NAME|NPZ",
    help="Preset, your voice or .npz (bark presets list).")]
SeedOpt = Annotated[int | None, typer.Option(
    metavar="N", help="Seed for repeatable output (0..2^63-1).", show_default=False,
    callback=in_range(0, MAX_SEED))]
BatchSizeOpt = Annotated[str, typer.Option(
    metavar="N|auto", show_default=False, help="Segments at once (default auto: by free memory).",
    rich_help_panel=LONG)]
# The longest pause between segments; anything longer is a mistake for milliseconds.
MAX_GAP_SECONDS = 60.0
GapOpt = Annotated[float, typer.Option(
    metavar="SECONDS", show_default=False, help="Silence between segments (default 0.25, at most 60).",
    callback=in_range(0, MAX_GAP_SECONDS), rich_help_panel=LONG)]


def parse_batch_size(value: str) -> int | None:
    """`auto` -> None (the library chooses); else a positive integer."""
    if value == "auto":
        return None
    try:
        size = int(value)
    except ValueError:
        size = 0
    if size < 1:
        raise InputError(f"--batch-size {value!r} is not a positive integer", "give a number like 4, or auto")
    return size


# Device options; `bark bench` takes some of them alone, with defaults of its own.
DeviceOpt = Annotated[str, typer.Option(
    metavar="auto|cpu|cuda[:N]|mps", show_default=False, help="auto (default): CUDA if there is a GPU.",
    rich_help_panel=DEVICE, autocompletion=lambda: ["auto", "cpu", "cuda", "mps"])]
DtypeOpt = Annotated[Dtype, typer.Option(
    metavar="auto|float32|float16|bfloat16", show_default=False, help="auto: float16 on a GPU, else float32.",
    rich_help_panel=DEVICE)]
OffloadOpt = Annotated[bool, typer.Option(
    "--offload", help="Keep idle sub-models on the CPU.", rich_help_panel=DEVICE)]
AttentionOpt = Annotated[Attention, typer.Option(
    metavar="auto|sdpa|flash|math", show_default=False, help="SDPA backend; flash: CUDA, 16-bit only.",
    rich_help_panel=DEVICE)]
QuantizeOpt = Annotated[Quantize | None, typer.Option(
    metavar="int8", help="Semantic and coarse weights in int8 (CPU).", show_default=False,
    rich_help_panel=DEVICE)]
CudaGraphsOpt = Annotated[bool | None, typer.Option(
    "--cuda-graphs/--no-cuda-graphs", help="Replay decode steps as CUDA graphs (default: on CUDA).",
    show_default=False, rich_help_panel=DEVICE)]
ThreadsOpt = Annotated[int | None, typer.Option(
    metavar="N", help="CPU threads (default one per core).", show_default=False,
    callback=in_range(1, cpu_count), rich_help_panel=DEVICE)]


# --- option groups ----------------------------------------------------------------------------

# A group: (parameter name, annotation, default) per option, in help order.
OptionGroup = tuple[tuple[str, Any, Any], ...]


def option_group(parameter: str, group: OptionGroup, build: Callable[..., Any]):
    """A decorator: in the signature Typer reads, `command`'s parameter `parameter` becomes the
    group's options (at its place, so help keeps their order); the command is called with
    `build(**their values)` as that one parameter."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        if parameter not in signature.parameters:
            raise TypeError(f"{command.__name__} has no parameter {parameter!r} to take the options")
        params: list[inspect.Parameter] = []
        for param in signature.parameters.values():
            if param.name == parameter:
                params += [inspect.Parameter(name, param.kind, default=default, annotation=annotation)
                           for name, annotation, default in group]
            else:
                params.append(param)
        options_signature = signature.replace(parameters=params)

        @functools.wraps(command)
        def with_options(*args, **kwargs):
            bound = options_signature.bind(*args, **kwargs)
            bound.apply_defaults()
            values = dict(bound.arguments)
            grouped = {name: values.pop(name) for name, _, _ in group}
            return command(**values, **{parameter: build(**grouped)})

        with_options.__signature__ = options_signature
        # Typer also reads the annotations through typing.get_type_hints: give it the evaluated ones.
        with_options.__annotations__ = {p.name: p.annotation for p in params}
        if signature.return_annotation is not inspect.Signature.empty:
            with_options.__annotations__["return"] = signature.return_annotation
        return with_options

    return decorate


def _float(help: str, low: float = 0, high: float | None = None):
    return Annotated[float | None, typer.Option(
        metavar="X", help=help, show_default=False, callback=in_range(low, high), rich_help_panel=SAMPLING)]


def _int(help: str, low: int = 1, high: int | None = None):
    return Annotated[int | None, typer.Option(
        metavar="N", help=help, show_default=False, callback=in_range(low, high), rich_help_panel=SAMPLING)]


# The longest semantic run a segment may ask for: about 80 s at ~50 tokens a second, five times
# the default. A segment is meant to be ~13 s; a bigger number is a typo that would allocate for minutes.
MAX_SEMANTIC_TOKENS = 4096

SAMPLING_OPTIONS: OptionGroup = (
    ("temperature", _float("All three stages; 0 is greedy."), None),
    ("semantic_temperature", _float("Semantic stage (default 0.7)."), None),
    ("coarse_temperature", _float("Coarse stage (default 0.7)."), None),
    ("fine_temperature", _float("Fine stage (default 0.5)."), None),
    ("top_k", _int("Keep the k likeliest tokens (default 50)."), None),
    ("top_p", _float("Nucleus sampling mass, 0..1 (default 1).", 0, 1), None),
    ("min_eos_p", _float("Stop once end-of-speech is this likely; 0: off (default 0.2).", 0, 1), None),
    ("max_semantic_tokens", _int("Semantic tokens per segment, ~50 a second (default 768).",
                                 1, MAX_SEMANTIC_TOKENS), None),
)


# Built (and so checked) here, so that a bad combination fails before a model loads.
sampling_options = option_group("sampling", SAMPLING_OPTIONS, SamplingOptions)
"""Adds the sampling options; the command takes them as `sampling: SamplingOptions`."""


DEVICE_OPTIONS: OptionGroup = (
    ("device", DeviceOpt, "auto"),
    ("dtype", DtypeOpt, Dtype.auto),
    ("offload", OffloadOpt, False),
    ("attention", AttentionOpt, Attention.auto),
    ("quantize", QuantizeOpt, None),
    ("cuda_graphs", CudaGraphsOpt, None),
    ("threads", ThreadsOpt, None),
)


def _device(device: str, dtype: Dtype, offload: bool, attention: Attention, quantize: Quantize | None,
            cuda_graphs: bool | None, threads: int | None) -> DeviceOptions:
    return DeviceOptions(device, dtype.value, offload, attention.value, quantize.value if quantize else None,
                         cuda_graphs, threads)


device_options = option_group("hardware", DEVICE_OPTIONS, _device)
"""Adds the device options; the command takes them as `hardware: DeviceOptions`."""
