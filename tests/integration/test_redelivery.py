"""A CloudTrail event delivered twice alerts once, with the alert ids of `detector scan`: its
copies met on another input partition, on another worker, or after a restart."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from kafka_broker import KafkaBroker

from integration.worker_support import (
    DELETE_RULE,
    SCENARIO,
    STATEFUL,
    Message,
    WorkerProcess,
    alert_ids,
    read_topic,
    scan_alerts,
    scan_ids,
    unique,
    wait_for_split,
)

pytestmark = pytest.mark.integration

# The scenario is three hours of event time produced at once: an input partition a worker
# has read to its end stops holding the watermark back, and the others' event time runs on
# past what it still has to deliver. A lateness of the whole scenario keeps every event id
# remembered (lateness + 1 h) however the partitions are read, as scan remembers them (the
# first-seen decision then waits for event time the test does not produce).
WHOLE = ["--allowed-lateness", "4h", "--state-partitions", "4"]
PARTITIONS = 4


def produce_to(broker: KafkaBroker, topic: str, messages: Sequence[tuple[int, bytes]]) -> None:
    """Each value to its input partition, in order, all at once: an input partition the
    worker has read to its end stops holding the watermark back, so a trickle would let the
    others' event time run past it."""
    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=100)
        await producer.start()
        try:
            sends = [await producer.send(topic, value, partition=partition)
                     for partition, value in messages]
            await asyncio.gather(*sends)
        finally:
            await producer.stop()

    asyncio.run(run())


def by_principal(lines: list[bytes]) -> list[tuple[int, bytes]]:
    """Each event to its principal's input partition, as a producer keyed by principal does."""
    arns = sorted({orjson.loads(line)["userIdentity"]["arn"] for line in lines})
    return [(arns.index(orjson.loads(line)["userIdentity"]["arn"]) % PARTITIONS, line)
            for line in lines]


def copies(messages: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """Every event again, through the next input partition (another than the first time)."""
    return [((partition + 1) % PARTITIONS, value) for partition, value in messages]


def once_each(alerts: list[Message]) -> dict[str, int]:
    """The alert ids sent more than once (with how often)."""
    counts = Counter(orjson.loads(message.value)["id"] for message in alerts)
    return {ident: count for ident, count in counts.items() if count > 1}


def test_copies_through_other_partitions_and_workers_alert_once_as_in_scan(
    kafka_broker: KafkaBroker, workers: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    lines = SCENARIO.read_bytes().splitlines()
    original = by_principal(lines)
    # each event followed by its copy: what the worker is given, as a file for scan
    delivered = [message for pair in zip(original, copies(original), strict=True)
                 for message in pair]
    twice = tmp_path / "twice.jsonl"
    twice.write_bytes(b"\n".join(value for _partition, value in delivered) + b"\n")
    rules = [SCENARIO.parent / "rules"]
    expected = scan_alerts([twice], rules, tmp_path, "--allowed-lateness", "4h")
    assert set(expected) == scan_ids([SCENARIO], rules, tmp_path, "--allowed-lateness", "4h")
    [deletion] = [ident for ident, alert in expected.items() if alert["rule"]["id"] == DELETE_RULE]
    topic = unique("twice-in")
    kafka_broker.create_topic(topic, partitions=PARTITIONS)
    group = unique("twice")
    pair = [workers(kafka_broker, group=group, input_topic=topic, extra=WHOLE)
            for _ in range(2)]
    for worker in pair:
        worker.wait_ready()
    wait_for_split(pair, topic)

    produce_to(kafka_broker, topic, delivered)
    alerts = read_topic(kafka_broker, pair[0].alerts_topic,
                        lambda found: deletion in alert_ids(found), timeout=90, settle=5.0)
    assert alert_ids(alerts) <= set(expected)
    assert once_each(alerts) == {}
    for worker in pair:
        worker.wait_idle()  # the copies that raise nothing are through too
    duplicates = sum(worker.metric("detector_duplicate_events_total") for worker in pair)
    assert duplicates == len(lines)  # every copy was seen, and dropped
    for worker in pair:
        assert worker.terminate() == 0


def test_copies_after_a_restart_alert_no_more(
    kafka_broker: KafkaBroker, workers: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    original = by_principal(SCENARIO.read_bytes().splitlines())
    split = next(i for i, (_p, value) in enumerate(original)
                 if orjson.loads(value)["eventTime"] >= "2026-03-02T10:30")
    before, rest = original[:split], original[split:]
    # copies of what the worker still remembers: within an hour and the lateness of event time
    again = [(partition, value) for partition, value in before
             if orjson.loads(value)["eventTime"] >= "2026-03-02T09:30"]
    assert "DeleteStream" in {orjson.loads(value)["eventName"] for _p, value in again}
    expected = scan_ids([SCENARIO], [SCENARIO.parent / "rules"], tmp_path,
                        "--allowed-lateness", "1m")
    topic = unique("restart-in")
    kafka_broker.create_topic(topic, partitions=PARTITIONS)
    group = unique("restart")
    worker = workers(kafka_broker, group=group, input_topic=topic, extra=STATEFUL)
    worker.wait_ready()
    produce_to(kafka_broker, topic, before)
    read_topic(kafka_broker, worker.alerts_topic,
               lambda found: DELETE_RULE in {orjson.loads(m.value)["rule"]["id"] for m in found},
               timeout=90)
    worker.wait_idle()
    assert worker.terminate() == 0

    restarted = workers(kafka_broker, group=group, input_topic=topic, extra=STATEFUL)
    restarted.wait_ready(timeout=90)
    produce_to(kafka_broker, topic, copies(again))
    restarted.wait_idle()
    assert restarted.metric("detector_duplicate_events_total") == len(again)
    produce_to(kafka_broker, topic, rest)
    alerts = read_topic(kafka_broker, restarted.alerts_topic,
                        lambda found: alert_ids(found) >= expected, timeout=90, settle=5.0)
    assert alert_ids(alerts) == expected
    assert once_each(alerts) == {}  # the restarted worker remembered the event ids
    assert restarted.terminate() == 0
