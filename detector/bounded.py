"""Bounds on what the detector writes out of a decoded record: alerts, group and state keys,
alert text, event ids, log lines.

Whoever makes an AWS call chooses most of its record, and orjson reads 1,024 levels of nesting
but writes only 254, so a value taken from a record is made safe before it is written:

- containers nested deeper than `MAX_DEPTH` levels become the text `…[truncated: nested deeper
  than 32 levels]`;
- a string longer than `MAX_STRING` characters keeps its first `MAX_STRING`, followed by
  `…[truncated: N characters, sha256 <16 hex digits of the whole string>]`, so two long values
  that share a beginning stay apart (group keys, event ids);
- once the JSON written of one value reaches about `MAX_SIZE` bytes, the remaining items of each
  container become one marker, `…[truncated: N more items]` (for an object, under the key `…`);
- integers beyond 64 bits (orjson refuses them) become their decimal text.

Truncation is deterministic: the same value always gives the same result, so alert ids and group
keys stay stable. A value within every bound is returned as it is, not copied.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

MAX_DEPTH: Final = 32
MAX_STRING: Final = 4096
MAX_SIZE: Final = 16 * 1024
MARKER: Final = "…"
_INT_RANGE: Final = range(-(2**63), 2**64)


def bounded(value: Any, max_size: int = MAX_SIZE) -> Any:
    """`value` if it is within the bounds, else a truncated copy (see the module docstring)."""
    kind = type(value)
    if kind is str:
        return value if len(value) <= MAX_STRING else bounded_text(value)
    if kind is dict or kind is list or isinstance(value, dict | list):
        budget = [max_size]
        if _within(value, MAX_DEPTH, budget):
            return value
        return _copy(value, MAX_DEPTH, [max_size])
    return _scalar(value)


def bounded_text(text: str, limit: int = MAX_STRING) -> str:
    """`text` cut to `limit` characters, with a marker naming its length and hash."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{text[:limit]}{MARKER}[truncated: {len(text)} characters, sha256 {digest}]"


def _within(value: Any, depth: int, budget: list[int]) -> bool:
    """Whether `value` needs no truncation; `budget` counts down the JSON bytes written."""
    if isinstance(value, dict):
        if depth <= 0:
            return False
        budget[0] -= 2
        for key, item in value.items():
            if type(key) is not str or len(key) > MAX_STRING:
                return False
            budget[0] -= len(key) + 4
            if not _within(item, depth - 1, budget):
                return False
        return budget[0] >= 0
    if isinstance(value, list):
        if depth <= 0:
            return False
        budget[0] -= 2
        for item in value:
            budget[0] -= 1
            if not _within(item, depth - 1, budget):
                return False
        return budget[0] >= 0
    if isinstance(value, str):
        budget[0] -= len(value) + 2
        return len(value) <= MAX_STRING and budget[0] >= 0
    if value is None or isinstance(value, bool | float):
        budget[0] -= 5
        return budget[0] >= 0
    if isinstance(value, int):
        budget[0] -= 20
        return value in _INT_RANGE and budget[0] >= 0
    return False


def _copy(value: Any, depth: int, budget: list[int]) -> Any:
    """The truncated copy of a value `_within` refused."""
    if isinstance(value, dict | list):
        if depth <= 0:
            text = f"{MARKER}[truncated: nested deeper than {MAX_DEPTH} levels]"
            budget[0] -= len(text) + 2
            return text
        budget[0] -= 2
        if isinstance(value, dict):
            copied: dict[str, Any] = {}
            for position, (key, item) in enumerate(value.items()):
                if budget[0] <= 0:
                    copied[MARKER] = f"{MARKER}[truncated: {len(value) - position} more items]"
                    break
                name = bounded_text(key if type(key) is str else str(key))
                budget[0] -= len(name) + 4
                copied[name] = _copy(item, depth - 1, budget)
            return copied
        items: list[Any] = []
        for position, item in enumerate(value):
            if budget[0] <= 0:
                items.append(f"{MARKER}[truncated: {len(value) - position} more items]")
                break
            budget[0] -= 1
            items.append(_copy(item, depth - 1, budget))
        return items
    result = _scalar(value)
    budget[0] -= len(result) + 2 if isinstance(result, str) else 8
    return result


def _scalar(value: Any) -> Any:
    """A JSON scalar orjson writes: long strings cut, huge integers and odd types as text."""
    if isinstance(value, str):
        return bounded_text(value)
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        if value in _INT_RANGE:
            return value
        if value.bit_length() > 10_000:  # int -> str refuses over 4,300 digits
            return f"{MARKER}[truncated: an integer of {value.bit_length()} bits]"
        return bounded_text(str(value))
    return bounded_text(str(value))
