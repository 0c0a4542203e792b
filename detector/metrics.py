"""Prometheus metrics of the worker and of `detector scan`.

Labels are bounded: input formats, decode reasons, rule ids and levels, sink names, topic
partitions. Never a principal, an IP or an event id.

The label sets known beforehand start at 0 (`zero`): a series that appears only with its first
increment is invisible to `rate()` and `increase()` at that increment, and absent altogether
from a worker that never processed a message (what `DetectorNotConsuming` looks for).
"""

from __future__ import annotations

import contextlib
import math
import platform
import time
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from detector import __version__
from detector.events import REASONS

OUTCOMES = ("ok", "partial", "rejected")  # of an input message
RELOAD_RESULTS = ("success", "failure")
# Seconds from 10 ms to a minute: alert latency is read against seconds-scale goals (p99 under
# 250 ms at 2,000 events/s) and a stuck stage shows in the top buckets instead of only in +Inf.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """All of the detector's own series, registered on one registry (a fresh one per test)."""

    def __init__(self, registry: CollectorRegistry,
                 clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self._clock = clock
        # By state partition label, then by group (each group of stateful rules keeps its own
        # state partitions, numbered alike): the series show the slowest and the sum.
        self._watermarks: dict[str, dict[str, float]] = {}
        self._pending: dict[str, dict[str, int]] = {}
        self._held: set[str] = set()  # state partitions this worker holds
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
        self.contradicted = Counter(
            "detector_contradicted_decisions_total",
            "First-seen and rare-value alerts raised at once that a late earlier event may "
            "contradict (docs/stateful-rules.md lists the cases).",
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
        self.sink_delivery_seconds = Histogram(
            "detector_sink_delivery_seconds",
            "Time a sink spent on one delivery, retries included, delivered or not.",
            ["sink"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.event_time_lag = Gauge(
            "detector_event_time_lag_seconds",
            "Wall clock minus the watermark of each state partition this worker holds "
            "(the allowed lateness included): how late stateful decisions are taken.",
            ["partition"],
            registry=registry,
        )
        self.pending_decisions = Gauge(
            "detector_pending_decisions",
            "Stateful decisions waiting for the watermark, per state partition.",
            ["partition"],
            registry=registry,
        )
        self.produce_to_alert = Histogram(
            "detector_produce_to_alert_seconds",
            "From the Kafka timestamp of the record that decided an alert to the alert "
            "handed to the alerts topic.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.build_info = Gauge(
            "detector_build_info",
            "Always 1; the labels say which detector and Python version run.",
            ["version", "python"],
            registry=registry,
        )
        self.build_info.labels(__version__, platform.python_version()).set(1)
        install_runtime_collectors(registry)
        zero(self.messages, OUTCOMES)
        zero(self.decode_errors, REASONS)
        zero(self.reloads, RELOAD_RESULTS)

    def hold_state_partitions(self, partitions: Iterable[int]) -> None:
        """The worker now holds exactly `partitions`: their pending decisions start at 0, and
        the series of partitions it gave up go (whichever worker holds them exports them).

        Event-time lag appears with a partition's first watermark (`set_watermark`): before
        it there is no event time to be late against.
        """
        held = {str(partition) for partition in partitions}
        for label in self._held - held:
            self._watermarks.pop(label, None)
            self._pending.pop(label, None)
            for gauge in (self.event_time_lag, self.pending_decisions):
                with contextlib.suppress(KeyError):
                    gauge.remove(label)
        for label in held - self._held:
            self.pending_decisions.labels(label).set(0)
        self._held = held

    def set_watermark(self, partition: int, watermark: float, group: str = "") -> None:
        """State partition `partition` of `group` has its watermark at `watermark` (epoch
        seconds); the partition's lag is that of its slowest group.

        The lag is computed at scrape time, so it keeps growing while the watermark stands
        still. A watermark not yet known (-inf: no event seen) exports nothing.
        """
        if not math.isfinite(watermark):
            return
        label = str(partition)
        if label not in self._watermarks:
            self._watermarks[label] = {}
            self.event_time_lag.labels(label).set_function(lambda: self._lag(label))
        self._watermarks[label][group] = watermark

    def set_pending(self, partition: int, decisions: int, group: str = "") -> None:
        """State partition `partition` of `group` has `decisions` waiting for its watermark;
        the partition's series is the sum over its groups."""
        label = str(partition)
        counts = self._pending.setdefault(label, {})
        counts[group] = decisions
        self.pending_decisions.labels(label).set(sum(counts.values()))

    def _lag(self, label: str) -> float:
        watermarks = self._watermarks.get(label)
        return self._clock() - min(watermarks.values()) if watermarks else math.nan


def install_runtime_collectors(registry: CollectorRegistry) -> None:
    """The process (CPU, memory, open files), platform (`python_info`) and garbage-collector
    series on `registry`: `prometheus_client` puts them on its global registry only, which
    the worker does not serve."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


def zero(counter: Counter, label_sets: Iterable[str | Sequence[str]]) -> None:
    """Export `counter` at 0 for each of `label_sets` (a value, or the values of its labels)."""
    for labels in label_sets:
        counter.labels(*([labels] if isinstance(labels, str) else labels))
