"""The ledger of one state partition: what its records and time messages did, kept in its
table (`@sent|<partition>|...`), in the same changelog partition as the state changes they
made.

It is the memory of event ids a rebuilt engine starts from, so a redelivered event is dropped
after a restart or a rebalance too. And it makes replay idempotent: if the worker dies after
the changelog got the state but before the alerts left, the record comes again from the same
origin (its offset was not committed), finds its entry, and the same alerts (same ids) are
sent again instead of being lost to the state that now knows.

Two kinds of entry. A record that raised alerts, or a time message (`time`) that did, has
its own (`alerts`): its origin and the alerts, sent with the record's state changes at once.
The others, most records, are written together: the event ids and origins a partition
admitted since the last commit, in one entry (`admitted`, closed by `close` at each commit
or when it holds `BATCH_BYTES`), so the changelog gets one ledger message per partition and
commit rather than one per record. The table sends a key's changes in the order of their
last write, and each record writes its ledger entry after its state changes, so an entry
never reaches the changelog ahead of the changes of a record it names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from detector.stream.tables import Changelog, TableState, own_key

# What one entry of admitted records holds at most, in bytes of its JSON; never over half the
# largest entry the changelog takes (`Changelog.max_bytes`), which would drop it.
BATCH_BYTES = 64 * 1024
ITEM_BYTES = 80  # an item's JSON besides its event id: time, origin, brackets


@dataclass(slots=True)
class Ledger:
    """The ledger of one state partition, and what the worker keeps of it in memory."""

    changelog: Changelog
    partition: int
    entries: dict[str, float] = field(default_factory=dict)  # key -> newest event time,
    # in the order they were first written
    admitted: dict[str, list[int]] = field(default_factory=dict)  # event id -> origin, of
    # the records in `admitted` entries
    raised: set[str] = field(default_factory=set)  # keys of entries whose alerts this worker
    # handed to the producer: sent, or the worker stopped
    _batch: str | None = None  # the open `admitted` entry
    _batch_bytes: int = 0

    @classmethod
    def restore(cls, changelog: Changelog, state: TableState) -> tuple[Ledger, list[list[Any]]]:
        """The ledger of `state`'s partition as its table holds it, and the `[event id,
        eventTime]` pairs it remembers, oldest first (for the engine's `RecentIds`)."""
        ledger = cls(changelog, state.partition)
        found = sorted(((key, changelog.store.get(key)) for key in state.own_keys("sent")),
                       key=lambda item: _time(item[1]))
        remembered: list[list[Any]] = []
        for key, entry in found:
            if not isinstance(entry, dict):
                continue
            ledger.entries[key] = _time(entry)
            if isinstance(entry.get("id"), str):
                remembered.append([entry["id"], _time(entry)])
            for item in _items(entry):
                ledger.admitted[item[0]] = item[2:]
                remembered.append(item[:2])
        remembered.sort(key=lambda pair: float(pair[1]))
        return ledger, remembered

    def replayed(self, event: str, origin: list[int]) -> list[Any] | None:
        """What record `event` from `origin` left when it was evaluated before (read again
        after a crash or a rebalance): the alerts to send again ([] when it raised none, or
        this worker sent them already); None when it was not."""
        if self.admitted.get(event) == origin:
            return []
        key = self.record_key(event)
        earlier = self.changelog.store.get(key)
        if not isinstance(earlier, dict) or earlier.get("o") != origin:
            return None
        return [] if key in self.raised else list(earlier.get("a", []))

    def timed(self, offset: int) -> tuple[str, list[Any] | None]:
        """The key of a time message's entry at `offset`, and its alerts if it has one."""
        key = own_key("sent", self.partition, f"t:{offset}")
        earlier = self.changelog.store.get(key)
        return key, list(earlier.get("a", [])) if isinstance(earlier, dict) else None

    def admit(self, event_id: str, event_time: float, origin: list[int]) -> None:
        """A record that raised nothing, admitted: into the open `admitted` entry."""
        store = self.changelog.store
        size = len(orjson.dumps(event_id)) + ITEM_BYTES  # escapes and UTF-8 included
        limit = min(BATCH_BYTES, self.changelog.max_bytes // 2)
        if self._batch is None or self._batch_bytes + size > limit:
            self._batch = own_key("sent", self.partition, "b:" + ".".join(map(str, origin)))
            self._batch_bytes = 0
            store[self._batch] = {"t": event_time, "ids": []}
        entry = store[self._batch]
        entry["ids"].append([event_id, event_time, *origin])
        entry["t"] = max(entry["t"], event_time)
        self._batch_bytes += size
        self.changelog.set(self.partition, self._batch, entry)
        self.entries[self._batch] = entry["t"]
        self.admitted[event_id] = origin

    def alerts(self, key: str, entry: dict[str, Any]) -> None:
        """The entry of a record or time message whose alerts go to the producer now, at
        `key` (`record_key` or `timed`)."""
        self.changelog.set(self.partition, key, entry)
        self.entries.pop(key, None)  # the entry is the newest now
        self.entries[key] = float(entry["t"])
        self.raised.add(key)

    def record_key(self, event: str) -> str:
        """The key of the entry of a record that raised alerts (`event`: its `event_key`)."""
        return own_key("sent", self.partition, f"e:{event}")

    def close(self) -> None:
        """The commit: the next admitted record opens a new entry."""
        self._batch = None

    def expire(self, oldest: float) -> None:
        """Drop the entries whose records all have eventTimes before `oldest` (the engine no
        longer remembers their event ids), oldest written first."""
        entries, store = self.entries, self.changelog.store
        while entries:
            key, when = next(iter(entries.items()))
            if when >= oldest:
                break
            del entries[key]
            self.raised.discard(key)
            for item in _items(store.get(key)):
                if self.admitted.get(item[0]) == item[2:]:
                    del self.admitted[item[0]]
            if key == self._batch:
                self._batch = None
            self.changelog.delete(self.partition, key)


def _time(entry: Any) -> float:
    value = entry.get("t") if isinstance(entry, dict) else None
    return float(value) if isinstance(value, int | float) else 0.0


def _items(entry: Any) -> list[list[Any]]:
    """The well-formed `[event id, eventTime, source, offset, index]` items of an `admitted`
    entry."""
    items = entry.get("ids") if isinstance(entry, dict) else None
    if not isinstance(items, list):
        return []
    return [item for item in items
            if isinstance(item, list) and len(item) == 5 and isinstance(item[0], str)
            and all(isinstance(part, int | float) for part in item[1:])]
