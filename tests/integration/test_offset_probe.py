"""The offset guard's probe asks the real broker where a partition's records resume."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.records_to_delete import RecordsToDelete
from aiokafka.structs import TopicPartition
from faust.types import TP
from kafka_broker import KafkaBroker

from detector.settings.kafka import client_options
from detector.settings.worker import WorkerSettings as Settings
from detector.stream.continuity import OffsetGuard
from detector.stream.workarounds import probe
from integration.worker_support import unique

pytestmark = pytest.mark.integration


async def _filled(broker: KafkaBroker, topic: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        for number in range(count):
            await producer.send_and_wait(topic, b"%d" % number, partition=0)
    finally:
        await producer.stop()


def _probed(broker: KafkaBroker, topic: str, missing: int, revealed_by: int,
             deleted_before: int | None = None) -> OffsetGuard[TP]:
    """A guard that met a hole at `missing` in the topic's partition 0, once probed."""
    async def run() -> OffsetGuard[TP]:
        await _filled(broker, topic, 10)
        if deleted_before is not None:  # as retention would
            admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
            await admin.start()
            try:
                await admin.delete_records(
                    {TopicPartition(topic, 0): RecordsToDelete(deleted_before)})
            finally:
                await admin.close()
        tp = TP(topic, 0)
        guard: OffsetGuard[TP] = OffsetGuard()
        assert guard.check(tp, revealed_by, missing).seek == missing
        settings = Settings(bootstrap_servers=(broker.bootstrap,))
        await probe(client_options(settings), guard, tp, missing)
        return guard

    return asyncio.run(run())


def test_a_skipped_record_is_found_where_it_was(kafka_broker: KafkaBroker) -> None:
    topic = unique("probe")
    kafka_broker.create_topic(topic)
    guard = _probed(kafka_broker, topic, missing=3, revealed_by=6)
    assert not guard.check(TP(topic, 0), 4, 3).process  # 3 exists: a re-read from 4 is not it
    assert guard.check(TP(topic, 0), 3, 3).process


def test_offsets_deleted_by_retention_resume_at_the_log_start(
    kafka_broker: KafkaBroker
) -> None:
    topic = unique("probe-gone")
    kafka_broker.create_topic(topic)
    guard = _probed(kafka_broker, topic, missing=2, revealed_by=5, deleted_before=5)
    assert guard.check(TP(topic, 0), 5, 2).process  # records resume at the log start
