"""Event time: the watermark that decides what is late, and the bounded memory of event ids
that keeps a redelivered CloudTrail event from counting or alerting twice."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any


class Clock:
    """Watermark = the latest eventTime seen minus the allowed lateness.

    An event older than the watermark is late: stateful rules ignore it (single-event rules
    still see it). Since no accepted event can be older than the watermark, everything before
    it is final, which is when order-sensitive decisions are taken.
    """

    def __init__(self, lateness: float) -> None:
        self.lateness = lateness
        self.max_seen = -math.inf

    @property
    def watermark(self) -> float:
        return self.max_seen - self.lateness

    def is_late(self, event_time: float) -> bool:
        return event_time < self.watermark

    def advance(self, event_time: float) -> None:
        self.max_seen = max(self.max_seen, event_time)


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
