"""Every offset of a partition is processed, once: the guard against records Faust skips or
delivers twice.

While a restarted worker recovers its tables, Faust (faust-streaming 0.15) may fetch stream
partitions before it seeks them back to their committed offsets; the seek and the queues it
clears leave holes in what the agents are given (faust-streaming issue 596). A hole of one
offset right after the committed one is then committed over (issue 606) and the record is
lost for good; a longer one stops the partition's commits. Seen here in about one SIGKILL
recovery in thirty (tests/integration/test_worker_scaling.py). The same seek can also hand
the agents again offsets they have processed since the partition was assigned (seen after a
SIGTERM, tests/integration/test_worker.py: a repartition message processed, committed, then
delivered again): those are dropped, since their output was sent and their state changed.

So the agents check that the offsets of each partition come without holes. On a hole they
seek the partition back to the first missing offset and drop what was delivered after the
hole until the re-read comes: re-read messages are at most the offset that revealed the
hole, left-overs of the old fetch are after it. A re-read that starts after the missing
offset is ambiguous (Faust may drop the re-read too while the old fetch is still being
delivered, or the offsets may not exist: compaction, transaction markers, retention), so a
probe asks the broker for the first record at or after the missing offset (the log start when
retention deleted it); until the re-read starts there, the partition is sought again every
`retry` seconds. While a hole is open, Faust's own gap bookkeeping (offsets it saw jumped
over count as done) is cleared from the hole on, or Faust would commit over the re-read.
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
    probe: int | None = None  # a new hole: ask the broker for its first record from here


@dataclass
class _Hole:
    missing: int  # the first offset not processed
    revealed_by: int  # the offset delivered after the hole
    sought_at: float
    first_record: int | None = None  # the probe's answer: the first offset from `missing`
    probing: bool = True  # a probe is on its way (one at a time)


class OffsetGuard(Generic[K]):
    """Per partition, the next offset due and the hole being re-read."""

    def __init__(self, retry: float = 1.0, now: Callable[[], float] = time.monotonic) -> None:
        self.retry = retry
        self.now = now
        self._next: dict[K, int] = {}
        self._holes: dict[K, _Hole] = {}

    def check(self, tp: K, offset: int, committed: int | None) -> Verdict:
        """What to do with the message at `offset` of `tp`, whose committed offset (next to
        read, the baseline for the first message after an assignment) is `committed`."""
        processed = self._next.get(tp)
        if processed is not None and offset < processed:  # delivered again
            return Verdict(process=False)
        hole = self._holes.get(tp)
        if hole is not None:
            if offset > hole.revealed_by:  # left over from the fetch before the seek
                return Verdict(process=False)
            if offset > hole.missing and offset != hole.first_record:
                return self._again(hole)  # not (yet) known to be where the records resume
            del self._holes[tp]
            if offset > hole.missing:
                log.info("offsets %d-%d of %s are not in the topic (compaction, transaction "
                         "markers or retention)", hole.missing, offset - 1, tp)
        else:
            expected = committed if processed is None else processed
            if expected is not None and offset > expected:
                log.warning("offsets %d-%d of %s were skipped by the consumer; reading them "
                            "again", expected, offset - 1, tp)
                self._holes[tp] = _Hole(expected, offset, self.now())
                return Verdict(process=False, seek=expected, probe=expected)
        self._next[tp] = offset + 1
        return Verdict(process=True)

    def probed(self, tp: K, missing: int, first_record: int | None) -> None:
        """The broker's answer for the hole at `missing`: where its records resume (None:
        no answer, the probe failed or found nothing; it is asked again)."""
        hole = self._holes.get(tp)
        if hole is not None and hole.missing == missing:
            hole.first_record = first_record
            hole.probing = False

    def hole(self, tp: K) -> int | None:
        """The first missing offset of the hole `tp` is being re-read for, if any."""
        hole = self._holes.get(tp)
        return None if hole is None else hole.missing

    def overdue(self) -> list[tuple[K, Verdict]]:
        """Holes whose re-read has not come within `retry`: seek (and probe) these again."""
        due = [(tp, self._again(hole)) for tp, hole in self._holes.items()]
        return [(tp, verdict) for tp, verdict in due if verdict.seek is not None]

    def _again(self, hole: _Hole) -> Verdict:
        """Seek again, at most every `retry` seconds; probe again while unanswered."""
        now = self.now()
        if now - hole.sought_at < self.retry:
            return Verdict(process=False)
        hole.sought_at = now
        probe = hole.first_record is None and not hole.probing
        hole.probing = hole.probing or probe
        return Verdict(process=False, seek=hole.missing, probe=hole.missing if probe else None)

    def reset(self) -> None:
        """After a rebalance: every partition starts again from its committed offset."""
        self._next.clear()
        self._holes.clear()
