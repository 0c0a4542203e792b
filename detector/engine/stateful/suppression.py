"""Suppression: one alert per rule, `by` values and window; repeats are folded into it.

Windows are epoch-aligned in event time, `[k * window, (k + 1) * window)`, so which alert is
"the first" of a window does not depend on arrival order: the alert that goes out carries
the id (rule, `by` values, window start), whichever matching event arrived first. Repeats in
the window are counted (first and last eventTime, a sample of the earliest event ids); when
the watermark passes the window's end the fold is closed and, if anything was folded, handed
out as a `SuppressionSummary`. An event older than the watermark is not folded (its window
may be gone): it alerts on its own.

Entry per rule and `by` values: `{"w": [[start, count, first, last, [[time, event id], ...]]]}`,
one item per open window (a few, with late events).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, replace
from typing import Any

from detector.alerts import Alert, format_time
from detector.engine.rule import Meta, Suppression
from detector.engine.state import JSON, State
from detector.engine.stateful.keys import (
    SUPPRESSION,
    Fields,
    bucket_start,
    parse_state_key,
    state_key,
    window_alert_id,
)
from detector.events import Record

SAMPLE_SIZE = 10


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


class Suppressor:
    """The suppression windows of every rule that has `detector.suppress`."""

    def __init__(self, state: State) -> None:
        self.state = state
        self._rules: dict[str, tuple[Meta, Suppression, Fields]] = {}

    def add_rule(self, meta: Meta, spec: Suppression) -> None:
        self._rules[meta.id] = (meta, spec, Fields(spec.by))

    def covers(self, rule_id: str) -> bool:
        return rule_id in self._rules

    def group_fields(self) -> dict[str, tuple[str, ...]]:
        return {rule_id: spec.by for rule_id, (_meta, spec, _fields) in self._rules.items()}

    def offer(
        self, alert: Alert, trigger: Record, when: float, ident: str
    ) -> tuple[Alert | None, str, float | None]:
        """The alert to send (None when folded), the entry's key, and a new window's end.

        `when` places the alert in a window and `ident` names it in the sample: the event's
        time and id for single-event and first-seen rules; for a correlation, the start of its
        bucket and its alert id, which (unlike its last event) do not depend on arrival order.
        """
        meta, spec, fields = self._rules[alert.rule_id]
        values = fields.values(trigger.data)
        skey = state_key(SUPPRESSION, meta.id, values)
        entry: dict[str, Any] = self.state.get(skey) or {"w": []}
        start = bucket_start(when, spec.window)
        sample = [when, ident]
        for window in entry["w"]:
            if window[0] == start:
                window[1] += 1
                window[2] = min(window[2], when)
                window[3] = max(window[3], when)
                if sample not in window[4]:
                    bisect.insort(window[4], sample)
                    del window[4][SAMPLE_SIZE:]
                self.state.put(skey, entry)
                return None, skey, None
        entry["w"].append([start, 1, when, when, [sample]])
        self.state.put(skey, entry)
        group_key = fields.mapping(values)
        details = {**alert.details, "suppression": {
            "by": group_key,
            "window_start": format_time(start),
            "window_end": format_time(start + spec.window),
        }}
        sent = replace(alert, id=window_alert_id(meta.id, group_key, "suppress", start),
                       group_key=alert.group_key or group_key, details=details)
        return sent, skey, start + spec.window

    def close(self, skey: str, watermark: float) -> tuple[list[SuppressionSummary], float | None]:
        """Close the windows that ended by `watermark`; (summaries, next due time)."""
        entry = self.state.get(skey)
        _kind, rule_id, values = parse_state_key(skey)
        if entry is None or rule_id not in self._rules:
            return [], None
        meta, spec, fields = self._rules[rule_id]
        group_key = fields.mapping(values)
        summaries: list[SuppressionSummary] = []
        still_open: list[list[Any]] = []
        for window in entry["w"]:
            start, count, first, last, sample = window
            if start + spec.window > watermark:
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
        rule = self._rules.get(parse_state_key(skey)[1])
        if rule is None or not entry["w"]:
            return None
        return float(min(window[0] for window in entry["w"])) + rule[1].window
