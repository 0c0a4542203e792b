"""Sigma correlations over event time: event_count, value_count, temporal, temporal_ordered,
and value_sum, value_avg, value_median, value_percentile over a field's numbers.

Entry per rule and group key: `{"e": [[eventTime, event key, rule mask, value, record], ...],
"f": [fired window starts], "o": [open window starts], "b": [window end, bound]}`, events
sorted by (time, key); the positions in an event item are named by the `TIME` ... `RECORD`
constants below. "b" (sliding windows only, optional) saves measuring windows that cannot
hold yet, see `CorrelationUnit._slide`. Only the latest `KEPT_RECORDS` events of an entry keep
their record (the others `null`): a busy principal fills a window with thousands of events,
and a record is most of an item's size (about 1 KB of the 1.1 KB on the benchmark mix). An
alert lists the latest events of its window that have theirs.

Two window semantics, both giving the same alerts whatever the arrival order:

- Monotone conditions (only `gt`/`gte`, or temporal rules without bounds): a sliding window.
  The condition is tested on every window `[t - timespan, t]` that ends at an event `t` of
  the group. The group's alert for the epoch-aligned bucket `floor(t / timespan)` holding
  that event goes out as soon as one such window holds; it is raised at most once, and its
  id is (rule, group key, bucket start). Adding an event can only make more windows hold, so
  a late event (within the allowed lateness) can add an alert but never changes one already
  sent. A burst straddling two buckets fires in the bucket of its last event; a burst that
  goes on fires once per bucket.
- Conditions with an upper bound (`lt`, `lte`, `eq`, `neq`, ranges), and the value_*
  aggregates (a sum, an average, a median or a percentile needs the whole window, and one
  more event can lower it): tumbling windows
  `[k * timespan, (k + 1) * timespan)`, tested when the watermark passes their end (and no
  first-seen event of a base rule before it waits for a decision: the evaluator's rule). A
  window with no matching event has no state and never alerts.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from itertools import pairwise
from operator import itemgetter
from typing import Any

from detector.alerts import event_key, format_time
from detector.engine.rule import Correlation
from detector.engine.state import JSON, State
from detector.engine.stateful.keys import (
    CORRELATION,
    MAX_ENTRY_BYTES,
    bucket_start,
    entry_budget,
    is_count,
    is_number,
    key_prefix,
    over_budget,
    parse_state_key,
    record_of,
    shared_fields,
    slim_for,
    window_alert_id,
)
from detector.events import Record

# Types whose measure only grows as events are added: sliding windows can decide at once.
COUNTING = ("event_count", "value_count", "temporal", "temporal_ordered")
MAX_ALERT_EVENTS = 50  # the latest events of a window an alert carries
MAX_NUMBER_TEXT = 64  # characters of a value read as a number by value_sum and the others
KEPT_RECORDS = 1_000  # the latest events of an entry that keep their record
# Positions in an event item of an entry's "e" list, and in its bound "b".
TIME, IDENT, RULES, VALUE, RECORD = range(5)
BOUND_END, BOUND = range(2)


@dataclass(frozen=True, slots=True)
class Fire:
    """A window that holds: what the alert is made of. Records and details are rebuilt from
    the window's items only when the alert goes out (not when suppression folds it)."""

    window: list[list[Any]]  # event items, oldest first
    group_key: dict[str, str | None]
    alert_id: str
    start: float  # of the bucket (or tumbling window) the alert is for
    kind: str
    count: float  # the measure that held: a count, or a sum, average, median, percentile
    span: float

    def trigger(self) -> Record:
        """The window's latest event that has its record (or, in a window older than the
        entry's latest `KEPT_RECORDS` events, its latest event: its id and the group-by
        fields, which suppression and partitions read)."""
        kept = next((item for item in reversed(self.window) if item[RECORD] is not None),
                    None)
        if kept is None:
            item = self.window[-1]
            return record_of(item[TIME], {**_nested(self.group_key), "eventID": item[IDENT]})
        return record_of(kept[TIME], kept[RECORD])

    def records(self) -> list[Record]:
        kept = [record_of(item[TIME], item[RECORD]) for item in self.window[-MAX_ALERT_EVENTS:]
                if item[RECORD] is not None]
        return kept or [self.trigger()]

    def details(self) -> dict[str, Any]:
        return {
            "correlation": {
                "type": self.kind,
                "count": self.count,
                "events": len(self.window),
                "first_event": format_time(self.window[0][TIME]),
                "last_event": format_time(self.window[-1][TIME]),
                "bucket_start": format_time(self.start),
                "timespan_seconds": self.span,
            },
        }


class CorrelationUnit:
    """The memory of one correlation rule."""

    def __init__(self, correlation: Correlation, state: State,
                 budget: int = entry_budget(MAX_ENTRY_BYTES)) -> None:
        self.correlation = correlation
        self.budget = budget  # bytes an entry is cut back under (see keys.over_budget)
        self.trimmed = 0  # oldest events dropped to keep an entry under the budget
        self.state = state
        self.group = shared_fields(correlation.group_by)
        self.prefix = key_prefix(CORRELATION, correlation.id)
        field = correlation.condition.field
        self.value = shared_fields((field,)) if field else None
        self.slim = slim_for(self.fields_read)
        self.masks = {rule_id: 1 << position for position, rule_id in enumerate(correlation.rules)}
        condition = correlation.condition
        self.monotone = correlation.type in COUNTING and all(bound is None for bound in (
            condition.lt, condition.lte, condition.eq, condition.neq))
        self.span = correlation.timespan
        self.all_rules = correlation.type in ("temporal", "temporal_ordered") and all(
            bound is None for bound in (condition.gt, condition.gte, condition.lt,
                                        condition.lte, condition.eq, condition.neq))
        # Whether adding one event raises a window's measure by at most one (see `_slide`):
        # true of counts; one event of a temporal correlation can match several base rules.
        self.bounded = correlation.type in ("event_count", "value_count")
        # The fewest events a window needs before its measure can satisfy the condition.
        self.least = max(
            0 if condition.gt is None else math.floor(condition.gt) + 1,
            0 if condition.gte is None else math.ceil(condition.gte)) if self.bounded else 1
        measures: dict[str, Callable[[list[list[Any]]], float | None]] = {
            "event_count": len,
            "value_count": _distinct_values,
            "temporal": _rules_covered,
            "temporal_ordered": self._ordered_prefix,
            "value_sum": partial(_aggregate, math.fsum),
            "value_avg": partial(_aggregate, statistics.fmean),
            "value_median": partial(_aggregate, statistics.median),
            "value_percentile": partial(_aggregate, partial(
                _percentile, condition.percentile or 50.0)),
        }
        self.measure = measures[correlation.type]

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
        skey = self.prefix + self.group.key(data)
        entry: dict[str, Any] | None = self.state.get(skey)
        if entry is None:
            entry = {"e": [], "f": [], "o": []}
        events: list[list[Any]] = entry["e"]
        ident = event_key(record)
        event_time = record.event_time
        mask = self.masks[rule_id]
        if events and (events[-1][TIME] < event_time or (
                events[-1][TIME] == event_time and events[-1][IDENT] < ident)):
            position = len(events)  # in order, the common case
        else:
            position = bisect.bisect_left(events, (event_time, ident), key=_TIME_AND_IDENT)
        size = 0
        if position < len(events) and events[position][IDENT] == ident:
            if events[position][RULES] & mask:
                return [], skey, None
            events[position][RULES] |= mask
        else:
            value = self.value.values(data)[0] if self.value else None
            events.insert(position, [event_time, ident, mask, value, self.slim(data)])
            size = over_budget(entry, len(events), len(ident) + len(value or ""), self.budget)
            cut = len(events) - KEPT_RECORDS
            if cut > 0:  # the event now just older than the latest KEPT_RECORDS
                events[min(position, cut - 1)][RECORD] = None
        fires: list[Fire] = []
        due: float | None = None
        if self.monotone:
            bound = entry.get("b")
            if bound is not None and event_time >= bound[BOUND_END] - self.span:
                bound[BOUND] += 1
            values = self.group.values(data)
            fires = self._slide(entry, position, values)
            if events[0][TIME] < horizon - 2 * self.span:
                self._prune(entry, horizon)
        else:
            start = bucket_start(event_time, self.span)
            if start not in entry["o"]:
                entry["o"].append(start)
                due = start + self.span
        if size:
            self._trim(entry, size)
        self.state.put(skey, entry)
        return fires, skey, due

    def _trim(self, entry: dict[str, Any], size: int) -> None:
        """Drop the oldest events until the entry is about 3/4 of the budget: a group key
        with more events in a window than a changelog message holds keeps its latest ones
        (a window reaching further back then counts fewer)."""
        events: list[list[Any]] = entry["e"]
        cut = len(events) - len(events) * self.budget * 3 // (4 * size)
        del events[:cut]
        self.trimmed += cut
        entry.pop("b", None)  # the bound was for the windows as they were

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
            measured = self.measure(window)
            if window and measured is not None and self._holds(measured):
                fires.append(self._fire(window, group_key, start, measured))
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

    def _slide(self, entry: dict[str, Any], position: int,
               values: list[str | None]) -> list[Fire]:
        """Test every window the event at `position` lies in: those ending at an event of
        [t, t + timespan], once per distinct end time (events at one time end one window).

        A window is measured only if it may hold: it has at least `least` events, and the
        bound (`"b"`) does not rule it out. The bound is the measure of the window ending at
        the latest event when it was last measured, plus one per event added since that
        can lie in a window ending then or later; no window ending then or later measures
        more, since an event adds at most one to a count (`bounded`; temporal types are
        always measured).
        """
        events: list[list[Any]] = entry["e"]
        fired: list[float] = entry["f"]
        fires: list[Fire] = []
        span, least = self.span, self.least
        bound: list[float] | None = entry.get("b") if self.bounded else None
        index = position
        while index and events[index - 1][TIME] == events[position][TIME]:
            index -= 1
        last = bisect.bisect_right(events, events[position][TIME] + span, lo=position,
                                   key=_TIME_OF)
        while index < last:
            end = events[index][TIME]
            upto = bisect.bisect_right(events, end, lo=index, hi=last, key=_TIME_OF)
            start = bucket_start(end, span)
            if start not in fired and (bound is None or end < bound[BOUND_END]
                                       or bound[BOUND] >= least):
                since = bisect.bisect_left(events, end - span, hi=index, key=_TIME_OF)
                count = upto - since
                if count >= least:
                    window = events[since:upto]
                    count = int(self.measure(window) or 0)  # sliding: counting types only
                    if self._holds(count):
                        fired.append(start)
                        fires.append(self._fire(window, self.group.mapping(values), start,
                                                count))
                if self.bounded and upto == len(events):
                    entry["b"] = bound = [end, count]
            index = upto
        return fires

    def _holds(self, count: float) -> bool:
        """The condition; temporal types without one need every base rule."""
        if self.all_rules:
            return count == len(self.correlation.rules)
        return self.correlation.condition.holds(count)

    def _fire(self, window: list[list[Any]], group_key: dict[str, str | None], start: float,
              count: float) -> Fire:
        return Fire(window, group_key,
                    window_alert_id(self.correlation.id, group_key, "window", start), start,
                    self.correlation.type, count, self.span)

    def _prune(self, entry: dict[str, Any], horizon: float) -> None:
        """Drop what no window a later event can open still needs (sliding windows only).

        `add` calls it once the oldest event is a timespan past that, not on every event:
        what is left over a while never enters a window (they start after it).
        """
        oldest = horizon - self.span
        events: list[list[Any]] = entry["e"]
        del events[:bisect.bisect_left(events, oldest, key=_TIME_OF)]
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
_VALUE_OF = itemgetter(VALUE)


def check_entry(entry: JSON) -> str | None:
    """Why `entry` is not a correlation entry (None when it is one), for state files."""
    if not isinstance(entry, dict) or not {"e", "f", "o"} <= set(entry) <= {"e", "f", "o", "b"}:
        return 'a correlation entry is {"e": events, "f": fired, "o": open windows, "b": bound}'
    events = entry["e"]
    if not isinstance(events, list) or not all(
            isinstance(item, list) and len(item) == 5 and is_number(item[TIME])
            and isinstance(item[IDENT], str) and is_count(item[RULES]) and item[RULES] > 0
            and (item[VALUE] is None or isinstance(item[VALUE], str))
            and (item[RECORD] is None or isinstance(item[RECORD], dict)) for item in events):
        return "its events are not [time, event id, rule mask, value, record] lists"
    order = [(item[TIME], item[IDENT]) for item in events]
    if any(earlier >= later for earlier, later in pairwise(order)):
        return "its events are not in (time, event id) order"
    for name in ("f", "o"):
        if not isinstance(entry[name], list) or not all(map(is_number, entry[name])):
            return f'its "{name}" is not a list of window starts'
    bound = entry.get("b")
    if bound is not None and not (isinstance(bound, list) and len(bound) == 2
                                  and all(map(is_number, bound))):
        return 'its "b" is not [window end, bound]'
    return None


def _nested(values: dict[str, str | None]) -> dict[str, Any]:
    """Values of dotted fields as the objects of a record: {"a.b": 1} -> {"a": {"b": 1}}."""
    record: dict[str, Any] = {}
    for path, value in values.items():
        *parents, last = path.split(".")
        node = record
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[last] = value
    return record


def _aggregate(how: Callable[[list[float]], float], window: list[list[Any]]) -> float | None:
    """`how` over the window's values that are finite numbers (None when none is)."""
    numbers = [number for number in map(_number, map(_VALUE_OF, window)) if number is not None]
    return how(numbers) if numbers else None


def _number(value: str | None) -> float | None:
    """A field's value as a finite number, if it is one ("12", "0.5"; not "nan", "1e999")."""
    if value is None or len(value) > MAX_NUMBER_TEXT:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _percentile(percent: float, numbers: list[float]) -> float:
    """The nearest-rank percentile: the least value at least `percent` % of values reach."""
    ordered = sorted(numbers)
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


def _distinct_values(window: list[list[Any]]) -> int:
    distinct = set(map(_VALUE_OF, window))
    distinct.discard(None)
    return len(distinct)


def _rules_covered(window: list[list[Any]]) -> int:
    mask = 0
    for item in window:
        mask |= item[RULES]
    return mask.bit_count()
