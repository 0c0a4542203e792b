"""Every offset of a partition is processed: the guard against records Faust skips.

While a restarted worker recovers its tables, Faust (faust-streaming 0.15) may fetch stream
partitions before it seeks them back to their committed offsets; the seek and the queues it
clears leave holes in what the agents are given (faust-streaming issue 596). A hole of one
offset right after the committed one is then committed over (issue 606) and the record is
lost for good; a longer one stops the partition's commits. Seen here in about one SIGKILL
recovery in thirty (tests/integration/test_worker_scaling.py).

So the agents check that the offsets of each partition come without holes. On a hole they
seek the partition back to the first missing offset and drop what was delivered after the
hole until the re-read comes: re-read messages are at most the offset that revealed the
hole, left-overs of the old fetch are after it. When the re-read starts after the missing
offset, the missing offsets do not exist (compaction, transaction markers) and that is
accepted. If the re-read does not come within `retry` seconds (the old fetch was still being
delivered and Faust dropped the re-read as already read), the seek is made again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
K = TypeVar("K", bound=Hashable)  # how partitions are named (Faust: TP)


@dataclass(frozen=True)
class Verdict:
    """Process the message or drop it; and where to seek its partition first, if anywhere."""

    process: bool
    seek: int | None = None


@dataclass
class _Hole:
    missing: int  # the first offset not processed
    revealed_by: int  # the offset delivered after the hole
    sought_at: float


class OffsetGuard(Generic[K]):
    """Per partition, the next offset due and the hole being re-read."""

    def __init__(self, retry: float = 2.0, now: Callable[[], float] = time.monotonic) -> None:
        self.retry = retry
        self.now = now
        self._next: dict[K, int] = {}
        self._holes: dict[K, _Hole] = {}

    def check(self, tp: K, offset: int, committed: int | None) -> Verdict:
        """What to do with the message at `offset` of `tp`, whose committed offset (next to
        read, the baseline for the first message after an assignment) is `committed`."""
        hole = self._holes.get(tp)
        if hole is not None:
            if offset > hole.revealed_by:  # left over from the fetch before the seek
                return Verdict(process=False)
            del self._holes[tp]
            if offset > hole.missing:
                log.info("offsets %d-%d of %s do not exist (compaction or transaction "
                         "markers)", hole.missing, offset - 1, tp)
        else:
            expected = self._next.get(tp, committed)
            if expected is not None and offset > expected:
                log.warning("offsets %d-%d of %s were skipped by the consumer; reading them "
                            "again", expected, offset - 1, tp)
                self._holes[tp] = _Hole(expected, offset, self.now())
                return Verdict(process=False, seek=expected)
        self._next[tp] = offset + 1
        return Verdict(process=True)

    def overdue(self) -> list[tuple[K, int]]:
        """Holes whose re-read has not come within `retry`: seek these again."""
        now = self.now()
        again = []
        for tp, hole in self._holes.items():
            if now - hole.sought_at >= self.retry:
                hole.sought_at = now
                again.append((tp, hole.missing))
        return again

    def reset(self) -> None:
        """After a rebalance: every partition starts again from its committed offset."""
        self._next.clear()
        self._holes.clear()
