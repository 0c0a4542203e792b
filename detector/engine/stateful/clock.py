"""Event time: the watermark that decides what is late, and the bounded memory of event ids
that keeps a redelivered CloudTrail event from counting or alerting twice."""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

# How many records must reach an event time before the watermark follows it: the latest
# eventTime the clock goes by is the CORROBORATION-th latest seen, so one record ahead of its
# neighbours (a broken forwarder's clock, a forged record) cannot move it.
CORROBORATION = 2


class Latest:
    """The `count`-th latest of the times added: what `count` - 1 outliers cannot move.

    A min-heap of the `count` latest times; `value` is -inf until `count` times were added.
    Adding a time no later than `value` (most records, out of order) costs one comparison.
    """

    __slots__ = ("count", "heap", "value")

    def __init__(self, count: int = CORROBORATION, times: Iterable[float] = ()) -> None:
        if count < 1:
            raise ValueError("a clock needs at least one record to move")
        self.count = count
        self.heap: list[float] = []
        self.value = -math.inf
        for when in times:
            self.add(when)

    def add(self, when: float) -> bool:
        """Take one record's time; True when `value` moved."""
        if when <= self.value:
            return False
        heap = self.heap
        if len(heap) < self.count:
            heapq.heappush(heap, when)
            if len(heap) < self.count:
                return False
        else:
            heapq.heapreplace(heap, when)
        self.value = heap[0]
        return True

    def raise_to(self, when: float) -> None:
        """Every time kept is at least `when` now (event time passed as wall time did)."""
        self.heap = [max(kept, when) for kept in self.heap]
        self.heap += [when] * (self.count - len(self.heap))
        heapq.heapify(self.heap)
        self.value = self.heap[0]

    def times(self) -> list[float]:
        """The times kept, latest first (what a restart needs)."""
        return sorted(self.heap, reverse=True)


class Clock:
    """Watermark = the latest eventTime seen by `corroboration` records, minus the allowed
    lateness (`max_seen` is that time).

    An event older than the watermark is late: stateful rules ignore it (single-event rules
    still see it). Since no accepted event can be older than the watermark, everything before
    it is final, which is when order-sensitive decisions are taken. Fewer than `corroboration`
    records ahead of the others cannot move it (docs/stateful-rules.md, "Event time").
    """

    def __init__(self, lateness: float, corroboration: int = CORROBORATION) -> None:
        self.lateness = lateness
        self.latest = Latest(corroboration)
        self.max_seen = -math.inf

    @property
    def watermark(self) -> float:
        return self.max_seen - self.lateness

    def is_late(self, event_time: float) -> bool:
        return event_time < self.watermark

    def advance(self, event_time: float) -> None:
        if event_time > self.max_seen and self.latest.add(event_time):
            self.max_seen = self.latest.value

    def load(self, max_seen: float | None, times: Iterable[float] | None) -> None:
        """Take back a saved clock: the times kept, or (saved before they were) the latest
        time the watermark went by, as corroborated."""
        count = self.latest.count
        if times is None:
            times = [] if max_seen is None else [max_seen] * count
        self.latest = Latest(count, times)
        self.max_seen = self.latest.value


class RecentIds:
    """The eventIDs seen lately, bounded in time and size.

    An id is remembered while its eventTime is within `horizon` seconds before the watermark,
    and at most `capacity` ids are kept (the first remembered go first). A duplicate arriving
    later than that is treated as a new event; being older than the watermark it is then late,
    so stateful rules still ignore it and only single-event rules can alert on it again, with
    the same alert id as the first time.

    An OrderedDict, not a dict: a dict whose first entries were deleted scans their empty
    slots to find the oldest remaining one, an OrderedDict reaches it at once.
    """

    def __init__(self, horizon: float, capacity: int) -> None:
        self.horizon = horizon
        self.capacity = capacity
        self.ids: OrderedDict[str, float] = OrderedDict()

    def seen(self, event_id: str, event_time: float, watermark: float) -> bool:
        """True when `event_id` was seen before; remembers it otherwise."""
        ids = self.ids
        if event_id in ids:
            return True
        ids[event_id] = event_time
        oldest = watermark - self.horizon
        while ids:
            first = next(iter(ids))
            if len(ids) <= self.capacity and ids[first] >= oldest:
                break
            del ids[first]
        return False

    def restore(self, items: list[list[Any]]) -> None:
        """Take back the `[id, eventTime]` pairs of a saved state, oldest remembered first."""
        self.ids = OrderedDict((str(ident), float(when)) for ident, when in items)

    def __len__(self) -> int:
        return len(self.ids)
