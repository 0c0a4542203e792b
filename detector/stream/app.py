"""The Faust app of one worker process, assembled from Settings by `create_app` (no singleton).

    input topic -> input agent (decode, match: `Processor`) -> outbox
        -> <group>-repartition -> state agent (admit, alert, decide: `GroupEvaluator`
           over the group's Table) -> publisher -> alerts topic and sinks
    (undecodable input, failing records -> dead-letter topic)

One repartition topic and one Table (changelog topic) per group of stateful rules partitioned
alike, and one partitioned by eventID (`detector.stream.groups`), all with `state_partitions`
partitions. The agents (`detector.stream.agents`) run with `concurrency=1`. The outbox and the
tables' changes go out just before each commit (`workarounds.DetectorApp.before_commit`), a
message per group partition. Every second each worker also tells every state partition how
far its input partitions have got in event time, as far as their offsets are committed
(beats; `detector.stream.watermark`), and the leader ticks idle partitions. Everything that
works around Faust is in `detector.stream.workarounds`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from signal import SIGHUP
from typing import Any

import faust
from faust.types import TP
from prometheus_client import CollectorRegistry

from detector.engine import LoadResult
from detector.metrics import Metrics
from detector.settings.kafka import broker_credentials, client_options
from detector.settings.worker import WorkerSettings as Settings
from detector.sinks import SinkSet, load_sinks
from detector.stream.agents import InputAgent, StateAgent
from detector.stream.attempts import Attempts
from detector.stream.evaluation import GroupEvaluator
from detector.stream.gauges import update_lag, update_state_gauges
from detector.stream.groups import Group
from detector.stream.processor import Processor
from detector.stream.publisher import Publisher
from detector.stream.repartition import TICK, Outbox
from detector.stream.rules import Reloader, RuleSource
from detector.stream.status import LagTracker, WorkerStatus
from detector.stream.topics import (
    changelog_topic_config,
    output_message_bytes,
    output_topic_config,
    repartition_topic,
    table_name,
)
from detector.stream.web import install_pages
from detector.stream.workarounds import (
    ContinuityGuard,
    DetectorApp,
    SendFailureStop,
    Sends,
    committed_offsets,
    wait_sent,
)

log = logging.getLogger(__name__)
TICK_SECONDS = 1.0
BEAT_SECONDS = 1.0  # how often the input partitions' committed progress is told
SINK_DRAIN_SECONDS = 5.0
RAW: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw",
                       "value_serializer": "raw"}


@dataclass
class Detector:
    """One worker's Faust app and everything it drives."""

    app: DetectorApp
    settings: Settings
    registry: CollectorRegistry
    metrics: Metrics
    processor: Processor
    rules: RuleSource
    reloader: Reloader
    status: WorkerStatus
    sinks: SinkSet
    attempts: Attempts
    guard: ContinuityGuard
    evaluators: dict[str, GroupEvaluator] = field(default_factory=dict)
    held: dict[str, set[int]] = field(default_factory=dict)  # state partitions, per group
    outbox: Outbox = field(default_factory=Outbox)  # records for the groups, sent at commits
    agents: list[InputAgent | StateAgent] = field(default_factory=list)


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
        "producer_linger": settings.producer_linger,
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
    SettingsError.
    """
    registry = registry if registry is not None else CollectorRegistry()
    metrics = Metrics(registry)
    processor = Processor(loaded.ruleset, metrics, settings.limits, settings.state_partitions,
                          settings.alert_format)
    attempts = Attempts.open(Path(settings.data_dir), agents=1 + len(processor.groups))
    app = DetectorApp(settings.group_id, fetch_max_wait=settings.fetch_max_wait,
                      **faust_settings(settings))
    app.sensors.add(SendFailureStop())
    status = WorkerStatus(
        rules=rules,
        lag=LagTracker(metrics.consumer_lag, settings.stall_timeout),
        rule_count=lambda: processor.engine.rule_count,
        rebalancing=lambda: bool(app.rebalancing or getattr(app, "in_recovery", False)),
    )
    evaluators: dict[str, GroupEvaluator] = {}
    detector = Detector(app, settings, registry, metrics, processor, rules,
                        Reloader(rules, processor, evaluators, metrics), status,
                        load_sinks(metrics, environ), attempts,
                        ContinuityGuard(app, lambda: client_options(settings)), evaluators)
    _wire(detector)
    install_pages(app, status, registry, faust_metrics=settings.faust_metrics)
    return detector


def _wire(detector: Detector) -> None:
    """Topics, agents, timers and rebalance hooks of one app."""
    app, settings = detector.app, detector.settings
    config = output_topic_config(settings)
    alerts_topic = app.topic(settings.alerts_topic, config=config, **RAW)
    dead_letter_topic = app.topic(settings.dead_letter_topic, config=config, **RAW)
    publisher = Publisher(alerts_topic, dead_letter_topic, detector.sinks, detector.metrics)
    group_topics = {group.name: _wire_group(detector, group, publisher)
                    for group in detector.processor.groups}
    input_agent = InputAgent(
        detector.processor, detector.attempts.slot(), detector.guard, publisher,
        max_attempts=settings.max_attempts, outbox=detector.outbox,
        local={name: (detector.evaluators[name], detector.held[name]) for name in group_topics})
    _agent(detector, app.topic(settings.input_topic, allow_empty=True, **RAW), input_agent,
           "detector.input")

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
        committed = committed_offsets(app)
        for tp in consumer.assignment():
            if tp.topic != settings.input_topic:
                continue
            for forward in detector.processor.beats(tp.partition, committed.get(tp),
                                                    consumer.highwater(tp)):
                await group_topics[forward.group].send(value=forward.value,
                                                       partition=forward.partition)

    app.timer(max(1.0, settings.idle_timeout), on_leader=True,
              name="detector.idle-tick")(_guarded(tick_groups))
    app.timer(BEAT_SECONDS, name="detector.beat")(_guarded(beat_sources))
    by_topic = {topic.get_topic_name(): name for name, topic in group_topics.items()}
    _wire_lifecycle(detector, [alerts_topic, dead_letter_topic], by_topic)


def _wire_group(detector: Detector, group: Group, publisher: Publisher) -> faust.TopicT:
    """The repartition topic, Table, evaluator and agent of one group."""
    app, settings = detector.app, detector.settings
    topic: faust.TopicT = app.topic(
        repartition_topic(settings, group.name), internal=True,
        partitions=settings.state_partitions, config=output_topic_config(settings), **RAW)
    table = app.Table(table_name(group.name), partitions=settings.state_partitions,
                      key_type=str, help=f"state of the rules grouped by {', '.join(group.fields)}",
                      extra_topic_configs=changelog_topic_config(settings))

    def input_partitions() -> int:
        return app.consumer.topic_partitions(settings.input_topic) or 0

    evaluator = GroupEvaluator(group, table, detector.metrics,
                               partitions=settings.state_partitions,
                               lateness=settings.lateness_seconds,
                               idle_timeout=settings.idle_timeout,
                               input_partitions=input_partitions,
                               max_bytes=detector.processor.max_output_bytes,
                               alert_format=settings.alert_format)
    detector.evaluators[group.name] = evaluator
    detector.held[group.name] = set()
    app.before_commit.append(evaluator.publish)
    agent = StateAgent(detector.processor, detector.attempts.slot(), detector.guard, publisher,
                       max_attempts=settings.max_attempts, evaluator=evaluator)
    _agent(detector, topic, agent, f"detector.state.{group.name}")
    return topic


def _agent(detector: Detector, topic: faust.TopicT, agent: InputAgent | StateAgent,
           name: str) -> None:
    """`agent` reading `topic`, one event at a time (Faust's at-least-once needs it)."""
    async def consume(stream: faust.StreamT[bytes]) -> Any:
        async for event in stream.events():
            await agent.handle(event)
            yield None

    detector.agents.append(agent)
    detector.app.agent(topic, name=name, concurrency=1)(consume)


def _wire_lifecycle(detector: Detector, outputs: list[faust.TopicT],
                    by_topic: dict[str, str]) -> None:
    """Start-up tasks, timers (loop heartbeat, gauges, rule reload) and rebalance hooks
    (`by_topic`: the group of each repartition topic)."""
    app, settings = detector.app, detector.settings
    consumed = {settings.input_topic, *by_topic}

    async def declare_output_topics() -> None:
        for topic in outputs:
            await topic.maybe_declare()

    async def start_sinks() -> None:
        await detector.sinks.start()

    async def close_sinks(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await detector.sinks.close(timeout=SINK_DRAIN_SECONDS)

    async def reload_on_sighup() -> None:
        asyncio.get_running_loop().add_signal_handler(SIGHUP, detector.reloader.reload, True)

    async def tick() -> None:
        detector.status.tick()

    async def update_gauges() -> None:
        await update_lag(app.consumer, committed_offsets(app), detector.status.lag, consumed)
        update_state_gauges(detector.metrics, detector.evaluators.values())

    async def check_rules() -> None:
        detector.reloader.reload()

    app.task(_guarded(declare_output_topics))
    app.task(start_sinks)
    app.on_before_shutdown.connect(close_sinks)
    app.task(reload_on_sighup)
    app.timer(TICK_SECONDS, name="detector.tick")(tick)
    app.timer(TICK_SECONDS, name="detector.holes")(_guarded(detector.guard.seek_holes_again))
    app.timer(settings.lag_interval, name="detector.gauges")(_guarded(update_gauges))
    if settings.reload_interval > 0:
        app.timer(settings.reload_interval, name="detector.reload")(_guarded(check_rules))

    def hold(assigned: set[TP]) -> None:
        """The state partitions this worker holds now: its input agent evaluates their
        records itself."""
        for held in detector.held.values():
            held.clear()
        for tp in assigned:
            if tp.topic in by_topic:
                detector.held[by_topic[tp.topic]].add(tp.partition)
        detector.metrics.hold_state_partitions(
            {tp.partition for tp in assigned if tp.topic in by_topic})

    async def on_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        assigned = args[0] if args else kwargs.get("assigned", ())
        for evaluator in detector.evaluators.values():
            evaluator.reset()
        detector.guard.reset()
        detector.status.on_assigned(
            (tp.topic, tp.partition) for tp in assigned if tp.topic in consumed)
        hold(set(assigned))

    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # What is still pending goes out before the partitions' next owner reads it: Faust's
        # last commit before a rebalance sends nothing when a periodic commit is still
        # running. The events may come again (their offsets may not be committed), which
        # only repeats records and changes.
        await wait_sent(app.send_pending())
        hold(set())
        for evaluator in detector.evaluators.values():
            evaluator.reset()
        detector.processor.progress.forget()
        detector.guard.reset()
        detector.status.on_revoked()

    app.on_partitions_assigned.connect(on_assigned)
    app.on_partitions_revoked.connect(on_revoked)


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
