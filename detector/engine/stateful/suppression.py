"""Suppression: one alert per rule, `by` values and window; repeats are folded into it.

Windows are epoch-aligned in event time, `[k * window, (k + 1) * window)`, so which alert is
"the first" of a window does not depend on arrival order: the alert that goes out carries
the id (rule, `by` values, window start), whichever matching event arrived first. Repeats in
the window are counted (first and last eventTime, a sample of the earliest event ids); when
the watermark passes the window's end the fold is closed and, if anything was folded, handed
out as a `SuppressionSummary`. An event older than the watermark is not folded (its window
may be gone): it alerts on its own.

A correlation alert belongs to the window holding the start of its bucket (its id names
the bucket, so that does not depend on arrival order). When the window is shorter than the
correlation's timespan, or not aligned with it, a bucket that starts in the window can still
fire after the window's end; so a correlation's window stays open until every bucket starting
in it is final: its closing time is rounded up to a multiple of the timespan.

Entry per rule and `by` values: `{"w": [[start, count, first, last, [[time, event id], ...]]]}`,
one item per open window (a few, with late events); positions are named by `START` ... `SAMPLE`.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, replace
from typing import Any

from detector.alerts import Alert, format_time
from detector.engine.rule import Meta, Suppression
from detector.engine.state import JSON, State
from detector.engine.stateful.keys import (
    SUPPRESSION,
    Fields,
    bucket_start,
    is_count,
    is_number,
    key_prefix,
    parse_state_key,
    shared_fields,
    window_alert_id,
)
from detector.events import Record

SAMPLE_SIZE = 10
# Positions in a window item of an entry's "w" list.
START, COUNT, FIRST, LAST, SAMPLE = range(5)


@dataclass(frozen=True, slots=True)
class SuppressionSummary:
    """What a closed suppression window folded into the alert it let through."""

    rule_id: str
    rule_title: str
    alert_id: str
    group_key: dict[str, str | None]
    window_start: str
    window_end: str
    count: int  # matching alerts in the window, the one sent included
    first_event: str  # for correlations: the first and last bucket start
    last_event: str
    sample_event_ids: tuple[str, ...]  # for correlations: ids of the folded alerts

    def to_dict(self) -> dict[str, Any]:
        return {name: list(value) if isinstance(value, tuple) else value
                for name in self.__slots__ for value in (getattr(self, name),)}

    def describe(self) -> str:
        return (f"{self.rule_title} ({self.rule_id}) {self.group_key}: {self.count - 1} repeat(s) "
                f"folded into {self.alert_id} between {self.first_event} and {self.last_event}")


def format_suppressions(summaries: list[SuppressionSummary], limit: int = 20) -> str:
    """The closing lines of a scan: how much suppression folded, the largest folds first
    (nothing when nothing was folded)."""
    if not summaries:
        return ""
    ordered = sorted(summaries, key=lambda item: (-item.count, item.rule_title, item.alert_id))
    lines = [f"suppressed repeats: {sum(item.count - 1 for item in summaries)} in "
             f"{len(summaries)} window(s)"]
    lines += [f"  {item.describe()}" for item in ordered[:limit]]
    if len(ordered) > limit:
        lines.append(f"  ... and {len(ordered) - limit} more")
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Opened:
    """A suppression window an alert opened: the alert goes out under the window's id."""

    alert_id: str
    group_key: dict[str, str | None]
    details: dict[str, Any]

    def dress(self, alert: Alert) -> Alert:
        return replace(alert, id=self.alert_id, group_key=alert.group_key or self.group_key,
                       details={**alert.details, "suppression": self.details})


@dataclass(frozen=True, slots=True)
class _Rule:
    meta: Meta
    spec: Suppression
    fields: Fields
    bucket: float | None  # a correlation's timespan: its alerts are placed by bucket start
    prefix: str  # of its state keys

    def closes(self, start: float) -> float:
        """When the window starting at `start` is final: its end, or for a correlation the end
        of the last bucket that starts in it."""
        end = start + self.spec.window
        if self.bucket is None or self.bucket <= 0:
            return end
        return math.ceil(end / self.bucket) * self.bucket


class Suppressor:
    """The suppression windows of every rule that has `detector.suppress`."""

    def __init__(self, state: State) -> None:
        self.state = state
        self._rules: dict[str, _Rule] = {}

    def add_rule(self, meta: Meta, spec: Suppression, bucket: float | None = None) -> None:
        """`bucket`: the timespan, when the rule is a correlation (see the module docstring)."""
        self._rules[meta.id] = _Rule(meta, spec, shared_fields(spec.by), bucket,
                                     key_prefix(SUPPRESSION, meta.id))

    def covers(self, rule_id: str) -> bool:
        return rule_id in self._rules

    def group_fields(self) -> dict[str, tuple[str, ...]]:
        return {rule_id: rule.spec.by for rule_id, rule in self._rules.items()}

    def offer(
        self, rule_id: str, trigger: Record, when: float, ident: str
    ) -> tuple[Opened | None, str, float | None]:
        """Place one alert of `rule_id`: the window it opens (None when folded into an open
        one), the entry's key, and that window's closing time. The caller builds the alert
        only when it goes out.

        `when` places the alert in a window and `ident` names it in the sample: the event's
        time and id for single-event and first-seen rules; for a correlation, the start of its
        bucket and its alert id, which (unlike its last event) do not depend on arrival order.
        """
        rule = self._rules[rule_id]
        meta, spec, fields = rule.meta, rule.spec, rule.fields
        values = fields.values(trigger.data)
        skey = rule.prefix + fields.key(trigger.data)
        entry: dict[str, Any] = self.state.get(skey) or {"w": []}
        start = bucket_start(when, spec.window)
        sample = [when, ident]
        for window in entry["w"]:
            if window[START] == start:
                window[COUNT] += 1
                window[FIRST] = min(window[FIRST], when)
                window[LAST] = max(window[LAST], when)
                if sample not in window[SAMPLE]:
                    bisect.insort(window[SAMPLE], sample)
                    del window[SAMPLE][SAMPLE_SIZE:]
                self.state.put(skey, entry)
                return None, skey, None
        entry["w"].append([start, 1, when, when, [sample]])
        self.state.put(skey, entry)
        group_key = fields.mapping(values)
        opened = Opened(window_alert_id(meta.id, group_key, "suppress", start), group_key, {
            "by": group_key,
            "window_start": format_time(start),
            "window_end": format_time(start + spec.window),
        })
        return opened, skey, rule.closes(start)

    def close(self, skey: str, until: float) -> tuple[list[SuppressionSummary], float | None]:
        """Close the windows final by `until`; (summaries, next due time)."""
        entry = self.state.get(skey)
        _kind, rule_id, values = parse_state_key(skey)
        if entry is None or rule_id not in self._rules:
            return [], None
        rule = self._rules[rule_id]
        meta, spec = rule.meta, rule.spec
        group_key = rule.fields.mapping(values)
        summaries: list[SuppressionSummary] = []
        still_open: list[list[Any]] = []
        for window in entry["w"]:
            start, count, first, last, sample = window
            if rule.closes(start) > until:
                still_open.append(window)
            elif count > 1:
                summaries.append(SuppressionSummary(
                    meta.id, meta.title, window_alert_id(meta.id, group_key, "suppress", start),
                    group_key, format_time(start), format_time(start + spec.window), count,
                    format_time(first), format_time(last), tuple(item[1] for item in sample)))
        if still_open:
            self.state.put(skey, {"w": still_open})
        else:
            self.state.delete(skey)
        return summaries, self.due(skey, {"w": still_open})

    def due(self, skey: str, entry: JSON) -> float | None:
        """When the entry next needs the watermark: its oldest window is final then."""
        rule = self._rules.get(parse_state_key(skey)[1])
        if rule is None or not entry["w"]:
            return None
        return rule.closes(float(min(window[START] for window in entry["w"])))


def check_entry(entry: JSON) -> str | None:
    """Why `entry` is not a suppression entry (None when it is one), for state files."""
    if not isinstance(entry, dict) or set(entry) != {"w"} or not isinstance(entry["w"], list):
        return 'a suppression entry is {"w": [windows]}'
    for window in entry["w"]:
        if not (isinstance(window, list) and len(window) == 5 and is_number(window[START])
                and is_count(window[COUNT]) and window[COUNT] > 0 and is_number(window[FIRST])
                and is_number(window[LAST]) and isinstance(window[SAMPLE], list)
                and all(isinstance(item, list) and len(item) == 2 and is_number(item[0])
                        and isinstance(item[1], str) for item in window[SAMPLE])):
            return "a window is not [start, count, first, last, [[time, event id], ...]]"
    return None
