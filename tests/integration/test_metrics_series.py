"""A real Prometheus scrapes a worker that detected the Kinesis Video intruder scenario and
delivered its alerts to two sinks (stdout, and a webhook nobody listens on): the build, process
and platform series are there, each sink's deliveries are timed and every failed attempt is
counted, and every new series is declared to Prometheus."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka_broker import KafkaBroker, free_port
from prometheus_server import PrometheusServer, running_prometheus

from detector import __version__
from integration.worker_support import REPO, WorkerProcess, read_topic, replay, unique

pytestmark = [pytest.mark.integration, pytest.mark.prometheus]

SCENARIO = REPO / "examples" / "scenarios" / "kinesisvideo-intruder.jsonl"
WEBHOOK_ATTEMPTS = 2


@pytest.fixture
def worker(kafka_broker: KafkaBroker, workers: Callable[..., WorkerProcess]) -> WorkerProcess:
    """A worker that has raised its alerts and handed them to both sinks."""
    topic = unique("series-in")
    kafka_broker.create_topic(topic, partitions=2)
    nobody_listens = f"http://127.0.0.1:{free_port()}/hook"
    started = workers(
        kafka_broker, group=unique("series"), input_topic=topic, rules=(REPO / "rules",),
        extra=["--state-partitions", "2"],
        env={"DETECTOR_STDOUT_SINK": "true", "DETECTOR_WEBHOOK_URL": nobody_listens,
             "DETECTOR_WEBHOOK_MAX_ATTEMPTS": str(WEBHOOK_ATTEMPTS),
             "DETECTOR_WEBHOOK_RETRY_BASE": "10ms", "DETECTOR_WEBHOOK_RETRY_CAP": "20ms",
             "DETECTOR_WEBHOOK_TIMEOUT": "1s"},
    )
    started.wait_ready()
    replay(kafka_broker, topic, SCENARIO, options=["--sort"])
    read_topic(kafka_broker, started.alerts_topic, lambda found: len(found) >= 10, settle=2.0)
    return started


@pytest.fixture
def prometheus(tmp_path: Path, worker: WorkerProcess) -> Iterator[PrometheusServer]:
    with running_prometheus(tmp_path / "prometheus", f"127.0.0.1:{worker.port}", []) as server:
        server.wait_for("the worker to be scraped",
                        lambda: server.query('up{job="detector"} == 1'))
        yield server


def values(prometheus: PrometheusServer, expression: str) -> list[tuple[dict[str, str], float]]:
    return [(series["metric"], float(series["value"][1]))
            for series in prometheus.query(expression)]


def only_value(prometheus: PrometheusServer, expression: str) -> float:
    (found,) = values(prometheus, expression)
    return found[1]


def test_build_info_names_the_version_and_python_the_worker_runs(
    prometheus: PrometheusServer,
) -> None:
    (labels, value), = values(prometheus, 'detector_build_info{job="detector"}')
    assert value == 1
    assert labels["version"] == __version__
    assert labels["python"] == platform.python_version()  # the tests start it with their own


def test_the_process_and_platform_collectors_are_scraped(prometheus: PrometheusServer) -> None:
    assert only_value(prometheus, 'process_resident_memory_bytes{job="detector"}') > 20e6
    assert only_value(prometheus, 'process_cpu_seconds_total{job="detector"}') > 0
    assert only_value(prometheus, 'process_open_fds{job="detector"}') > 0
    started = only_value(prometheus, 'process_start_time_seconds{job="detector"}')
    assert time.time() - 600 < started < time.time()
    (labels, _), = values(prometheus, 'python_info{job="detector"}')
    assert labels["implementation"] == platform.python_implementation()
    assert values(prometheus, 'python_gc_collections_total{job="detector"}')


def test_each_sink_times_its_deliveries_and_counts_every_failed_attempt(
    prometheus: PrometheusServer,
) -> None:
    def settled() -> dict[str, float] | None:
        found = {
            name: only_value(prometheus, f'{series}{{job="detector",sink="webhook"}}')
            for name, series in (("timed", "detector_sink_delivery_seconds_count"),
                                 ("failed", "detector_sink_failures_total"),
                                 ("dropped", "detector_sink_dropped_total"))
        }
        done = found["timed"] > 0 and found["timed"] == found["dropped"]
        return found if done and found["failed"] == WEBHOOK_ATTEMPTS * found["dropped"] else None

    webhook = prometheus.wait_for("every webhook delivery to have failed", settled)
    assert webhook["timed"] >= 10  # one delivery per alert, each failing twice
    delivered = only_value(prometheus, 'detector_sink_deliveries_total{sink="stdout"}')
    assert delivered >= 10
    assert only_value(prometheus, 'detector_sink_failures_total{sink="stdout"}') == 0
    # stdout writes a batch per delivery: at least one delivery, at most one per alert.
    timed = only_value(prometheus, 'detector_sink_delivery_seconds_count{sink="stdout"}')
    assert 1 <= timed <= delivered
    buckets = values(prometheus, 'detector_sink_delivery_seconds_bucket{sink="stdout"}')
    assert {labels["le"] for labels, _ in buckets} >= {"0.01", "60.0", "+Inf"}


def test_prometheus_knows_every_new_series_and_its_type(prometheus: PrometheusServer) -> None:
    expected = {
        "detector_event_time_lag_seconds": "gauge",
        "detector_pending_decisions": "gauge",
        "detector_produce_to_alert_seconds": "histogram",
        "detector_sink_delivery_seconds": "histogram",
        "detector_build_info": "gauge",
        "process_cpu_seconds_total": "counter",
        "python_info": "gauge",
    }

    def declared() -> dict[str, Any] | None:
        metadata: dict[str, list[dict[str, Any]]] = prometheus.api("metadata")
        found = {name: entries[0]["type"] for name, entries in metadata.items()
                 if name in expected}
        return found if found == expected else None

    prometheus.wait_for("the metadata of every new family", declared, timeout=30)
    assert values(prometheus, 'detector_produce_to_alert_seconds_count{job="detector"}')


def test_event_time_lag_pending_decisions_and_produce_to_alert_are_scraped(
    prometheus: PrometheusServer,
) -> None:
    def per_partition(series: str) -> dict[str, float]:
        return {labels["partition"]: value
                for labels, value in values(prometheus, f'{series}{{job="detector"}}')}

    lag = prometheus.wait_for("event-time lag of both state partitions",
                              lambda: per_partition("detector_event_time_lag_seconds"),
                              timeout=20)
    assert set(lag) == {"0", "1"}
    assert all(value > 0 for value in lag.values())  # the scenario's events are in the past
    pending = per_partition("detector_pending_decisions")
    assert set(pending) == {"0", "1"}
    assert all(value >= 0 for value in pending.values())
    assert only_value(prometheus, 'detector_produce_to_alert_seconds_count{job="detector"}') >= 10
