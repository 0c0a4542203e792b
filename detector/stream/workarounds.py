"""Every workaround of a Faust (faust-streaming 0.15) shortcoming, in one place: each says
what it works around and where upstream tracks it, so a release that fixes one deletes it.

1. Fetches parked for 1.5 s (`_Consumer`, `_ConsumerThread`). Faust builds its aiokafka
   consumer with `fetch_max_wait_ms=1500` and no setting to change it. aiokafka keeps one fetch
   in flight per broker and leaves a partition out of the next fetch while records of it are
   still buffered, so once the worker has buffered input its next fetch asks only for the
   repartition partitions, which stay empty until the next commit; the broker holds that
   fetch for up to the wait while the input buffer runs dry (the worker idled about 40 % of
   the time, docs/BENCHMARKS.md, 5). The consumer here waits `DETECTOR_FETCH_MAX_WAIT`
   (100 ms by default; a fetch still returns as soon as any partition has data). No upstream
   issue found.
2. Sends before a commit (`DetectorApp.before_commit`, `_Consumer._commit_tps`). The outbox
   and the tables' changes are sent before offsets are committed, and the commit waits until
   the broker acknowledged them: Faust's own flush before a commit (faust-streaming PR #273)
   stops waiting when its buffer has not moved for 0.1 s.
3. A send that fails is committed over (`SendFailureStop`). Faust logs a message it could not
   send (after the producer's retries) and commits the offset it belonged to anyway; the
   worker stops at once instead (exit 75, `stop_unsent`), before that commit, and the restart
   processes the offset again. (robinhood/faust PR #76 crashes the app only for sends
   attached to a commit.)
4. Holes and repeats after a recovery (`ContinuityGuard`, over the pure
   `detector.stream.continuity.OffsetGuard`). While a restarted worker recovers its tables,
   Faust may fetch stream partitions before it seeks them back to their committed offsets
   (faust-streaming #596; the same race without tables was #216, fixed by PR #217), leaving
   holes in what the agents are given; a one-offset hole right after the committed offset is
   then committed over (faust-streaming #606, "Wrong offset commit in case of gaps", open;
   PR #707) and the record is lost. The guard seeks a hole back, drops repeats, asks the
   broker where records resume (`probe`: a plain consumer of its own) and clears Faust's gap
   bookkeeping (`_gap`) from the hole on, or Faust would commit over the re-read.
5. Committed offsets (`committed_offsets`): Faust keeps them in `Consumer._committed_offset`
   without a public accessor; the guard, the beats and the lag gauge read them there.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn, cast

import faust
from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as KafkaPartition
from faust.exceptions import ProducerSendError
from faust.transport.drivers import aiokafka
from faust.types import TP

from detector.stream.continuity import OffsetGuard, Verdict

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


class SendFailureStop(faust.Sensor):
    """Stops the worker the moment Faust reports a message it could not send (3.)."""

    def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
        stop_unsent(exc)


def committed_offsets(app: faust.App) -> Mapping[TP, int | None]:
    """Faust's committed offsets (next to read) of this worker's partitions (5.)."""
    committed: Mapping[TP, int | None] = getattr(app.consumer, "_committed_offset", {})
    return committed


class ContinuityGuard:
    """Every offset of a partition processed once, whatever Faust hands the agents (4.)."""

    def __init__(self, app: faust.App, client: Callable[[], dict[str, Any]]) -> None:
        self.app = app
        self.client = client  # aiokafka client options of the probe's consumer
        self.guard: OffsetGuard[TP] = OffsetGuard()
        self._probes: set[asyncio.Task[None]] = set()  # keeps the tasks alive

    async def admit(self, message: Any) -> bool:
        """Whether to process `message` (a Faust event's): False for one the guard drops,
        which must then not count as processed either."""
        tp = message.tp
        verdict = self.guard.check(tp, message.offset, committed_offsets(self.app).get(tp))
        await self._follow(tp, verdict)
        if not verdict.process:
            message.acked = True  # Faust then leaves its offset out of the commits
            self._forget_gaps(tp, self.guard.hole(tp))
        return verdict.process

    async def seek_holes_again(self) -> None:
        for tp, verdict in self.guard.overdue():
            await self._follow(tp, verdict)

    def reset(self) -> None:
        self.guard.reset()

    def _forget_gaps(self, tp: TP, start: int | None) -> None:
        """Faust takes offsets it saw jumped over for done (its gap bookkeeping, for
        compacted topics) and would commit over them; those of a hole being read again are
        not done."""
        gaps = getattr(self.app.consumer, "_gap", {})
        if start is not None and tp in gaps:
            gaps[tp].chop(start, sys.maxsize)

    async def _follow(self, tp: TP, verdict: Verdict) -> None:
        """Seek and probe as the offset guard says."""
        if verdict.seek is not None:
            await self.app.consumer.seek(tp, verdict.seek)
        if verdict.probe is not None:
            task = asyncio.create_task(probe(self.client(), self.guard, tp, verdict.probe))
            self._probes.add(task)
            task.add_done_callback(self._probes.discard)


async def probe(client: dict[str, Any], guard: OffsetGuard[TP], tp: TP, offset: int) -> None:
    """Ask the broker where the records of `tp` resume from `offset` (a plain consumer of
    its own: Faust's is the one that skipped them), and tell `guard`."""
    consumer = AIOKafkaConsumer(**client, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    partition = KafkaPartition(tp.topic, tp.partition)
    first: int | None = None
    try:
        await consumer.start()
        consumer.assign([partition])
        start = (await consumer.beginning_offsets([partition]))[partition]
        if offset < start:
            log.error("offsets %d-%d of %s were deleted (retention) before they were "
                      "processed", offset, start - 1, tp)
            first = start
        else:
            consumer.seek(partition, offset)
            batches = await consumer.getmany(partition, timeout_ms=5000, max_records=1)
            records = batches.get(partition, [])
            first = records[0].offset if records else None
    except Exception:
        log.warning("probing %s at offset %d failed; trying again", tp, offset, exc_info=True)
    finally:
        await consumer.stop()
        guard.probed(tp, offset, first)
