"""Batch runs over many texts: read items, name outputs, shard, resume, report.

Inputs are text files (one utterance per non-empty line, or one long-form item per file),
standard input, or JSONL lines `{"text": ..., "output": ..., "voice": ..., "seed": ...}` (piper
style). Every output is written atomically, so an existing file is a complete one: a rerun skips
it, which makes a killed run resumable. One bad item is reported and the rest go on.

Every output path is planned before anything is generated, and two items that would write one
file refuse the whole run. Runs that share an output folder (shards, or a rerun started while the
first still runs) claim each item with a marker file, so no item is generated twice.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, TextIO

from .claims import claim, release
from .errors import BarkError, InputError, OutputError

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
    status: str  # "done", "skipped" (output already there), "claimed" (another run makes it), "failed"
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


# --- output names -----------------------------------------------------------------------------

TEMPLATE_FIELDS = {"index": "number", "line": "number", "stem": "text"}
MAX_PAD_WIDTH = 12
# C0 and C1 controls and DEL: an output name from a data file may hold none.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_FIELD = re.compile(r"\{([^{}]*)\}|\{\{|\}\}|[{}]")
_TEMPLATE_HINT = ("use {index}, {line} or {stem}, numbers optionally zero-padded as {index:05d} "
                  f"(width 1..{MAX_PAD_WIDTH}), and {{{{ }}}} for literal braces")


class Template:
    """An output-name template: literal text, `{{` and `}}` for braces, and the fields `{index}`
    (the item's 0-based position over all inputs), `{line}` (its 1-based line in its input, 0 for
    a whole file) and `{stem}` (the input file's name without extension, `stdin` for stdin).
    The number fields take one format, zero padding to a width of 1 to 12: `{index:05d}`. Nothing
    else (no attribute or index access, no other format) is part of the language."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.parts: list[tuple[str, str | int | None]] = []  # ("text", s) or (field, pad width or None)
        position = 0
        for match in _FIELD.finditer(text):
            self._literal(text[position:match.start()])
            position = match.end()
            token = match.group(0)
            if token in ("{{", "}}"):
                self._literal(token[0])
            elif match.group(1) is None:
                self._refuse(f"a lone {token!r} at character {match.start() + 1}")
            else:
                self.parts.append(self._field(match.group(1)))
        self._literal(text[position:])

    def _literal(self, value: str) -> None:
        if value:
            self.parts.append(("text", value))

    def _refuse(self, why: str):
        raise InputError(f"bad output template {self.text!r}: {why}", _TEMPLATE_HINT)

    def _field(self, body: str) -> tuple[str, int | None]:
        name, colon, spec = body.partition(":")
        if name not in TEMPLATE_FIELDS:
            self._refuse(f"unknown field {{{body}}}")
        if not colon:
            return name, None
        padded = re.fullmatch(r"0(\d{1,2})d", spec)
        if TEMPLATE_FIELDS[name] != "number" or padded is None or not 1 <= int(padded.group(1)) <= MAX_PAD_WIDTH:
            self._refuse(f"format {{{body}}} is not one this template language has")
        return name, int(padded.group(1))

    def render(self, index: int, line: int | None, stem: str) -> str:
        values = {"index": index, "line": line or 0, "stem": stem}
        out = []
        for kind, arg in self.parts:
            if kind == "text":
                out.append(arg)
            elif arg is None:
                out.append(str(values[kind]))
            else:
                out.append(f"{values[kind]:0{arg}d}")
        return "".join(out)


def plan_outputs(items: list[Item], output_dir: Path, template: str = DEFAULT_TEMPLATE) -> list[Item]:
    """Give every item an output path inside `output_dir`; one that would land outside it
    (`../x.wav`, an absolute path elsewhere, a link out) fails that item alone. Two items with one
    path (after resolving, and ignoring case on a case-insensitive file system) raise InputError
    naming both: the plan is refused before anything is written."""
    from .audio import FORMATS, check_name_length  # numpy and libsndfile load only when a batch runs
    parsed = Template(template)
    root = output_dir.resolve()
    for item in items:
        if item.error:
            continue
        if item.output is None:
            item.output = Path(parsed.render(item.index, item.line, item.stem))
        if _CONTROL.search(str(item.output)):  # shown escaped: a name must not drive the terminal
            item.error, item.output = f"output {str(item.output)!r} holds control characters", None
            continue
        try:
            check_name_length(item.output)
        except OutputError as exc:
            item.error, item.output = str(exc), None
            continue
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
    _refuse_collisions(items, output_dir, root)
    return items


def _where(item: Item) -> str:
    return f"{item.source}:{item.line}" if item.line is not None else item.source


def _refuse_collisions(items: list[Item], output_dir: Path, root: Path) -> None:
    fold = case_insensitive(root)
    first: dict[str, Item] = {}
    clashes: list[str] = []
    for item in items:
        if item.error:
            continue
        key = str(item.output).casefold() if fold else str(item.output)
        if key in first:
            shown = output_dir / item.output.relative_to(root)
            clashes.append(f"{_where(first[key])} and {_where(item)} -> {shown}")
        else:
            first[key] = item
    if clashes:
        more = f" (and {len(clashes) - 3} more)" if len(clashes) > 3 else ""
        raise InputError(f"two items write one file: {'; '.join(clashes[:3])}{more}",
                         "give each item its own output (a template with {index}, or distinct JSONL outputs)")


def case_insensitive(folder: Path) -> bool:
    """Whether names in `folder` (or, when it does not exist yet, its nearest existing parent)
    ignore case, found by creating a mixed-case probe file and looking for it in lower case."""
    probe_dir = folder
    while not probe_dir.is_dir() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
    try:
        handle, name = tempfile.mkstemp(prefix=".bark-Case-Probe-", dir=probe_dir)
    except OSError:
        return False  # cannot write there: the run will fail on its first output anyway
    try:
        os.close(handle)
        folded = os.path.join(os.path.dirname(name), os.path.basename(name).lower())
        return os.path.exists(folded)
    finally:
        os.unlink(name)


def assign_seeds(items: list[Item], seed: int) -> list[Item]:
    """Give every item without a seed of its own the seed `seed + index`: an item's audio then
    depends on its own seed only, never on the batch it runs in, and `bark say` with that seed
    (same voice, model, device and dtype) makes it again."""
    for item in items:
        if item.seed is None:
            item.seed = seed + item.index
    return items


def select_shard(items: list[Item], shard: tuple[int, int]) -> list[Item]:
    k, n = shard
    return [item for item in items if item.index % n == k]


SpeakGroup = Callable[[list[Item]], list[tuple[object, int]]]


class Recorder:
    """Collects a run's outcomes: into a Summary, one JSON line each into the report (flushed, so
    a killed run keeps the report up to its last item), then `on_item(outcome, done, total)`."""

    def __init__(self, total: int, report: TextIO | None = None,
                 on_item: Callable[[Outcome, int, int], None] | None = None) -> None:
        self.summary, self.total, self.report, self.on_item = Summary(), total, report, on_item

    def __call__(self, outcome: Outcome) -> None:
        self.summary.outcomes.append(outcome)
        if self.report is not None:
            self.report.write(json.dumps(asdict(outcome)) + "\n")
            self.report.flush()
        if self.on_item:
            self.on_item(outcome, len(self.summary.outcomes), self.total)


def admit(item: Item, overwrite: bool = False) -> Outcome | None:
    """Claim a planned item for this process; or the outcome of one it will not generate:
    unplannable, done already ("skipped"), or held by another live run ("claimed")."""
    outcome = _precheck(item, overwrite)
    if outcome is None and not claim(item.output):
        outcome = _outcome(item, "claimed")
    elif outcome is None and item.output.exists() and not overwrite:
        release(item.output)  # finished by another run between the check and the claim
        outcome = _outcome(item, "skipped")
    return outcome


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
    claims: bool = True,
) -> Summary:
    """Speak the planned items and write each output; report every item.

    `speak_group(items)` returns one `(result, seed)` per item, `result` having `.audio`,
    `.sample_rate` and `.duration`. Consecutive items with the same non-None `group_key` (for
    example one voice) go to it together, up to `batch_size`. When a group fails, its items are
    retried one by one, so one bad item fails alone. Each item is claimed (`admit`) before it is
    generated and released once written or failed; an item another live run holds is reported
    "claimed" and left to it. `claims=False` is for a worker whose items a coordinating process
    has claimed already: it neither claims nor releases.
    """
    record = Recorder(len(items), report, on_item)
    free = release if claims else (lambda output: None)
    group: list[Item] = []
    group_of = None  # the key of the items in `group`
    try:
        for item in items:
            outcome = admit(item, overwrite) if claims else _precheck(item, overwrite)
            if outcome is not None:
                record(outcome)
                continue
            key = group_key(item)
            if group and (key is None or key != group_of or len(group) >= batch_size):
                _speak_and_write(speak_group, group, subtype, record, free)
                group = []
            group.append(item)
            group_of = key
            if key is None:
                _speak_and_write(speak_group, group, subtype, record, free)
                group = []
        if group:
            _speak_and_write(speak_group, group, subtype, record, free)
    finally:
        for item in group:  # claimed but not reached (an interrupt): free them for the next run
            free(item.output)
    return record.summary


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


def _speak_and_write(speak_group: SpeakGroup, group: list[Item], subtype: str | None, record,
                     free: Callable[[Path], None] = release) -> None:
    """Speak a claimed group and write its outputs; every claim is released, whatever happens."""
    from .audio import write_audio
    try:
        try:
            results = speak_group(group)
        except Exception as exc:  # noqa: BLE001 - isolate the failing item below
            if len(group) > 1:
                for item in group:
                    _speak_and_write(speak_group, [item], subtype, record, free)
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
            free(item.output)
            record(outcome)
    finally:
        for item in group:
            free(item.output)


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, BarkError) else f"{type(exc).__name__}: {exc}"
