"""What every `bark` command shares: the app, error mapping, the output sink, option types.

Commands are thin: they check their flags, call the library and report through one `Output`:
results on stdout, progress, warnings and errors on stderr. The library raises typed errors;
`EXIT_CODES` alone turns them into exit codes.
"""

from __future__ import annotations

import contextlib
import errno
import inspect
import json
import os
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Iterator, NoReturn

import typer
from rich.markup import escape
from typer.core import TyperGroup

from .. import __version__, checkpoint
from ..errors import BarkError, CheckpointError, DeviceError, GenerationError, InputError, OutputError

# --- errors -----------------------------------------------------------------------------------

# Error type -> exit code, most specific first. 2: bad usage or bad input (as Click's usage
# errors); 1: a failure while generating, or a bug.
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (GenerationError, 1),
    (InputError, 2),  # PresetError too
    (CheckpointError, 2),
    (DeviceError, 2),
    (OutputError, 2),
    (BarkError, 1),
)
EXIT_HELP = "Exit codes: 0 success; 1 a failure while generating; 2 bad usage or bad input."


def exit_code(exc: BaseException) -> int:
    return next((code for kind, code in EXIT_CODES if isinstance(exc, kind)), 1)


def print_error(message: str, hint: str = "") -> None:
    """One plain line on stderr (never wrapped by Rich)."""
    print(f"error: {message}" + (f" ({hint})" if hint else ""), file=sys.stderr, flush=True)


# Click's UsageError as Typer raises it (Typer 0.2x carries its own copy of Click).
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def usage_error(exc: Exception) -> NoReturn:
    """A bad option or argument: one line, like every other bad input, then exit 2. A bare
    group's "error" is its help, which Typer shows."""
    if type(exc).__name__ == "NoArgsIsHelpError":
        raise exc
    ctx = getattr(exc, "ctx", None)
    print_error(exc.format_message(), f"see '{ctx.command_path if ctx else 'bark'} -h'")
    raise typer.Exit(exc.exit_code) from None


class BarkGroup(TyperGroup):
    """The top-level group: every command runs inside its `invoke`, so errors are mapped here once."""

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except UsageError as exc:  # the group's own options
            usage_error(exc)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BarkError as exc:
            print_error(exc.message, exc.hint)
            raise typer.Exit(exit_code(exc)) from None
        except UsageError as exc:  # a command's bad option or argument
            usage_error(exc)
        except Exception as exc:
            # typer.Exit, usage errors (they carry an exit_code) and a closed pipe are Typer's to report.
            if hasattr(exc, "exit_code") or (isinstance(exc, OSError) and exc.errno == errno.EPIPE):
                raise
            if os.environ.get("BARK_DEBUG"):
                raise
            print_error(f"unexpected {type(exc).__name__}: {exc}",
                        "set BARK_DEBUG=1 for a traceback, and please report it")
            raise typer.Exit(exit_code(exc)) from None


# --- output -----------------------------------------------------------------------------------


class Output:
    """The one sink. Results go to stdout (text, or JSON with --json); progress, spinners and
    notes to stderr only when it is a terminal and not --quiet; warnings unless --quiet."""

    def __init__(self, quiet: bool = False, as_json: bool = False):
        self.quiet = quiet
        self.as_json = as_json
        self.interactive = not quiet and sys.stderr.isatty()
        self._console = None

    @property
    def console(self):
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False)
        return self._console

    def result(self, text: str = "") -> None:
        if not self.quiet:
            print(text, flush=True)

    def data(self, obj: Any) -> None:
        print(json.dumps(obj, ensure_ascii=False), flush=True)

    def note(self, text: str) -> None:
        if self.interactive:
            self.console.print(escape(text))

    def warning(self, text: str) -> None:
        if not self.quiet:
            print(f"warning: {text}", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def status(self, text: str, show: bool = True) -> Iterator:
        """A spinner; yields a function that changes its text (a no-op when not interactive)."""
        if not (self.interactive and show):
            yield lambda message: None
            return
        with self.console.status(escape(text)) as spinner:
            yield lambda message: spinner.update(escape(message))

    @contextlib.contextmanager
    def stages(self) -> Iterator:
        """Per-stage progress bars; yields the library's progress callback (None when not interactive)."""
        if not self.interactive:
            yield None
            return
        bars = StageBars(self.console)
        with bars:
            yield bars


class StageBars:
    """One Rich bar per generation stage, fed by the library's progress(stage, done, total)."""

    LABELS = {"semantic": "semantic tokens", "coarse": "coarse tokens", "fine": "fine windows", "decode": "decode",
              "segments": "segments"}

    def __init__(self, console):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.progress = Progress(TextColumn("{task.description:<15}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                                 redirect_stdout=False, redirect_stderr=False)
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> "StageBars":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._finish_all()
        self.progress.stop()

    def _finish_all(self) -> None:
        # The semantic stage stops early at EOS: show a finished bar, not 200/768.
        for task in self.tasks.values():
            done = self.progress.tasks[task].completed
            self.progress.update(task, total=max(done, 1), completed=max(done, 1))

    def items(self, total: int):
        """A bar over a batch's items (with its ETA); returns a function taking the count done."""
        task = self.progress.add_task("items", total=total)
        return lambda done: self.progress.update(task, completed=done)

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self._finish_all()
            self.tasks[stage] = self.progress.add_task(self.LABELS.get(stage, stage), total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total)


def quiet_downloads(out: Output) -> None:
    """huggingface_hub draws its own download bars on stderr; keep them to interactive runs."""
    if not out.interactive:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


# --- the app and shared options ---------------------------------------------------------------

app = typer.Typer(
    cls=BarkGroup,
    name="bark",
    help=f"Text to speech, laughter and music with Suno's Bark, in plain PyTorch.\n\n{EXIT_HELP}",
    epilog=escape('Example: bark say "Hello [laughter]" -o hello.wav'),
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
presets_app = typer.Typer(help="Voices: Suno's library and your own.", no_args_is_help=True,
                          epilog="Example: bark presets list --language de")
models_app = typer.Typer(help="Bark models in the Hugging Face cache.", no_args_is_help=True,
                         epilog="Example: bark models download suno/bark")
app.add_typer(presets_app, name="presets")
app.add_typer(models_app, name="models")


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


DEFAULT_MODEL = checkpoint.DEFAULT_MODEL
ModelOpt = Annotated[str, typer.Option(
    "--model", "-m", envvar="BARK_MODEL", help="Hub id (fetched on first use) or local folder of a Bark model.")]
RevisionOpt = Annotated[str | None, typer.Option(help="Hub branch, tag or commit of the model.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing files.")]

SAMPLING, DEVICE, OUTPUT, LONG = "Sampling", "Device", "Output", "Long texts"


class VoiceMode(str, Enum):
    fixed = "fixed"
    chain = "chain"


# Options `say` and `batch` share.
VoiceOpt = Annotated[str | None, typer.Option(
    "--voice", "-v", show_default=False,
    help="A .npz path, a voice of yours (bark presets add) or a Suno preset (bark presets list).")]
SeedOpt = Annotated[int | None, typer.Option(
    help="Seed for repeatable sampling (on the same device and dtype).", show_default=False, rich_help_panel=SAMPLING)]
TemperatureOpt = Annotated[float | None, typer.Option(
    min=0, help="Temperature of all three stages; 0 is greedy.", show_default=False, rich_help_panel=SAMPLING)]
SemanticTemperatureOpt = Annotated[float | None, typer.Option(
    min=0, help="Semantic stage temperature (default 0.7).", show_default=False, rich_help_panel=SAMPLING)]
CoarseTemperatureOpt = Annotated[float | None, typer.Option(
    min=0, help="Coarse stage temperature (default 0.7).", show_default=False, rich_help_panel=SAMPLING)]
FineTemperatureOpt = Annotated[float | None, typer.Option(
    min=0, help="Fine stage temperature (default 0.5).", show_default=False, rich_help_panel=SAMPLING)]
TopKOpt = Annotated[int | None, typer.Option(
    min=1, help="Keep the k likeliest tokens (default 50).", show_default=False, rich_help_panel=SAMPLING)]
TopPOpt = Annotated[float | None, typer.Option(
    min=0, max=1, help="Nucleus sampling mass (default 1.0).", show_default=False, rich_help_panel=SAMPLING)]
MinEosPOpt = Annotated[float | None, typer.Option(
    min=0, max=1, help="Stop once end-of-speech is this likely; 0 turns it off (default 0.2).",
    show_default=False, rich_help_panel=SAMPLING)]
MaxSemanticTokensOpt = Annotated[int | None, typer.Option(
    min=1, help="At most this many semantic tokens per segment, ~50 per second (default 768).",
    show_default=False, rich_help_panel=SAMPLING)]
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


def load_model(out: "Output", model: str, revision: str | None, device: str, dtype: "Dtype", offload: bool,
               attention: "Attention", quantize: "Quantize | None" = None, cuda_graphs: bool = False,
               threads: int | None = None):
    """Load a model behind a spinner; returns (Bark, seconds it took)."""
    import torch

    from ..pipeline import Bark

    if threads:
        torch.set_num_threads(threads)
    quiet_downloads(out)
    start = time.perf_counter()
    # A spinner would swallow huggingface_hub's download bars: none while the model downloads.
    with out.status(f"loading {model}", show=model_on_disk(model, revision) is not None) as update:
        bark = Bark.load(model, device=device, dtype=dtype.value, offload=offload, attention=attention.value,
                         quantize=quantize.value if quantize else None, cuda_graphs=cuda_graphs, revision=revision,
                         progress=update)
    return bark, time.perf_counter() - start


def _version(value: bool) -> None:
    if value:
        print(f"bark-cli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    pass


def examples(*lines: str) -> str:
    return "Examples:\n\n" + "\n\n".join(escape(line) for line in lines) + f"\n\n{EXIT_HELP}"



def model_on_disk(model: str, revision: str | None) -> Path | None:
    """A local folder, or the cached snapshot of a Hub id (its config.json); None when the model
    is not on this machine. Never touches the network."""
    if checkpoint.is_local_model(model):
        return Path(model).expanduser()
    from huggingface_hub import try_to_load_from_cache

    try:
        hit = try_to_load_from_cache(model, "config.json", revision=revision)
    except ValueError:  # HFValidationError: not a repo id
        return None
    return Path(hit).parent if isinstance(hit, str) else None


# safetensors dtype -> (torch's name, bytes per element)


# --- formatting -------------------------------------------------------------------------------


def table(headers: tuple[str, ...] | None, rows: list[tuple[str, ...]]) -> str:
    """Left-aligned columns separated by two spaces; plain text, for people and for `cut`/`awk`."""
    body = ([headers] if headers else []) + rows
    if not body:
        return ""
    widths = [max(len(row[i]) for row in body) for i in range(len(body[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in body)


def human_size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def reflow_help(typer_app: typer.Typer) -> None:
    """Join the lines of each help paragraph of every command. Typer keeps a docstring's line
    breaks past its first paragraph, and a terminal narrower than the source lines then breaks
    them a second time, leaving ragged half-empty lines."""
    for info in typer_app.registered_commands:
        text = inspect.cleandoc(info.help or info.callback.__doc__ or "")
        info.help = "\n\n".join(" ".join(paragraph.split()) for paragraph in text.split("\n\n"))
    for group in typer_app.registered_groups:
        reflow_help(group.typer_instance)
