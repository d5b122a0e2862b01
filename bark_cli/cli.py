"""The `bark` command: `say`, `presets`, `models`.

Commands are thin: they check their flags, call the library (`Bark`, `presets`, `audio`,
`checkpoint`) and report through one `Output`: results on stdout, progress, warnings and errors
on stderr. The library raises typed errors; `EXIT_CODES` alone turns them into exit codes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Iterator

import typer
from rich.markup import escape
from typer.core import TyperGroup

from . import __version__, audio, checkpoint, presets
from .config import GenerationConfig
from .errors import BarkError, CheckpointError, DeviceError, GenerationError, InputError, OutputError
from .pipeline import Bark

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


class BarkGroup(TyperGroup):
    """The top-level group: every command runs inside its `invoke`, so errors are mapped here once."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BarkError as exc:
            print_error(exc.message, exc.hint)
            raise typer.Exit(exit_code(exc)) from None
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

    LABELS = {"semantic": "semantic tokens", "coarse": "coarse tokens", "fine": "fine windows", "decode": "decode"}

    def __init__(self, console):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("{task.description:<15}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, redirect_stdout=False, redirect_stderr=False)
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

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self._finish_all()
            self.tasks[stage] = self.progress.add_task(self.LABELS.get(stage, stage), total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total)


def _quiet_downloads(out: Output) -> None:
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

SAMPLING, DEVICE, OUTPUT = "Sampling", "Device", "Output"


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


def _examples(*lines: str) -> str:
    return "Examples:\n\n" + "\n\n".join(escape(line) for line in lines) + f"\n\n{EXIT_HELP}"


# --- bark say ---------------------------------------------------------------------------------

SAY_EXAMPLES = _examples(
    'bark say "Hello [laughter]" -o hello.wav',
    'bark say "Bonjour !" --voice v2/fr_speaker_1 --seed 7 -o bonjour.flac',
    'echo "Piped text." | bark say - -o - > piped.wav',
    "bark say -f story.txt --voice me --device cuda --json -o story.ogg",
)


@app.command(epilog=SAY_EXAMPLES)
def say(
    output: Annotated[str, typer.Option(
        "--output", "-o", help="Audio file (.wav, .flac or .ogg), or - for a WAV on stdout.",
        rich_help_panel=OUTPUT, show_default=False)],
    text: Annotated[str | None, typer.Argument(help="The text to speak; - reads stdin.", show_default=False)] = None,
    file: Annotated[Path | None, typer.Option(
        "--file", "-f", help="Read the text from FILE.", show_default=False, dir_okay=False)] = None,
    model: ModelOpt = DEFAULT_MODEL,
    revision: RevisionOpt = None,
    voice: Annotated[str | None, typer.Option(
        "--voice", "-v", show_default=False,
        help="A .npz path, a voice of yours (bark presets add) or a Suno preset (bark presets list).")] = None,
    seed: Annotated[int | None, typer.Option(
        help="Seed for repeatable sampling (on the same device and dtype).", show_default=False,
        rich_help_panel=SAMPLING)] = None,
    temperature: Annotated[float | None, typer.Option(
        min=0, help="Temperature of all three stages; 0 is greedy.", show_default=False,
        rich_help_panel=SAMPLING)] = None,
    semantic_temperature: Annotated[float | None, typer.Option(
        min=0, help="Semantic stage temperature (default 0.7).", show_default=False, rich_help_panel=SAMPLING)] = None,
    coarse_temperature: Annotated[float | None, typer.Option(
        min=0, help="Coarse stage temperature (default 0.7).", show_default=False, rich_help_panel=SAMPLING)] = None,
    fine_temperature: Annotated[float | None, typer.Option(
        min=0, help="Fine stage temperature (default 0.5).", show_default=False, rich_help_panel=SAMPLING)] = None,
    top_k: Annotated[int | None, typer.Option(
        min=1, help="Keep the k likeliest tokens (default 50).", show_default=False, rich_help_panel=SAMPLING)] = None,
    top_p: Annotated[float | None, typer.Option(
        min=0, max=1, help="Nucleus sampling mass (default 1.0).", show_default=False,
        rich_help_panel=SAMPLING)] = None,
    min_eos_p: Annotated[float | None, typer.Option(
        min=0, max=1, help="Stop once end-of-speech is this likely; 0 turns it off (default 0.2).",
        show_default=False, rich_help_panel=SAMPLING)] = None,
    max_semantic_tokens: Annotated[int | None, typer.Option(
        min=1, help="At most this many semantic tokens, ~50 per second (default 768).", show_default=False,
        rich_help_panel=SAMPLING)] = None,
    no_split: Annotated[bool, typer.Option(
        "--no-split", help="Speak text over the 256-token window as one segment, cut at 256 (with a warning).",
        rich_help_panel=SAMPLING)] = False,
    save_voice: Annotated[Path | None, typer.Option(
        help="Also save this generation as a voice .npz, reusable with --voice.", show_default=False,
        dir_okay=False, rich_help_panel=OUTPUT)] = None,
    subtype: Annotated[Subtype | None, typer.Option(
        case_sensitive=False, help="Sample format of .wav/.flac (default PCM_16); FLOAT keeps float32 (.wav only).",
        show_default=False, rich_help_panel=OUTPUT)] = None,
    overwrite: OverwriteOpt = False,
    device: Annotated[str, typer.Option(
        help="auto, cpu, cuda, cuda:N or mps. auto: CUDA where there is a GPU, else the CPU.",
        rich_help_panel=DEVICE, autocompletion=lambda: ["auto", "cpu", "cuda", "mps"])] = "auto",
    dtype: Annotated[Dtype, typer.Option(
        help="auto: float16 on a GPU, float32 on the CPU.", rich_help_panel=DEVICE)] = Dtype.auto,
    offload: Annotated[bool, typer.Option(
        help="Keep idle sub-models on the CPU; each moves to the GPU only while it runs.",
        rich_help_panel=DEVICE)] = False,
    attention: Annotated[Attention, typer.Option(
        help="SDPA backend; flash needs CUDA with float16/bfloat16.", rich_help_panel=DEVICE)] = Attention.auto,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Speak a text into an audio file.

    The text comes as an argument, from stdin (-) or from a file (-f), at most 256 tokens (about 13 s of speech).

    Square brackets mark sounds: \\[laughter], \\[sighs], \\[music], \\[gasps], \\[clears throat]; ♪ marks singing.
    """
    out = Output(quiet, as_json)
    if output == audio.STDOUT and as_json:
        raise typer.BadParameter("--json and -o - both want stdout; write the audio to a file", param_hint="--json")
    if output == audio.STDOUT and sys.stdout.isatty():
        raise OutputError("stdout is a terminal, not a place for audio", "redirect it (> out.wav) or give -o FILE")
    words = read_text(text, file)
    audio.check_output(output, subtype.value if subtype else None, overwrite)
    if save_voice is not None:
        if save_voice.suffix.lower() != ".npz":
            raise InputError(f"--save-voice {save_voice} is not a .npz name", "end it in .npz")
        audio.check_destination(save_voice, overwrite)
    # A voice file or a voice of the user's is checked before the model loads; a preset name needs the model.
    local_voice = presets.find_local_voice(voice) if voice else None
    _quiet_downloads(out)

    start = time.perf_counter()
    # A spinner would swallow huggingface_hub's download bars: none while the model downloads.
    with out.status(f"loading {model}", show=_on_disk(model, revision) is not None) as update:
        bark = Bark.load(model, device=device, dtype=dtype.value, offload=offload, attention=attention.value,
                         revision=revision, progress=update)
        prompt = local_voice.prompt if local_voice else bark.resolve_voice(voice)
    load_seconds = time.perf_counter() - start

    with out.stages() as progress:
        result = bark.generate(
            words, voice=prompt, seed=seed, temperature=temperature, semantic_temperature=semantic_temperature,
            coarse_temperature=coarse_temperature, fine_temperature=fine_temperature, top_k=top_k, top_p=top_p,
            min_eos_p=min_eos_p, max_semantic_tokens=max_semantic_tokens, truncate=no_split, progress=progress)
    for warning in result.warnings:
        out.warning(warning)

    written = audio.write_audio(output, result.audio, result.sample_rate, subtype.value if subtype else None, overwrite)
    if save_voice is not None:
        _save_voice(result.voice, save_voice)

    if as_json:
        out.data({
            "output": written,
            "audio_seconds": round(result.duration, 3),
            "sample_rate": result.sample_rate,
            "seed": result.seed,
            "stage_seconds": {k: round(v, 3) for k, v in result.seconds.items()},
            "load_seconds": round(load_seconds, 3),
            "device": str(bark.device),
            "dtype": str(bark.dtype).removeprefix("torch."),
            "model": bark.model_id,
            "voice": voice,
            "saved_voice": str(save_voice) if save_voice else None,
            "semantic_tokens": int(result.semantic_tokens.shape[0]),
            "warnings": result.warnings,
        })
    else:
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
        out.note(f"wrote {written}: {result.duration:.2f} s of audio, seed {result.seed} ({stages})")


def _save_voice(voice: presets.VoicePrompt, path: Path) -> None:
    try:
        presets.save_voice(voice, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}", "pick a folder you can write to") from None


def read_text(text: str | None, file: Path | None) -> str:
    """The text to speak, from the argument, stdin (`-`) or --file; never empty."""
    if text is not None and file is not None:
        raise typer.BadParameter("give the text or --file, not both", param_hint="TEXT")
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{file} is not UTF-8 text", "save it as UTF-8") from None
        except OSError as exc:
            raise InputError(f"cannot read {file}: {exc.strerror or exc}", "check the path") from None
    elif text == "-":
        text = sys.stdin.read()
    elif text is None:
        raise typer.BadParameter("no text given: pass it as an argument, - for stdin, or -f FILE", param_hint="TEXT")
    if not text.strip():
        raise InputError("the text is empty", "give some text to speak")
    return text


# --- bark presets -----------------------------------------------------------------------------

Language = Enum("Language", {code: code for code in presets.SUNO_LANGUAGES}, type=str)


@presets_app.command("list", epilog=_examples(
    "bark presets list", "bark presets list --language de", "bark presets list --json | jq -r '.voices[].name'"))
def presets_list(
    language: Annotated[Language | None, typer.Option(
        "--language", "-l", help="Only Suno presets of this language.", show_default=False)] = None,
    model: ModelOpt = DEFAULT_MODEL,
    revision: RevisionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List Suno's voice library and your own voices.

    ON DISK tells whether a voice's arrays are already on this machine (for a Suno preset: in
    --model's folder or in the Hugging Face cache), so that it needs no download.
    """
    out = Output(as_json=as_json)
    entries = presets.list_voices(model, revision, language.value if language else None)
    if as_json:
        out.data({
            "model": model,
            "voices_dir": str(presets.user_voices_dir()),
            "voices": [{"name": e.name, "language": e.language, "source": e.source, "on_disk": e.on_disk,
                        "path": str(e.path) if e.path else None} for e in entries],
        })
        return
    rows = [(e.name, e.language or "-", e.source, "yes" if e.on_disk else "no") for e in entries]
    out.result(_table(("NAME", "LANGUAGE", "SOURCE", "ON DISK"), rows))


@presets_app.command("show", epilog=_examples(
    "bark presets show v2/en_speaker_6", "bark presets show ./voice.npz --json"))
def presets_show(
    name: Annotated[str, typer.Argument(help="A Suno preset, a voice of yours, or a .npz path.")],
    model: ModelOpt = DEFAULT_MODEL,
    revision: RevisionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a voice: its source, prompt lengths and files (a Suno preset is fetched if needed)."""
    out = Output(as_json=as_json)
    found = presets.find_model_voice(name, model, revision)
    prompt = found.prompt
    frames = int(prompt.coarse_prompt.shape[1])
    seconds = frames / GenerationConfig().coarse_rate_hz
    info = {
        "name": name,
        "source": found.source,
        "language": next((e.language for e in presets.suno_catalog() if e.name == name), None),
        "semantic_tokens": int(prompt.semantic_prompt.shape[0]),
        "frames": frames,
        "seconds": round(seconds, 2),
        "files": [str(p) for p in found.files],
    }
    if as_json:
        out.data(info)
        return
    rows = [("name", name), ("source", found.source), ("language", info["language"] or "-"),
            ("semantic", f"{info['semantic_tokens']} tokens"),
            ("coarse", f"{prompt.coarse_prompt.shape[0]} x {frames} frames ({seconds:.2f} s)"),
            ("fine", f"{prompt.fine_prompt.shape[0]} x {frames} frames")]
    rows += [("files" if i == 0 else "", str(p)) for i, p in enumerate(found.files)]
    out.result(_table(None, rows))


@presets_app.command("add", epilog=_examples(
    "bark say \"Hi.\" --save-voice me.npz -o hi.wav && bark presets add me.npz --name me",
    "bark say \"Hello again.\" --voice me -o again.wav"))
def presets_add(
    file: Annotated[Path, typer.Argument(help="A voice .npz: semantic_prompt, coarse_prompt, fine_prompt.",
                                         dir_okay=False)],
    name: Annotated[str | None, typer.Option(
        "--name", "-n", help="The name to use with --voice [default: the file's name].", show_default=False)] = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Check a voice file and copy it into your voices folder ($BARK_VOICES_DIR overrides it)."""
    path = presets.add_user_voice(file, name, overwrite)
    Output(quiet).result(f"added voice {path.stem}: {path}")


@presets_app.command("remove", epilog=_examples("bark presets remove me"))
def presets_remove(
    name: Annotated[str, typer.Argument(help="One of your voices.")],
    quiet: QuietOpt = False,
) -> None:
    """Delete one of your voices."""
    path = presets.remove_user_voice(name)
    Output(quiet).result(f"removed voice {name}: {path}")


# --- bark models ------------------------------------------------------------------------------

ModelArg = Annotated[str, typer.Argument(envvar="BARK_MODEL", help="Hub id or local folder.")]


@models_app.command("list", epilog=_examples("bark models list", "HF_HOME=/data/hf bark models list --json"))
def models_list(as_json: JsonOpt = False) -> None:
    """List the Bark models in the local Hugging Face cache (HF_HOME, HF_HUB_CACHE)."""
    from huggingface_hub import constants, scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    out = Output(as_json=as_json)
    try:
        repos = [r for r in scan_cache_dir().repos if r.repo_type == "model" and _is_bark_repo(r)]
    except CacheNotFound:
        repos = []
    rows = [
        {"id": repo.repo_id, "revision": rev.commit_hash, "refs": sorted(rev.refs), "size_bytes": rev.size_on_disk,
         "path": str(rev.snapshot_path)}
        for repo in sorted(repos, key=lambda r: r.repo_id)
        for rev in sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True)
    ]
    if as_json:
        out.data({"cache_dir": str(constants.HF_HUB_CACHE), "models": rows})
    elif not rows:
        out.warning(f"no Bark model in {constants.HF_HUB_CACHE}; fetch one with `bark models download`")
    else:
        out.result(_table(("ID", "REVISION", "REFS", "SIZE"), [
            (r["id"], r["revision"][:12], ",".join(r["refs"]) or "-", _human_size(r["size_bytes"])) for r in rows]))


def _is_bark_repo(repo) -> bool:
    if "bark" in repo.repo_id.lower():
        return True
    for rev in repo.revisions:
        try:
            return json.loads((rev.snapshot_path / "config.json").read_text()).get("model_type") == "bark"
        except (OSError, ValueError, AttributeError):
            continue
    return False


@models_app.command("download", epilog=_examples("bark models download", "bark models download suno/bark"))
def models_download(
    model: ModelArg = DEFAULT_MODEL,
    revision: RevisionOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Fetch a model's files into the Hugging Face cache (only what bark-cli reads) and print its folder."""
    out = Output(quiet)
    _quiet_downloads(out)
    out.result(str(checkpoint.resolve_model(model, revision=revision)))


@models_app.command("info", epilog=_examples("bark models info", "bark models info ./my-bark --json"))
def models_info(
    model: ModelArg = DEFAULT_MODEL,
    revision: RevisionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a downloaded model: size and parameters per stage, dtype, files. Reads config.json and the
    weight file headers only."""
    out = Output(as_json=as_json)
    folder = _on_disk(model, revision)
    if folder is None:
        raise CheckpointError(f"model {model} is not downloaded", f"run `bark models download {model}` first")
    config, _ = checkpoint.read_configs(folder)
    tensors = _weight_headers(folder)
    stages = {}
    for stage, prefix in checkpoint.PREFIXES.items():
        own = [(shape, dtype, size) for key, (shape, dtype, size) in tensors.items()
               if key.startswith(prefix) and dtype != "bool"]  # bool: stored causal masks, not parameters
        sub = getattr(config, stage)
        stages[stage] = {
            "parameters": sum(_numel(shape) for shape, _, _ in own),
            "bytes": sum(_numel(shape) * size for shape, _, size in own),
            "dtypes": sorted({dtype for _, dtype, _ in own}),
            **({"layers": sub.num_layers, "heads": sub.num_heads, "hidden_size": sub.hidden_size,
                "input_vocab_size": sub.input_vocab_size, "output_vocab_size": sub.output_vocab_size}
               if stage != "codec" else {"sampling_rate": sub.sampling_rate, "codebook_size": sub.codebook_size}),
        }
    files = sorted((p for p in folder.rglob("*") if p.is_file() and ".cache" not in p.parts), key=lambda p: str(p))
    info = {
        "model": model,
        "folder": str(folder),
        "stages": stages,
        "parameters": sum(s["parameters"] for s in stages.values()),
        "files": [{"name": str(p.relative_to(folder)), "bytes": p.stat().st_size} for p in files],
    }
    if as_json:
        out.data(info)
        return
    rows = [(stage, f"{s.get('layers', '-')}", f"{s.get('hidden_size', '-')}", f"{s['parameters'] / 1e6:.1f} M",
             _human_size(s["bytes"]), ",".join(s["dtypes"])) for stage, s in stages.items()]
    voice_files = [f for f in info["files"] if f["name"].startswith("speaker_embeddings/")]
    other_files = [f for f in info["files"] if not f["name"].startswith("speaker_embeddings/")]
    lines = [f"model   {model}", f"folder  {folder}", "",
             _table(("STAGE", "LAYERS", "WIDTH", "PARAMETERS", "SIZE", "DTYPE"), rows), "",
             _table(("FILE", "SIZE"), [(f["name"], _human_size(f["bytes"])) for f in other_files])]
    if voice_files:
        lines.append(f"+ {len(voice_files)} voice files in speaker_embeddings/ "
                     f"({_human_size(sum(f['bytes'] for f in voice_files))})")
    out.result("\n".join(lines))


def _on_disk(model: str, revision: str | None) -> Path | None:
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
_SAFETENSORS_DTYPES = {"F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2), "BF16": ("bfloat16", 2),
                       "I64": ("int64", 8), "I32": ("int32", 4), "I16": ("int16", 2), "I8": ("int8", 1),
                       "U8": ("uint8", 1), "BOOL": ("bool", 1)}


def _weight_headers(folder: Path) -> dict[str, tuple[tuple[int, ...], str, int]]:
    """Every stored tensor: key -> (shape, dtype, bytes per element), from file headers only."""
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    if not files:
        raise CheckpointError(f"{folder} holds no model.safetensors or pytorch_model.bin", "download the model again")
    tensors: dict[str, tuple[tuple[int, ...], str, int]] = {}
    for path in files:
        try:
            if path.suffix == ".safetensors":
                from safetensors import safe_open

                with safe_open(str(path), framework="numpy") as handle:
                    for key in handle.keys():
                        part = handle.get_slice(key)
                        dtype, size = _SAFETENSORS_DTYPES.get(part.get_dtype(), (part.get_dtype(), 4))
                        tensors[key] = (tuple(part.get_shape()), dtype, size)
            else:
                import torch

                state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                for key, t in state.items():
                    tensors[key] = (tuple(t.shape), str(t.dtype).removeprefix("torch."), t.element_size())
        except Exception as exc:  # corrupt files raise many different types
            raise CheckpointError(f"cannot read {path.name}: {exc}", "download the model again") from None
    return tensors


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


# --- formatting -------------------------------------------------------------------------------


def _table(headers: tuple[str, ...] | None, rows: list[tuple[str, ...]]) -> str:
    """Left-aligned columns separated by two spaces; plain text, for people and for `cut`/`awk`."""
    body = ([headers] if headers else []) + rows
    if not body:
        return ""
    widths = [max(len(row[i]) for row in body) for i in range(len(body[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in body)


def _human_size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def main() -> None:
    """The `bark` script."""
    app(prog_name="bark")
