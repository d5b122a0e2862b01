"""Find and download Bark models: local folders, Hub ids, and the Hub's errors in our terms
(bark-spec §9).

A model is a Hub id (`suno/bark-small`, `suno/bark`), a local folder holding config.json,
generation_config.json, weights and tokenizer files (weights.py reads them), or `suno-original`,
Suno's own download folder (suno.py reads it). From the Hub only those files are fetched:
`suno/bark` also holds Suno's original .pt files, gigabytes we never read.

huggingface_hub is imported inside the functions that reach the Hub; nothing here loads torch.
"""

from __future__ import annotations

import fnmatch
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from .errors import (
    BarkError,
    CheckpointError,
    DownloadIncompleteError,
    HubAccessError,
    HubUnreachableError,
    ModelNotFoundError,
    NotCachedError,
)

DEFAULT_MODEL = "suno/bark-small"
ORIGINAL = "suno-original"  # the --model name of Suno's own download folder
CONFIG_FILES = ["config.json", "generation_config.json"]
TOKENIZER_FILES = ["tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"]
SAFETENSORS_FILES = ["model.safetensors", "model.safetensors.index.json", "model-*.safetensors"]
BIN_FILES = ["pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*.bin"]
VOICE_MAP_FILE = "speaker_embeddings_path.json"


def is_local_model(model: str | os.PathLike) -> bool:
    return Path(model).expanduser().is_dir()


def suno_cache_folder() -> Path:
    """Suno's download folder, by its rule: $XDG_CACHE_HOME/suno/bark_v0, else ~/.cache/suno/bark_v0."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "suno" / "bark_v0"


def resolve_model(
    model: str | os.PathLike = DEFAULT_MODEL,
    revision: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Return a local folder holding the model's files, downloading what is missing.

    Honours HF_HOME / HF_HUB_CACHE, HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE (through
    huggingface_hub). Weights are taken as safetensors when the repo has them, else as
    pytorch_model.bin. Download failures raise the errors of `snapshot`. `suno-original` is
    Suno's own download folder (suno.py reads what is in it).
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    text = str(model)
    if text == ORIGINAL:
        folder = suno_cache_folder()
        if not (folder.is_dir() and any(folder.glob("*.pt"))):
            raise CheckpointError(
                f"Suno's cache folder {folder} holds no Bark checkpoints",
                "run Suno's bark once to download them, or give --model the folder holding text_2.pt, "
                "coarse_2.pt and fine_2.pt (XDG_CACHE_HOME moves Suno's folder)")
        return folder
    if text.startswith((".", "~", os.sep)) or text.count("/") != 1:
        raise CheckpointError(
            f"model {text} is neither a folder nor a Hub id", "give an existing folder or a Hub id like suno/bark-small"
        )
    if progress:
        progress(f"fetching {model}")
    return snapshot(text, revision, ["config.json"], _model_files, what=f"model {text}",
                        not_cached="is not in the local cache")


def _model_files(names: list[str]) -> list[str]:
    """The files of a Hub listing that a Bark model needs: configs, tokenizer, voice map and one
    weight format (`suno/bark` also holds Suno's original .pt files, gigabytes we never read)."""
    weights = SAFETENSORS_FILES if any(_matches(n, SAFETENSORS_FILES) for n in names) else BIN_FILES
    return [n for n in names if _matches(n, CONFIG_FILES + TOKENIZER_FILES + [VOICE_MAP_FILE] + weights)]


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


# --- the Hub ----------------------------------------------------------------------------------

# huggingface_hub waits up to 10 s for an answer and then retries with back-off, which leaves a
# user with no network staring at retry warnings for half a minute. One request with this
# timeout decides whether the Hub is there; HF_HUB_ETAG_TIMEOUT, when set, wins.
HUB_TIMEOUT_S = 5.0


def hub_timeout() -> float:
    try:
        return float(os.environ["HF_HUB_ETAG_TIMEOUT"])
    except (KeyError, ValueError):
        return HUB_TIMEOUT_S


def snapshot(repo_id: str, revision: str | None, required: list[str],
                 choose: Callable[[list[str]], list[str]] | None = None, *, what: str,
                 not_cached: str = "is not cached") -> Path:
    """The local snapshot folder of `repo_id` at `revision`, holding the files `required` names
    and, when online, those `choose` picks from the repository's listing.

    Online, one metadata request (`hub_timeout()`) asks the Hub for the revision's commit and file
    list; files already cached for that commit are not fetched again. Offline (HF_HUB_OFFLINE),
    or when the Hub cannot be reached, the cache alone answers for `required`. Raises, naming
    `what` (e.g. "model suno/bark"): ModelNotFoundError (no such repository or revision),
    HubAccessError (gated or private), HubUnreachableError (network, timeout, server failure),
    DownloadIncompleteError (a transfer cut short), NotCachedError (offline, not in the cache),
    CheckpointError (the repository lacks a required file).
    """
    from huggingface_hub import HfApi, constants, hf_hub_download

    with _hub_errors(repo_id, revision, what, not_cached):
        if constants.is_offline_mode():
            return _cached_snapshot(repo_id, revision, required, what, not_cached, unreachable=None)
        endpoint = constants.ENDPOINT
        try:
            info = HfApi(endpoint=endpoint).model_info(repo_id, revision=revision, timeout=hub_timeout())
        except Exception as exc:
            if _cause(exc) != "unreachable":
                raise
            # As huggingface_hub does: a copy in the cache still serves when the Hub does not answer.
            return _cached_snapshot(repo_id, revision, required, what, not_cached, unreachable=exc)
        names = [s.rfilename for s in info.siblings or []]
        missing = [name for name in required if name not in names]
        if missing:
            raise CheckpointError(f"{what} has no file {missing[0]}",
                                  "check the id: this is not a Bark model in the Hugging Face layout")
        wanted = list(dict.fromkeys(required + (choose(names) if choose else [])))
        paths = [hf_hub_download(repo_id, name, revision=info.sha, endpoint=endpoint,
                                 etag_timeout=hub_timeout()) for name in wanted]
    return _snapshot_of(paths[0], wanted[0])


def _snapshot_of(path: str | Path, name: str) -> Path:
    """The snapshot folder that holds `path`, the cached copy of the repo file `name`."""
    return Path(path).parents[len(Path(name).parts) - 1]


def _cached_snapshot(repo_id: str, revision: str | None, required: list[str], what: str, not_cached: str,
                     unreachable: BaseException | None) -> Path:
    from huggingface_hub import try_to_load_from_cache

    for name in required:
        hit = try_to_load_from_cache(repo_id, name, revision=revision)
        if not isinstance(hit, str):
            if unreachable is not None:
                raise unreachable
            raise NotCachedError(f"{what} {not_cached} and downloads are off",
                                 "run once online (`bark models download`), or unset HF_HUB_OFFLINE")
    return _snapshot_of(hit, required[-1])


# Failures of the HTTP stack, by class name: huggingface_hub has used requests, httpx and httpx2,
# and their exceptions share names but no base class.
_CUT_SHORT = {"RemoteProtocolError", "ChunkedEncodingError", "IncompleteRead", "ReadError"}
_UNREACHABLE = {"ConnectError", "ConnectTimeout", "ConnectionError", "TimeoutException", "Timeout",
                "TimeoutError", "NetworkError", "TransportError", "gaierror", "ProxyError"}


def _cause(exc: BaseException) -> str | None:
    """"unreachable", "cut short" or None, for a failure anywhere in `exc`'s chain."""
    seen = exc
    while seen is not None:
        names = {cls.__name__ for cls in type(seen).__mro__}
        status = getattr(getattr(seen, "response", None), "status_code", None)
        if names & _CUT_SHORT or "Consistency check failed" in str(seen):
            return "cut short"
        if names & _UNREACHABLE or (isinstance(status, int) and status >= 500):
            return "unreachable"
        seen = seen.__cause__ or seen.__context__
    return None


@contextmanager
def _hub_errors(repo_id: str, revision: str | None, what: str, not_cached: str):
    """Turn huggingface_hub's failures into ours, and keep its retry warnings off stderr (the
    error we raise says all they would)."""
    import logging

    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.utils import logging as hf_logging

    logger = hf_logging.get_logger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    host = urlparse(constants.ENDPOINT).netloc or constants.ENDPOINT
    token_hint = "accept its terms on the model page if it is gated, then set HF_TOKEN or run `hf auth login`"
    try:
        yield
    except BarkError:
        raise
    except HFValidationError:
        raise ModelNotFoundError(f"{repo_id} is not a valid Hub id", "give a Hub id like suno/bark-small") from None
    except RevisionNotFoundError:
        raise ModelNotFoundError(f"{what} has no revision {revision}", "check --revision") from None
    except GatedRepoError:
        raise HubAccessError(f"{what} is gated and this machine has no access", token_hint) from None
    except RepositoryNotFoundError:
        raise ModelNotFoundError(f"no Hub model named {repo_id}",
                                 "check the id, e.g. suno/bark-small (a private model needs HF_TOKEN)") from None
    except LocalEntryNotFoundError:
        raise NotCachedError(f"{what} {not_cached} and downloads are off",
                             "run once online (`bark models download`), or unset HF_HUB_OFFLINE") from None
    except Exception as exc:
        status = exc.response.status_code if isinstance(exc, HfHubHTTPError) and exc.response is not None else None
        if status in (401, 403):
            raise HubAccessError(f"{what}: the Hub refused access (HTTP {status})", token_hint) from None
        cause = _cause(exc)
        if cause == "cut short":
            raise DownloadIncompleteError(f"the download of {what} was cut short",
                                          "run the command again: the download resumes") from None
        if cause == "unreachable":
            reason = f"answered HTTP {status}" if status else "could not be reached"
            raise HubUnreachableError(
                f"the Hub ({host}) {reason} to fetch {what}",
                "check the network, or use a local model folder, or HF_HUB_OFFLINE=1 with a cached model",
            ) from None
        if isinstance(exc, (HfHubHTTPError, OSError)):
            raise CheckpointError(f"cannot download {what}: {exc}", "run the command again") from None
        raise
    finally:
        logger.setLevel(level)
