"""The session broker is a real Kafka: records round-trip, topics get the partitions asked for."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from kafka_broker import KafkaBroker

pytestmark = pytest.mark.integration


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def test_broker_listens_on_loopback_only(kafka_broker: KafkaBroker) -> None:
    host, _, port = kafka_broker.bootstrap.partition(":")
    assert host == "127.0.0.1"
    assert int(port) > 0
    assert kafka_broker.is_running()
    listeners = (kafka_broker.directory / "server.properties").read_text()
    assert "listeners=PLAINTEXT://127.0.0.1:" in listeners
    assert "CONTROLLER://127.0.0.1:" in listeners


async def test_a_produced_record_is_consumed_back(kafka_broker: KafkaBroker) -> None:
    topic = unique("roundtrip")
    kafka_broker.create_topic(topic)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, b"event-payload", key=b"principal-1")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_broker.bootstrap,
        group_id=unique("roundtrip-group"),
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=15_000, max_records=1)
    finally:
        await consumer.stop()

    records = [record for batch in batches.values() for record in batch]
    assert [(r.key, r.value, r.offset) for r in records] == [
        (b"principal-1", b"event-payload", sent.offset)
    ]


async def test_create_topic_makes_the_requested_partitions(kafka_broker: KafkaBroker) -> None:
    topic = unique("partitioned")
    kafka_broker.create_topic(topic, partitions=3)

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()

    assert described["error_code"] == 0
    assert sorted(p["partition"] for p in described["partitions"]) == [0, 1, 2]
    assert all(p["leader"] == 1 for p in described["partitions"])


def test_creating_an_existing_topic_is_an_error(kafka_broker: KafkaBroker) -> None:
    topic = unique("twice")
    kafka_broker.create_topic(topic)
    with pytest.raises(RuntimeError, match=topic):
        kafka_broker.create_topic(topic)
