"""What the worker does with one message, without Kafka: decode, evaluate, route.

The Faust agents in `detector.stream.app` only move bytes between topics and this class; so
everything here is tested without a broker, and the worker's verdicts are the engine's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import orjson

from detector.alerts import Alert
from detector.engine import Engine, Rule, RuleSet
from detector.events import DecodeError, Limits, Record, decode
from detector.metrics import Metrics
from detector.stream.deadletter import DeadLetter, Source, dead_letter, dead_letters
from detector.stream.partitioned import Forward, Group, Router, plan_groups
from detector.stream.watermark import Progress

log = logging.getLogger(__name__)
PROCESSING_ERROR = "processing_error"  # dead-letter reason when the engine raised


@dataclass
class Output:
    """What one message produced: alerts, dead letters, and records for repartition topics."""

    alerts: list[Alert] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    forwards: list[Forward] = field(default_factory=list)


class _Matches:
    """The engine's stateful hook on the input side: it only notes which rules matched."""

    def __init__(self) -> None:
        self.rules: list[Rule] = []

    def observe(self, record: Record, matched: Sequence[Rule]) -> list[Alert]:
        self.rules = list(matched)
        return []


class Processor:
    """Decodes input messages, raises single-event alerts, routes records to stateful groups."""

    def __init__(self, ruleset: RuleSet, metrics: Metrics, limits: Limits,
                 partitions: int = 1) -> None:
        self.metrics = metrics
        self.limits = limits
        self.partitions = partitions
        self.progress = Progress()
        self.groups = plan_groups(ruleset)
        self._matches = _Matches()
        self.engine = Engine(ruleset, self._matches)
        self.router = Router(self.groups, partitions)
        self.metrics.rules_loaded.set(self.engine.rule_count)

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
        self.engine = Engine(ruleset, self._matches)
        self.router = Router(groups, self.partitions)
        self.metrics.rules_loaded.set(self.engine.rule_count)
        return None

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

    def beats(self, source: int, committed: int | None, end: int | None) -> list[Forward]:
        """What to tell the state partitions of input partition `source`, whose offsets
        before `committed` are committed and whose next message will have offset `end`:
        how far it has got in event time if that moved, and that it is read to its end if
        it just was (nothing else)."""
        if committed is None and end == 0:
            committed = 0  # an empty partition
        latest = None if committed is None else self.progress.to_tell(source, committed)
        beats = [] if latest is None else self.router.beats(source, latest)
        caught_up = committed is not None and end is not None and committed >= end
        if self.progress.quiet(source, committed if caught_up else None):
            beats += self.router.beats(source, None)
        return beats

    def _evaluate(self, records: Iterable[Record], source: Source, output: Output) -> None:
        metrics = self.metrics
        engine, router, matches = self.engine, self.router, self._matches
        observe = metrics.evaluation_seconds.observe
        for record in records:
            started = time.perf_counter()
            matches.rules = []
            try:
                alerts = engine.process(record)
                output.forwards.extend(router.route(record, matches.rules, source.partition))
            except Exception as exc:  # one bad record must not stop the worker
                log.exception("evaluating record %s failed", record.event_id)
                error = DecodeError(PROCESSING_ERROR, f"{type(exc).__name__}: {exc}")
                self._add_dead_letters(output, [dead_letter(source, orjson.dumps(record.data),
                                                            error)])
                continue
            observe(time.perf_counter() - started)
            metrics.evaluated.inc()
            for alert in alerts:
                metrics.alerts.labels(alert.rule_id, alert.level).inc()
            output.alerts.extend(alerts)

    def _add_dead_letters(self, output: Output, letters: list[DeadLetter]) -> None:
        for letter in letters:
            self.metrics.dead_letters.labels(letter.reason).inc()
        output.dead_letters.extend(letters)


def _describe(groups: list[Group]) -> str:
    return "; ".join(",".join(group.fields) for group in groups) or "none"
