"""The engine's State interface backed by faust Tables (changelog topics in Kafka).

A faust Table writes each change to the changelog partition of the event being processed, and
its in-memory store also holds the copies of partitions this worker keeps as standby or owned
before a rebalance. So one `TableState` serves one partition: it lists only that partition's
keys. The worker sends every record to an explicit repartition partition computed by
`partition_for` from the record's partition values, which is how the partition of an engine
state key (`<kind>|<rule id>|<group values JSON>`) is known again from the key alone (the
group decides which of the values partition). The worker's own bookkeeping keys
(`@<name>|<partition>|...`) carry their partition in the key.

Changes reach the Table's store at once and its changelog later, once per key (`Changelog`):
a faust Table sends a changelog message on every write, and a busy key (a principal's
correlation window) changes on nearly every record. An entry larger than the changelog takes
is dropped there, not sent: the broker would refuse it, the worker stop before committing,
and its restart meet the same entry again. A partition holds at most `max_entries` engine
entries; past it the oldest goes (`TableState`). Both are reported (`Dropped`), to be counted.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from typing import Any, Protocol

import orjson

from detector.engine.state import JSON

OWN_PREFIX = "@"
TOO_LARGE = "state_too_large"  # an entry larger than the changelog takes: dropped
EVICTED = "state_evicted"  # the oldest entry of a partition at its cap: dropped
Dropped = Callable[[str, str, str], None]  # (reason, key, why) of an entry dropped


def group_key(values: Sequence[str | None]) -> bytes:
    """The repartition key of a record: its group-by values as JSON (as in state keys)."""
    return orjson.dumps(list(values))


def partition_for(key: bytes, partitions: int) -> int:
    """A stable partition for a repartition key (the same in every process and version)."""
    return zlib.crc32(key) % partitions


def own_key_partition(key: str) -> int | None:
    """The partition of a bookkeeping key; None for any other key."""
    parts = key.split("|", 2)
    if not key.startswith(OWN_PREFIX) or len(parts) != 3 or not parts[1].isdigit():
        return None
    return int(parts[1])


def own_key(name: str, partition: int, rest: str = "") -> str:
    """A key of the worker's bookkeeping (clock, alert ledger) in `partition`."""
    return f"{OWN_PREFIX}{name}|{partition}|{rest}"


class LoggedTable(Protocol):
    """What the worker uses of a faust Table: its in-memory store (writing there sends
    nothing) and its changelog."""

    @property
    def data(self) -> MutableMapping[str, JSON]: ...

    def send_changelog(self, partition: int | None, key: Any, value: Any,
                       key_serializer: Any = None, value_serializer: Any = None) -> Any: ...


class Changelog:
    """A Table's changes on their way to its changelog topic.

    The store takes a change at once; the changelog gets each changed key once, with its
    latest value, when `publish` is called. The worker calls it before every offset commit
    and commits once the broker has what it sent (`detector.stream.transport`), so a
    committed offset never runs ahead of the changelog, and a restarted worker replays from
    the commit onto a changelog at or after it, as it did when every write was sent. An
    event that raises alerts sends its changes and its ledger entry at once
    (`publish_event`), in the order it made them, so the ledger never reaches the changelog
    without the state change it records.
    """

    def __init__(self, table: LoggedTable, max_bytes: int, dropped: Dropped) -> None:
        self.table = table
        self.store = table.data
        self.max_bytes = max_bytes  # of a changelog message's key and value
        self.dropped = dropped
        self._pending: dict[str, int] = {}  # changed key -> its partition
        self._event: dict[str, int] = {}  # the keys the current event changed, in order
        self._sent: list[Any] = []  # sends since the last `publish`, which hands them over

    def set(self, partition: int, key: str, value: JSON) -> None:
        self.store[key] = value
        self._changed(partition, key)

    def delete(self, partition: int, key: str) -> None:
        if key in self.store:
            del self.store[key]
            self._changed(partition, key)

    def _changed(self, partition: int, key: str) -> None:
        """Pending in the order of the last writes: what a write records (a ledger entry)
        reaches the changelog after the changes written before it."""
        self._pending.pop(key, None)
        self._pending[key] = partition
        self._event.pop(key, None)
        self._event[key] = partition

    def begin(self) -> None:
        """A new event: `publish_event` sends what changes from here on."""
        self._event = {}

    def publish_event(self) -> None:
        for key, partition in self._event.items():
            self._sent.append(self._send(key, partition))
            del self._pending[key]
        self._event = {}

    def publish(self) -> list[Any]:
        """Send every pending change; every send since the last call (done when the broker
        has it), the current event's included."""
        sends = self._sent + [self._send(key, partition)
                              for key, partition in self._pending.items()]
        self._pending, self._event, self._sent = {}, {}, []
        return sends

    def discard(self) -> None:
        """Forget the changes not sent (after a rebalance the partitions may be another
        worker's, whose changelog they would overwrite; their offsets were not committed)."""
        self._pending, self._event, self._sent = {}, {}, []

    def __len__(self) -> int:
        return len(self._pending)

    def _send(self, key: str, partition: int) -> Any:
        """The entry's changelog message, its value written here as JSON (what the table's
        serializer writes and reads back) to know its size."""
        if key in self.store:
            value = orjson.dumps(self.store[key])
            size = len(key.encode()) + len(value)
            if size <= self.max_bytes:
                return self.table.send_changelog(partition, key, value, value_serializer="raw")
            del self.store[key]
            self.dropped(TOO_LARGE, key, f"{size} bytes, over the {self.max_bytes} its "
                                         "changelog takes")
        # a tombstone, as faust sends for a deleted key
        return self.table.send_changelog(partition, key, None, value_serializer="raw")


class TableState:
    """The State of one partition of a faust Table (engine keys only), of at most
    `max_entries` entries: past it, the oldest (first created) goes."""

    def __init__(self, changelog: Changelog, partition: int,
                 partition_of: Callable[[str], int | None], max_entries: int) -> None:
        self.changelog = changelog
        self.table = changelog.store
        self.partition = partition
        self.partition_of = partition_of
        self.max_entries = max_entries
        self._count: int | None = None  # counted when first needed, then kept

    def get(self, key: str) -> JSON | None:
        return self.table.get(key)

    def put(self, key: str, value: JSON) -> None:
        new = key not in self.table
        self.changelog.set(self.partition, key, value)
        if new:
            self._count = len(self._keys()) if self._count is None else self._count + 1
            if self._count > self.max_entries:
                self._evict()

    def delete(self, key: str) -> None:
        if key in self.table and self._count is not None:
            self._count -= 1
        self.changelog.delete(self.partition, key)

    def _evict(self) -> None:
        """Drop the partition's oldest entry (the store keeps keys in creation order)."""
        partition, partition_of = self.partition, self.partition_of
        oldest = next(key for key in self.table
                      if not key.startswith(OWN_PREFIX) and partition_of(key) == partition)
        self.delete(oldest)
        self.changelog.dropped(EVICTED, oldest, f"the partition holds {self.max_entries} "
                                                "entries at most")

    def all_keys(self) -> Iterator[str]:
        return iter(self._keys())

    def own_keys(self, name: str) -> list[str]:
        """The bookkeeping keys called `name` in this partition."""
        prefix = own_key(name, self.partition)
        return [key for key in list(self.table.keys()) if key.startswith(prefix)]

    def __len__(self) -> int:
        return len(self._keys())

    def _keys(self) -> list[str]:
        partition, partition_of = self.partition, self.partition_of
        return [key for key in list(self.table.keys())
                if not key.startswith(OWN_PREFIX) and partition_of(key) == partition]
