"""First seen: alert when a key (a principal) uses a value (a source IP) it has not used lately.

Decisions depend on which event came first, so they are taken in event-time order once the
watermark has passed an event (see docs/stateful-rules.md):

- the first event of a key starts its learning period; values seen before
  `learning_start + learning` are recorded silently;
- after it, a value not used for the key within the last `retention` raises an alert;
- a value unused for `retention` is forgotten; a key whose values are all forgotten is
  forgotten with them and learns again.

Entry per rule and key: `[learning_start, {value: last_seen_minute}]`, plus a third element,
the pending events `[[eventTime, event key, value, record or null], ...]`, while some wait for
the watermark. A pending event whose value was already in use within the retention period
cannot alert whatever arrives later, so its record is not kept. Last-seen times are whole
minutes (rounded up, so a value is kept at least `retention`) as shared ints: about 155 bytes
per tracked value at 100,000 keys x 5 values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import orjson

from detector.alerts import event_key, format_time
from detector.engine.rule import FirstSeen, Rule
from detector.engine.state import JSON, State
from detector.engine.stateful.keys import FIRST_SEEN, Fields, Slim, record_of, state_key
from detector.events import Record

_MINUTE = 60
_MINUTE_CACHE = 100_000

Decision = tuple[Record, dict[str, Any]]  # an event that raised an alert, and the alert details
# Positions in an entry, and in one of its pending events.
LEARNING, VALUES, PENDING = range(3)
TIME, IDENT = 0, 1


class FirstSeenUnit:
    """The memory of one first-seen rule."""

    def __init__(self, rule: Rule, spec: FirstSeen, state: State,
                 fields_read_later: Iterable[str] = ()) -> None:
        self.rule = rule
        self.spec = spec
        self.state = state
        self.key_fields = Fields(spec.key)
        self.value_fields = Fields(spec.value)
        self.slim = Slim((*spec.key, *spec.value, *fields_read_later,
                          *(rule.meta.output.fields() if rule.meta.output else ())))
        self._minutes: dict[int, int] = {}

    @property
    def group_fields(self) -> tuple[str, ...]:
        return self.spec.key

    def enqueue(self, record: Record) -> str | None:
        """Hold the record until the watermark passes it; the entry's key, or None if ignored."""
        data = record.data
        keys = self.key_fields.values(data)
        value = self._value(data)
        if None in keys or value is None:
            return None
        skey = state_key(FIRST_SEEN, self.rule.id, keys)
        entry: list[Any] = self.state.get(skey) or [None, {}]
        pending: list[list[Any]] = entry[PENDING] if len(entry) > PENDING else []
        last = entry[VALUES].get(value)
        known = last is not None and last * _MINUTE + self.spec.retention >= record.event_time
        pending.append([record.event_time, event_key(record), value,
                        None if known else self.slim(data)])
        self.state.put(skey, [entry[LEARNING], entry[VALUES], pending])
        return skey

    def release(self, skey: str, before: float) -> tuple[list[Decision], float | None]:
        """Decide every pending event older than `before`, in order; (alerts, next due time)."""
        entry = self.state.get(skey)
        if entry is None or len(entry) <= PENDING:
            return [], None
        start: float | None = entry[LEARNING]
        values: dict[str, int] = entry[VALUES]
        ready = sorted((item for item in entry[PENDING] if item[TIME] < before),
                       key=lambda item: (item[TIME], item[IDENT]))
        rest = [item for item in entry[PENDING] if item[TIME] >= before]
        retention, learning = self.spec.retention, self.spec.learning
        fired: list[Decision] = []
        previous = None
        for event_time, ident, value, data in ready:
            if ident == previous:
                continue  # the same event delivered twice
            previous = ident
            if values and max(values.values()) * _MINUTE + retention < event_time:
                start, values = None, {}  # every value forgotten: the key learns again
            if start is None:
                start = event_time
            last = values.get(value)
            known = last is not None and last * _MINUTE + retention >= event_time
            if not known and event_time >= start + learning and data is not None:
                fired.append((record_of(event_time, data), {
                    "first_seen": {
                        "value": self.value_fields.mapping(self.value_fields.values(data)),
                        "known_values": len(values),
                        "learning_ended": format_time(start + learning),
                    },
                }))
            minute = self._minute(event_time)
            if last is None or minute > last:
                values[value] = minute
        self.state.put(skey, [start, values, rest] if rest else [start, values])
        return fired, min((item[TIME] for item in rest), default=None)

    def due(self, entry: JSON) -> float | None:
        """When the entry next needs the watermark: its oldest pending event."""
        if len(entry) <= PENDING:
            return None
        return min((item[TIME] for item in entry[PENDING]), default=None)

    def sweep(self, skey: str, entry: JSON, watermark: float) -> None:
        """Forget values unused for the retention period as of the watermark."""
        values: dict[str, int] = entry[VALUES]
        oldest = watermark - self.spec.retention
        kept = {value: last for value, last in values.items() if last * _MINUTE >= oldest}
        if not kept and len(entry) <= PENDING:
            self.state.delete(skey)
        elif len(kept) != len(values):
            self.state.put(skey, [entry[LEARNING] if kept else None, kept, *entry[PENDING:]])

    def _value(self, data: dict[str, Any]) -> str | None:
        values = self.value_fields.values(data)
        if None in values:
            return None
        if len(values) == 1:
            return values[0]
        return orjson.dumps(values).decode()

    def _minute(self, event_time: float) -> int:
        minute = math.ceil(event_time / _MINUTE)
        cache = self._minutes
        if len(cache) > _MINUTE_CACHE:
            cache.clear()
        return cache.setdefault(minute, minute)

