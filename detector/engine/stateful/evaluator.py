"""The stateful evaluator: first seen, correlations and suppression over one State.

The engine hands it every record with the single-event rules that matched. It keeps the
watermark (latest eventTime minus the allowed lateness), drops duplicate eventIDs, feeds
first-seen rules (an event that may alert is decided once the watermark passes it, see
first_seen.py), correlations (decided at once, see correlation.py) and suppression windows,
and closes windows as the watermark moves. Alerts that suppression folds are never built.
Same accepted events in any arrival order -> same alert ids; docs/stateful-rules.md has the
full semantics.

A rule that raises on a record, or an entry that raises when the watermark reaches it, is
kept as a `Failure` (`take_failures`); the other rules and entries go on.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from detector.alerts import Alert, event_key, format_time
from detector.engine.evaluator import Failure, build_alert, failure
from detector.engine.rule import Rule, RuleSet
from detector.engine.state import JSON, State
from detector.engine.stateful.clock import Clock, RecentIds
from detector.engine.stateful.correlation import CorrelationUnit, Fire
from detector.engine.stateful.first_seen import FirstSeenUnit
from detector.engine.stateful.keys import (
    CORRELATION,
    FIRST_SEEN,
    SUPPRESSION,
    is_count,
    is_number,
)
from detector.engine.stateful.suppression import SuppressionSummary, Suppressor
from detector.events import Record

DEFAULT_LATENESS = 15 * 60.0
DEDUP_CAPACITY = 500_000
SWEEP_EVERY = 3600.0  # seconds of event time between sweeps of expired state


class _Schedule:
    """Entries waiting for the watermark, earliest first; one live item per entry."""

    def __init__(self) -> None:
        self.heap: list[tuple[float, str]] = []
        self.due: dict[str, float] = {}

    def add(self, skey: str, due: float) -> None:
        if self.due.get(skey, math.inf) > due:
            self.due[skey] = due
            heapq.heappush(self.heap, (due, skey))

    def first(self) -> float:
        """The earliest live due time (inf when empty)."""
        heap = self.heap
        while heap and self.due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else math.inf

    def pop(self) -> str:
        """Take out the earliest entry (call `first()` before: it drops stale items)."""
        _due, skey = heapq.heappop(self.heap)
        del self.due[skey]
        return skey

    def pop_due(self, limit: float) -> str | None:
        """Take out the earliest entry if it is due by `limit` (None when none is)."""
        return self.pop() if self.first() <= limit and self.heap else None


@dataclass(frozen=True, slots=True)
class _Route:
    """What a matched rule feeds: worked out once per rule, not per record."""

    first_seen: FirstSeenUnit | None
    suppressed: bool  # a single-event rule with suppression: its alerts go through a window
    feeds: bool  # a base rule of correlations


class Stateful:
    """Everything the engine remembers between records, behind the State interface."""

    def __init__(
        self,
        ruleset: RuleSet,
        state: State,
        *,
        lateness: float = DEFAULT_LATENESS,
        dedup_horizon: float | None = None,
        dedup_capacity: int = DEDUP_CAPACITY,
        clock: Clock | None = None,
    ) -> None:
        self.state = state
        self.clock = Clock(lateness) if clock is None else clock  # the stream passes its own
        self.recent = RecentIds(
            lateness + 3600.0 if dedup_horizon is None else dedup_horizon, dedup_capacity)
        self.suppressor = Suppressor(state)
        self.first_seen: dict[str, FirstSeenUnit] = {}
        self.correlations: dict[str, CorrelationUnit] = {}
        self.feeds: dict[str, list[CorrelationUnit]] = {}
        for correlation in ruleset.correlations:
            if not correlation.meta.enabled:
                continue
            unit = CorrelationUnit(correlation, state)
            self.correlations[correlation.id] = unit
            for base in correlation.rules:
                self.feeds.setdefault(base, []).append(unit)
            if correlation.meta.suppression is not None:
                self.suppressor.add_rule(correlation.meta, correlation.meta.suppression,
                                         bucket=correlation.timespan)
        for rule in ruleset.rules:
            if not rule.meta.enabled:
                continue
            if rule.first_seen is not None:
                later = [name for unit in self.feeds.get(rule.id, ()) for name in unit.fields_read]
                if rule.meta.suppression is not None:
                    later += rule.meta.suppression.by
                self.first_seen[rule.id] = FirstSeenUnit(rule, rule.first_seen, state, later)
            if rule.meta.suppression is not None:
                self.suppressor.add_rule(rule.meta, rule.meta.suppression)
        self.late = 0
        self.duplicates = 0
        self.failures: list[Failure] = []
        self._pending = _Schedule()  # first-seen entries holding events: due < watermark
        self._windows = _Schedule()  # correlation entries with tumbling windows to close
        self._folds = _Schedule()  # suppression entries with windows to close
        self._closed: list[SuppressionSummary] = []
        self._next_sweep = -math.inf
        self._wake = -math.inf  # nothing is due before the watermark reaches this
        self._routes = {
            rule.id: _Route(self.first_seen.get(rule.id),
                            rule.generates and rule.meta.suppression is not None,
                            rule.id in self.feeds)
            for rule in ruleset.rules if rule.meta.enabled and (
                rule.first_seen is not None or rule.meta.suppression is not None
                or rule.id in self.feeds)}

    def group_fields(self) -> dict[str, tuple[str, ...]]:
        """Per state-key prefix (`fs|<rule id>`, `co|<rule id>`, `su|<rule id>`), the fields
        its entries are keyed by: the stream layer repartitions the rule's events by these."""
        fields = {f"{SUPPRESSION}|{rule_id}": by
                  for rule_id, by in self.suppressor.group_fields().items()}
        fields.update({f"{FIRST_SEEN}|{rule_id}": unit.group_fields
                       for rule_id, unit in self.first_seen.items()})
        fields.update({f"{CORRELATION}|{rule_id}": unit.group_fields
                       for rule_id, unit in self.correlations.items()})
        return fields

    def admit(self, record: Record) -> bool:
        """False for a duplicate eventID: the engine then evaluates nothing for it."""
        if record.event_id and self.recent.seen(
            record.event_id, record.event_time, self.clock.watermark
        ):
            self.duplicates += 1
            return False
        return True

    def observe(self, record: Record, matched: Sequence[Rule]) -> list[Alert]:
        clock = self.clock
        event_time = record.event_time
        late = clock.is_late(event_time)
        if late:
            self.late += 1
        alerts: list[Alert] = []
        routes = self._routes
        watermark = clock.watermark
        horizon: float | None = None
        for rule in matched:
            route = routes.get(rule.meta.id)
            if route is None:
                continue
            try:
                if route.first_seen is not None:
                    held = None if late else route.first_seen.offer(record, watermark)
                    if held is not None:
                        self._schedule(self._pending, *held)
                    continue
                if route.suppressed:
                    if late:
                        alert = build_alert(rule.meta, "match", [record])
                        alerts.append(replace(alert, details={"late": True}))
                    else:
                        alerts += self._send(rule.id, partial(build_alert, rule.meta, "match",
                                                              [record]), record)
                if route.feeds and not late:
                    if horizon is None:
                        horizon = min(self._horizon(), event_time)
                    alerts += self._correlate(rule.meta.id, record, horizon)
            except Exception as error:
                self.failures.append(failure(rule.meta.id, record, error))
        clock.advance(event_time)
        watermark = clock.watermark
        if watermark >= self._wake:
            alerts += self._release(watermark)
        return alerts

    def flush(self, final: bool = True) -> list[Alert]:
        """End of input: decide the pending events now.

        `final`: no more input will ever come, so every event is decided and every window
        closes. Otherwise (the state is saved for a later run that continues the same stream)
        the events up to the clock's latest corroborated time are decided, and the rest (the
        latest record, if no other reached its time) carries over with the windows the
        watermark has not passed: a record far ahead decided now would make its key forget
        its baseline.
        """
        if final:
            return self._release(math.inf)
        alerts: list[Alert] = []
        waiting: list[str] = []
        while self._pending.first() < math.inf:
            waiting.append(self._pending.pop())
        before = math.nextafter(self.clock.max_seen, math.inf)
        for skey in waiting:
            alerts += self._guarded(self._decide, skey, before)
        return alerts + self._release(self.clock.watermark)

    def take_failures(self) -> list[Failure]:
        """The failures since the last call, oldest first."""
        failures, self.failures = self.failures, []
        return failures

    def closed_suppressions(self) -> list[SuppressionSummary]:
        """Summaries of the suppression windows closed since the last call."""
        closed, self._closed = self._closed, []
        return closed

    def stats(self) -> dict[str, int]:
        return {
            "late": self.late,
            "duplicates": self.duplicates,
            "state_entries": len(self.state),
            "pending_entries": len(self._pending.due),
            "remembered_event_ids": len(self.recent),
        }

    def dump(self) -> dict[str, Any]:
        """What besides the State entries a restart needs (JSON)."""
        return {
            "max_event_time": None if self.clock.max_seen == -math.inf else self.clock.max_seen,
            "latest_event_times": self.clock.latest.times(),
            "late": self.late,
            "duplicates": self.duplicates,
            "recent_event_ids": [[ident, when] for ident, when in self.recent.ids.items()],
        }

    @staticmethod
    def check_saved(saved: Any, latest: float) -> str | None:
        """Why `saved` is not `dump()` output (None when it is), for state files; its clock
        may not lie beyond `latest` (the wall clock plus the allowed skew)."""
        if not isinstance(saved, dict):
            return "the engine part is not an object"
        times = saved.get("latest_event_times", [])
        max_seen = saved.get("max_event_time")
        if (not isinstance(times, list) or not all(map(is_number, times))
                or not (max_seen is None or is_number(max_seen))):
            return "its event times are not numbers"
        if not is_count(saved.get("late")) or not is_count(saved.get("duplicates")):
            return "its late and duplicate counts are not counts"
        ids = saved.get("recent_event_ids")
        if not isinstance(ids, list) or not all(
                isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                and is_number(item[1]) for item in ids):
            return "its recent event ids are not [event id, time] pairs"
        ahead = max([*times, -math.inf if max_seen is None else max_seen])
        if ahead > latest:
            return (f"its clock ({format_time(ahead)}) lies ahead of the wall clock by more than "
                    "the allowed clock skew: every event would be late")
        return None

    def restore(self, saved: dict[str, Any]) -> None:
        """Take back `dump()` output once the State holds the saved entries."""
        max_seen, times = saved["max_event_time"], saved.get("latest_event_times")
        self.clock.load(None if max_seen is None else float(max_seen),
                           None if times is None else [float(when) for when in times])
        self.late, self.duplicates = int(saved["late"]), int(saved["duplicates"])
        self.recent.restore(saved["recent_event_ids"])
        self.resume()

    def resume(self) -> None:
        """Rebuild the in-memory schedule from the State, e.g. after a Table recovered."""
        for skey in self.state.all_keys():
            self._reschedule(skey, self.state.get(skey))

    def _reschedule(self, skey: str, entry: JSON) -> None:
        kind, rule_id = skey.split("|", 2)[:2]
        if kind == FIRST_SEEN and rule_id in self.first_seen:
            due = self.first_seen[rule_id].due(entry)
            if due is not None:
                self._schedule(self._pending, skey, due)
        elif kind == CORRELATION and rule_id in self.correlations:
            due = self.correlations[rule_id].due(entry)
            if due is not None:
                self._schedule(self._windows, skey, due)
        elif kind == SUPPRESSION:
            due = self.suppressor.due(skey, entry)
            if due is not None:
                self._schedule(self._folds, skey, due)

    def _schedule(self, schedule: _Schedule, skey: str, due: float) -> None:
        schedule.add(skey, due)
        self._wake = min(self._wake, due)

    def _horizon(self) -> float:
        """The oldest eventTime a correlation can still be fed: watermark or a pending event."""
        return min(self.clock.watermark, self._pending.first())

    def _send(self, rule_id: str, build: Callable[[], Alert], trigger: Record,
              when: float | None = None, ident: str | None = None) -> list[Alert]:
        """The alert `build` makes, through its rule's suppression if it has one (nothing when
        folded: then it is not built at all)."""
        if not self.suppressor.covers(rule_id):
            return [build()]
        opened, skey, due = self.suppressor.offer(
            rule_id, trigger, trigger.event_time if when is None else when,
            event_key(trigger) if ident is None else ident)
        if due is not None:
            self._schedule(self._folds, skey, due)
        return [] if opened is None else [opened.dress(build())]

    def _correlate(self, rule_id: str, record: Record, horizon: float) -> list[Alert]:
        """Feed the correlations `rule_id` is a base rule of.

        `horizon`: the oldest eventTime a correlation can still be fed. A first-seen event is
        fed when decided, which can be after the watermark passed it: the windows ending at it
        still need the events before it, hence the horizon is never later than the event.
        """
        alerts: list[Alert] = []
        for unit in self.feeds[rule_id]:
            fires, skey, due = unit.add(record, rule_id, horizon)
            if due is not None:
                self._schedule(self._windows, skey, due)
            if fires:
                alerts += self._correlation_alerts(unit, fires)
        return alerts

    def _correlation_alerts(self, unit: CorrelationUnit, fires: list[Fire]) -> list[Alert]:
        alerts: list[Alert] = []
        correlation = unit.correlation
        for fire in fires:
            def build(fire: Fire = fire) -> Alert:
                alert = build_alert(correlation.meta, correlation.type, fire.records(),
                                    group_key=fire.group_key, details=fire.details())
                return replace(alert, id=fire.alert_id)
            alerts += self._send(correlation.id, build, fire.trigger(), fire.start,
                                 fire.alert_id)
        return alerts

    def _release(self, watermark: float) -> list[Alert]:
        """Take the decisions and close the windows the watermark allows, oldest first.

        Ordering rule: a window closes only once nothing can fall into it any more. Later
        input cannot (it is at or after the watermark), but an undecided first-seen event
        can: once decided it is sent to its rule's suppression window and fed to correlations,
        all of whose windows end after it. So windows close up to `limit`, the watermark or
        the oldest pending event if earlier, never beyond; the rest waits until that event is
        decided. Among windows due by the limit, correlation windows close before suppression
        windows, since a closing correlation window sends its alert into one.
        """
        alerts: list[Alert] = []
        while True:  # each turn takes one entry off a schedule, so this ends
            oldest = self._pending.first()
            limit = min(watermark, oldest)
            if (skey := self._windows.pop_due(limit)) is not None:
                alerts += self._guarded(self._close_windows, skey, limit)
            elif (skey := self._folds.pop_due(limit)) is not None:
                alerts += self._guarded(self._close_folds, skey, limit)
            elif oldest < watermark:
                alerts += self._guarded(self._decide, self._pending.pop(), watermark)
            else:
                break
        if watermark >= self._next_sweep and watermark != math.inf:
            alerts += self._sweep(watermark)
            self._next_sweep = watermark + SWEEP_EVERY
        self._wake = min(self._pending.first(), self._windows.first(), self._folds.first(),
                         self._next_sweep)
        return alerts

    def _decide(self, skey: str, watermark: float) -> list[Alert]:
        unit = self.first_seen[skey.split("|", 2)[1]]
        fired, due = unit.release(skey, watermark)
        if due is not None:
            self._schedule(self._pending, skey, due)
        alerts: list[Alert] = []
        rule = unit.rule
        for record, details in fired:
            if rule.generates:
                group_key = unit.key_fields.mapping(unit.key_fields.values(record.data))
                alerts += self._send(rule.id, partial(
                    build_alert, rule.meta, "first_seen", [record], group_key=group_key,
                    details=details), record)
            if rule.id in self.feeds:
                alerts += self._correlate(rule.id, record, min(self._horizon(),
                                                                record.event_time))
        return alerts

    def _close_windows(self, skey: str, until: float) -> list[Alert]:
        """Test a correlation's tumbling windows that ended by `until`."""
        unit = self.correlations[skey.split("|", 2)[1]]
        fires, due = unit.close(skey, until)
        if due is not None:
            self._schedule(self._windows, skey, due)
        return self._correlation_alerts(unit, fires)

    def _close_folds(self, skey: str, until: float) -> list[Alert]:
        """Close a rule's suppression windows final by `until`, keeping their summaries."""
        summaries, due = self.suppressor.close(skey, until)
        self._closed += summaries
        if due is not None:
            self._schedule(self._folds, skey, due)
        return []

    def _guarded(self, step: Callable[[str, float], list[Alert]], skey: str,
                 until: float) -> list[Alert]:
        """One entry's step as the watermark moves; a failure costs that entry's step only."""
        try:
            return step(skey, until)
        except Exception as error:
            self.failures.append(failure(skey.split("|", 2)[1] if "|" in skey else None,
                                         None, error))
            return []

    def _sweep(self, watermark: float) -> list[Alert]:
        """Forget what no later event can need: expired first-seen values, old windows.

        First-seen events held back to be applied in bulk enter their values first.
        """
        alerts: list[Alert] = []
        horizon = self._horizon()
        for skey in self.state.all_keys():
            alerts += self._guarded(partial(self._sweep_entry, horizon=horizon), skey, watermark)
        return alerts

    def _sweep_entry(self, skey: str, watermark: float, horizon: float) -> list[Alert]:
        kind, rule_id = skey.split("|", 2)[:2]
        alerts: list[Alert] = []
        if kind == FIRST_SEEN and rule_id in self.first_seen:
            alerts += self._decide(skey, watermark)
        entry = self.state.get(skey)
        if entry is None:
            return alerts
        if kind == FIRST_SEEN and rule_id in self.first_seen:
            self.first_seen[rule_id].sweep(skey, entry, watermark)
        elif kind == CORRELATION and rule_id in self.correlations:
            self.correlations[rule_id].sweep(skey, entry, horizon)
        return alerts
