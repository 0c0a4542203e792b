"""Readiness means rules, an assignment, no rebalance and no stalled partition."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from detector.metrics import Metrics
from detector.stream.rules import RuleSource
from detector.stream.status import LagTracker, WorkerStatus


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tracker(clock: Clock) -> tuple[LagTracker, Metrics]:
    metrics = Metrics(CollectorRegistry())
    return LagTracker(metrics.consumer_lag, stall_timeout=60, clock=clock), metrics


def lag(metrics: Metrics, topic: str, partition: int) -> float | None:
    return metrics.registry.get_sample_value(
        "detector_consumer_lag_messages", {"topic": topic, "partition": str(partition)})


def test_lag_is_end_minus_committed_per_partition_and_forgotten_when_revoked() -> None:
    clock = Clock()
    lags, metrics = tracker(clock)
    lags.update({("in", 0): (90, 100), ("in", 1): (None, 5)})
    assert (lag(metrics, "in", 0), lag(metrics, "in", 1)) == (10, 5)
    lags.update({("in", 1): (5, 5)})
    assert lag(metrics, "in", 0) is None
    assert lag(metrics, "in", 1) == 0


def test_a_partition_with_waiting_messages_and_no_progress_is_stalled() -> None:
    clock = Clock()
    lags, _ = tracker(clock)
    lags.update({("in", 0): (10, 20), ("in", 1): (0, 0)})
    clock.now += 61
    lags.update({("in", 0): (10, 25), ("in", 1): (0, 0)})
    assert lags.stalled() == [("in", 0)]
    lags.update({("in", 0): (11, 25), ("in", 1): (0, 0)})
    assert lags.stalled() == []


def status(tmp_path: Path, rules: int = 3) -> tuple[WorkerStatus, Clock]:
    clock = Clock()
    lags, _ = tracker(clock)
    return WorkerStatus(rules=RuleSource([str(tmp_path)]), lag=lags,
                        rule_count=lambda: rules), clock


def test_not_ready_until_the_group_assigned_partitions(tmp_path: Path) -> None:
    worker, _ = status(tmp_path)
    assert worker.readiness() == (False, "waiting for the consumer group to assign partitions")
    worker.on_assigned([("in", 0)])
    assert worker.readiness() == (True, "ready")


def test_not_ready_without_rules_or_while_rebalancing(tmp_path: Path) -> None:
    worker, _ = status(tmp_path, rules=0)
    worker.on_assigned([])
    assert worker.readiness() == (False, "no rules loaded")
    busy, _ = status(tmp_path)
    busy.rebalancing = lambda: True
    busy.on_assigned([])
    assert busy.readiness()[0] is False


def test_not_ready_when_stalled_and_the_status_says_where(tmp_path: Path) -> None:
    worker, clock = status(tmp_path)
    worker.on_assigned([("in", 0)])
    worker.lag.update({("in", 0): (1, 9)})
    clock.now += 120
    ready, reason = worker.readiness()
    assert not ready
    assert reason == "consumer stalled on in[0]"
    snapshot = worker.snapshot()
    assert snapshot["assigned_partitions"] == [{"topic": "in", "partition": 0, "lag": 8}]
    assert snapshot["ready"] is False


def test_alive_while_the_loop_ticks(tmp_path: Path) -> None:
    worker, _ = status(tmp_path)
    assert worker.liveness() == (True, "starting")
    worker.tick()
    assert worker.liveness() == (True, "alive")
    assert worker.last_tick is not None
    worker.last_tick -= 100
    assert worker.liveness() == (False, "event loop heartbeat is 100s old")
