"""What the worker does with one input message, without Kafka: decode, match, route.

A record's single-event rules are matched here. The records they matched go to the state
partitions that admit them and raise the alerts (`detector.stream.repartition`): only there
is a redelivered event known, whichever input partition it came through. Only a record
without an eventID, which no engine deduplicates, raises its single-event alerts here.

The Faust agents in `detector.stream.app` only move bytes between topics and this class; so
everything here is tested without a broker, and the worker's verdicts are the engine's.

A record is the boundary of a failure: an exception while evaluating one (our bug, whatever
the record holds) is counted in `detector_processing_failures_total{reason="internal_error"}`
with the rule that raised (the engine catches them per rule: `Engine.take_failures`), logged
once with the record's event id, and the record goes to the dead-letter topic with reason
`internal_error`; its alerts from the other rules are sent, and the other records of its
message carry on. So does a record whose alert or forwarded copy would be larger than the
worker sends (`too_large`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from detector.engine import Engine, RuleSet
from detector.engine.evaluator import Failure, failure, is_stateless
from detector.engine.stateful.clock import CORROBORATION
from detector.events import DecodeError, Limits, Record, decode
from detector.metrics import Metrics, zero
from detector.sinks.formats import DEFAULT_FORMAT, AlertFormat
from detector.stream.deadletter import (
    ATTEMPTS_EXHAUSTED,
    DEAD_LETTER_REASONS,
    INTERNAL_ERROR,
    TOO_LARGE,
    DeadLetter,
    Source,
    dead_letter,
    dead_letters,
    max_output_bytes,
)
from detector.stream.groups import Group, plan_groups
from detector.stream.messages import AlertMessage, json_bounded
from detector.stream.repartition import Beat, Forward, Origin, Router
from detector.stream.watermark import Progress

log = logging.getLogger(__name__)
FAILURE_REASONS = (INTERNAL_ERROR, ATTEMPTS_EXHAUSTED)


@dataclass
class Output:
    """What one message produced: alerts, dead letters, and records for repartition topics."""

    alerts: list[AlertMessage] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    forwards: list[Forward] = field(default_factory=list)


class Processor:
    """Decodes input messages, matches single-event rules, routes records to the groups."""

    def __init__(self, ruleset: RuleSet, metrics: Metrics, limits: Limits,
                 partitions: int = 1, alert_format: AlertFormat = DEFAULT_FORMAT) -> None:
        self.metrics = metrics
        self.limits = limits
        self.partitions = partitions
        self.alert_format = alert_format
        self.progress = Progress(CORROBORATION)
        self.groups = plan_groups(ruleset)
        self.engine = Engine(ruleset)
        self.max_output_bytes = max_output_bytes(limits)
        self.router = Router(self.groups, partitions, self.max_output_bytes)
        self._failed_kinds: set[tuple[str | None, str]] = set()  # (rule, error type) logged
        zero(metrics.dead_letters, DEAD_LETTER_REASONS)
        zero(metrics.processing_failures, [(reason, "") for reason in FAILURE_REASONS])
        self._loaded(ruleset)

    def swap(self, ruleset: RuleSet) -> str | None:
        """Evaluate with `ruleset` from the next record on; why not, when it cannot be.

        The repartition topics and tables are fixed when the worker starts, so a rule set
        whose stateful rules group by other fields needs a restart.
        """
        groups = plan_groups(ruleset)
        if [group.fields for group in groups] != [group.fields for group in self.groups]:
            return ("the stateful rules group by other fields than the running ones ("
                    f"{_describe(groups)} instead of {_describe(self.groups)}); restart the "
                    "worker to apply them")
        self.groups = groups
        self.engine = Engine(ruleset)
        self.router = Router(groups, self.partitions, self.max_output_bytes)
        self._loaded(ruleset)
        return None

    def _loaded(self, ruleset: RuleSet) -> None:
        """Rules in force: their alert series start at 0 (a counter that appears at 1 shows
        no increase at its first alert)."""
        self.metrics.rules_loaded.set(self.engine.rule_count)
        zero(self.metrics.alerts,
             [(rule.id, rule.meta.level) for rule in ruleset.rules if rule.meta.enabled]
             + [(correlation.id, correlation.meta.level)
                for correlation in ruleset.correlations if correlation.meta.enabled])

    def on_message(self, payload: bytes, source: Source) -> Output:
        """Decode one input message and evaluate every record it holds."""
        decoded = decode(payload, self.limits)
        metrics = self.metrics
        records, errors = decoded.records, decoded.errors
        outcome = "rejected" if errors and not records else "partial" if errors else "ok"
        metrics.messages.labels(outcome).inc()
        if records:
            metrics.records.labels(decoded.format).inc(len(records))
        for error in errors:
            metrics.decode_errors.labels(error.reason).inc()
        output = Output()
        self._add_dead_letters(
            output, dead_letters(source, payload, errors, len(records), self.limits)
        )
        self._evaluate(records, source, output)
        self.progress.note(source.partition, source.offset,
                           max((record.event_time for record in records), default=None))
        return output

    def failed(self, payload: bytes, source: Source, error: Exception) -> Output:
        """The message could not be processed at all (our code raised outside a record)."""
        log.error("processing %s[%d]@%d failed: %s: %s", source.topic, source.partition,
                  source.offset, type(error).__name__, error, exc_info=error)
        self.metrics.processing_failures.labels(INTERNAL_ERROR, "").inc()
        return self._whole(payload, source, INTERNAL_ERROR, f"{type(error).__name__}: {error}")

    def abandoned(self, payload: bytes, source: Source, deaths: int) -> Output:
        """The worker died `deaths` times processing this message: give up on it."""
        log.error("%s[%d]@%d goes to the dead-letter topic unprocessed: the worker died %d "
                  "times processing it", source.topic, source.partition, source.offset, deaths)
        self.metrics.processing_failures.labels(ATTEMPTS_EXHAUSTED, "").inc()
        return self._whole(payload, source, ATTEMPTS_EXHAUSTED, (
            f"the worker died {deaths} times processing this message (killed for its memory, "
            "a failed liveness probe or a signal); it was not processed"))

    def _whole(self, payload: bytes, source: Source, reason: str, message: str) -> Output:
        output = Output()
        self._add_dead_letters(output, [dead_letter(source, payload, DecodeError(reason, message),
                                                    self.limits)])
        return output

    def record_failed(self, source: Source, value: bytes, failures: list[Failure], *,
                      index: int | None = None, reason: str = INTERNAL_ERROR,
                      error: BaseException | None = None) -> DeadLetter:
        """Count and log (once) the failures of one record; its dead letter (`value`: the
        record as JSON). The traceback of `error` is logged the first time its rule and type
        fail in this process, not for each record a broken rule fails on."""
        for failed in failures:
            self.metrics.processing_failures.labels(reason, failed.rule_id or "").inc()
        described = "; ".join((f"rule {failed.rule_id}: " if failed.rule_id else "")
                              + failed.error for failed in failures)
        event_id = next((failed.event_id for failed in failures if failed.event_id), None)
        first = error is not None and self._first_failure(failures, error)
        log.error("record %s of %s[%d]@%d goes to the dead-letter topic (%s): %s", event_id,
                  source.topic, source.partition, source.offset, reason, described,
                  exc_info=error if first else None, extra={"event_id": event_id})
        letter = dead_letter(source, value, DecodeError(reason, described, index), self.limits)
        self.metrics.dead_letters.labels(letter.reason).inc()
        return letter

    def _first_failure(self, failures: list[Failure], error: BaseException) -> bool:
        kinds = {(failed.rule_id, type(error).__name__) for failed in failures}
        new = bool(kinds - self._failed_kinds)
        self._failed_kinds |= kinds
        return new

    def beats(self, source: int, committed: int | None, end: int | None) -> list[Forward]:
        """What to tell the state partitions of input partition `source`, whose offsets
        before `committed` are committed and whose next message will have offset `end`:
        how far it has got in event time if that moved, and that it is read to its end if
        it just was (nothing else)."""
        if committed is None and end == 0:
            committed = 0  # an empty partition
        latest = None if committed is None else self.progress.to_tell(source, committed)
        beats = [] if latest is None else self.router.beats(Beat(source, latest))
        caught_up = committed is not None and end is not None and committed >= end
        if self.progress.quiet(source, committed if caught_up else None):
            beats += self.router.beats(Beat(source, None))
        return beats

    def _evaluate(self, records: Iterable[Record], source: Source, output: Output) -> None:
        metrics = self.metrics
        observe = metrics.evaluation_seconds.observe
        for index, record in enumerate(records):
            started = time.perf_counter()
            error: Exception | None = None
            try:
                sent, forwards = self._record(record, Origin(source.partition, source.offset,
                                                             index), source.timestamp)
            except Exception as exc:  # one bad record must not stop the worker
                sent, forwards, error = [], [], exc
            failures = self.engine.take_failures()  # rules that raised, the others alerted
            if error is not None:
                failures.append(failure(None, record, error))
            if failures:
                output.dead_letters.append(self.record_failed(
                    source, self._record_json(record), failures, error=error))
                if error is not None:
                    continue
            oversized = self._oversized(record, sent, forwards)
            if oversized:
                output.dead_letters.append(self.record_failed(
                    source, self._record_json(record), oversized, reason=TOO_LARGE))
                sent = [item for item in sent if item.size <= self.max_output_bytes]
                forwards = []
            observe(time.perf_counter() - started)
            metrics.evaluated.inc()
            for item in sent:
                item.count(metrics)
            output.alerts.extend(sent)
            output.forwards.extend(forwards)

    def _record(self, record: Record, origin: Origin, produced: float | None
                ) -> tuple[list[AlertMessage], list[Forward]]:
        """The alerts `record` raises here (it has no eventID) and its copies for the groups."""
        engine = self.engine
        matched = engine.matching(record)
        if not record.event_id:
            alerts = engine.alerts(record, matched)
            return ([AlertMessage.of(alert, self.alert_format, produced) for alert in alerts],
                    self.router.route(record, matched, (), origin, produced))
        stateless = [rule.id for rule in matched if is_stateless(rule)]
        return [], self.router.route(record, matched, stateless, origin, produced)

    def _oversized(self, record: Record, sent: list[AlertMessage], forwards: list[Forward]
                   ) -> list[Failure]:
        """What of a record's output the worker cannot send: larger than `max_output_bytes`."""
        limit = self.max_output_bytes
        failures = [Failure(item.rule_id, record.event_id,
                            f"its alert is {size} bytes, over the {limit} the worker sends")
                    for item in sent if (size := item.size) > limit]
        failures += [Failure(None, record.event_id, f"its copy for the stateful rules "
                             f"({forward.group}) is {size} bytes, over the {limit} the "
                             "worker sends")
                     for forward in forwards
                     if (size := len(forward.key or b"") + len(forward.value)) > limit]
        return failures

    def _record_json(self, record: Record) -> bytes:
        """The record as JSON for its dead letter (cut to the bounds of `detector.bounded`
        when it cannot be written whole)."""
        return json_bounded(record.data, self.limits.max_message_bytes)

    def _add_dead_letters(self, output: Output, letters: list[DeadLetter]) -> None:
        for letter in letters:
            self.metrics.dead_letters.labels(letter.reason).inc()
        output.dead_letters.extend(letters)


def _describe(groups: list[Group]) -> str:
    return "; ".join(",".join(group.fields) for group in groups) or "none"
