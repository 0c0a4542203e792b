"""First seen: alert when a key (a principal) uses a value (a source IP) it has not used lately.

Decisions depend on which event came first, so they are taken in event-time order once the
watermark has passed an event (see docs/stateful-rules.md):

- the first event of a key starts its learning period; values seen before
  `learning_start + learning` are recorded silently;
- after it, a value not used for the key within the last `retention` raises an alert;
- a value unused for `retention` is forgotten; a key whose values are all forgotten is
  forgotten with them and learns again.

Entry per rule and key: `[learning_start, {value: last_seen_minute}]`, plus a third element,
the held events `[[eventTime, event key, value, record or null, later use minute?], ...]`.
An event that may alert is held with its record until the watermark passes it. Events that
cannot alert whatever arrives later are decided at once (see `offer`): a value in use is
refreshed in place, or by the held event of that value it follows (the optional last item);
an event in the learning period is held without its record, to enter the values in
event-time order `SETTLE` later or at the next sweep. Last-seen times are whole minutes
(rounded up, so a value is kept at least `retention`) as shared ints: about 155 bytes per
tracked value at 100,000 keys x 5 values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from operator import itemgetter
from typing import Any

import orjson

from detector.alerts import event_key, format_time
from detector.engine.rule import FirstSeen, Rule
from detector.engine.state import JSON, State
from detector.engine.stateful.keys import (
    FIRST_SEEN,
    is_count,
    is_number,
    key_prefix,
    record_of,
    shared_fields,
    slim_for,
)
from detector.events import Record

_MINUTE = 60
_MINUTE_CACHE = 100_000

# Seconds of event time an event that cannot alert is held before it enters its key's values:
# one release then applies many such events.
SETTLE = 3600.0

Decision = tuple[Record, dict[str, Any]]  # an event that raised an alert, and the alert details
# Positions in an entry, and in one of its pending events.
LEARNING, VALUES, PENDING = range(3)
TIME, IDENT, VALUE, RECORD, LATER = range(5)
_TIME_OF, _VALUE_OF = itemgetter(TIME), itemgetter(VALUE)


class FirstSeenUnit:
    """The memory of one first-seen rule."""

    def __init__(self, rule: Rule, spec: FirstSeen, state: State,
                 fields_read_later: Iterable[str] = ()) -> None:
        self.rule = rule
        self.spec = spec
        self.state = state
        self.key_fields = shared_fields(spec.key)
        self.prefix = key_prefix(FIRST_SEEN, rule.id)
        self.value_fields = shared_fields(spec.value)
        self.slim = slim_for((*spec.key, *spec.value, *fields_read_later,
                              *(rule.meta.output.fields() if rule.meta.output else ())))
        self._minutes: dict[int, int] = {}

    @property
    def group_fields(self) -> tuple[str, ...]:
        return self.spec.key

    def offer(self, record: Record, watermark: float) -> tuple[str, float] | None:
        """Take a record the rule matched (not late: `watermark` is at most its time).

        Returns the entry's key and when the entry needs the watermark, or None when the
        record is ignored or decided at once. Only an event that may alert waits for the
        watermark to pass it; events that cannot alert whatever arrives later are decided
        at once (no alert), either fully or, when their value has to enter the baseline in
        event-time order, held without their record and applied in bulk `SETTLE` later:

        - a value the key used within the retention period before it (in its values, or an
          earlier held event of the same value, which then carries the refresh): events
          arriving later can only add earlier uses, so no order makes it new;
        - an event before the end of the key's learning period: that period starts at the
          key's recorded start, or after a reset at a held event or a later arrival, all at
          least the earliest of these.
        """
        data = record.data
        if None in self.key_fields.values(data):
            return None
        value = self._value(data)
        if value is None:
            return None
        skey = self.prefix + self.key_fields.key(data)
        entry: list[Any] | None = self.state.get(skey)
        if entry is None:
            entry = [None, {}]
        values: dict[str, int] = entry[VALUES]
        last = values.get(value)
        event_time = record.event_time
        retention = self.spec.retention
        if last is not None and last * _MINUTE + retention >= event_time:
            minute = self._minute(event_time)
            if minute > last:
                values[value] = minute
                self.state.put(skey, entry)
            return None
        pending: list[list[Any]] = entry[PENDING] if len(entry) > PENDING else []
        ident = event_key(record)
        if value in map(_VALUE_OF, pending):
            for item in pending:
                if (item[VALUE] == value and item[TIME] + retention >= event_time
                        and (item[TIME], item[IDENT]) < (event_time, ident)):
                    minute = self._minute(event_time)
                    if len(item) <= LATER:
                        item.append(minute)
                    elif minute > item[LATER]:
                        item[LATER] = minute
                    else:
                        return None
                    self.state.put(skey, entry)
                    return None
        earliest = min(map(_TIME_OF, pending), default=watermark)
        if entry[LEARNING] is not None:
            earliest = min(earliest, entry[LEARNING])
        learning = event_time < min(earliest, watermark) + self.spec.learning
        pending.append([event_time, ident, value, None if learning else self.slim(data)])
        self.state.put(skey, [entry[LEARNING], values, pending])
        return skey, event_time + SETTLE if learning else event_time

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
        for item in ready:
            event_time, ident, value, data = item[:LATER]
            if ident != previous:  # else the same event delivered twice
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
            if len(item) > LATER:
                minute = max(minute, item[LATER])
            if values.get(value, -1) < minute:
                values[value] = minute
        self.state.put(skey, [start, values, rest] if rest else [start, values])
        return fired, _due(rest)

    def due(self, entry: JSON) -> float | None:
        """When the entry next needs the watermark (None when nothing waits)."""
        return _due(entry[PENDING]) if len(entry) > PENDING else None

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



def check_entry(entry: JSON) -> str | None:
    """Why `entry` is not a first-seen entry (None when it is one), for state files."""
    if not isinstance(entry, list) or len(entry) not in (2, 3):
        return "a first-seen entry is [learning start, {value: last-seen minute}, held events]"
    start, values = entry[LEARNING], entry[VALUES]
    if start is not None and not is_number(start):
        return "its learning start is not a number or null"
    if not isinstance(values, dict) or not all(is_count(minute) for minute in values.values()):
        return "its values do not map to whole minutes"
    if len(entry) > PENDING:
        if not isinstance(entry[PENDING], list):
            return "its held events are not a list"
        for item in entry[PENDING]:
            if not (isinstance(item, list) and len(item) in (4, 5) and is_number(item[TIME])
                    and isinstance(item[IDENT], str) and isinstance(item[VALUE], str)
                    and (item[RECORD] is None or isinstance(item[RECORD], dict))
                    and (len(item) == LATER or is_count(item[LATER]))):
                return ("a held event is not [time, event id, value, record or null, later "
                        "minute (optional)]")
    return None


def _due(pending: list[list[Any]]) -> float | None:
    """When held events need deciding: one that may alert (it has its record) once the
    watermark passes it, the others `SETTLE` later."""
    return min((item[TIME] if item[RECORD] is not None else item[TIME] + SETTLE
                for item in pending), default=None)
