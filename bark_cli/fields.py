"""Typed fields from a model's JSON files: each value checked against its dataclass field's
type, a bad one a CheckpointError that names the key (config.py's configs are read through these)."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from .errors import CheckpointError


def from_dict(cls, data: dict[str, Any] | None, section: str = ""):
    """Build a dataclass from a JSON dict, keeping only the fields it knows (the Hub files hold
    dozens of unrelated `GenerationConfig` keys) and leaving defaults where a key is absent or null.
    Each value must have its field's type (CheckpointError naming the key otherwise); `section`
    prefixes the key in messages."""
    data = object_at(data, section)
    kinds = {f.name: f.type for f in dataclasses.fields(cls)}
    given = {k: typed(f"{section}{k}", v, kinds[k]) for k, v in data.items() if k in kinds and v is not None}
    return cls(**given)


def object_at(data: Any, name: str) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        where = name.rstrip(".") or "the file"
        raise CheckpointError(f"{where} is {show(data)}, not an object", "re-download the model")
    return data


def show(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (dict, list, str, int, float, bool)) or value is None else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def typed(key: str, value: Any, kind: str) -> Any:
    """`value` as the field type `kind` ("int", "float | None", "list[int]", ...) or CheckpointError."""
    kind = kind.replace(" | None", "")
    if kind.startswith("list["):
        inner = kind[5:-1]
        if not isinstance(value, list) or not value:
            raise CheckpointError(f"{key} is {show(value)}, not a non-empty list of {inner}s", "re-download the model")
        return [typed(f"{key}[{i}]", v, inner) for i, v in enumerate(value)]
    if kind == "bool":
        if not isinstance(value, bool):
            raise CheckpointError(f"{key} is {show(value)}, not true or false", "re-download the model")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise CheckpointError(f"{key} is {show(value)}, not a string", "re-download the model")
        return value
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "float" and number:
        return value
    if kind == "int" and number and value == int(value):
        return int(value)
    raise CheckpointError(f"{key} is {show(value)}, not {'an integer' if kind == 'int' else 'a number'}",
                          "re-download the model")


def require(ok: bool, key: str, value: Any, rule: str) -> None:
    if not ok:
        raise CheckpointError(f"{key} is {show(value)}: {rule}", "re-download the model, or fix its config")


def in_range(config: Any, section: str, name: str, low: float, high: float) -> None:
    value = getattr(config, name)
    require(low <= value <= high, f"{section}{name}", value, f"must lie in {low}..{high}")
