"""Gauges refreshed every `lag_interval`: consumer lag, state entries by kind, and the
decisions each state partition has waiting for its watermark."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from faust.types import TP

from detector.metrics import Metrics
from detector.stream.evaluation import GroupEvaluator
from detector.stream.status import LagTracker, TopicPartition

ENTRY_KINDS = {"fs": "first_seen", "co": "correlation", "su": "suppression",
               "@sent": "alert_ledger", "@clock": "clock", "@definitions": "definitions",
               "@keyed": "definitions"}


async def update_lag(consumer: Any, committed: Mapping[TP, int | None], lag: LagTracker,
                     consumed: set[str]) -> None:
    """Refresh the lag gauge from the brokers' end offsets and our committed offsets."""
    assigned = [tp for tp in consumer.assignment() if tp.topic in consumed]
    if not assigned:
        lag.update({})
        return
    ends = await consumer.highwaters(*assigned)
    offsets: dict[TopicPartition, tuple[int | None, int]] = {}
    for tp in assigned:
        position = committed.get(tp)
        if position is None:
            position = await consumer.position(tp)
        offsets[(tp.topic, tp.partition)] = (position, int(ends.get(tp, 0)))
    lag.update(offsets)


def update_state_gauges(metrics: Metrics, evaluators: Iterable[GroupEvaluator]) -> None:
    """Entries held in this worker's tables (active and standby partitions) by kind, and
    the pending decisions of its state partitions."""
    totals = dict.fromkeys(ENTRY_KINDS.values(), 0)
    for evaluator in evaluators:
        for kind, count in evaluator.entries().items():
            name = ENTRY_KINDS.get(kind, "other")
            totals[name] = totals.get(name, 0) + count
        evaluator.report()
    for name, count in totals.items():
        metrics.state_entries.labels(name).set(count)
