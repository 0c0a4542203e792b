"""The engine's State interface backed by faust Tables (changelog topics in Kafka).

A faust Table writes each change to the changelog partition of the event being processed, and
its in-memory store also holds the copies of partitions this worker keeps as standby or owned
before a rebalance. So one `TableState` serves one partition: it lists only that partition's
keys. The worker sends every record to an explicit repartition partition computed by
`partition_for` from the record's partition values, which is how the partition of an engine
state key (`<kind>|<rule id>|<group values JSON>`) is known again from the key alone (the
group decides which of the values partition). The worker's own bookkeeping keys
(`@<name>|<partition>|...`) carry their partition in the key.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, MutableMapping, Sequence

import orjson

from detector.engine.state import JSON

OWN_PREFIX = "@"


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


class TableState:
    """The State of one partition of a faust Table (engine keys only)."""

    def __init__(self, table: MutableMapping[str, JSON], partition: int,
                 partition_of: Callable[[str], int | None]) -> None:
        self.table = table
        self.partition = partition
        self.partition_of = partition_of

    def get(self, key: str) -> JSON | None:
        return self.table.get(key)

    def put(self, key: str, value: JSON) -> None:
        self.table[key] = value

    def delete(self, key: str) -> None:
        if key in self.table:
            del self.table[key]

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
