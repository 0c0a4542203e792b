"""The repartition topics: what the input side sends the state partitions, and how.

Three kinds of message, each a type with `encode`/`decode` and the wire format's version:

- `RecordBatch`: records some rule of the group matched (`RecordItem`s), in the order they
  came, up to BATCH_BYTES (a record alone may be larger);
- `Beat`: how far an input partition has got in event time, or that it is read to its end;
- `Tick`: an idle tick, so a partition without events lets event time pass.

A message of another version or kind is refused (`RepartitionError`): the worker that reads it
dead-letters it rather than guessing.

The input side (`Router`) sends a record to a group only when one of the group's rules matched
it, keyed and partitioned by the group's partition values, cut to the top-level fields the
group reads, with the ids of the rules that matched. A record that matched single-event rules
and carries an eventID takes their ids along on its first copy (`alerts`; then it goes whole):
the partition it lands on admits it (a redelivered event raises nothing) and raises their
alerts. With no stateful copy it goes to the group partitioned by eventID. A record sent to
several groups is late or a duplicate in each; only its first copy counts it (`counted`), so
the metrics count records, not copies. Records wait in the `Outbox` until the next commit and
go out in one message per group partition: each Kafka message costs the worker more than
evaluating the record it carries.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from detector.engine import Rule
from detector.engine.stateful.keys import Fields
from detector.events import DEFAULT_LIMITS, Record
from detector.stream.deadletter import max_output_bytes
from detector.stream.groups import EVENT_ID, Group, project
from detector.stream.messages import json_bounded
from detector.stream.tables import group_key, partition_for

VERSION = 1
BATCH_BYTES = 128 * 1024  # the records of one repartition message, at most (see `batched`)


class RepartitionError(ValueError):
    """A repartition message this worker cannot read (another version, a broken item)."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a record came from: input partition, offset, position in its message. The same
    for a message read again after a crash, another for a redelivered copy of its event."""

    source: int
    offset: int
    index: int

    def encode(self) -> list[int]:
        return [self.source, self.offset, self.index]

    @classmethod
    def decode(cls, value: Any) -> Origin:
        if (not isinstance(value, list) or len(value) != 3
                or not all(isinstance(part, int) for part in value)):
            raise RepartitionError(f"an origin is [source, offset, index], not {value!r}")
        return cls(*value)


@dataclass(frozen=True, slots=True)
class RecordItem:
    """One record for a group: its (projected) data, the rules of the group it matched, the
    single-event rules whose alerts it raises where it lands, and where it came from."""

    record: dict[str, Any]
    rules: tuple[str, ...]
    alerts: tuple[str, ...]
    origin: Origin
    counted: bool  # the record's first copy: counts it late or duplicate
    produced: float | None = None  # the input message's Kafka timestamp

    def encode(self, max_bytes: int) -> bytes:
        """As JSON; a record nested deeper than orjson writes goes cut to the bounds of
        `detector.bounded`, in about `max_bytes`."""
        return json_bounded({"record": self.record, "rules": list(self.rules),
                             "alerts": list(self.alerts), "origin": self.origin.encode(),
                             "counted": self.counted, "produced": self.produced}, max_bytes)

    @classmethod
    def decode(cls, value: Any) -> RecordItem:
        if not isinstance(value, dict) or not isinstance(value.get("record"), dict):
            raise RepartitionError("a record item is an object with a record object")
        rules, alerts = value.get("rules"), value.get("alerts")
        if not isinstance(rules, list) or not isinstance(alerts, list) or not all(
                isinstance(rule_id, str) for rule_id in rules + alerts):
            raise RepartitionError("a record item's rules and alerts are lists of rule ids")
        produced = value.get("produced")
        return cls(value["record"], tuple(rules), tuple(alerts),
                   Origin.decode(value.get("origin")), value.get("counted") is True,
                   float(produced) if isinstance(produced, int | float) else None)


def event_id_of(item: Any) -> str | None:
    """The eventID of an undecoded record item, if it has a readable one."""
    record = item.get("record") if isinstance(item, dict) else None
    event_id = record.get("eventID") if isinstance(record, dict) else None
    return event_id if isinstance(event_id, str) else None


@dataclass(frozen=True, slots=True)
class RecordBatch:
    """Record items, each decoded on its own (`RecordItem.decode`): a broken one costs only
    itself."""

    items: list[Any]

    @staticmethod
    def encode(items: Sequence[bytes]) -> bytes:
        """The batch of already encoded items (they are written once, when routed)."""
        return b'{"v":1,"type":"records","items":[' + b",".join(items) + b"]}"


@dataclass(frozen=True, slots=True)
class Beat:
    """Input partition `source` has got to eventTime `latest`; None: it is read to its end
    and need not be waited for."""

    source: int
    latest: float | None

    def encode(self) -> bytes:
        return orjson.dumps({"v": VERSION, "type": "beat", "source": self.source,
                             "latest": self.latest})


@dataclass(frozen=True, slots=True)
class Tick:
    """No events for a while: event time may pass like wall time."""

    def encode(self) -> bytes:
        return orjson.dumps({"v": VERSION, "type": "tick"})


TICK = Tick().encode()
Message = RecordBatch | Beat | Tick


def decode(payload: bytes) -> Message:
    """A repartition message; RepartitionError for one this worker cannot read."""
    try:
        message = orjson.loads(payload)
    except orjson.JSONDecodeError as error:
        raise RepartitionError(f"not JSON: {error}") from error
    if not isinstance(message, dict) or message.get("v") != VERSION:
        version = message.get("v") if isinstance(message, dict) else None
        raise RepartitionError(f"version {version!r}, this worker reads version {VERSION}")
    kind = message.get("type")
    if kind == "records" and isinstance(message.get("items"), list):
        return RecordBatch(message["items"])
    if kind == "beat":
        source, latest = message.get("source"), message.get("latest")
        if isinstance(source, int) and (latest is None or isinstance(latest, int | float)):
            return Beat(source, None if latest is None else float(latest))
    if kind == "tick":
        return Tick()
    raise RepartitionError(f"a malformed message of type {kind!r}")


@dataclass(frozen=True, slots=True)
class Forward:
    """A message on its way to a partition of a group's repartition topic: one encoded record
    item (`key`: its partition values) or, keyless, a whole message."""

    group: str
    key: bytes | None
    partition: int
    value: bytes


class Outbox:
    """Records for the groups, held until the next commit of offsets (Faust publishes what an
    event sends when its offset is committed; the outbox sends then too, batched)."""

    def __init__(self) -> None:
        self._forwards: list[Forward] = []

    def add(self, forwards: Iterable[Forward]) -> None:
        self._forwards.extend(forwards)

    def take(self) -> list[Forward]:
        """The messages to send now, in the order their records came."""
        forwards, self._forwards = self._forwards, []
        return batched(forwards)


def batched(forwards: list[Forward]) -> list[Forward]:
    """The record items in one `RecordBatch` per group partition (up to BATCH_BYTES each; an
    item alone may be larger), each partition's in the order they came."""
    targets: dict[tuple[str, int], list[Forward]] = {}
    for forward in forwards:
        targets.setdefault((forward.group, forward.partition), []).append(forward)
    messages: list[Forward] = []
    for (group, partition), items in targets.items():
        chunks: list[list[Forward]] = [[]]
        size = 0
        for item in items:
            if chunks[-1] and size + len(item.value) > BATCH_BYTES:
                chunks.append([])
                size = 0
            chunks[-1].append(item)
            size += len(item.value) + 1
        messages += [Forward(group, chunk[0].key if len(chunk) == 1 else None, partition,
                             RecordBatch.encode([item.value for item in chunk]))
                     for chunk in chunks]
    return messages


class Router:
    """On the input side: which groups need a record, and the record items to send them."""

    def __init__(self, groups: list[Group], partitions: int,
                 max_bytes: int = max_output_bytes(DEFAULT_LIMITS)) -> None:
        self.partitions = partitions
        self.max_bytes = max_bytes  # of a record written cut (`json_bounded`)
        self._groups = [(group.name, group.rule_ids, Fields(group.fields), group.top_level)
                        for group in groups]
        self._by_event_id = next((group.name, Fields(group.fields), group.top_level)
                                 for group in groups if group.fields == EVENT_ID)

    def route(self, record: Record, matched: Sequence[Rule], stateless: Sequence[str],
              origin: Origin, produced: float | None = None) -> list[Forward]:
        """The items for the groups whose rules matched; the first carries `stateless` (the
        ids of the single-event rules whose alerts wait for the record to be admitted) and
        the whole record, and goes to the group partitioned by eventID when no other group
        needs the record."""
        ids = {rule.id for rule in matched}
        targets = [(name, fields, top_level, ids & rule_ids)
                   for name, rule_ids, fields, top_level in self._groups if ids & rule_ids]
        if not targets and stateless:
            targets = [(*self._by_event_id, set())]
        forwards: list[Forward] = []
        data = record.data
        alerts = tuple(stateless)
        for name, fields, top_level, needed in targets:
            key = group_key(fields.values(data))
            item = RecordItem(data if alerts else project(data, top_level),
                              tuple(sorted(needed)), alerts, origin, not forwards, produced)
            forwards.append(Forward(name, key, partition_for(key, self.partitions),
                                    item.encode(self.max_bytes)))
            alerts = ()
        return forwards

    def beats(self, beat: Beat) -> list[Forward]:
        """`beat` for every state partition (a state partition hears of an input partition
        through its records only when they hash there)."""
        value = beat.encode()
        return [Forward(name, None, partition, value)
                for name, *_ in self._groups for partition in range(self.partitions)]
