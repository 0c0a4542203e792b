"""The least work any pure-Python stateful evaluator must do on benchmark 3's input.

Not the product and not a detector. Per record it drops a repeated eventID, routes the
matched rules to the first-seen and correlation units the product builds for them, reads
each unit's fields, finds the group's entry in a dict and makes the in-order update: a
first-seen value's last use; a window's append, its count or distinct count, and the bucket
it fired in. Nothing else: no watermark, lateness, learning period, out-of-order events,
suppression, alerts, or state a changelog could carry. Its cost beside the stateless engine
bounds from below what an evaluator written in Python can reach (docs/BENCHMARKS.md, 3).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any

from detector.engine.rule import Rule
from detector.engine.stateful import Stateful
from detector.events import Record

Paths = tuple[tuple[str, ...], ...]


def _paths(names: Sequence[str]) -> Paths:
    return tuple(tuple(name.split(".")) for name in names)


def _read(data: dict[str, Any], paths: Paths) -> tuple[Any, ...]:
    """The values at dotted paths through nested objects (None where one is missing)."""
    found = []
    for path in paths:
        value: Any = data
        for part in path:
            value = value.get(part) if type(value) is dict else None
        found.append(value)
    return tuple(found)


class _FirstSeen:
    def __init__(self, key: Sequence[str], value: Sequence[str], retention: float) -> None:
        self.key, self.value, self.retention = _paths(key), _paths(value), retention
        self.entries: dict[tuple[Any, ...], dict[tuple[Any, ...], float]] = {}
        self.new = 0

    def feed(self, data: dict[str, Any], event_time: float) -> None:
        key = _read(data, self.key)
        values = self.entries.get(key)
        if values is None:
            values = self.entries[key] = {}
        value = _read(data, self.value)
        last = values.get(value)
        if last is None or last + self.retention < event_time:
            self.new += 1
        if last is None or event_time > last:
            values[value] = event_time


class _Entry:
    __slots__ = ("counts", "fired", "left", "times", "values")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.values: list[Any] = []
        self.counts: dict[Any, int] = {}
        self.fired: set[int] = set()
        self.left = 0


class _Window:
    def __init__(self, group: Sequence[str], field: str | None, span: float,
                 least: int) -> None:
        self.group, self.span, self.least = _paths(group), span, least
        self.field = _paths((field,)) if field else None
        self.entries: dict[tuple[Any, ...], _Entry] = {}
        self.fires = 0

    def feed(self, data: dict[str, Any], event_time: float) -> None:
        key = _read(data, self.group)
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = _Entry()
        times, oldest = entry.times, event_time - self.span
        times.append(event_time)  # as if in order: the floor skips re-sorting
        if self.field is None:
            count = len(times) - bisect.bisect_left(times, oldest)
        else:
            value = _read(data, self.field)
            entry.values.append(value)
            counts = entry.counts
            counts[value] = counts.get(value, 0) + 1
            while times[entry.left] < oldest:
                gone = entry.values[entry.left]
                counts[gone] -= 1
                if not counts[gone]:
                    del counts[gone]
                entry.left += 1
            count = len(counts)
        if count >= self.least:
            bucket = math.floor(event_time / self.span)
            if bucket not in entry.fired:
                entry.fired.add(bucket)
                self.fires += 1
        if entry.left > 64:
            del times[:entry.left], entry.values[:entry.left]
            entry.left = 0
        elif self.field is None and len(times) > 64 and times[0] < oldest:
            del times[:bisect.bisect_left(times, oldest)]


class Floor:
    """The lower-bound loop over records whose matched rules are known beforehand."""

    def __init__(self, stateful: Stateful) -> None:
        self.units: dict[str, list[_FirstSeen | _Window]] = {}
        for rule_id, unit in stateful.first_seen.items():
            spec = unit.spec
            self.units[rule_id] = [_FirstSeen(spec.key, spec.value, spec.retention)]
        for rule_id, correlations in stateful.feeds.items():
            self.units.setdefault(rule_id, []).extend(
                _Window(unit.group_fields, unit.correlation.condition.field, unit.span,
                        unit.least) for unit in correlations)

    def run(self, records: Sequence[Record], matched: Sequence[Sequence[Rule]]) -> int:
        """Feed every record once; the number of units fed (the work done)."""
        units, seen, fed = self.units, set[str](), 0
        for record, rules in zip(records, matched, strict=True):
            ident = record.event_id
            if ident is not None:
                if ident in seen:
                    continue
                seen.add(ident)
            data, event_time = record.data, record.event_time
            for rule in rules:
                for unit in units.get(rule.id, ()):
                    unit.feed(data, event_time)
                    fed += 1
        return fed
