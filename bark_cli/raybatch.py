"""Batch runs on Ray: the local batch's items, plan, seeds, claims and report, spoken by Ray Data.

Ray Data's batch-inference pattern: a callable class (`ItemWorker`) loads one `Bark` per actor,
and `map_batches` sends it the items `batch_size` at a time over an actor pool, one actor per GPU
(or per `threads` CPUs). Each worker writes its items' files into the output folder itself, each
under a temporary name renamed into place, so the folder must be one that every worker sees (a
shared file system on a cluster). The driver only plans, claims and records: it loads no model.

A worker that is lost (its process killed, its node gone) is restarted and its batch retried, as
Ray Data does for actors; the retry skips the files its first try finished, so each file is
written once. Ctrl-C stops the job, removes the temporary files of the items it cut short and
frees their claims: a rerun makes them. Ray is an extra (`pip install 'bark-cli[ray]'`) and is
imported only here, inside functions.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, TextIO

from . import batch as runner
from . import claims, errors
from .config import DeviceOptions, SamplingOptions
from .errors import BarkError, DeviceError, GenerationError, InputError
from .groups import Speaker

INSTALL_HINT = "pip install 'bark-cli[ray]'"
# Items per actor call when --batch-size is auto; the worker batches within it by free memory.
AUTO_CALL_SIZE = 8


@dataclass(frozen=True)
class Speaking:
    """Everything that makes an item's audio, the same on every actor as in the local batch."""

    model: str
    revision: str | None = None
    hardware: DeviceOptions = field(default_factory=DeviceOptions)
    voice: str | None = None  # for items without a voice of their own
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    gap: float = 0.25
    batch_size: int | None = None  # items (or a long item's segments) at once; None: by free memory
    subtype: str | None = None
    overwrite: bool = False


def import_ray():
    """Ray and Ray Data, or InputError with the command that installs them."""
    try:
        import ray
        import ray.data  # noqa: F401 - the extra is ray[data]
    except ImportError:
        raise InputError("--ray needs Ray, which is not installed", INSTALL_HINT) from None
    return ray


# --- the worker -------------------------------------------------------------------------------


def load_bark(speaking: Speaking):
    """The one place a Ray worker loads its model."""
    import torch

    from .pipeline import Bark

    if speaking.hardware.threads:
        torch.set_num_threads(speaking.hardware.threads)
    return Bark.load(speaking.model, speaking.hardware, revision=speaking.revision)


class ItemWorker:
    """Ray Data's callable class: one loaded Bark per actor; each call speaks a batch of items
    (`{"item": [JSON of Item, ...]}`), writes their files and returns `{"outcome": [JSON of Outcome],
    "failure": [""]}`, or the model's load error as `failure`, [type name, message, hint] in JSON.

    Items are grouped and spoken as the local batch speaks them: consecutive one-segment items of
    one voice together (each from its own seeded generators, so as it sounds alone), a long item
    alone in batches of its segments."""

    def __init__(self, speaking: Speaking) -> None:
        self.speaking = speaking
        try:
            self.bark, self.failure = load_bark(speaking), ""
        except BarkError as exc:
            # Sent back with the first batch for the driver to raise: an actor whose constructor
            # fails is only restarted, again and again, by Ray.
            self.bark, self.failure = None, json.dumps([type(exc).__name__, exc.message, exc.hint])

    def __call__(self, batch: dict) -> dict:
        if self.failure:
            return {"outcome": [""] * len(batch["item"]), "failure": [self.failure] * len(batch["item"])}
        items = [_item_from_json(text) for text in batch["item"]]
        size = self.speaking.batch_size or self.bark.runtime.auto_batch_size(self.bark.weights.config)
        # The driver holds the claims; an output found here was written by a lost try of this batch.
        s = self.speaking
        speaker = Speaker(self.bark, s.voice, s.gap, s.batch_size, s.sampling)
        summary = runner.run_batch(speaker.speak_group, items, group_key=speaker.group_key, batch_size=size,
                                   overwrite=self.speaking.overwrite, subtype=self.speaking.subtype, claims=False)
        return {"outcome": [json.dumps(asdict(outcome)) for outcome in summary.outcomes],
                "failure": [""] * len(summary.outcomes)}


def _item_to_json(item: runner.Item) -> str:
    return json.dumps({**asdict(item), "output": str(item.output)})


def _item_from_json(text: str) -> runner.Item:
    fields = json.loads(text)
    return runner.Item(**{**fields, "output": Path(fields["output"])})


# --- the driver -------------------------------------------------------------------------------


def run_on_ray(
    items: list[runner.Item],
    speaking: Speaking,
    *,
    address: str | None = None,
    report: TextIO | None = None,
    on_item: Callable[[runner.Outcome, int, int], None] | None = None,
) -> runner.Summary:
    """Speak planned, seeded items (batch.plan_outputs, batch.assign_seeds) on Ray; the Summary,
    report lines and `on_item` calls are the local `batch.run_batch`'s.

    `address`: None for RAY_ADDRESS when set (as in a Ray job), else a local Ray on this
    machine's cores; "local"; "auto" (the cluster `ray start` runs here); or "ray://HOST:PORT".
    A Ray already started in this process is used as it is."""
    ray = import_ray()
    record = runner.Recorder(len(items), report, on_item)
    pending: dict[int, runner.Item] = {}
    try:
        for item in items:
            outcome = runner.admit(item, speaking.overwrite)
            if outcome is None:
                _remove_parts(item.output)  # ours now: a temporary file there is a killed worker's
                pending[item.index] = item
            else:
                record(outcome)
        if pending:
            with _connected(ray, address), contextlib.closing(_outcomes(ray, list(pending.values()), speaking)) as made:
                for outcome in made:
                    claims.release(pending.pop(outcome.index).output)
                    record(outcome)
            for item in list(pending.values()):  # in a batch Ray Data gave up on (max_errored_blocks)
                claims.release(pending.pop(item.index).output)
                record(runner.Outcome(item.index, "failed", str(item.output), item.source, item.line, seed=item.seed,
                                      error="its batch failed on a Ray worker (see the Ray logs)"))
    except BaseException as exc:
        # Ctrl-C or an error: Ray Data stops sending work, but its actors live while anything
        # holds the job, as the traceback's frames do. Let go, so that they end and free their CPUs.
        traceback.clear_frames(exc.__traceback__)
        gc.collect()  # the executor sits in reference cycles
        raise
    finally:
        # Cut short (Ctrl-C, a failed job): a Ray started here is shut down by now, its workers
        # gone; a worker of a cluster may still be dying, and the next run removes what it leaves.
        for item in pending.values():
            _remove_parts(item.output)
            claims.release(item.output)
    return record.summary


@contextlib.contextmanager
def _connected(ray, address: str | None) -> Iterator[None]:
    """Ray for this run: the one this process has started already, or one joined or started here
    (and shut down after)."""
    if ray.is_initialized():
        yield
        return
    import logging

    address = address or os.environ.get("RAY_ADDRESS") or "local"
    quiet = dict(log_to_driver=False, logging_level=logging.ERROR)
    try:
        if address == "local":
            ray.init(address="local", include_dashboard=False, **quiet)
        else:
            ray.init(address=address, **quiet)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise InputError(f"cannot reach the Ray cluster at {address}: {_first_line(exc)}",
                         "give auto (the cluster on this machine), ray://HOST:10001, or leave --ray-address out "
                         "for a local Ray") from None
    try:
        yield
    finally:
        ray.shutdown()


def _outcomes(ray, items: list[runner.Item], speaking: Speaking) -> Iterator[runner.Outcome]:
    """Each item's outcome as its batch finishes on the actor pool."""
    import logging

    import ray.data

    logging.getLogger("ray.data").setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the driver draws one bar over the items
    context.max_errored_blocks = -1  # a batch that fails in Ray fails alone (its items are reported)
    speaking, placement = _placement(ray, speaking)
    dataset = ray.data.from_items([{"item": _item_to_json(item)} for item in items]).map_batches(
        ItemWorker, fn_constructor_kwargs={"speaking": speaking}, batch_size=speaking.batch_size or AUTO_CALL_SIZE,
        **placement)
    try:
        for row in dataset.iter_rows():
            if row["failure"]:
                kind, message, hint = json.loads(row["failure"])
                raise getattr(errors, kind, GenerationError)(message, hint)
            yield runner.Outcome(**json.loads(row["outcome"]))
    except BarkError:
        raise
    except Exception as exc:  # noqa: BLE001 - a failed job: its cause, as bark reports errors
        raise _cause(exc) from None


def _placement(ray, speaking: Speaking) -> tuple[Speaking, dict]:
    """map_batches' resources: one actor per GPU for CUDA (Ray gives each its own, as cuda:0), else
    one actor per `threads` CPUs (default: the smallest node's). `speaking` comes back with the
    device and threads each actor uses."""
    from dataclasses import replace

    hardware = speaking.hardware
    total = ray.cluster_resources()
    gpus = int(total.get("GPU", 0))
    wants_cuda = hardware.device.startswith("cuda")
    if wants_cuda and not gpus:
        raise DeviceError(f"--device {hardware.device}: the Ray cluster has no GPU",
                          "use --device cpu, or a cluster with GPU workers")
    if gpus and (wants_cuda or hardware.device == "auto"):
        hardware = replace(hardware, device="cuda")
        placement = dict(num_gpus=1, num_cpus=1, compute=ray.data.ActorPoolStrategy(size=gpus))
    else:
        nodes = [node["Resources"].get("CPU", 0) for node in ray.nodes() if node.get("Alive")]
        threads = hardware.threads or max(1, int(min((cpus for cpus in nodes if cpus), default=1)))
        hardware = replace(hardware, threads=threads)
        actors = max(1, int(total.get("CPU", 1)) // threads)
        placement = dict(num_cpus=threads, compute=ray.data.ActorPoolStrategy(size=actors))
    return replace(speaking, hardware=hardware), placement


def _cause(exc: BaseException) -> BaseException:
    """The BarkError behind a Ray error (a worker's model that would not load, say), else a
    GenerationError naming the first line of Ray's."""
    seen = exc
    while seen is not None:
        if isinstance(seen, BarkError) and type(seen).__module__.startswith("bark_cli"):
            return seen
        seen = getattr(seen, "cause", None) or seen.__cause__
    return GenerationError(f"the Ray job failed: {_first_line(exc)}", "see the Ray logs (/tmp/ray/session_latest/logs)")


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _remove_parts(output: Path) -> None:
    """The temporary files of `output` that a stopped worker left (audio.replace_atomically's names)."""
    pattern = re.compile(rf"^\.{re.escape(output.name)}\.[a-z0-9_]{{8}}\.part$")
    with contextlib.suppress(OSError):
        for entry in os.scandir(output.parent):
            if pattern.match(entry.name):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
