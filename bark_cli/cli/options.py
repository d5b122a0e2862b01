"""Options more than one command takes, each declared once.

Single options are `Annotated` aliases (`ModelOpt`, `VoiceOpt`, ...). The sampling knobs and the
device settings are groups: `@sampling_options` and `@device_options` put a group's options into a
command's signature in place of one parameter, and hand the command one value for the group
(`SamplingOptions`, `DeviceOptions`), so `say` and `batch` neither list nor pass them one by one.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, Callable

import typer

from ..checkpoint import DEFAULT_MODEL  # ModelOpt's default, for the commands' signatures
from ..config import SamplingOptions
from ..errors import InputError

# Help panels.
SAMPLING, DEVICE, OUTPUT, LONG = "Sampling", "Device", "Output", "Long texts"


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
    "--model", "-m", envvar="BARK_MODEL", help="Hub id (fetched on first use) or local folder of a Bark model.")]
RevisionOpt = Annotated[str | None, typer.Option(help="Hub branch, tag or commit of the model.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing files.")]
VoiceOpt = Annotated[str | None, typer.Option(
    "--voice", "-v", show_default=False,
    help="A .npz path, a voice of yours (bark presets add) or a Suno preset (bark presets list).")]
SeedOpt = Annotated[int | None, typer.Option(
    help="Seed for repeatable sampling (on the same device and dtype).", show_default=False, rich_help_panel=SAMPLING)]
BatchSizeOpt = Annotated[str, typer.Option(
    help="Segments generated together, or auto to choose from free memory.", rich_help_panel=LONG)]


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
    help="auto, cpu, cuda, cuda:N or mps. auto: CUDA where there is a GPU, else the CPU.",
    rich_help_panel=DEVICE, autocompletion=lambda: ["auto", "cpu", "cuda", "mps"])]
DtypeOpt = Annotated[Dtype, typer.Option(help="auto: float16 on a GPU, float32 on the CPU.", rich_help_panel=DEVICE)]
OffloadOpt = Annotated[bool, typer.Option(
    help="Keep idle sub-models on the CPU; each moves to the GPU only while it runs.", rich_help_panel=DEVICE)]
AttentionOpt = Annotated[Attention, typer.Option(
    help="SDPA backend; flash needs CUDA with float16/bfloat16.", rich_help_panel=DEVICE)]
QuantizeOpt = Annotated[Quantize | None, typer.Option(
    help="int8: semantic and coarse weights in int8 (bfloat16 activations on the CPU); faster decoding.",
    show_default=False, rich_help_panel=DEVICE)]
CudaGraphsOpt = Annotated[bool, typer.Option(
    help="Replay each decode step as a captured CUDA graph (CUDA only): fewer kernel launches per token.",
    rich_help_panel=DEVICE)]
ThreadsOpt = Annotated[int | None, typer.Option(
    min=1, help="CPU threads for PyTorch (default: one per core). Processes running side by side "
                "should each take their share.", show_default=False, rich_help_panel=DEVICE)]


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


SAMPLING_OPTIONS: OptionGroup = (
    ("temperature", Annotated[float | None, typer.Option(
        min=0, help="Temperature of all three stages; 0 is greedy.", show_default=False,
        rich_help_panel=SAMPLING)], None),
    ("semantic_temperature", Annotated[float | None, typer.Option(
        min=0, help="Semantic stage temperature (default 0.7).", show_default=False, rich_help_panel=SAMPLING)], None),
    ("coarse_temperature", Annotated[float | None, typer.Option(
        min=0, help="Coarse stage temperature (default 0.7).", show_default=False, rich_help_panel=SAMPLING)], None),
    ("fine_temperature", Annotated[float | None, typer.Option(
        min=0, help="Fine stage temperature (default 0.5).", show_default=False, rich_help_panel=SAMPLING)], None),
    ("top_k", Annotated[int | None, typer.Option(
        min=1, help="Keep the k likeliest tokens (default 50).", show_default=False, rich_help_panel=SAMPLING)], None),
    ("top_p", Annotated[float | None, typer.Option(
        min=0, max=1, help="Nucleus sampling mass (default 1.0).", show_default=False,
        rich_help_panel=SAMPLING)], None),
    ("min_eos_p", Annotated[float | None, typer.Option(
        min=0, max=1, help="Stop once end-of-speech is this likely; 0 turns it off (default 0.2).",
        show_default=False, rich_help_panel=SAMPLING)], None),
    ("max_semantic_tokens", Annotated[int | None, typer.Option(
        min=1, help="At most this many semantic tokens per segment, ~50 per second (default 768).",
        show_default=False, rich_help_panel=SAMPLING)], None),
)


def _sampling(**values) -> SamplingOptions:
    # Checked here, so that a bad combination fails before a model loads.
    return SamplingOptions(**values).validate()


sampling_options = option_group("sampling", SAMPLING_OPTIONS, _sampling)
"""Adds the sampling options; the command takes them as `sampling: SamplingOptions`."""


@dataclass(frozen=True)
class DeviceOptions:
    """Where and how the model runs: `Bark.load`'s settings, and PyTorch's CPU threads."""

    device: str = "auto"
    dtype: str = "auto"
    offload: bool = False
    attention: str = "auto"
    quantize: str | None = None
    cuda_graphs: bool = False
    threads: int | None = None

    def load_settings(self) -> dict[str, Any]:
        """The keywords `Bark.load` takes."""
        return dict(device=self.device, dtype=self.dtype, offload=self.offload, attention=self.attention,
                    quantize=self.quantize, cuda_graphs=self.cuda_graphs)


DEVICE_OPTIONS: OptionGroup = (
    ("device", DeviceOpt, "auto"),
    ("dtype", DtypeOpt, Dtype.auto),
    ("offload", OffloadOpt, False),
    ("attention", AttentionOpt, Attention.auto),
    ("quantize", QuantizeOpt, None),
    ("cuda_graphs", CudaGraphsOpt, False),
    ("threads", ThreadsOpt, None),
)


def _device(device: str, dtype: Dtype, offload: bool, attention: Attention, quantize: Quantize | None,
            cuda_graphs: bool, threads: int | None) -> DeviceOptions:
    return DeviceOptions(device, dtype.value, offload, attention.value, quantize.value if quantize else None,
                         cuda_graphs, threads)


device_options = option_group("hardware", DEVICE_OPTIONS, _device)
"""Adds the device options; the command takes them as `hardware: DeviceOptions`."""
