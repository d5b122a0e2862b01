"""`bark models`: Bark models in the Hugging Face cache, and loading one for a command."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Annotated

import typer

from .. import hub, suno, weights
from ..errors import CheckpointError
from .options import DEFAULT_MODEL, DeviceOptions, JsonOpt, QuietOpt, RevisionOpt
from .output import Output, examples, human_size, table

models_app = typer.Typer(help="Bark models in the Hugging Face cache.", no_args_is_help=True,
                         epilog="Example: bark models download suno/bark")


# --- a model on this machine ------------------------------------------------------------------


def model_on_disk(model: str, revision: str | None) -> Path | None:
    """A local folder, or the cached snapshot of a Hub id (its config.json); None when the model
    is not on this machine. Never touches the network."""
    if hub.is_local_model(model):
        return Path(model).expanduser()
    if model == suno.ORIGINAL:
        return suno.original_folder()
    from huggingface_hub import try_to_load_from_cache

    try:
        hit = try_to_load_from_cache(model, "config.json", revision=revision)
    except ValueError:  # HFValidationError: not a repo id
        return None
    return Path(hit).parent if isinstance(hit, str) else None


def quiet_downloads(out: Output) -> None:
    """huggingface_hub draws its own download bars on stderr; keep them to interactive runs."""
    if not out.interactive:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


def load_model(out: Output, model: str, revision: str | None, hardware: DeviceOptions):
    """Load a model behind a spinner; returns (Bark, seconds it took). PyTorch is imported here,
    by the commands that run a model, and not by those that only list or describe."""
    from ..pipeline import Bark

    quiet_downloads(out)
    start = time.perf_counter()
    # A spinner would swallow huggingface_hub's download bars: none while the model downloads.
    with out.status(f"loading {model}", show=model_on_disk(model, revision) is not None) as update:
        bark = Bark.load(model, hardware, revision=revision, progress=update)
    return bark, time.perf_counter() - start


# --- bark models ------------------------------------------------------------------------------

ModelArg = Annotated[str, typer.Argument(envvar="BARK_MODEL", help="Hub id or local folder.")]


@models_app.command("list", epilog=examples("bark models list", "HF_HOME=/data/hf bark models list --json"))
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
        out.result(table(("ID", "REVISION", "REFS", "SIZE"), [
            (r["id"], r["revision"][:12], ",".join(r["refs"]) or "-", human_size(r["size_bytes"])) for r in rows]))


def _is_bark_repo(repo) -> bool:
    if "bark" in repo.repo_id.lower():
        return True
    for rev in repo.revisions:
        try:
            return json.loads((rev.snapshot_path / "config.json").read_text()).get("model_type") == "bark"
        except (OSError, ValueError, AttributeError):
            continue
    return False


@models_app.command("download", epilog=examples("bark models download", "bark models download suno/bark"))
def models_download(
    model: ModelArg = DEFAULT_MODEL,
    revision: RevisionOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Fetch a model's files into the Hugging Face cache (only what bark-cli reads) and print its folder."""
    out = Output(quiet)
    quiet_downloads(out)
    out.result(str(hub.resolve_model(model, revision=revision)))


@models_app.command("info", epilog=examples("bark models info", "bark models info ./my-bark --json"))
def models_info(
    model: ModelArg = DEFAULT_MODEL,
    revision: RevisionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a downloaded model: size and parameters per stage, dtype, files. Reads config.json and the
    weight file headers only; a folder of Suno's original .pt files (or suno-original) is unpickled,
    safely, to see its tensors."""
    out = Output(as_json=as_json)
    folder = model_on_disk(model, revision)
    if folder is None:
        raise CheckpointError(f"model {model} is not downloaded", f"run `bark models download {model}` first")
    if suno.is_suno_folder(folder):
        config, tensors = _suno_tensors(folder)
    else:
        config, _ = weights.read_configs(folder)
        tensors = weights.tensor_headers(folder)
    stages = {}
    for stage, prefix in weights.PREFIXES.items():
        own = [info for key, info in tensors.items()
               if key.startswith(prefix) and info.dtype_name != "bool"]  # bool: stored causal masks, not parameters
        sub = getattr(config, stage)
        stages[stage] = {
            "parameters": sum(math.prod(info.shape) for info in own),
            "bytes": sum(info.nbytes for info in own),
            "dtypes": sorted({info.dtype_name for info in own}),
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
             human_size(s["bytes"]), ",".join(s["dtypes"])) for stage, s in stages.items()]
    voice_files = [f for f in info["files"] if f["name"].startswith("speaker_embeddings/")]
    other_files = [f for f in info["files"] if not f["name"].startswith("speaker_embeddings/")]
    lines = [f"model   {model}", f"folder  {folder}", "",
             table(("STAGE", "LAYERS", "WIDTH", "PARAMETERS", "SIZE", "DTYPE"), rows), "",
             table(("FILE", "SIZE"), [(f["name"], human_size(f["bytes"])) for f in other_files])]
    if voice_files:
        lines.append(f"+ {len(voice_files)} voice files in speaker_embeddings/ "
                     f"({human_size(sum(f['bytes'] for f in voice_files))})")
    out.result("\n".join(lines))


def _suno_tensors(folder: Path):
    """Suno's files under the Hugging Face layout's keys, as `weights.tensor_headers` describes
    a Hub folder (the codec only when it is on this machine). Unpickles the .pt files, safely."""
    config, _, parts = suno.read_folder(folder, codec=False)
    tensors = {weights.PREFIXES[name] + key: weights.TensorInfo(
        tuple(t.shape), str(t.dtype).removeprefix("torch."), t.numel() * t.element_size())
        for name, part in parts.items() for key, t in part.items()}
    return config, tensors


@models_app.command("convert", epilog=examples(
    "bark models convert ~/.cache/suno/bark_v0 ./bark-large",
    "bark models convert suno-original ./bark-large && bark say \"Hello.\" --model ./bark-large -o hello.wav"))
def models_convert(
    source: Annotated[str, typer.Argument(
        help=f"A folder of Suno's original checkpoints (text_2.pt, coarse_2.pt, fine_2.pt), or {suno.ORIGINAL}.")],
    target: Annotated[Path, typer.Argument(help="A new folder for the converted model.")],
    quiet: QuietOpt = False,
) -> None:
    """Convert Suno's original .pt files, with EnCodec's codec and the tokenizer, to a model folder
    in the Hugging Face layout (config.json, generation_config.json, model.safetensors), which
    later loads without unpickling anything and samples with Suno's defaults."""
    out = Output(quiet)
    quiet_downloads(out)
    folder = suno.original_folder() if source == suno.ORIGINAL else Path(source).expanduser()
    if not suno.is_suno_folder(folder):
        raise CheckpointError(f"{source} is not a folder of Suno's Bark checkpoints",
                              "give the folder holding text_2.pt, coarse_2.pt and fine_2.pt (or text.pt, ...)")
    with out.status(f"converting {folder}"):
        written = suno.convert(folder, target)
    out.result(str(written))
