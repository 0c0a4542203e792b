"""The engine: records in, alerts out. Pure: no I/O, no Kafka, no clocks except `now`.

Single-event rules are looked up by (eventSource, eventName) and their predicates run on the
record dict. Rules that need memory (first seen, suppression, correlations) are handed to the
stateful evaluator, which keeps its state behind the State interface.

One record goes through three steps, the same in `detector scan` and in the stream worker
(which matches on its input side and takes the other steps where the record's state lives):
`admit` (is it a redelivered event?), `evaluate` (the single-event rules: the stateless
alerts, and the matches the stateful rules take) and `observe` (the stateful decisions).
`process` takes the three in order. Scan takes them in two halves (`arrive`: the single-event
rules as a record is read; `settle`: admission and `observe` once event-time order reaches it).

No record can stop the engine: an exception while evaluating one is caught at the record
boundary, per rule where it can be (one failing rule does not cost the record its other rules'
alerts), and kept as a `Failure` for the caller to count, log and dead-letter
(`take_failures`). Failures are bugs or resources running out, never verdicts on the input.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import orjson

from detector.alerts import (
    Alert,
    EventSummary,
    alert_document,
    alert_id,
    event_key,
    format_time,
    match_alert_id,
    now_iso,
    rule_document,
    summary_document,
)
from detector.bounded import bounded_text
from detector.engine.index import RuleIndex
from detector.engine.rule import Meta, Rule, RuleSet
from detector.events import Record

MAX_ERROR_TEXT = 500  # characters of an exception's text kept in a Failure
_SORTED_LINE = orjson.OPT_APPEND_NEWLINE | orjson.OPT_SORT_KEYS
_NO_DATA: dict[str, Any] = {}
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Failure:
    """A rule (None: the record as a whole) that raised while evaluating one record (None: a
    decision taken later, when the watermark moved)."""

    rule_id: str | None
    event_id: str | None
    error: str  # the exception's type and text, bounded


def failure(rule_id: str | None, record: Record | None, error: BaseException) -> Failure:
    return Failure(rule_id, None if record is None else record.event_id,
                   bounded_text(f"{type(error).__name__}: {error}", MAX_ERROR_TEXT))


class StatefulEvaluator(Protocol):
    """What the engine needs from the stateful part (first seen, suppression, correlations)."""

    def admit(self, record: Record) -> bool: ...

    def observe(self, record: Record, matched: Sequence[Rule]) -> list[Alert]: ...


@dataclass(slots=True)
class Matches:
    """What the single-event rules make of one record."""

    alerts: list[Alert]  # of the rules that alert on their own (no memory)
    rules: list[Rule]  # every rule that matched: the stateful part takes those it keeps state for


def build_alert(
    meta: Meta,
    kind: str,
    records: Sequence[Record],
    *,
    group_key: Mapping[str, Any] | None = None,
    details: dict[str, Any] | None = None,
    now: Callable[[], str] = now_iso,
) -> Alert:
    """An alert about `records` (the last one is the trigger; its fields render the text)."""
    trigger = records[-1]
    event_ids = tuple(map(event_key, records))
    return Alert(
        alert_id(meta.id, group_key, event_ids),
        meta.id,
        meta.title,
        meta.level,
        meta.tags,
        kind,
        meta.output.render(trigger.data) if meta.output else meta.title,
        format_time(trigger.event_time),
        now(),
        dict(group_key) if group_key else None,
        event_ids,
        tuple(map(EventSummary.of, records)),
        details or {},
    )


class MatchJson:
    """A rule's single-event alert as a JSON line: the bytes of
    `build_alert(meta, "match", [record]).to_json()` and a line break, written without
    building the alert and its summary (what scan writes for every alerting record)."""

    __slots__ = ("alert_id", "meta", "rule")

    def __init__(self, meta: Meta) -> None:
        self.meta = meta
        self.rule = orjson.Fragment(orjson.dumps(
            rule_document(meta.id, meta.title, meta.level, meta.tags), option=orjson.OPT_SORT_KEYS))
        self.alert_id = match_alert_id(meta.id)

    def __call__(self, record: Record, now: Callable[[], str] = now_iso) -> bytes:
        meta = self.meta
        summary = summary_document(record)
        key = record.event_id or event_key(record)
        document = alert_document(
            identifier=self.alert_id(key),
            rule=self.rule,
            kind="match",
            text=meta.output.render(record.data) if meta.output else meta.title,
            event_time=summary["event_time"],
            detected_at=now(),
            group_key=None,
            event_ids=[key],
            events=[summary],
            details={},
        )
        try:
            return orjson.dumps(document, option=_SORTED_LINE)
        except orjson.JSONEncodeError:  # a value no builder bounded: as `Alert.to_json` does
            detected = document["detected_at"]
            return build_alert(meta, "match", [record], now=lambda: detected).to_json() + b"\n"


@dataclass(slots=True)
class Arrival(Generic[T]):
    """What the single-event rules made of a record on its arrival, waiting for its turn in
    event-time order (`StatefulEngine.settle`): its alerts (as `build` made them) and the
    failures of its rules, kept until it is admitted; the record itself only when a rule the
    stateful part observes matched it, else a stand-in of its time and eventID."""

    record: Record
    matched: list[Rule]  # what `observe` takes: empty when the stand-in is kept
    alerts: list[tuple[Meta, T]]
    failures: list[Failure]


def is_stateless(rule: Rule) -> bool:
    return rule.generates and rule.per_key is None and rule.meta.suppression is None


class Engine:
    """Evaluates records against one rule set. Disabled rules are not evaluated at all."""

    def __init__(self, ruleset: RuleSet, stateful: StatefulEvaluator | None = None) -> None:
        self.ruleset = ruleset
        self.stateful = stateful
        active = [rule for rule in ruleset.rules if rule.meta.enabled]
        self.index: RuleIndex[Rule] = RuleIndex((rule.index_key, rule) for rule in active)
        self.rule_count = len(active) + sum(
            1 for correlation in ruleset.correlations if correlation.meta.enabled
        )
        self.failures: list[Failure] = []
        # the rules whose matches `observe` takes: any rule, for an evaluator not known better
        self.observed = frozenset(rule.id for rule in active) if stateful else frozenset()
        self.alerting = frozenset(rule.id for rule in active if is_stateless(rule))

    def match(self, record: Record) -> list[Rule]:
        """The enabled single-event rules whose detection holds for the record."""
        data = record.data
        return [
            rule
            for rule in self.index.candidates(record.event_source, record.event_name)
            if rule.predicate(data)
        ]

    def admit(self, record: Record) -> bool:
        """False for a redelivered event (an eventID seen lately): nothing is evaluated for it.
        An engine without memory admits every record."""
        if self.stateful is None:
            return True
        try:
            return self.stateful.admit(record)
        except Exception as error:
            self.failures.append(failure(None, record, error))
            return False

    def evaluate(self, record: Record) -> Matches:
        """The single-event rules on one record: the alerts of those without memory, and every
        match (for `observe`, here or where the record's state lives)."""
        matched = self.matching(record)
        return Matches(self.alerts(record, matched), matched)

    def matching(self, record: Record) -> list[Rule]:
        """`match`, with a rule that raises kept as a failure and the others' matches kept."""
        try:
            return self.match(record)
        except Exception:  # some rule raised: find which
            return self._match_each(record)

    def alerts(self, record: Record, matched: Sequence[Rule]) -> list[Alert]:
        """The alerts of the matched rules that alert on their own (no memory)."""
        alerts: list[Alert] = []
        for rule in matched:
            if is_stateless(rule):
                try:
                    alerts.append(self.match_alert(rule, record))
                except Exception as error:
                    self.failures.append(failure(rule.id, record, error))
        return alerts

    def arrive(self, record: Record, build: Callable[[Rule, Record], T]) -> Arrival[T]:
        """The single-event rules on a record as it arrives, while it is in the CPU's caches:
        the alerts of those without memory made by `build`, each rule that raised kept in the
        arrival (not yet in `take_failures`), and the record kept only when a rule of
        `observed` matched it. `settle` takes the rest, in event-time order."""
        failures = self.failures
        mark = len(failures)
        matched = self.matching(record)
        alerts: list[tuple[Meta, T]] = []
        observed, alerting = self.observed, self.alerting
        keep = False
        for rule in matched:
            rule_id = rule.meta.id
            if rule_id in observed:
                keep = True
            if rule_id in alerting:
                try:
                    alerts.append((rule.meta, build(rule, record)))
                except Exception as error:
                    failures.append(failure(rule_id, record, error))
        raised: list[Failure] = []
        if len(failures) > mark:
            raised = failures[mark:]
            del failures[mark:]
        if keep:
            return Arrival(record, matched, alerts, raised)
        stand_in = Record(_NO_DATA, record.event_source, record.event_name, record.event_time,
                          record.event_id)
        return Arrival(stand_in, [], alerts, raised)

    def settle(self, arrival: Arrival[T]) -> list[Alert] | None:
        """A record's turn in event-time order, after `arrive`: None for a redelivered event
        (nothing it made counts), else the stateful decisions (`observe`); the failures its
        rules raised on arrival join `take_failures` now."""
        if not self.admit(arrival.record):
            return None
        self.failures += arrival.failures
        return self.observe(arrival.record, arrival.matched)

    def match_alert(self, rule: Rule, record: Record) -> Alert:
        """The alert of a rule without memory on one record."""
        return build_alert(rule.meta, "match", [record])

    def observe(self, record: Record, matched: Sequence[Rule]) -> list[Alert]:
        """The stateful decisions `record` and the rules it matched lead to (none without
        memory)."""
        if self.stateful is None:
            return []
        try:
            return self.stateful.observe(record, matched)
        except Exception as error:
            self.failures.append(failure(None, record, error))
            return []

    def process(self, record: Record) -> list[Alert]:
        """The alerts for one record: admit, evaluate, observe. What raised is kept for
        `take_failures`."""
        if not self.admit(record):
            return []
        matches = self.evaluate(record)
        return matches.alerts + self.observe(record, matches.rules)

    def take_failures(self) -> list[Failure]:
        """The failures since the last call, oldest first."""
        failures, self.failures = self.failures, []
        return failures

    def _match_each(self, record: Record) -> list[Rule]:
        data = record.data
        matched: list[Rule] = []
        for rule in self.index.candidates(record.event_source, record.event_name):
            try:
                if rule.predicate(data):
                    matched.append(rule)
            except Exception as error:
                self.failures.append(failure(rule.id, record, error))
        return matched

    def stats(self) -> dict[str, int]:
        """Counts for the scan summary and metrics; an engine without memory has none."""
        return {"late": 0, "duplicates": 0, "state_entries": 0}
