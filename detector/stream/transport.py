"""Faust's Kafka transport, with a consumer that does not park its fetches for 1.5 s and
that lets the worker send its outbox and table changes before every commit.

Faust builds its aiokafka consumer with `fetch_max_wait_ms=1500` and no setting to change it.
aiokafka keeps one fetch in flight per broker, and leaves a partition out of the next fetch
while records of it are still buffered. So once the worker has buffered input, its next fetch
asks only for the repartition partitions, which stay empty until the next commit (Faust
publishes what an event sends when its offset is committed); the broker holds that fetch for
up to the wait, and the input buffer runs dry meanwhile: the worker idled about 40 % of the
time (docs/BENCHMARKS.md, 5). A fetch still returns as soon as any of its partitions has data,
so a shorter wait (`DETECTOR_FETCH_MAX_WAIT`, 100 ms by default) only adds empty fetches
while a worker has nothing to do: ten a second at 100 ms.

Before committing offsets the consumer runs the app's `before_commit` callbacks (the outbox of
records for the stateful groups, the tables' changes: `detector.stream.tables.Changelog`),
takes the offsets to commit at once (no event runs in between) and commits them only once the
broker has acknowledged every message the callbacks sent. Faust's own flush before a commit
is not enough for them: it stops waiting when its buffer has not moved for 0.1 s.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any, NoReturn, cast

import faust
from faust.exceptions import ProducerSendError
from faust.transport.drivers import aiokafka
from faust.types import TP

log = logging.getLogger(__name__)
EXIT_SEND_FAILED = 75  # EX_TEMPFAIL: a message could not be sent; restart to send it again
# Seconds a commit (or a rebalance) waits for the broker to take what it sends first: under
# Faust's 60 s rebalance timeout, so a worker stuck on a send leaves rather than being dropped.
SEND_WAIT = 50.0

Sends = list[asyncio.Future[Any]]  # messages on their way, done when the broker has them


async def wait_sent(sends: Sends) -> None:
    """Return once the broker has every message of `sends`; stop the worker if one fails."""
    if not sends:
        return
    # asyncio.wait, not wait_for: a cancelled wait must not cancel the messages themselves.
    done, waiting = await asyncio.wait(sends, timeout=SEND_WAIT)
    if waiting:
        stop_unsent(TimeoutError(f"{len(waiting)} message(s) unacknowledged after {SEND_WAIT} s"))
    for send in done:
        failure = send.exception()
        if failure is not None:
            stop_unsent(failure)


def stop_unsent(exc: BaseException) -> NoReturn:
    """Exit before the offsets the message belonged to are committed: the restarted worker
    processes them again (at-least-once), and a persistent cause shows as a crash loop."""
    log.critical("a message could not be sent (%s: %s); stopping before its offset is "
                 "committed, it is processed again after the restart", type(exc).__name__, exc)
    logging.shutdown()
    os._exit(EXIT_SEND_FAILED)


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
        """Faust's, with the `before_commit` sends first and waited for."""
        sends = cast(DetectorApp, self.app).send_pending()
        offsets = self._filter_committable_offsets(tps)
        await wait_sent(sends)
        if not offsets:
            return False
        try:
            await self._handle_attached(offsets)  # what the events sent, as Faust does
        except ProducerSendError as exc:
            await self.crash(exc)
            return False
        committed: bool = await self._commit_offsets(
            offsets, start_new_transaction=start_new_transaction)
        return committed


class Transport(aiokafka.Transport):
    Consumer = _Consumer


class DetectorApp(faust.App):
    """A faust App whose consumer waits at most `fetch_max_wait` seconds for a fetch and
    calls `before_commit` before each commit of offsets."""

    def __init__(self, *args: Any, fetch_max_wait: float, **kwargs: Any) -> None:
        self.fetch_max_wait = fetch_max_wait
        self.before_commit: list[Callable[[], Sends]] = []
        super().__init__(*args, **kwargs)

    def send_pending(self) -> Sends:
        """What the `before_commit` callbacks send."""
        return [send for callback in self.before_commit for send in callback()]

    def _new_transport(self) -> Transport:
        return Transport(self.conf.broker_consumer, self)
