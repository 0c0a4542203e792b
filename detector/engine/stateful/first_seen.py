"""First seen and rare values: alert when a key (a principal) uses a value (a source IP, an
API name) it used fewer than N times within a history window; first seen is N = 1.

Decided at once, when the event arrives (see docs/stateful-rules.md, "Rare values"):

- the earliest event of a key starts its learning period; events before
  `start + learning` are recorded silently;
- after it, an event whose value the key used fewer than `threshold` times within
  `window` before it raises an alert, at most one per value until the value is forgotten;
- uses older than `window` are forgotten, and a key without events for `retention` with them
  (it learns again).

The alert id is a function of rule, key and value (`alert_id(rule, key, [value])`), never of
the event that happened to arrive first: whichever of a value's early events arrives first
raises the same alert. What a late earlier event can contradict (an alert whose value turns
out to have been used before, a quiet event whose key turns out to have started earlier) is
counted in `contradicted`, case by case in docs/stateful-rules.md.

Entry per rule and key: `[start, {value: uses}, last minute]` plus, once a value alerted,
`{value: [eventTime, event key] of its alert}`, and, when the key was idle for the retention
period, the time its new learning period started (it becomes the start once the watermark
passes it: until then an earlier event still belongs to the old one, so one record far ahead
cannot restart it). Uses are whole minutes (rounded up): the latest minute (int) when the
threshold is 1, else a sorted list of the latest `threshold` minutes. Minutes are shared ints.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any

from detector.alerts import alert_id, event_key, format_time
from detector.engine.rule import FirstSeen, Rule
from detector.engine.state import JSON, State
from detector.engine.stateful.baseline import check_entry as check_baseline
from detector.engine.stateful.keys import (
    FIRST_SEEN,
    MAX_ENTRY_BYTES,
    bucket_start,
    entry_budget,
    is_count,
    is_number,
    key_prefix,
    over_budget,
    shared_fields,
)
from detector.events import Record

_MINUTE = 60
_MINUTE_CACHE = 100_000

# Positions in an entry.
START, VALUES, LAST, ALERTED, RESTART = range(5)
Uses = int | list[int]


@dataclass(slots=True)
class Decision:
    """An event that raised an alert: the record, the alert's id and its details."""

    record: Record
    alert_id: str
    details: dict[str, Any] = field(default_factory=dict)


class FirstSeenUnit:
    """The memory of one first-seen or rare-value rule."""

    def __init__(self, rule: Rule, spec: FirstSeen, state: State,
                 budget: int = entry_budget(MAX_ENTRY_BYTES)) -> None:
        self.rule = rule
        self.budget = budget  # bytes an entry is cut back under (see keys.over_budget)
        self.trimmed = 0  # values forgotten early to keep an entry under the budget
        self.spec = spec
        self.state = state
        self.key_fields = shared_fields(spec.key)
        self.prefix = key_prefix(FIRST_SEEN, rule.id)
        self.value_fields = shared_fields(spec.value)
        self.kind = "first_seen" if spec.threshold == 1 else "rare"
        self.contradicted = 0  # early decisions a late earlier event contradicted
        self._minutes: dict[int, int] = {}

    @property
    def group_fields(self) -> tuple[str, ...]:
        return self.spec.key

    def offer(self, record: Record, latest: float) -> Decision | None:
        """Take a record the rule matched (not late) and decide it at once. `latest`: the
        latest corroborated eventTime (the clock's), which one record far ahead cannot move."""
        data = record.data
        if None in self.key_fields.values(data):
            return None
        value = self._value(data)
        if value is None:
            return None
        skey = self.prefix + self.key_fields.key(data)
        event_time = record.event_time
        minute = self._minute(event_time)
        stored = self.state.get(skey)
        spec = self.spec
        if (stored is not None and len(stored) == ALERTED and type(stored[LAST]) is int
                and event_time >= stored[START]):
            changed = self._settled(stored, value, minute, event_time - spec.history)
            if changed is not None:
                if changed:
                    self.state.put(skey, stored)
                return None
        entry: list[Any] = [event_time, {}, minute] if stored is None else self._current(stored)
        restart = self._restart(entry, minute, event_time)
        if restart is not None and event_time >= restart:
            start = restart
        else:
            start = entry[START]
            if event_time < start:
                self._moved_start(entry, event_time)
                start = entry[START] = event_time
        values: dict[str, Uses] = entry[VALUES]
        uses = values.get(value)
        since = math.floor((event_time - spec.history) / _MINUTE)
        count, later = _count(uses, since, minute, spec.threshold)
        alerted: dict[str, list[Any]] = entry[ALERTED] if len(entry) > ALERTED else {}
        learning = event_time < start + spec.learning
        decision = None
        if value in alerted and uses is not None and _latest(uses) < since:
            del alerted[value]  # unused for a whole window: a new episode
        if count < spec.threshold and not later and not learning and value not in alerted:
            if _may_have_dropped(uses, minute, spec.threshold):
                self.contradicted += 1  # an earlier use, since dropped, may have made it common
            alerted[value] = [event_time, event_key(record)]
            decision = Decision(record, self._alert_id(data, value, minute),
                                self._details(data, event_time, count,
                                              len(values) - (uses is not None),
                                              start + spec.learning))
        elif value in alerted and (event_time, event_key(record)) < tuple(alerted[value]):
            self.contradicted += 1  # an earlier use arrived after a later one alerted
        values[value] = _used(uses, minute, spec.threshold)
        entry[LAST] = max(entry[LAST], minute)
        if uses is None and (size := over_budget(entry, len(values), len(value), self.budget)):
            self._trim(values, alerted, size)
        plain = len(entry) == ALERTED and not alerted and restart is None  # the common shape
        self.state.put(skey, entry if plain else self._shaped(entry, alerted, restart))
        return decision

    def _settled(self, entry: list[Any], value: str, minute: int, since: float) -> bool | None:
        """The common case, an established value seen again in order: its uses (as many as
        the threshold) all lie within the window (from `since`) and at or before `minute`, so
        it is neither rare nor is the key idle, and nothing alerted for the key. Then the use
        is recorded in place, as `_used` would, and whether the entry changed is returned;
        None (nothing changed) when the event needs the full decision."""
        values = entry[VALUES]
        uses = values.get(value)
        threshold = self.spec.threshold
        if threshold == 1 and type(uses) is int and uses <= minute and uses * _MINUTE >= since:
            if minute == uses:
                return False
            values[value] = minute
        elif (threshold > 1 and type(uses) is list and len(uses) == threshold
              and uses[-1] <= minute and uses[0] * _MINUTE >= since):
            del uses[0]
            uses.append(minute)
        else:
            return None
        entry[LAST] = max(entry[LAST], minute)
        return True

    def _trim(self, values: dict[str, Uses], alerted: dict[str, list[Any]], size: int) -> None:
        """Forget the values used longest ago until the entry is about 3/4 of the budget:
        a key with more distinct values than a changelog message holds (an address per
        request, a field of random text) keeps its recent ones."""
        keep = len(values) * self.budget * 3 // (4 * size)
        oldest = sorted(values, key=lambda value: _latest(values[value]))
        for value in oldest[:len(values) - keep]:
            del values[value]
            alerted.pop(value, None)
            self.trimmed += 1

    @staticmethod
    def _shaped(entry: list[Any], alerted: dict[str, list[Any]],
                restart: float | None) -> list[Any]:
        """The entry with its optional items: alerted values, then a pending restart."""
        if restart is not None:
            return [*entry[:ALERTED], alerted, restart]
        return [*entry[:ALERTED], alerted] if alerted else entry[:ALERTED]

    def _restart(self, entry: list[Any], minute: int, event_time: float) -> float | None:
        """The key's pending restart after this event: one starts when the key was idle for
        the retention before an event in order; a late use inside the idle period cancels it
        (counted as contradicted, as is a late event whose key may have been idle before it)."""
        retention = self.spec.retention
        restart: float | None = entry[RESTART] if len(entry) > RESTART else None
        if minute >= entry[LAST] and entry[LAST] * _MINUTE + retention < event_time:
            if restart is not None:  # the run the pending restart began is over too
                entry[START] = restart
            return event_time  # idle for the retention period: the key learns again
        if restart is not None and restart - retention <= event_time < restart:
            self.contradicted += 1
            return None  # a late use bridges the idle period: there was no restart
        if minute < entry[LAST] and event_time - entry[START] > retention and not any(
                _latest(uses) * _MINUTE + retention >= event_time
                for uses in entry[VALUES].values()):
            # a late event whose key may have been idle for the retention period before it:
            # the later events, which arrived first, keep it from starting a new learning
            self.contradicted += 1
        return restart

    def _details(self, data: dict[str, Any], event_time: float, count: int, known: int,
                 learning_ended: float) -> dict[str, Any]:
        """What the alert says: the value, the key's other values, the evidence."""
        spec = self.spec
        return {
            self.kind: {
                "value": self.value_fields.mapping(self.value_fields.values(data)),
                "known_values": known,
                "learning_ended": format_time(learning_ended),
            },
            "anomaly": {
                "method": "rare",
                "field": ", ".join(spec.value),
                "observed": count,
                "threshold": spec.threshold,
                "history": {"start": format_time(event_time - spec.history),
                            "end": format_time(event_time)},
                "learning": False,
                "learning_ended": format_time(learning_ended),
            },
        }

    def sweep(self, skey: str, entry: JSON, watermark: float) -> None:
        """Forget uses older than the window and keys idle for the retention period; a
        restart the watermark passed becomes the key's start."""
        entry = self._current(entry)
        if entry[LAST] * _MINUTE < watermark - self.spec.retention:
            self.state.delete(skey)
            return
        since = (watermark - self.spec.history) / _MINUTE
        kept: dict[str, Uses] = {}
        for value, uses in entry[VALUES].items():
            if isinstance(uses, int):
                if uses >= since:
                    kept[value] = uses
            elif recent := [used for used in uses if used >= since]:
                kept[value] = recent
        alerted = {value: when for value, when in entry[ALERTED].items()
                   if value in kept} if len(entry) > ALERTED else {}
        restart = entry[RESTART] if len(entry) > RESTART else None
        start = entry[START]
        if restart is not None and restart <= watermark:
            start, restart = restart, None
        self.state.put(skey, self._shaped([start, kept, entry[LAST]], alerted, restart))

    def _current(self, entry: list[Any]) -> list[Any]:
        """`entry` in the current shape: one of state version 2 gets its last minute, a start
        (its earliest use when it had none) and the uses of its held events (no alert: they
        were events of an earlier run)."""
        if len(entry) > LAST and not isinstance(entry[LAST], list):
            return entry
        values: dict[str, Uses] = entry[VALUES]
        for item in entry[LAST] if len(entry) > LAST else ():
            minute = max(self._minute(item[0]), *item[4:])
            values[item[2]] = _used(values.get(item[2]), minute, self.spec.threshold)
        start = entry[START]
        if start is None:
            start = min((_earliest(uses) * _MINUTE for uses in values.values()), default=0.0)
        return [start, values, max(map(_latest, values.values()), default=0)]

    def _moved_start(self, entry: list[Any], earlier: float) -> None:
        """A late event moved the key's start earlier: a value used after the new end of
        the learning period may have been taken for a learning event (a missed alert), counted
        as contradicted (only the latest use of a value is kept, so it is a bound)."""
        new_end = earlier + self.spec.learning
        if entry[START] + self.spec.learning > new_end and any(
                _latest(uses) * _MINUTE >= new_end for uses in entry[VALUES].values()):
            self.contradicted += 1

    def _alert_id(self, data: dict[str, Any], value: str, minute: int) -> str:
        """One id per value and epoch-aligned history window (of the event's minute, the
        resolution uses are kept in): a value that comes back after it was forgotten (unused
        for a whole window) alerts under a new id."""
        key = self.key_fields.mapping(self.key_fields.values(data))
        epoch = format_time(bucket_start(minute * _MINUTE, self.spec.history))
        return alert_id(self.rule.id, key, [f"{value}@{epoch}"])

    def _value(self, data: dict[str, Any]) -> str | None:
        values = self.value_fields.values(data)
        if None in values:
            return None
        if len(values) == 1:
            return values[0]
        return self.value_fields.key(data)

    def _minute(self, event_time: float) -> int:
        minute = math.ceil(event_time / _MINUTE)
        cache = self._minutes
        if len(cache) > _MINUTE_CACHE:
            cache.clear()
        return cache.setdefault(minute, minute)


def _count(uses: Uses | None, since: int, minute: int, threshold: int) -> tuple[int, bool]:
    """How many recorded uses lie in [since, minute]; and whether the value is established
    after `minute` (as many uses after it as are kept: uses before it may have been dropped,
    so it is not taken for rare)."""
    if uses is None:
        return 0, False
    if isinstance(uses, int):
        return int(since <= uses <= minute), uses > minute
    upto = bisect.bisect_right(uses, minute)
    return upto - bisect.bisect_left(uses, since, hi=upto), len(uses) - upto >= threshold


def _may_have_dropped(uses: Uses | None, minute: int, threshold: int) -> bool:
    """Whether a late use at `minute` is counted without uses `_used` dropped: only the latest
    `threshold` are kept, so a full list with a use after `minute` may have lost some before."""
    return (isinstance(uses, list) and len(uses) == threshold
            and uses[0] <= minute < uses[-1])


def _used(uses: Uses | None, minute: int, threshold: int) -> Uses:
    """`uses` with one more use at `minute`: the latest minute, or the latest `threshold`."""
    if threshold == 1:
        return minute if uses is None or not isinstance(uses, int) else max(uses, minute)
    kept = [] if uses is None else [uses] if isinstance(uses, int) else uses
    bisect.insort(kept, minute)
    return kept[-threshold:]


def _latest(uses: Uses) -> int:
    return uses if isinstance(uses, int) else uses[-1]


def _earliest(uses: Uses) -> int:
    return uses if isinstance(uses, int) else uses[0]


def check_entry(entry: JSON) -> str | None:
    """Why `entry` is not an entry of the `fs` kind (None when it is one), for state files:
    a first-seen entry, or a baseline entry (its third item, the profile, is a string). The
    shapes of state version 2 (no last minute; a start of null; held events third) load too."""
    if isinstance(entry, list) and len(entry) > LAST and isinstance(entry[LAST], str):
        return check_baseline(entry)
    if not isinstance(entry, list) or len(entry) not in (2, 3, 4, 5) or not isinstance(
            entry[VALUES], dict):
        return ("a first-seen entry is [start, {value: uses}, last minute, {alerted value: "
                "[time, event id]} (optional), restart (optional)]")
    if entry[START] is not None and not is_number(entry[START]):
        return "its start is not a number"
    for uses in entry[VALUES].values():
        if not (is_count(uses) or (isinstance(uses, list) and uses and all(
                map(is_count, uses)) and uses == sorted(uses))):
            return "its values do not map to whole minutes (or sorted lists of them)"
    if len(entry) == LAST + 1 and isinstance(entry[LAST], list):
        for item in entry[LAST]:
            if not (isinstance(item, list) and len(item) in (4, 5) and is_number(item[0])
                    and isinstance(item[1], str) and isinstance(item[2], str)
                    and (item[3] is None or isinstance(item[3], dict))
                    and (len(item) == 4 or is_count(item[4]))):
                return ("a held event is not [time, event id, value, record or null, later "
                        "minute (optional)]")
    elif len(entry) > LAST and not is_count(entry[LAST]):
        return "its last minute is not a whole minute"
    if len(entry) > ALERTED and not (isinstance(entry[ALERTED], dict) and all(
            isinstance(event, list) and len(event) == 2 and is_number(event[0])
            and isinstance(event[1], str) for event in entry[ALERTED].values())):
        return "its alerted values do not map to [time, event id]"
    if len(entry) > RESTART and not is_number(entry[RESTART]):
        return "its restart is not a time"
    return None
