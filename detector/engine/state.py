"""The state interface the stateful rules keep their memory behind, and its in-memory store.

An entry is one rule's memory for one group key (`<kind>|<rule id>|<group key JSON>`), its
value plain JSON (dicts with str keys, lists, str, int, float, bool, None) so the stream worker
can back the same interface with a faust Table whose changelog is a Kafka topic. Keys of one
rule and group key always live in one entry, so repartitioning events by the rule's group-by
fields keeps everything an entry needs on one worker.

Expiry is the evaluator's job (it knows event time); the store only has to be a dict.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

JSON = Any  # dict[str, JSON] | list[JSON] | str | int | float | bool | None (mypy has no cycles)


class State(Protocol):
    """A keyed store of JSON values: what a faust Table offers per partition."""

    def get(self, key: str) -> JSON | None: ...

    def put(self, key: str, value: JSON) -> None: ...

    def delete(self, key: str) -> None: ...

    def all_keys(self) -> Iterator[str]:
        """Every key, listed before iteration starts (callers write while they walk)."""
        ...

    def __len__(self) -> int: ...


class MemoryState:
    """A dict, bounded: past `max_entries` the oldest entry (first created) is dropped.

    Values are stored as given (no copy, no serialisation): the evaluator owns them and
    writes back every entry it changes, so a Table-backed store sees every change.
    """

    def __init__(self, max_entries: int = 5_000_000) -> None:
        self.max_entries = max_entries
        self.evicted = 0
        self._data: dict[str, JSON] = {}

    def get(self, key: str) -> JSON | None:
        return self._data.get(key)

    def put(self, key: str, value: JSON) -> None:
        data = self._data
        if key in data:
            data[key] = value
            return
        data[key] = value
        if len(data) > self.max_entries:
            del data[next(iter(data))]
            self.evicted += 1

    def delete(self, key: str) -> None:
        self._data.pop(key, None)

    def all_keys(self) -> Iterator[str]:
        return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def snapshot(self) -> dict[str, JSON]:
        """Every entry, for saving to a state file."""
        return dict(self._data)
