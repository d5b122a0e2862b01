"""`bark models`: Bark models in the Hugging Face cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .. import checkpoint
from ..errors import CheckpointError
from .common import (
    Output,
    models_app,
    DEFAULT_MODEL,
    RevisionOpt,
    JsonOpt,
    QuietOpt,
    examples,
    model_on_disk,
    table,
    human_size,
    quiet_downloads,
)

_SAFETENSORS_DTYPES = {"F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2), "BF16": ("bfloat16", 2),
                       "I64": ("int64", 8), "I32": ("int32", 4), "I16": ("int16", 2), "I8": ("int8", 1),
                       "U8": ("uint8", 1), "BOOL": ("bool", 1)}


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
    out.result(str(checkpoint.resolve_model(model, revision=revision)))


@models_app.command("info", epilog=examples("bark models info", "bark models info ./my-bark --json"))
def models_info(
    model: ModelArg = DEFAULT_MODEL,
    revision: RevisionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a downloaded model: size and parameters per stage, dtype, files. Reads config.json and the
    weight file headers only."""
    out = Output(as_json=as_json)
    folder = model_on_disk(model, revision)
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
