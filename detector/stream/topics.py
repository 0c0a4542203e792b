"""Creating the worker's internal topics before Faust's consumer subscribes to them.

Faust declares its internal topics while the consumer joins the group; on a first start the
group leader's metadata may not list them yet, its assignor then ignores them ("Ignoring
missing topic") and their partitions stay unassigned until the next metadata refresh, five
minutes later by default. Creating them first, and waiting for their leaders, closes that gap.
Best effort: without the right to create topics the worker starts anyway and Faust tries too.

The topics the worker writes to take the largest message it produces (`output_topic_config`),
and a dead-letter topic that exists already is checked for it: the worker refuses to start
(exit 2) rather than crash-loop on the first dead letter the broker refuses.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from detector.settings import SettingsError as ConfigError
from detector.settings.kafka import client_options
from detector.settings.worker import WorkerSettings as Settings
from detector.stream.deadletter import max_output_bytes

log = logging.getLogger(__name__)
TOPIC_ALREADY_EXISTS = 36
RECORD_OVERHEAD = 1024  # a record batch's and a record's framing around one message
# A topic's segments hold this many of its largest messages: a broker refuses a message larger
# than a segment (scripts/kafka's are 16 MiB), and small segments let a changelog compact soon.
SEGMENT_MESSAGES = 4
MIN_INSYNC_REPLICAS = 2  # with 3 replicas or more: one broker may be down, never a lone copy


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def output_message_bytes(settings: Settings) -> int:
    """The producer's largest request: the biggest message the worker produces (a dead letter
    holds up to a whole input message of `max_message_bytes`) in its record batch."""
    return max(1024 * 1024, max_output_bytes(settings.limits) + RECORD_OVERHEAD)


def output_topic_config(settings: Settings) -> dict[str, str]:
    """The alerts, dead-letter and repartition topics take the biggest message the worker may
    produce (the broker's default, about 1 MiB, is below the default `max_message_bytes`), in
    segments that hold it."""
    size = output_message_bytes(settings)
    return {"max.message.bytes": str(size), "segment.bytes": str(SEGMENT_MESSAGES * size),
            **durability_config(settings)}


def durability_config(settings: Settings) -> dict[str, str]:
    """`min.insync.replicas` 2 with 3 replicas or more: with the producer's acks=all a message
    is then on two brokers before it counts as sent. With 2 replicas the broker's default
    stays (normally 1): 2 would stop the worker whenever one broker is down."""
    if settings.replication_factor >= 3:
        return {"min.insync.replicas": str(MIN_INSYNC_REPLICAS)}
    return {}


def changelog_topic_config(settings: Settings) -> dict[str, str]:
    """A table's changelog is compacted and takes an entry as big as the worker's other
    messages: a busy principal's correlation window can pass the broker's default 1 MiB,
    and a refused entry stops the worker."""
    return {"cleanup.policy": "compact", **output_topic_config(settings)}


def repartition_topic(settings: Settings, group: str) -> str:
    return f"{settings.group_id}-repartition-{group}"


def table_name(group: str) -> str:
    return f"state-{group}"


def internal_topics(settings: Settings, groups: list[str]) -> list[TopicSpec]:
    """The topics the worker needs before it joins the group: its input, alerts and
    dead-letter topics (created only when missing: a first start against an empty cluster
    would otherwise sit on a topic Faust ignores for minutes; the output topics with
    `output_topic_config`, an existing topic is left as it is), and the repartition and
    changelog topics of the stateful groups (as Faust names them)."""
    outputs = output_topic_config(settings)
    specs = [TopicSpec(settings.input_topic, settings.state_partitions,
                       durability_config(settings)),
             TopicSpec(settings.alerts_topic, settings.state_partitions, outputs),
             TopicSpec(settings.dead_letter_topic, settings.state_partitions, outputs)]
    for group in groups:
        specs.append(TopicSpec(repartition_topic(settings, group), settings.state_partitions,
                               outputs))
        specs.append(TopicSpec(f"{settings.group_id}-{table_name(group)}-changelog",
                               settings.state_partitions, changelog_topic_config(settings)))
    return specs


def ensure_topics(settings: Settings, specs: list[TopicSpec], timeout: float = 30.0) -> bool:
    """Create the missing topics and wait for their leaders; False (logged) when it failed.
    Raises ConfigError when the dead-letter topic would refuse the worker's dead letters.

    Runs on its own event loop in a thread, so the caller's loop (Faust's) is untouched.
    """
    if not specs:
        return True
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(asyncio.run, _ensure(settings, specs, timeout))
        try:
            future.result()
        except ConfigError:
            raise
        except Exception as error:
            log.warning("could not create the internal topics beforehand (%s: %s); Faust "
                        "will declare them", type(error).__name__, error)
            return False
    return True


async def _ensure(settings: Settings, specs: list[TopicSpec], timeout: float) -> None:
    admin = AIOKafkaAdminClient(**client_options(settings),
                                request_timeout_ms=int(timeout * 1000))
    await asyncio.wait_for(admin.start(), timeout)
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        if missing:
            response = await admin.create_topics(
                [NewTopic(spec.name, spec.partitions, settings.replication_factor,
                          topic_configs=spec.config) for spec in missing],
                timeout_ms=int(timeout * 1000),
            )
            for topic, code, *detail in response.topic_errors:
                if code not in (0, TOPIC_ALREADY_EXISTS):
                    raise RuntimeError(f"cannot create {topic}: error {code} {detail}")
            log.info("created topics %s", ", ".join(spec.name for spec in missing))
        await _wait_for_leaders(admin, [spec.name for spec in specs], timeout)
        await _check_room(admin, settings)
    finally:
        await admin.close()


async def _check_room(admin: AIOKafkaAdminClient, settings: Settings) -> None:
    """Refuse a dead-letter topic that takes less than the worker's largest message (one made
    beforehand with the broker's defaults): its first large dead letter would stop the worker
    on every restart."""
    name, needed = settings.dead_letter_topic, output_message_bytes(settings)
    wanted = {"max.message.bytes": None, "segment.bytes": None}
    try:
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, configs=wanted)])
        [(code, message, _type, _name, entries)] = response.resources
        if code:
            raise RuntimeError(f"error {code} {message}")
        room = {entry[0]: int(entry[1]) for entry in entries}
    except Exception as error:
        log.warning("could not read the configuration of %s (%s: %s); a dead letter it "
                    "refuses will stop the worker", name, type(error).__name__, error)
        return
    small = {config: value for config, value in room.items() if value < needed}
    if small:
        raise ConfigError(
            f"topic {name} takes messages of at most {min(small.values())} bytes "
            f"({', '.join(f'{config}={value}' for config, value in sorted(small.items()))}), "
            f"and a dead letter may have {needed} (DETECTOR_MAX_MESSAGE_BYTES / "
            f"--max-message-bytes plus headers): raise its {' and '.join(sorted(small))} to "
            f"{needed} or more (segment.bytes: {SEGMENT_MESSAGES * needed} is what the "
            "worker gives the topics it creates), or lower the limit")


async def _wait_for_leaders(admin: AIOKafkaAdminClient, names: list[str],
                            timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        described = await admin.describe_topics(names)
        ready = all(
            topic["error_code"] == 0 and topic["partitions"]
            and all(p["leader"] >= 0 for p in topic["partitions"])
            for topic in described
        )
        if ready:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics without leaders after {timeout:.0f}s")
        await asyncio.sleep(0.1)
