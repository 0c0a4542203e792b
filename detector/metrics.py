"""Prometheus metrics of the worker and of `detector scan`.

Labels are bounded: input formats, decode reasons, rule ids and levels, sink names, topic
partitions. Never a principal, an IP or an event id.

The label sets known beforehand start at 0 (`zero`): a series that appears only with its first
increment is invisible to `rate()` and `increase()` at that increment, and absent altogether
from a worker that never processed a message (what `DetectorNotConsuming` looks for).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from detector.events import REASONS

OUTCOMES = ("ok", "partial", "rejected")  # of an input message
RELOAD_RESULTS = ("success", "failure")


class Metrics:
    """All of the detector's own series, registered on one registry (a fresh one per test)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.messages = Counter(
            "detector_messages_total",
            "Input messages by outcome (ok, partial, rejected).",
            ["outcome"],
            registry=registry,
        )
        self.records = Counter(
            "detector_records_total",
            "CloudTrail records decoded, by input format.",
            ["format"],
            registry=registry,
        )
        self.decode_errors = Counter(
            "detector_decode_errors_total",
            "Payloads or records that could not be decoded, by reason.",
            ["reason"],
            registry=registry,
        )
        self.evaluated = Counter(
            "detector_records_evaluated_total",
            "Records evaluated against the rules.",
            registry=registry,
        )
        self.late = Counter(
            "detector_late_events_total",
            "Records later than the allowed lateness (still evaluated by single-event rules).",
            registry=registry,
        )
        self.duplicates = Counter(
            "detector_duplicate_events_total",
            "Records whose eventID was already counted by stateful rules.",
            registry=registry,
        )
        self.alerts = Counter(
            "detector_alerts_total",
            "Alerts raised, by rule and level.",
            ["rule_id", "level"],
            registry=registry,
        )
        self.evaluation_seconds = Histogram(
            "detector_rule_evaluation_seconds",
            "Time to evaluate one record against all rules.",
            buckets=(1e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2, 0.1),
            registry=registry,
        )
        self.state_entries = Gauge(
            "detector_state_entries",
            "Entries held by stateful rules, by kind.",
            ["kind"],
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "detector_consumer_lag_messages",
            "Messages between the committed offset and the end of each input partition.",
            ["topic", "partition"],
            registry=registry,
        )
        self.rules_loaded = Gauge(
            "detector_rules_loaded",
            "Rules currently active.",
            registry=registry,
        )
        self.reloads = Counter(
            "detector_rules_reloads_total",
            "Rule reloads by result (success, failure).",
            ["result"],
            registry=registry,
        )
        self.last_reload_success = Gauge(
            "detector_rules_last_reload_success",
            "1 when the last rule reload succeeded, 0 when it failed.",
            registry=registry,
        )
        self.dead_letters = Counter(
            "detector_dead_letter_messages_total",
            "Messages sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=registry,
        )
        self.processing_failures = Counter(
            "detector_processing_failures_total",
            "Records, messages and stateful decisions the worker could not process, by reason "
            "(internal_error, too_large, attempts_exhausted) and rule (one per rule that "
            "failed; empty for a record or message that failed as a whole).",
            ["reason", "rule_id"],
            registry=registry,
        )
        self.sink_sent = Counter(
            "detector_sink_deliveries_total",
            "Alerts delivered by each sink.",
            ["sink"],
            registry=registry,
        )
        self.sink_failures = Counter(
            "detector_sink_failures_total",
            "Failed delivery attempts by each sink (each retry counts).",
            ["sink"],
            registry=registry,
        )
        self.sink_dropped = Counter(
            "detector_sink_dropped_total",
            "Alerts a sink dropped because its queue was full or retries ran out.",
            ["sink"],
            registry=registry,
        )
        self.sink_queue = Gauge(
            "detector_sink_queue_size",
            "Alerts waiting in each sink's queue.",
            ["sink"],
            registry=registry,
        )
        zero(self.messages, OUTCOMES)
        zero(self.decode_errors, REASONS)
        zero(self.reloads, RELOAD_RESULTS)


def zero(counter: Counter, label_sets: Iterable[str | Sequence[str]]) -> None:
    """Export `counter` at 0 for each of `label_sets` (a value, or the values of its labels)."""
    for labels in label_sets:
        counter.labels(*([labels] if isinstance(labels, str) else labels))
