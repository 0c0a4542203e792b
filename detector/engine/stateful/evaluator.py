"""The stateful evaluator: first seen and rare values, rate baselines, correlations and
suppression over one State.

The engine hands it every record with the single-event rules that matched. It keeps the
watermark (latest eventTime minus the allowed lateness), drops duplicate eventIDs, feeds
first-seen and rare-value rules (decided at once, see first_seen.py), baselines (decided when
a bucket reaches its threshold, see baseline.py), correlations (decided at once, or when the
watermark closes a window whose condition needs all of it, see correlation.py) and
suppression windows, and closes windows as the watermark moves. Alerts that suppression folds
are never built. Same accepted events in any arrival order -> same alert ids, but for the
cases docs/stateful-rules.md lists (counted in `stats()["contradicted"]`).

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
from detector.engine.rule import Baseline, Rule, RuleSet
from detector.engine.state import JSON, State
from detector.engine.stateful.baseline import BaselineUnit, Verdict
from detector.engine.stateful.clock import Clock, RecentIds
from detector.engine.stateful.correlation import CorrelationUnit, Fire
from detector.engine.stateful.first_seen import Decision, FirstSeenUnit
from detector.engine.stateful.keys import (
    CORRELATION,
    FIRST_SEEN,
    MAX_ENTRY_BYTES,
    SUPPRESSION,
    entry_budget,
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
    baseline: BaselineUnit | None
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
        max_entry_bytes: int = MAX_ENTRY_BYTES,
    ) -> None:
        """`max_entry_bytes`: the largest message the changelog holding the entries takes
        (keys.over_budget keeps every entry under it)."""
        budget = entry_budget(max_entry_bytes)
        self.state = state
        self.clock = Clock(lateness) if clock is None else clock  # the stream passes its own
        self.recent = RecentIds(
            lateness + 3600.0 if dedup_horizon is None else dedup_horizon, dedup_capacity)
        self.suppressor = Suppressor(state)
        self.first_seen: dict[str, FirstSeenUnit] = {}
        self.baselines: dict[str, BaselineUnit] = {}
        self.correlations: dict[str, CorrelationUnit] = {}
        self.feeds: dict[str, list[CorrelationUnit]] = {}
        for correlation in ruleset.correlations:
            if not correlation.meta.enabled:
                continue
            unit = CorrelationUnit(correlation, state, budget)
            self.correlations[correlation.id] = unit
            for base in correlation.rules:
                self.feeds.setdefault(base, []).append(unit)
            if correlation.meta.suppression is not None:
                self.suppressor.add_rule(correlation.meta, correlation.meta.suppression,
                                         bucket=correlation.timespan)
        for rule in ruleset.rules:
            if not rule.meta.enabled:
                continue
            if isinstance(rule.per_key, Baseline):
                self.baselines[rule.id] = BaselineUnit(rule, rule.per_key, state)
            elif rule.per_key is not None:
                self.first_seen[rule.id] = FirstSeenUnit(rule, rule.per_key, state, budget)
            if rule.meta.suppression is not None:
                self.suppressor.add_rule(
                    rule.meta, rule.meta.suppression,
                    bucket=rule.per_key.bucket if isinstance(rule.per_key, Baseline)
                    else None)
        self.late = 0
        self.duplicates = 0
        self.failures: list[Failure] = []
        self._buckets = _Schedule()  # baseline entries with buckets to test or fold
        self._windows = _Schedule()  # correlation entries with tumbling windows to close
        self._folds = _Schedule()  # suppression entries with windows to close
        self._closed: list[SuppressionSummary] = []
        self._next_sweep = -math.inf
        self._wake = -math.inf  # nothing is due before the watermark reaches this
        self._routes = {
            rule.id: _Route(self.first_seen.get(rule.id), self.baselines.get(rule.id),
                            rule.generates and rule.meta.suppression is not None,
                            rule.id in self.feeds)
            for rule in ruleset.rules if rule.meta.enabled and (
                rule.per_key is not None or rule.meta.suppression is not None
                or rule.id in self.feeds)}

    def group_fields(self) -> dict[str, tuple[str, ...]]:
        """Per state-key prefix (`fs|<rule id>`, `co|<rule id>`, `su|<rule id>`), the fields
        its entries are keyed by: the stream layer repartitions the rule's events by these."""
        fields = {f"{SUPPRESSION}|{rule_id}": by
                  for rule_id, by in self.suppressor.group_fields().items()}
        fields.update({f"{FIRST_SEEN}|{rule_id}": unit.group_fields
                       for rule_id, unit in self.first_seen.items()})
        fields.update({f"{FIRST_SEEN}|{rule_id}": unit.group_fields
                       for rule_id, unit in self.baselines.items()})
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
        horizon = min(watermark, event_time)
        for rule in matched:
            route = routes.get(rule.meta.id)
            if route is None:
                continue
            try:
                if route.first_seen is not None:
                    decision = None if late else route.first_seen.offer(record,
                                                                        clock.max_seen)
                    if decision is not None:
                        alerts += self._decided(route.first_seen, decision)
                    continue
                if route.baseline is not None:
                    if not late:
                        verdicts, skey, due = route.baseline.offer(
                            record, watermark, self._buckets.due)
                        if due is not None and skey is not None:
                            self._schedule(self._buckets, skey, due)
                        alerts += self._verdicts(route.baseline, verdicts)
                    continue
                if route.suppressed:
                    if late:
                        alert = build_alert(rule.meta, "match", [record])
                        alerts.append(replace(alert, details={"late": True}))
                    else:
                        alerts += self._send(rule.id, partial(build_alert, rule.meta, "match",
                                                              [record]), record)
                if route.feeds and not late:
                    alerts += self._correlate(rule.meta.id, record, horizon)
            except Exception as error:
                self.failures.append(failure(rule.meta.id, record, error))
        clock.advance(event_time)
        watermark = clock.watermark
        if watermark >= self._wake:
            alerts += self._release(watermark)
        return alerts

    def flush(self, final: bool = True) -> list[Alert]:
        """End of input: close what the watermark allows.

        `final`: no more input will ever come, so every window and bucket closes. Otherwise
        (the state is saved for a later run that continues the same stream) only those the
        watermark has passed: the rest carries over with the state.
        """
        return self._release(math.inf if final else self.clock.watermark)

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
            "pending_entries": len(self._buckets.due) + len(self._windows.due),
            "contradicted": sum(unit.contradicted for unit in self.first_seen.values()),
            "trimmed": sum(unit.trimmed for unit in self.first_seen.values())
            + sum(unit.trimmed for unit in self.correlations.values()),
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
        if kind == FIRST_SEEN and rule_id in self.baselines:
            due = self.baselines[rule_id].due(entry, self.clock.watermark)
            if due is not None:
                self._schedule(self._buckets, skey, due)
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

        `horizon`: the oldest eventTime a correlation can still be fed (the watermark, or the
        event's time if earlier: a baseline bucket tested when its history closed is fed after
        the watermark passed its record).
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
        """Test the buckets and close the windows the watermark allows, oldest first.

        Among entries due by the watermark, baseline buckets and correlation windows come
        before suppression windows, since their alerts go into one.
        """
        alerts: list[Alert] = []
        while True:  # each turn takes one entry off a schedule, so this ends
            if (skey := self._buckets.pop_due(watermark)) is not None:
                alerts += self._guarded(self._test_buckets, skey, watermark)
            elif (skey := self._windows.pop_due(watermark)) is not None:
                alerts += self._guarded(self._close_windows, skey, watermark)
            elif (skey := self._folds.pop_due(watermark)) is not None:
                alerts += self._guarded(self._close_folds, skey, watermark)
            else:
                break
        if watermark >= self._next_sweep and watermark != math.inf:
            self._sweep(watermark)
            self._next_sweep = watermark + SWEEP_EVERY
        self._wake = min(self._buckets.first(), self._windows.first(), self._folds.first(),
                         self._next_sweep)
        return alerts

    def _decided(self, unit: FirstSeenUnit, decision: Decision) -> list[Alert]:
        """The alert of a first-seen or rare value, and the correlations it feeds."""
        rule, record = unit.rule, decision.record
        alerts: list[Alert] = []
        if rule.generates:
            group_key = unit.key_fields.mapping(unit.key_fields.values(record.data))

            def build() -> Alert:
                alert = build_alert(rule.meta, unit.kind, [record], group_key=group_key,
                                    details=decision.details)
                return replace(alert, id=decision.alert_id)
            alerts += self._send(rule.id, build, record, ident=decision.alert_id)
        if rule.id in self.feeds:
            alerts += self._correlate(rule.id, record,
                                      min(self.clock.watermark, record.event_time))
        return alerts

    def _verdicts(self, unit: BaselineUnit, verdicts: list[Verdict]) -> list[Alert]:
        """The alerts of baseline buckets that reached their threshold."""
        rule = unit.rule
        alerts: list[Alert] = []
        for verdict in verdicts:
            if rule.generates:
                def build(verdict: Verdict = verdict) -> Alert:
                    alert = build_alert(
                        rule.meta, "baseline", [verdict.record],
                        group_key=unit.key_fields.mapping(
                            unit.key_fields.values(verdict.record.data)),
                        details=verdict.details)
                    return replace(alert, id=verdict.alert_id)
                alerts += self._send(rule.id, build, verdict.record, verdict.start,
                                     verdict.alert_id)
            if rule.id in self.feeds:
                alerts += self._correlate(rule.id, verdict.record,
                                          min(self.clock.watermark, verdict.record.event_time))
        return alerts

    def _test_buckets(self, skey: str, until: float) -> list[Alert]:
        """Test a baseline's buckets whose history closed and fold those that ended."""
        unit = self.baselines[skey.split("|", 2)[1]]
        verdicts, due = unit.release(skey, until)
        if due is not None:
            self._schedule(self._buckets, skey, due)
        return self._verdicts(unit, verdicts)

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

    def _sweep(self, watermark: float) -> None:
        """Forget what no later event can need: expired values and keys, old windows."""
        for skey in self.state.all_keys():
            self._guarded(self._sweep_entry, skey, watermark)

    def _sweep_entry(self, skey: str, watermark: float) -> list[Alert]:
        kind, rule_id = skey.split("|", 2)[:2]
        entry = self.state.get(skey)
        if entry is None:
            return []
        if kind == FIRST_SEEN and rule_id in self.first_seen:
            self.first_seen[rule_id].sweep(skey, entry, watermark)
        elif kind == FIRST_SEEN and rule_id in self.baselines:
            self.baselines[rule_id].sweep(skey, entry, watermark)
        elif kind == CORRELATION and rule_id in self.correlations:
            self.correlations[rule_id].sweep(skey, entry, watermark)
        return []
