"""`--log-format json` (DETECTOR_LOG_FORMAT=json): every line the worker writes to stderr is one
JSON object, and a line about a record carries its event id."""

from __future__ import annotations

import json
from collections.abc import Callable

import orjson
import pytest
from kafka_broker import KafkaBroker

from integration.test_worker_failures import FAULTY, deletion
from integration.worker_support import WorkerProcess, produce, read_topic, unique

pytestmark = pytest.mark.integration


def test_a_worker_logs_json_lines_with_the_event_id_of_a_failed_record(
    kafka_broker: KafkaBroker, workers: Callable[..., WorkerProcess]
) -> None:
    topic = unique("json-logs-in")
    kafka_broker.create_topic(topic)
    worker = workers(kafka_broker, group=unique("json-logs"), input_topic=topic, program=FAULTY,
                     env={"DETECTOR_LOG_FORMAT": "json"})
    worker.wait_ready()
    produce(kafka_broker, topic, [
        orjson.dumps(dict(deletion("logged-as-json"), eventName="DetectorTestRaise"))])
    read_topic(kafka_broker, worker.dead_letter_topic, lambda found: len(found) >= 1)
    assert worker.terminate() == 0

    lines = [json.loads(line) for line in worker.log.read_text().splitlines() if line.strip()]
    assert lines
    assert all({"timestamp", "level", "logger", "message"} <= set(line) for line in lines)
    failed = [line for line in lines if line.get("event_id") == "logged-as-json"]
    assert [(line["level"], line["logger"]) for line in failed] == [
        ("error", "detector.stream.processor")]
    assert "RuntimeError: a fault injected by the test" in failed[0]["exception"]
