"""The worker's metric catalogue: what exists from the start, what the helpers export."""

from __future__ import annotations

import math
import platform
import shutil
import subprocess

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from detector import __version__
from detector.metrics import LATENCY_BUCKETS, Metrics


class Clock:
    """Wall time the test sets."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(1_800_000_000.0)


@pytest.fixture
def metrics(clock: Clock) -> Metrics:
    return Metrics(CollectorRegistry(), clock=clock)


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def label_values(metrics: Metrics, name: str, label: str) -> set[str]:
    return {
        sample.labels[label]
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == name
    }


def test_build_info_is_one_with_the_package_and_python_versions(metrics: Metrics) -> None:
    assert value(metrics, "detector_build_info", version=__version__,
                 python=platform.python_version()) == 1


def test_the_process_platform_and_gc_collectors_are_on_the_workers_registry(
    metrics: Metrics,
) -> None:
    assert (value(metrics, "process_resident_memory_bytes") or 0) > 0
    assert value(metrics, "process_cpu_seconds_total") is not None
    assert value(metrics, "process_open_fds") is not None
    assert label_values(metrics, "python_info", "implementation") == {
        platform.python_implementation()}
    assert value(metrics, "python_gc_objects_collected_total", generation="0") is not None


def test_two_workers_in_one_process_have_one_set_of_runtime_series_each() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    Metrics(first)
    Metrics(second)
    for registry in (first, second):
        text = generate_latest(registry).decode()
        assert text.count("\nprocess_resident_memory_bytes ") == 1
        assert text.count("\npython_info{") == 1


def test_nothing_lands_on_prometheus_clients_global_registry() -> None:
    from prometheus_client import REGISTRY

    before = {family.name for family in REGISTRY.collect()}
    Metrics(CollectorRegistry())
    assert {family.name for family in REGISTRY.collect()} == before


def test_latency_buckets_run_from_10_ms_to_a_minute(metrics: Metrics) -> None:
    assert LATENCY_BUCKETS[0] == 0.01
    assert LATENCY_BUCKETS[-1] == 60.0
    assert list(LATENCY_BUCKETS) == sorted(LATENCY_BUCKETS)
    metrics.produce_to_alert.observe(0.2)
    assert value(metrics, "detector_produce_to_alert_seconds_bucket", le="0.1") == 0
    assert value(metrics, "detector_produce_to_alert_seconds_bucket", le="0.25") == 1
    assert value(metrics, "detector_produce_to_alert_seconds_bucket", le="60.0") == 1


def test_event_time_lag_is_wall_clock_minus_watermark_and_grows_while_it_stands_still(
    metrics: Metrics, clock: Clock
) -> None:
    metrics.set_watermark(3, clock.now - 1200)
    assert value(metrics, "detector_event_time_lag_seconds", partition="3") == 1200
    clock.now += 600
    assert value(metrics, "detector_event_time_lag_seconds", partition="3") == 1800
    metrics.set_watermark(3, clock.now - 900)
    assert value(metrics, "detector_event_time_lag_seconds", partition="3") == 900


def test_a_partition_kept_by_several_groups_shows_its_slowest_watermark(
    metrics: Metrics, clock: Clock
) -> None:
    metrics.set_watermark(0, clock.now - 900, group="principal")
    metrics.set_watermark(0, clock.now - 4000, group="source-ip")
    metrics.set_watermark(0, clock.now - 1000, group="principal")
    assert value(metrics, "detector_event_time_lag_seconds", partition="0") == 4000


def test_pending_decisions_of_a_partition_add_up_over_its_groups(metrics: Metrics) -> None:
    metrics.hold_state_partitions([0])
    metrics.set_pending(0, 3, group="principal")
    metrics.set_pending(0, 4, group="source-ip")
    metrics.set_pending(0, 1, group="principal")
    assert value(metrics, "detector_pending_decisions", partition="0") == 5


def test_a_partition_without_a_watermark_exports_no_lag(metrics: Metrics) -> None:
    metrics.hold_state_partitions([0, 1])
    metrics.set_watermark(0, -math.inf)
    assert label_values(metrics, "detector_event_time_lag_seconds", "partition") == set()


def test_held_state_partitions_start_with_no_pending_decisions(metrics: Metrics) -> None:
    metrics.hold_state_partitions(range(3))
    assert label_values(metrics, "detector_pending_decisions", "partition") == {"0", "1", "2"}
    assert value(metrics, "detector_pending_decisions", partition="2") == 0


def test_partitions_given_up_in_a_rebalance_stop_exporting(
    metrics: Metrics, clock: Clock
) -> None:
    metrics.hold_state_partitions([0, 1])
    metrics.set_watermark(0, clock.now - 60)
    metrics.set_watermark(1, clock.now - 60)
    metrics.set_pending(0, 2)
    metrics.set_pending(1, 4)
    metrics.hold_state_partitions([1, 2])
    assert label_values(metrics, "detector_event_time_lag_seconds", "partition") == {"1"}
    assert label_values(metrics, "detector_pending_decisions", "partition") == {"1", "2"}
    assert value(metrics, "detector_pending_decisions", partition="1") == 4  # kept, not reset
    metrics.hold_state_partitions([0])
    assert value(metrics, "detector_pending_decisions", partition="0") == 0  # not the old 2


def test_a_partition_taken_back_gets_its_lag_from_its_new_watermark(
    metrics: Metrics, clock: Clock
) -> None:
    metrics.hold_state_partitions([0])
    metrics.set_watermark(0, clock.now - 60)
    metrics.hold_state_partitions([])
    metrics.hold_state_partitions([0])
    assert label_values(metrics, "detector_event_time_lag_seconds", "partition") == set()
    metrics.set_watermark(0, clock.now - 30)
    assert value(metrics, "detector_event_time_lag_seconds", partition="0") == 30


def test_promtool_accepts_the_exposition(metrics: Metrics, clock: Clock) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: run scripts/install-test-tools")
    metrics.hold_state_partitions([0])
    metrics.set_watermark(0, clock.now - 5)
    metrics.produce_to_alert.observe(0.05)
    exposition = generate_latest(metrics.registry)
    checked = subprocess.run([promtool, "check", "metrics"], input=exposition,
                             capture_output=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
