"""Group keys, state keys and window identities: the names stateful memory and alerts go by.

A state key is `<kind>|<rule id>|<group values as JSON>` (kind: `fs` first seen, `co`
correlation, `su` suppression), so one rule's memory for one group key is one entry.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import cache
from typing import Any

import orjson

from detector.alerts import alert_id, format_time
from detector.bounded import MAX_STRING, bounded
from detector.engine.fields import getter, text_of
from detector.engine.state import JSON
from detector.events import DEFAULT_LIMITS, Record

FIRST_SEEN, CORRELATION, SUPPRESSION = "fs", "co", "su"
KINDS = (FIRST_SEEN, CORRELATION, SUPPRESSION)

# An entry is written whole to the worker's changelog, whose messages may be as large as the
# worker's input messages (`Limits.max_message_bytes`, docs/stateful-rules.md "Memory"). An
# entry that grows by items (first-seen values, correlation events) is measured every
# `ENTRY_CHECK_EVERY` new items, and at once after an item longer than `LONG_ITEM`; between
# two measurements it grows by at most `ENTRY_SLACK`, so it is kept under the limit minus it.
ENTRY_CHECK_EVERY = 256
LONG_ITEM = 1024
ENTRY_SLACK = ENTRY_CHECK_EVERY * (LONG_ITEM + 64)
MAX_ENTRY_BYTES = DEFAULT_LIMITS.max_message_bytes


def entry_budget(limit: int) -> int:
    """The size an entry is cut back under when measured, for a changelog of `limit` bytes."""
    return max(limit - ENTRY_SLACK, limit // 2)


def over_budget(entry: JSON, items: int, newest: int, budget: int) -> int:
    """0 when `entry` may be left as it is; else its serialized size (measured only every
    `ENTRY_CHECK_EVERY` items, or after an item of `newest` characters above `LONG_ITEM`)."""
    if items % ENTRY_CHECK_EVERY and newest <= LONG_ITEM:
        return 0
    size = len(orjson.dumps(entry))
    return size if size > budget else 0


class Fields:
    """A tuple of dotted field paths read as text: the group-by of a stateful rule."""

    __slots__ = ("_getters", "_last", "_last_key", "names")

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self._getters = tuple(getter(name) for name in names)
        self._last: tuple[dict[str, Any] | None, list[str | None]] = (None, [])
        self._last_key: tuple[dict[str, Any] | None, str] = (None, "")

    def values(self, data: dict[str, Any]) -> list[str | None]:
        """The fields' values in `data`. Several rules often group one record by the same
        fields, so the last record's values are kept: the list is shared, never change it."""
        last = self._last
        if last[0] is data:
            return last[1]
        values = [value if type(value) is str and len(value) <= MAX_STRING else text_of(value)
                  for value in [read(data) for read in self._getters]]
        self._last = (data, values)
        return values

    def key(self, data: dict[str, Any]) -> str:
        """The values as the JSON that ends a state key (kept for the last record too)."""
        last = self._last_key
        if last[0] is data:
            return last[1]
        key = orjson.dumps(self.values(data)).decode()
        self._last_key = (data, key)
        return key

    def mapping(self, values: list[str | None]) -> dict[str, str | None]:
        return dict(zip(self.names, values, strict=True))


@cache
def shared_fields(names: tuple[str, ...]) -> Fields:
    """One `Fields` per tuple of names, so the rules grouping by them read a record once."""
    return Fields(names)


def key_prefix(kind: str, rule_id: str) -> str:
    """What every state key of one rule starts with; `Fields.key` gives the rest."""
    return f"{kind}|{rule_id}|"


def parse_state_key(key: str) -> tuple[str, str, list[str | None]]:
    """(kind, rule id, group values) of a state key; ValueError when it is not one."""
    kind, rule_id, values = key.split("|", 2)
    try:
        parsed = orjson.loads(values)
    except orjson.JSONDecodeError as error:
        raise ValueError(f"bad group values in state key {key!r}") from error
    if not isinstance(parsed, list):
        raise ValueError(f"bad group values in state key {key!r}")
    return kind, rule_id, parsed


def check_state_key(key: str) -> str | None:
    """Why `key` is not a state key (None when it is one), for state files."""
    try:
        kind, rule_id, values = parse_state_key(key)
    except ValueError:
        return "a state key is <kind>|<rule id>|<group values as a JSON list>"
    if kind not in KINDS:
        return f"unknown kind {kind!r} (one of {', '.join(KINDS)})"
    if not rule_id or not all(value is None or isinstance(value, str) for value in values):
        return "a state key names a rule and a list of strings or nulls"
    return None


def is_number(value: object) -> bool:
    """A JSON number (not a boolean), as state files hold times and counts."""
    return type(value) is int or type(value) is float


def is_count(value: object) -> bool:
    return type(value) is int and value >= 0


def bucket_start(event_time: float, length: float) -> float:
    """Start of the epoch-aligned window of `length` seconds holding `event_time`.

    A length of zero (the loader refuses it) makes every instant a window of its own.
    """
    if length <= 0:
        return event_time
    return math.floor(event_time / length) * length


def window_alert_id(
    rule_id: str, group_key: dict[str, str | None], kind: str, start: float
) -> str:
    """The id of the one alert a rule may raise per group key and aligned window."""
    return alert_id(rule_id, group_key, [f"{kind}@{format_time(start)}"])


# Top-level fields an alert needs from an event (EventSummary, ids, times): the state keeps
# these, plus the first segment of every field a rule's output, group key or value names.
_ALERT_FIELDS = (
    "eventID", "eventTime", "eventSource", "eventName", "eventType", "readOnly",
    "sourceIPAddress", "userAgent", "awsRegion", "recipientAccountId", "errorCode",
    "errorMessage", "userIdentity", "requestParameters",
)


class Slim:
    """The part of a record worth keeping in state: what alerts and the rule's text read.

    Sub-objects are shared with the record, not copied, unless they are over the bounds of
    `detector.bounded` (then a cut copy is kept, so every entry can be written as JSON); the
    rest of the record is dropped.
    The last record's slim copy is kept and handed to every rule keeping the same fields
    (entries never change it).
    """

    __slots__ = ("_last", "keep")

    def __init__(self, keep: frozenset[str]) -> None:
        self.keep = keep
        self._last: tuple[dict[str, Any] | None, dict[str, Any]] = (None, {})

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        last = self._last
        if last[0] is data:
            return last[1]
        keep = self.keep
        slim = {key: bounded(value) for key, value in data.items() if key in keep}
        self._last = (data, slim)
        return slim


def slim_for(paths: Iterable[str]) -> Slim:
    """The `Slim` keeping the alert fields and the first segment of each of `paths`."""
    return _shared_slim(frozenset((*_ALERT_FIELDS, *(path.split(".")[0] for path in paths))))


@cache
def _shared_slim(keep: frozenset[str]) -> Slim:
    return Slim(keep)


def record_of(event_time: float, data: dict[str, Any]) -> Record:
    """A record rebuilt from what the state keeps: the decoded CloudTrail record."""
    event_id = data.get("eventID")
    return Record(data, str(data.get("eventSource")), str(data.get("eventName")), event_time,
                  event_id if isinstance(event_id, str) else None)
