"""The Faust app of one worker process, built from Settings by `create_app` (no singleton).

Data flow:

    input topic --(decode, single-event rules)------------------------> alerts topic
                |--(undecodable)------------------------------------> dead-letter topic
                \\--(matched a stateful rule)--> <group>-repartition --(Table state)--> alerts

One repartition topic and one Table (changelog topic) per group of stateful rules that are
partitioned alike (see `detector.stream.groups`), all with `state_partitions` partitions.
Every second each worker also tells every state partition how far its input partitions have
got in event time, as far as their offsets are committed (beats; `detector.stream.watermark`).

Alerts and dead letters are sent inside the agent's event, so Faust attaches them to the
input offset: the messages are flushed before that offset is committed (at-least-once,
`concurrency=1` as the design requires, faust-streaming issue 606). Every message the worker
produces counts as sent once all in-sync replicas have it (acks=all). The records for the
stateful groups wait in an outbox and go out just before each commit, together with the
tables' changes (`DetectorApp.before_commit`), a message per group partition. Both agents
pass every message through an offset guard first (`detector.stream.continuity`): after a
table recovery Faust can skip messages, and the guard reads them again. Faust only logs a
send that fails (after the producer's own retries) and commits the offset anyway, so the
worker stops at once when one fails (`SendFailureStop`, exit code 75): the offsets whose
output did not leave stay uncommitted and are processed again after the restart.

No message can stop the worker for good (`_attempt`): an exception while processing it sends
it (or the record that raised) to the dead-letter topic, and a message the worker died on
`max_attempts` times goes there unprocessed (`detector.stream.attempts`).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from signal import SIGHUP
from typing import Any, NamedTuple

import faust
from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as KafkaPartition
from faust.types import TP
from prometheus_client import CollectorRegistry

from detector.engine import LoadResult
from detector.metrics import Metrics
from detector.settings.kafka import broker_credentials, client_options
from detector.settings.worker import WorkerSettings as Settings
from detector.sinks import SinkSet, load_sinks
from detector.stream.attempts import Attempts, Slot
from detector.stream.continuity import OffsetGuard, Verdict
from detector.stream.deadletter import Source
from detector.stream.evaluation import GroupEvaluator
from detector.stream.groups import Group
from detector.stream.processor import Output, Processor
from detector.stream.repartition import TICK, Outbox
from detector.stream.rules import RuleSource
from detector.stream.status import LagTracker, TopicPartition, WorkerStatus
from detector.stream.topics import (
    changelog_topic_config,
    output_message_bytes,
    output_topic_config,
    repartition_topic,
    table_name,
)
from detector.stream.transport import DetectorApp, Sends, stop_unsent, wait_sent
from detector.stream.web import install_pages

log = logging.getLogger(__name__)
TICK_SECONDS = 1.0
BEAT_SECONDS = 1.0  # how often the input partitions' committed progress is told
SINK_DRAIN_SECONDS = 5.0


@dataclass
class Detector:
    """One worker's Faust app and everything it drives."""

    app: DetectorApp
    settings: Settings
    registry: CollectorRegistry
    metrics: Metrics
    processor: Processor
    rules: RuleSource
    status: WorkerStatus
    sinks: SinkSet
    attempts: Attempts
    runners: dict[str, GroupEvaluator]
    outbox: Outbox = field(default_factory=Outbox)  # records for the groups, sent at commits
    guard: OffsetGuard[TP] = field(default_factory=OffsetGuard)
    probes: set[asyncio.Task[None]] = field(default_factory=set)  # keeps the tasks alive


class SendFailureStop(faust.Sensor):
    """Stops the worker the moment Faust reports a message it could not send.

    Faust reports the failure, then commits the input offset the message belonged to, which
    would lose an alert (or a state change) for good. Exiting before that commit keeps the
    offset uncommitted: the restarted worker processes the message again (at-least-once).
    """

    def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
        stop_unsent(exc)


def faust_settings(settings: Settings) -> dict[str, Any]:
    """Faust configuration for `settings` (one place, so tests can read what is set)."""
    return {
        "broker": [f"kafka://{server}" for server in settings.bootstrap_servers],
        "broker_credentials": broker_credentials(settings),
        "autodiscover": False,
        "datadir": settings.data_dir,
        "store": "memory://",
        "processing_guarantee": "at_least_once",
        "topic_partitions": settings.state_partitions,
        "topic_replication_factor": settings.replication_factor,
        "broker_commit_interval": settings.commit_interval,
        "broker_session_timeout": settings.session_timeout,
        "broker_heartbeat_interval": settings.heartbeat_interval,
        "consumer_auto_offset_reset": settings.auto_offset_reset,
        "producer_max_request_size": output_message_bytes(settings),
        "producer_acks": -1,  # all in-sync replicas (Faust's default too; aiokafka's is 1)
        "web_enabled": True,
        "web_bind": settings.web_host,
        "web_port": settings.web_port,
        "web_tables_enabled": False,
        "web_router_enabled": False,
        "web_graph_enabled": False,
        "worker_redirect_stdouts": False,  # stdout carries alerts only (the stdout sink)
    }


def create_app(settings: Settings, rules: RuleSource, loaded: LoadResult, *,
               registry: CollectorRegistry | None = None,
               environ: Mapping[str, str] | None = None) -> Detector:
    """A new Faust app wired to `loaded` rules; each call is independent of the others.

    Sinks besides the alerts topic (webhooks, Slack, Alertmanager, stdout) come from the
    environment (`environ`, default os.environ; docs/sinks.md); a bad sink setting raises
    SinkConfigError.
    """
    registry = registry if registry is not None else CollectorRegistry()
    metrics = Metrics(registry)
    processor = Processor(loaded.ruleset, metrics, settings.limits, settings.state_partitions,
                          settings.alert_format)
    attempts = Attempts.open(Path(settings.data_dir), agents=1 + len(processor.groups))
    _record_reload(metrics, ok=not loaded.errors, initial=True)
    app = DetectorApp(settings.group_id, fetch_max_wait=settings.fetch_max_wait,
                      **faust_settings(settings))
    app.sensors.add(SendFailureStop())
    status = WorkerStatus(
        rules=rules,
        lag=LagTracker(metrics.consumer_lag, settings.stall_timeout),
        rule_count=lambda: processor.engine.rule_count,
        rebalancing=lambda: bool(app.rebalancing or getattr(app, "in_recovery", False)),
    )
    detector = Detector(app, settings, registry, metrics, processor, rules, status,
                        load_sinks(metrics, environ), attempts, {})
    _wire(detector)
    install_pages(app, status, registry, faust_metrics=settings.faust_metrics)
    return detector


def _wire(detector: Detector) -> None:
    """Topics, the agent, timers and rebalance hooks of one app."""
    app, settings = detector.app, detector.settings
    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes,
                           "key_serializer": "raw", "value_serializer": "raw"}
    input_topic = app.topic(settings.input_topic, allow_empty=True, **raw)
    config = output_topic_config(settings)
    alerts_topic = app.topic(settings.alerts_topic, config=config, **raw)
    dead_letter_topic = app.topic(settings.dead_letter_topic, config=config, **raw)
    consumed = {settings.input_topic}
    outputs = Outputs(alerts_topic, dead_letter_topic)
    slot = detector.attempts.slot()

    async def consume_input(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        async for event in stream.events():
            if not await _admit(detector, event):
                continue
            output = _attempt(detector, slot, event, detector.processor.on_message)
            await _dispatch(detector, output, outputs)
            yield None

    app.agent(input_topic, name="detector.input", concurrency=1)(consume_input)
    group_topics = {group.name: _wire_group(detector, group, outputs)
                    for group in detector.processor.groups}
    consumed.update(topic.get_topic_name() for topic in group_topics.values())

    def send_forwards() -> Sends:
        return [group_topics[forward.group].send_soon(key=forward.key, value=forward.value,
                                                      partition=forward.partition)
                for forward in detector.outbox.take()]

    app.before_commit.append(send_forwards)

    async def tick_groups() -> None:
        for topic in group_topics.values():
            for partition in range(settings.state_partitions):
                await topic.send(value=TICK, partition=partition)

    async def beat_sources() -> None:
        consumer = app.consumer
        committed = _committed(app)
        for tp in consumer.assignment():
            if tp.topic != settings.input_topic:
                continue
            beats = detector.processor.beats(tp.partition, committed.get(tp),
                                             consumer.highwater(tp))
            for forward in beats:
                await group_topics[forward.group].send(value=forward.value,
                                                       partition=forward.partition)

    if group_topics:
        app.timer(max(1.0, settings.idle_timeout), on_leader=True,
                  name="detector.idle-tick")(_guarded(tick_groups))
        app.timer(BEAT_SECONDS, name="detector.beat")(_guarded(beat_sources))

    _wire_lifecycle(detector, [alerts_topic, dead_letter_topic], consumed)


def _wire_lifecycle(detector: Detector, outputs: list[faust.TopicT], consumed: set[str]) -> None:
    """Start-up tasks, timers (loop heartbeat, gauges, rule reload) and rebalance hooks."""
    app, settings = detector.app, detector.settings

    async def declare_output_topics() -> None:
        for topic in outputs:
            await topic.maybe_declare()

    async def start_sinks() -> None:
        await detector.sinks.start()

    async def close_sinks(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await detector.sinks.close(timeout=SINK_DRAIN_SECONDS)

    app.task(_guarded(declare_output_topics))
    app.task(start_sinks)
    app.on_before_shutdown.connect(close_sinks)

    async def tick() -> None:
        detector.status.tick()

    async def update_gauges() -> None:
        await _update_lag(detector, consumed)
        _update_state_entries(detector)

    async def check_rules() -> None:
        reload_rules(detector)

    async def seek_holes_again() -> None:
        for tp, verdict in detector.guard.overdue():
            await _follow(detector, tp, verdict)

    async def reload_on_sighup() -> None:
        asyncio.get_running_loop().add_signal_handler(SIGHUP, reload_rules, detector, True)

    app.task(reload_on_sighup)
    app.timer(TICK_SECONDS, name="detector.tick")(tick)
    app.timer(TICK_SECONDS, name="detector.holes")(_guarded(seek_holes_again))
    app.timer(settings.lag_interval, name="detector.gauges")(_guarded(update_gauges))
    if settings.reload_interval > 0:
        app.timer(settings.reload_interval, name="detector.reload")(_guarded(check_rules))

    async def on_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        assigned = args[0] if args else kwargs.get("assigned", ())
        for runner in detector.runners.values():
            runner.reset()
        detector.guard.reset()
        detector.status.on_assigned(
            (tp.topic, tp.partition) for tp in assigned if tp.topic in consumed
        )

    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # What is still pending goes out before the partitions' next owner reads it: Faust's
        # last commit before a rebalance sends nothing when a periodic commit is still
        # running. The events may come again (their offsets may not be committed), which
        # only repeats records and changes.
        await wait_sent(app.send_pending())
        for runner in detector.runners.values():
            runner.reset()
        detector.processor.progress.forget()
        detector.guard.reset()
        detector.status.on_revoked()

    app.on_partitions_assigned.connect(on_assigned)
    app.on_partitions_revoked.connect(on_revoked)


def _wire_group(detector: Detector, group: Group, outputs: Outputs) -> faust.TopicT:
    """The repartition topic, Table and agent of one group of stateful rules."""
    app, settings = detector.app, detector.settings
    topic = app.topic(repartition_topic(settings, group.name), internal=True,
                      partitions=settings.state_partitions, key_type=bytes, value_type=bytes,
                      key_serializer="raw", value_serializer="raw",
                      config=output_topic_config(settings))
    table = app.Table(table_name(group.name), partitions=settings.state_partitions,
                      key_type=str, help=f"state of the rules grouped by {', '.join(group.fields)}",
                      extra_topic_configs=changelog_topic_config(settings))

    def input_partitions() -> int:
        return app.consumer.topic_partitions(settings.input_topic) or 0

    runner = GroupEvaluator(group, table, detector.metrics, partitions=settings.state_partitions,
                         lateness=settings.lateness_seconds, idle_timeout=settings.idle_timeout,
                         input_partitions=input_partitions,
                         max_bytes=detector.processor.max_output_bytes,
                         alert_format=settings.alert_format)
    detector.runners[group.name] = runner
    app.before_commit.append(runner.changelog.publish)

    def evaluate_message(value: bytes, source: Source) -> Output:
        try:
            sent = runner.process(source.partition, source.offset, value)
        finally:
            failures = runner.take_failures()
        output = Output(alerts=sent)
        for failed in failures:
            output.dead_letters.append(detector.processor.record_failed(
                source, failed.value, failed.failures, index=failed.index,
                reason=failed.reason, error=failed.exception))
        return output

    slot = detector.attempts.slot()

    async def evaluate(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        async for event in stream.events():
            if not await _admit(detector, event):
                continue
            output = _attempt(detector, slot, event, evaluate_message)
            await _dispatch(detector, output, outputs)
            yield None

    app.agent(topic, name=f"detector.state.{group.name}", concurrency=1)(evaluate)
    return topic


def _committed(app: faust.App) -> Mapping[TP, int | None]:
    """Faust's committed offsets (next to read) of this worker's partitions."""
    committed: Mapping[TP, int | None] = getattr(app.consumer, "_committed_offset", {})
    return committed


async def _admit(detector: Detector, event: faust.EventT[bytes]) -> bool:
    """Whether to process `event`: False for a message the offset guard drops (see
    `detector.stream.continuity`), which must then not count as processed either."""
    message = event.message
    tp = message.tp
    guard = detector.guard
    verdict = guard.check(tp, message.offset, _committed(detector.app).get(tp))
    await _follow(detector, tp, verdict)
    if not verdict.process:
        message.acked = True  # Faust then leaves its offset out of the commits
        _forget_gaps(detector.app, tp, guard.hole(tp))
    return verdict.process


def _forget_gaps(app: faust.App, tp: TP, start: int | None) -> None:
    """Faust takes offsets it saw jumped over for done (its gap bookkeeping, for compacted
    topics) and would commit over them; those of a hole being read again are not done."""
    gaps = getattr(app.consumer, "_gap", {})
    if start is not None and tp in gaps:
        gaps[tp].chop(start, sys.maxsize)


async def _follow(detector: Detector, tp: TP, verdict: Verdict) -> None:
    """Seek and probe as the offset guard says."""
    if verdict.seek is not None:
        await detector.app.consumer.seek(tp, verdict.seek)
    if verdict.probe is not None:
        task = asyncio.create_task(_probe(detector, tp, verdict.probe))
        detector.probes.add(task)
        task.add_done_callback(detector.probes.discard)


async def _probe(detector: Detector, tp: TP, offset: int) -> None:
    """Ask the broker where the records of `tp` resume from `offset` (a plain consumer of
    its own: Faust's is the one that skipped them)."""
    consumer = AIOKafkaConsumer(**client_options(detector.settings), group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
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
        detector.guard.probed(tp, offset, first)


def _guarded(job: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """A timer or task whose failure is logged: in Faust it would crash the whole worker
    (a lag probe during a rebalance raises IllegalStateError, for one)."""

    async def run() -> None:
        try:
            await job()
        except Exception:
            log.warning("%s failed; trying again next time", job.__name__, exc_info=True)

    run.__name__ = run.__qualname__ = job.__name__
    return run


class Outputs(NamedTuple):
    """The topics an agent sends an event's alerts and dead letters to."""

    alerts: faust.TopicT
    dead_letters: faust.TopicT


def _attempt(detector: Detector, slot: Slot, event: faust.EventT[bytes],
             process: Callable[[bytes, Source], Output]) -> Output:
    """`process` one message, noted in the agent's slot (`detector.stream.attempts`): a
    message the worker died on `max_attempts` times goes to the dead-letter topic instead,
    and so does a message whose processing raised (our bug, which must cost the message,
    not the worker)."""
    message = event.message
    value = event.value if isinstance(event.value, bytes) else b""
    headers = message.headers or ()
    source = Source(message.topic, message.partition, message.offset, message.key,
                    list(headers.items() if isinstance(headers, Mapping) else headers))
    key = (message.topic, message.partition, message.offset)
    deaths = slot.deaths(key)
    if deaths >= detector.settings.max_attempts:
        return detector.processor.abandoned(value, source, deaths)
    slot.begin(key)
    try:
        return process(value, source)
    except Exception as error:
        return detector.processor.failed(value, source, error)
    finally:
        slot.end()


async def _dispatch(detector: Detector, output: Output, topics: Outputs) -> None:
    """Send what an event produced: attached to its offset (at-least-once), then to the
    outbox and the sinks. A message the producer does not take stops the worker (exit 75)
    before the offset is committed, like a send the broker refused."""
    outgoing = [Outgoing(topics.dead_letters, letter.key, letter.value, letter.headers)
                for letter in output.dead_letters]
    outgoing += [Outgoing(topics.alerts, item.key, item.value, item.headers)
                 for item in output.alerts]
    try:
        await deliver(outgoing)
    except Exception as error:
        stop_unsent(error)
    detector.outbox.add(output.forwards)
    for item in output.alerts:
        if item.alert is not None:
            detector.sinks.submit(item.alert)


class Outgoing(NamedTuple):
    """One message an event produces."""

    topic: faust.TopicT
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] | None
    partition: int | None = None


async def deliver(messages: list[Outgoing]) -> None:
    """Send an event's messages, attached to its offset (flushed before the commit)."""
    for message in messages:
        await message.topic.send(key=message.key, value=message.value, headers=message.headers,
                                 partition=message.partition)


async def _update_lag(detector: Detector, consumed: set[str]) -> None:
    """Refresh the lag gauge from the brokers' end offsets and our committed offsets."""
    consumer = detector.app.consumer
    assigned = [tp for tp in consumer.assignment() if tp.topic in consumed]
    if not assigned:
        detector.status.lag.update({})
        return
    ends = await consumer.highwaters(*assigned)
    committed_offsets = _committed(detector.app)
    offsets: dict[TopicPartition, tuple[int | None, int]] = {}
    for tp in assigned:
        committed = committed_offsets.get(tp)
        if committed is None:
            committed = await consumer.position(tp)
        offsets[(tp.topic, tp.partition)] = (committed, int(ends.get(tp, 0)))
    detector.status.lag.update(offsets)


_ENTRY_KINDS = {"fs": "first_seen", "co": "correlation", "su": "suppression",
                "@sent": "alert_ledger", "@clock": "clock", "@definitions": "definitions",
                "@keyed": "definitions"}


def _update_state_entries(detector: Detector) -> None:
    """Entries held in this worker's tables (active and standby partitions), by kind."""
    totals = dict.fromkeys(_ENTRY_KINDS.values(), 0)
    for runner in detector.runners.values():
        for kind, count in runner.entries().items():
            name = _ENTRY_KINDS.get(kind, "other")
            totals[name] = totals.get(name, 0) + count
    for name, count in totals.items():
        detector.metrics.state_entries.labels(name).set(count)


def reload_rules(detector: Detector, force: bool = False) -> None:
    """Swap in the rules when their files changed (or `force`, on SIGHUP) and load cleanly;
    else keep the old ones."""
    rules = detector.rules
    if not force and not rules.changed():
        return
    result = rules.load()
    if result.errors:
        log.error("rule reload failed, keeping the running rules:\n%s",
                  "\n".join(rules.status.errors))
        _record_reload(detector.metrics, ok=False)
        return
    problem = detector.processor.swap(result.ruleset)
    if problem is not None:
        rules.status.ok = False
        rules.status.errors = [problem]
        log.error("rule reload refused, keeping the running rules: %s", problem)
        _record_reload(detector.metrics, ok=False)
        return
    for group in detector.processor.groups:
        detector.runners[group.name].swap(group)
    log.info("rules reloaded: %d active", detector.processor.engine.rule_count)
    _record_reload(detector.metrics, ok=True)


def _record_reload(metrics: Metrics, *, ok: bool, initial: bool = False) -> None:
    if not initial:
        metrics.reloads.labels("success" if ok else "failure").inc()
    metrics.last_reload_success.set(1 if ok else 0)
