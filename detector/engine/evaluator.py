"""The engine: records in, alerts out. Pure: no I/O, no Kafka, no clocks except `now`.

Single-event rules are looked up by (eventSource, eventName) and their predicates run on the
record dict. Rules that need memory (first seen, suppression, correlations) are handed to the
stateful evaluator, which keeps its state behind the State interface.

One record goes through three steps, the same in `detector scan` and in the stream worker
(which matches on its input side and takes the other steps where the record's state lives):
`admit` (is it a redelivered event?), `evaluate` (the single-event rules: the stateless
alerts, and the matches the stateful rules take) and `observe` (the stateful decisions).
`process` takes the three in order.

No record can stop the engine: an exception while evaluating one is caught at the record
boundary, per rule where it can be (one failing rule does not cost the record its other rules'
alerts), and kept as a `Failure` for the caller to count, log and dead-letter
(`take_failures`). Failures are bugs or resources running out, never verdicts on the input.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from detector.alerts import Alert, EventSummary, alert_id, event_key, format_time, now_iso
from detector.bounded import bounded_text
from detector.engine.index import RuleIndex
from detector.engine.rule import Meta, Rule, RuleSet
from detector.events import Record

MAX_ERROR_TEXT = 500  # characters of an exception's text kept in a Failure


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
                    alerts.append(build_alert(rule.meta, "match", [record]))
                except Exception as error:
                    self.failures.append(failure(rule.id, record, error))
        return alerts

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
