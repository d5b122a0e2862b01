"""Batch runs over many texts: read items, name outputs, shard, resume, report.

Inputs are text files (one utterance per non-empty line, or one long-form item per file),
standard input, or JSONL lines `{"text": ..., "output": ..., "voice": ..., "seed": ...}` (piper
style). Every output is written atomically, so an existing file is a complete one: a rerun skips
it, which makes a killed run resumable. One bad item is reported and the rest go on.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, TextIO

from .audio import FORMATS, write_audio
from .errors import BarkError, InputError

DEFAULT_TEMPLATE = "{index:05d}.wav"
JSONL_SUFFIXES = (".jsonl", ".ndjson")
JSONL_KEYS = {"text", "output", "voice", "seed"}


@dataclass
class Item:
    """One utterance to speak. `error` is set when the item could not even be planned."""

    index: int  # position over all inputs, 0-based; shards and templates use it
    source: str  # file name, or "-" for stdin
    line: int | None  # 1-based line in the source (None for a whole file)
    text: str = ""
    output: Path | None = None
    voice: str | None = None
    seed: int | None = None
    error: str | None = None

    @property
    def stem(self) -> str:
        return "stdin" if self.source == "-" else Path(self.source).stem


@dataclass
class Outcome:
    """One line of the report."""

    index: int
    status: str  # "done", "skipped" (output already there), "failed"
    path: str | None
    source: str
    line: int | None
    seconds_of_audio: float | None = None
    seed: int | None = None
    error: str | None = None


@dataclass
class Summary:
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def failed(self) -> int:
        return self.count("failed")


def _read(source: str, stdin: TextIO | None) -> str:
    if source == "-":
        if stdin is None:
            raise InputError("no standard input to read", "pipe text in, or name a file")
        return stdin.read()
    path = Path(source)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"input file {source} does not exist", "check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read input file {source}: {exc}", "give a UTF-8 text file") from None


def read_items(sources: Iterable[str], whole_file: bool = False, jsonl: bool | None = None,
               stdin: TextIO | None = None) -> list[Item]:
    """Items in input order. JSONL when a file ends in .jsonl/.ndjson (or `jsonl=True`); a
    malformed JSONL line becomes a failed item that names its line number."""
    items: list[Item] = []
    for source in sources:
        content = _read(source, stdin)
        as_jsonl = jsonl if jsonl is not None else source.lower().endswith(JSONL_SUFFIXES)
        if whole_file and not as_jsonl:
            items.append(Item(len(items), source, None, text=content.strip()))
            continue
        for number, line in enumerate(content.splitlines(), start=1):
            if not line.strip():
                continue
            item = Item(len(items), source, number)
            if as_jsonl:
                _fill_from_json(item, line)
            else:
                item.text = line.strip()
            items.append(item)
    return items


def _fill_from_json(item: Item, line: str) -> None:
    where = f"{item.source} line {item.line}"
    try:
        data = json.loads(line)
    except ValueError as exc:
        item.error = f"{where}: not valid JSON ({exc.msg})"
        return
    if not isinstance(data, dict) or not isinstance(data.get("text"), str) or not data["text"].strip():
        item.error = f"{where}: needs an object with a non-empty \"text\""
        return
    unknown = sorted(set(data) - JSONL_KEYS)
    if unknown:
        item.error = f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(JSONL_KEYS))})"
        return
    seed = data.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        item.error = f"{where}: seed must be a non-negative integer"
        return
    for key in ("output", "voice"):
        if data.get(key) is not None and not isinstance(data[key], str):
            item.error = f"{where}: {key} must be a string"
            return
    item.text, item.voice, item.seed = data["text"].strip(), data.get("voice"), seed
    item.output = Path(data["output"]) if data.get("output") else None


def parse_shard(shard: str | None) -> tuple[int, int]:
    """`K/N` -> (K, N), the items whose index modulo N is K. None -> (0, 1)."""
    if shard is None:
        return 0, 1
    try:
        k, n = (int(part) for part in shard.split("/"))
    except ValueError:
        raise InputError(f"bad shard {shard!r}", "write it as K/N, e.g. 0/4") from None
    if n < 1 or not 0 <= k < n:
        raise InputError(f"bad shard {shard!r}", "K must be in 0..N-1 and N at least 1") from None
    return k, n


def plan_outputs(items: list[Item], output_dir: Path, template: str = DEFAULT_TEMPLATE) -> list[Item]:
    """Give every item an output path inside `output_dir`; one that would land outside it
    (`../x.wav`, an absolute path elsewhere, a link out) fails that item alone."""
    root = output_dir.resolve()
    for item in items:
        if item.error:
            continue
        if item.output is None:
            try:
                item.output = Path(template.format(index=item.index, stem=item.stem, line=item.line or 0))
            except (KeyError, IndexError, ValueError) as exc:
                raise InputError(f"bad output template {template!r}: {exc}",
                                 "use fields {index}, {stem} and {line}, e.g. {index:05d}.wav") from None
        target = (root / item.output).resolve()
        if not target.is_relative_to(root) or target == root:
            item.error = f"output {item.output} is outside the output folder {output_dir}"
            item.output = None
            continue
        if target.suffix.lower() not in FORMATS:
            item.error = f"output {item.output} does not end in {', '.join(FORMATS)}"
            item.output = None
            continue
        item.output = target
    return items


def select_shard(items: list[Item], shard: tuple[int, int]) -> list[Item]:
    k, n = shard
    return [item for item in items if item.index % n == k]


SpeakGroup = Callable[[list[Item]], list[tuple[object, int]]]


def run_batch(
    speak_group: SpeakGroup,
    items: list[Item],
    *,
    group_key: Callable[[Item], object] = lambda item: None,
    batch_size: int = 1,
    overwrite: bool = False,
    subtype: str | None = None,
    report: TextIO | None = None,
    on_item: Callable[[Outcome, int, int], None] | None = None,
) -> Summary:
    """Speak the planned items and write each output; report every item.

    `speak_group(items)` returns one `(result, seed)` per item, `result` having `.audio`,
    `.sample_rate` and `.duration`. Consecutive items with the same non-None `group_key` (for
    example one voice and no seed of their own) go to it together, up to `batch_size`. When a
    group fails, its items are retried one by one, so one bad item fails alone.
    """
    summary = Summary()

    def record(outcome: Outcome) -> None:
        summary.outcomes.append(outcome)
        if report is not None:
            report.write(json.dumps(asdict(outcome)) + "\n")
            report.flush()  # a killed run keeps the report up to its last item
        if on_item:
            on_item(outcome, len(summary.outcomes), len(items))

    group: list[Item] = []
    group_of = None  # the key of the items in `group`
    for item in items:
        outcome = _precheck(item, overwrite)
        if outcome is not None:
            record(outcome)
            continue
        key = group_key(item)
        if group and (key is None or key != group_of or len(group) >= batch_size):
            _speak_and_write(speak_group, group, subtype, record)
            group = []
        group.append(item)
        group_of = key
        if key is None:
            _speak_and_write(speak_group, group, subtype, record)
            group = []
    if group:
        _speak_and_write(speak_group, group, subtype, record)
    return summary


def _outcome(item: Item, status: str, error: str | None = None) -> Outcome:
    return Outcome(item.index, status, str(item.output) if item.output else None, item.source, item.line,
                   seed=item.seed, error=error)


def _precheck(item: Item, overwrite: bool) -> Outcome | None:
    """The outcome of an item that needs no generating: unplannable, or already done."""
    if item.error:
        return _outcome(item, "failed", item.error)
    if item.output.exists() and not overwrite:
        return _outcome(item, "skipped")
    return None


def _speak_and_write(speak_group: SpeakGroup, group: list[Item], subtype: str | None, record) -> None:
    try:
        results = speak_group(group)
    except Exception as exc:  # noqa: BLE001 - isolate the failing item below
        if len(group) > 1:
            for item in group:
                _speak_and_write(speak_group, [item], subtype, record)
            return
        record(_outcome(group[0], "failed", _describe(exc)))
        return
    for item, (result, seed) in zip(group, results):
        outcome = _outcome(item, "failed")
        outcome.seed = seed
        try:
            item.output.parent.mkdir(parents=True, exist_ok=True)
            write_audio(item.output, result.audio, result.sample_rate, subtype=subtype, overwrite=True)
        except Exception as exc:  # noqa: BLE001 - one item's failure must not stop the run
            outcome.error = _describe(exc)
        else:
            outcome.status, outcome.seconds_of_audio = "done", round(result.duration, 3)
        record(outcome)


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, BarkError) else f"{type(exc).__name__}: {exc}"
