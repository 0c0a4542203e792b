"""Faust's Kafka transport, with a consumer that does not park its fetches for 1.5 s and
that lets the worker send its table changes before every commit.

Faust builds its aiokafka consumer with `fetch_max_wait_ms=1500` and no setting to change it.
aiokafka keeps one fetch in flight per broker, and leaves a partition out of the next fetch
while records of it are still buffered. So once the worker has buffered input, its next fetch
asks only for the repartition partitions, which stay empty until the next commit (Faust
publishes what an event sends when its offset is committed); the broker holds that fetch for
up to the wait, and the input buffer runs dry meanwhile: the worker idled about 40 % of the
time (docs/BENCHMARKS.md, 5). A fetch still returns as soon as any of its partitions has data,
so a shorter wait (`DETECTOR_FETCH_MAX_WAIT`, 100 ms by default) only adds empty fetches
while a worker has nothing to do: ten a second at 100 ms.

Before committing offsets Faust publishes what the events sent and flushes the producer; the
app's `before_commit` callbacks run first, so what they send (the changes of the stateful
tables, `detector.stream.tables.Changelog`) is flushed with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, cast

import faust
from faust.transport.drivers import aiokafka
from faust.types import TP


class _ConsumerThread(aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: aiokafka.Transport) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads this when the consumer starts (its fetcher is built then).
        wait = cast(DetectorApp, self.app).fetch_max_wait
        consumer._fetch_max_wait_ms = max(1, round(wait * 1000))  # 0 would spin
        return consumer


class _Consumer(aiokafka.Consumer):
    def _new_consumer_thread(self) -> aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _commit_tps(self, tps: Iterable[TP], start_new_transaction: bool) -> bool:
        for callback in cast(DetectorApp, self.app).before_commit:
            callback()
        return await super()._commit_tps(tps, start_new_transaction)


class Transport(aiokafka.Transport):
    Consumer = _Consumer


class DetectorApp(faust.App):
    """A faust App whose consumer waits at most `fetch_max_wait` seconds for a fetch and
    calls `before_commit` before each commit of offsets."""

    def __init__(self, *args: Any, fetch_max_wait: float, **kwargs: Any) -> None:
        self.fetch_max_wait = fetch_max_wait
        self.before_commit: list[Callable[[], None]] = []
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Transport:
        return Transport(self.conf.broker_consumer, self)
