"""Sigma correlations (event_count, value_count, temporal, temporal_ordered) over event time.

Entry per rule and group key: `{"e": [[eventTime, event key, rule mask, value, record], ...],
"f": [fired window starts], "o": [open window starts]}`, events sorted by (time, key); the
positions in an event item are named by the `TIME` ... `RECORD` constants below.

Two window semantics, both giving the same alerts whatever the arrival order:

- Monotone conditions (only `gt`/`gte`, or temporal rules without bounds): a sliding window.
  The condition is tested on every window `[t - timespan, t]` that ends at an event `t` of
  the group. The group's alert for the epoch-aligned bucket `floor(t / timespan)` holding
  that event goes out as soon as one such window holds; it is raised at most once, and its
  id is (rule, group key, bucket start). Adding an event can only make more windows hold, so
  a late event (within the allowed lateness) can add an alert but never changes one already
  sent. A burst straddling two buckets fires in the bucket of its last event; a burst that
  goes on fires once per bucket.
- Conditions with an upper bound (`lt`, `lte`, `eq`, `neq`, ranges): tumbling windows
  `[k * timespan, (k + 1) * timespan)`, tested when the watermark passes their end (and no
  first-seen event of a base rule before it waits for a decision: the evaluator's rule). A
  window with no matching event has no state and never alerts.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from detector.alerts import event_key, format_time
from detector.engine.rule import Correlation
from detector.engine.state import JSON, State
from detector.engine.stateful.keys import (
    CORRELATION,
    Fields,
    Slim,
    bucket_start,
    parse_state_key,
    record_of,
    state_key,
    window_alert_id,
)
from detector.events import Record

MAX_ALERT_EVENTS = 50  # the latest events of a window an alert carries
# Positions in an event item of an entry's "e" list.
TIME, IDENT, RULES, VALUE, RECORD = range(5)


@dataclass(frozen=True, slots=True)
class Fire:
    """A window that holds: what the alert is made of."""

    records: list[Record]
    group_key: dict[str, str | None]
    alert_id: str
    start: float  # of the bucket (or tumbling window) the alert is for
    details: dict[str, Any]


class CorrelationUnit:
    """The memory of one correlation rule."""

    def __init__(self, correlation: Correlation, state: State) -> None:
        self.correlation = correlation
        self.state = state
        self.group = Fields(correlation.group_by)
        self.value = Fields((correlation.condition.field,)) if correlation.condition.field else None
        self.slim = Slim(self.fields_read)
        self.masks = {rule_id: 1 << position for position, rule_id in enumerate(correlation.rules)}
        condition = correlation.condition
        self.monotone = all(bound is None for bound in (
            condition.lt, condition.lte, condition.eq, condition.neq))
        self.span = correlation.timespan
        self.all_rules = correlation.type in ("temporal", "temporal_ordered") and all(
            bound is None for bound in (condition.gt, condition.gte, condition.lt,
                                        condition.lte, condition.eq, condition.neq))
        self.measure: Callable[[list[list[Any]]], int] = {
            "event_count": len,
            "value_count": _distinct_values,
            "temporal": _rules_covered,
            "temporal_ordered": self._ordered_prefix,
        }[correlation.type]

    @property
    def group_fields(self) -> tuple[str, ...]:
        return self.correlation.group_by

    @property
    def fields_read(self) -> tuple[str, ...]:
        """Every field the correlation reads from its events after they arrive."""
        correlation = self.correlation
        output = correlation.meta.output.fields() if correlation.meta.output else []
        suppression = correlation.meta.suppression.by if correlation.meta.suppression else ()
        value = (correlation.condition.field,) if correlation.condition.field else ()
        return (*correlation.group_by, *value, *suppression, *output)

    def add(
        self, record: Record, rule_id: str, horizon: float
    ) -> tuple[list[Fire], str, float | None]:
        """Count a record matched by base rule `rule_id`: (windows now holding, key, due).

        `horizon` is the oldest eventTime a later input (or an undecided first-seen event)
        can still have: events no window ending at or after it reaches are dropped.
        """
        data = record.data
        values = self.group.values(data)
        skey = state_key(CORRELATION, self.correlation.id, values)
        entry: dict[str, Any] = self.state.get(skey) or {"e": [], "f": [], "o": []}
        events: list[list[Any]] = entry["e"]
        ident = event_key(record)
        at = (record.event_time, ident)
        position = bisect.bisect_left(events, at, key=_TIME_AND_IDENT)
        mask = self.masks[rule_id]
        if position < len(events) and events[position][IDENT] == ident:
            if events[position][RULES] & mask:
                return [], skey, None
            events[position][RULES] |= mask
        else:
            value = self.value.values(data)[0] if self.value else None
            events.insert(position, [record.event_time, ident, mask, value, self.slim(data)])
        group_key = self.group.mapping(values)
        fires: list[Fire] = []
        due: float | None = None
        if self.monotone:
            fires = self._slide(entry, record.event_time, group_key)
        else:
            start = bucket_start(record.event_time, self.span)
            if start not in entry["o"]:
                entry["o"].append(start)
                due = start + self.span
        self._prune(entry, horizon)
        self.state.put(skey, entry)
        return fires, skey, due

    def close(self, skey: str, until: float) -> tuple[list[Fire], float | None]:
        """Test the tumbling windows that ended by `until`; (alerts, next due time)."""
        entry = self.state.get(skey)
        if entry is None:
            return [], None
        group_key = self.group.mapping(parse_state_key(skey)[2])
        fires: list[Fire] = []
        for start in sorted(entry["o"]):
            end = start + self.span
            if end > until:
                continue
            window = [item for item in entry["e"] if start <= item[TIME] < end]
            count = self.measure(window)
            if window and self._holds(count):
                fires.append(self._fire(window, group_key, start, count))
        entry["o"] = [start for start in entry["o"] if start + self.span > until]
        still_open = set(entry["o"])
        entry["e"] = [item for item in entry["e"]
                      if bucket_start(item[TIME], self.span) in still_open]
        self._store(skey, entry)
        return fires, self.due(entry)

    def due(self, entry: JSON) -> float | None:
        """When the entry next needs the watermark: the end of its oldest open window."""
        return min(entry["o"]) + self.span if entry["o"] else None

    def sweep(self, skey: str, entry: JSON, horizon: float) -> None:
        if self.monotone:
            self._prune(entry, horizon)
            self._store(skey, entry)

    def _slide(self, entry: dict[str, Any], event_time: float,
               group_key: dict[str, str | None]) -> list[Fire]:
        """Test every window ending at an event the new one can reach: [t, t + timespan]."""
        events: list[list[Any]] = entry["e"]
        fired: list[float] = entry["f"]
        fires: list[Fire] = []
        first = bisect.bisect_left(events, event_time, key=_TIME_OF)
        last = bisect.bisect_right(events, event_time + self.span, key=_TIME_OF)
        for index in range(first, last):
            end = events[index][TIME]
            start = bucket_start(end, self.span)
            if start in fired:
                continue
            upto = bisect.bisect_right(events, end, lo=index, key=_TIME_OF)
            since = bisect.bisect_left(events, end - self.span, hi=index, key=_TIME_OF)
            window = events[since:upto]
            count = self.measure(window)
            if self._holds(count):
                fired.append(start)
                fires.append(self._fire(window, group_key, start, count))
        return fires

    def _holds(self, count: int) -> bool:
        """The condition; temporal types without one need every base rule."""
        if self.all_rules:
            return count == len(self.correlation.rules)
        return self.correlation.condition.holds(count)

    def _fire(self, window: list[list[Any]], group_key: dict[str, str | None], start: float,
              count: int) -> Fire:
        records = [record_of(item[TIME], item[RECORD]) for item in window[-MAX_ALERT_EVENTS:]]
        details = {
            "correlation": {
                "type": self.correlation.type,
                "count": count,
                "events": len(window),
                "first_event": format_time(window[0][TIME]),
                "last_event": format_time(window[-1][TIME]),
                "bucket_start": format_time(start),
                "timespan_seconds": self.span,
            },
        }
        return Fire(records, group_key,
                    window_alert_id(self.correlation.id, group_key, "window", start), start,
                    details)

    def _prune(self, entry: dict[str, Any], horizon: float) -> None:
        """Drop what no window a later event can open still needs."""
        if not self.monotone:
            return
        oldest = horizon - self.span
        events: list[list[Any]] = entry["e"]
        keep = bisect.bisect_left(events, oldest, key=_TIME_OF)
        if keep:
            del events[:keep]
        entry["f"] = [start for start in entry["f"] if start + self.span > oldest]

    def _store(self, skey: str, entry: dict[str, Any]) -> None:
        if entry["e"] or entry["f"] or entry["o"]:
            self.state.put(skey, entry)
        else:
            self.state.delete(skey)

    def _ordered_prefix(self, window: list[list[Any]]) -> int:
        """How many of the rules, in their order, the window's events match one after another."""
        step, wanted = 0, len(self.correlation.rules)
        for item in window:
            if step < wanted and item[RULES] & (1 << step):
                step += 1
        return step


# C-level keys for bisect: these run for every comparison of every window lookup.
_TIME_OF = itemgetter(TIME)
_TIME_AND_IDENT = itemgetter(TIME, IDENT)


def _distinct_values(window: list[list[Any]]) -> int:
    return len({item[VALUE] for item in window if item[VALUE] is not None})


def _rules_covered(window: list[list[Any]]) -> int:
    mask = 0
    for item in window:
        mask |= item[RULES]
    return mask.bit_count()
