"""Event time of a state partition fed by several input partitions, and the input side's
record of how far each input partition has got (what the beats tell).

A state partition receives the records of every input partition, and each input partition is
consumed at its own pace: after a restart one may replay an hour of backlog while another is
live. A clock taking the latest eventTime over all of them would call the whole backlog late.
So the watermark follows the slowest input partition instead: the latest eventTime of each
input partition (a *source*) is kept, and the watermark is the smallest of them minus the
allowed lateness. Every input partition of the topic is waited for from the start, heard from
or not, since one that speaks later may be the slowest. A source not heard from for `idle`
seconds of wall time stops holding the watermark back (an input partition may be empty or go
quiet for good); when it speaks again, its events older than the watermark are late. The
watermark never moves back.

With `corroboration` K > 1 (the worker passes the engine's `CORROBORATION`), a source's latest
eventTime is the K-th latest it sent (records and beats alike), and a beat tells the K-th
latest of the input partition's messages: fewer than K records ahead of their neighbours in
one input partition cannot move any watermark (docs/stateful-rules.md, "Event time").
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from detector.engine.stateful.clock import Clock, Latest


class SourceClock(Clock):
    """The engine's Clock, with the watermark taken from the slowest active source."""

    def __init__(self, lateness: float, idle: float, sources: int,
                 now: Callable[[], float] = time.monotonic, corroboration: int = 1) -> None:
        super().__init__(lateness, corroboration)
        self.idle = idle
        self.now = now
        self.corroboration = corroboration
        self.sources: dict[int, float] = dict.fromkeys(range(sources), -math.inf)  # latest
        self.latest_of: dict[int, Latest] = {name: Latest(corroboration) for name in self.sources}
        self.heard: dict[int, float] = dict.fromkeys(self.sources, now())  # wall time
        self.floor = -math.inf  # the slowest active source's latest eventTime

    @property
    def watermark(self) -> float:
        return self.floor - self.lateness

    def hear(self, source: int, event_time: float) -> None:
        """A record (or a beat) of `source` arrives: call before the evaluator sees it."""
        latest = self.latest_of.get(source)
        if latest is None:
            latest = self.latest_of[source] = Latest(self.corroboration)
        if latest.add(event_time):
            self.sources[source] = latest.value
        self.heard[source] = self.now()
        self._rise()

    def quiet(self, source: int) -> None:
        """`source` is read to its end: stop waiting for it until it speaks again."""
        self.sources.setdefault(source, -math.inf)
        self.latest_of.setdefault(source, Latest(self.corroboration))
        self.heard[source] = -math.inf
        self._rise()

    def _rise(self) -> None:
        """Floor = the slowest source still waited for, or (none is) the latest of all."""
        quiet = self.now() - self.idle
        sources = self.sources
        slowest = min((latest for name, latest in sources.items() if self.heard[name] >= quiet),
                      default=math.inf)
        self.floor = max(self.floor, min(slowest, max(sources.values(), default=-math.inf)))

    def pass_idle(self, event_time: float) -> None:
        """No source sent anything for a while: let event time pass as wall time did."""
        self.floor = max(self.floor, event_time)
        self.latest.raise_to(event_time)
        self.max_seen = self.latest.value
        for name, latest in self.latest_of.items():
            latest.raise_to(event_time)
            self.sources[name] = latest.value

    def dump(self) -> dict[str, Any]:
        """The clock as plain JSON for the partition's table entry."""
        return {"max_event_time": None if self.max_seen == -math.inf else self.max_seen,
                "floor": None if self.floor == -math.inf else self.floor,
                "sources": {str(name): latest for name, latest in self.sources.items()
                            if latest != -math.inf},
                "latest_event_times": self.latest.times(),
                "source_times": {str(name): latest.times()
                                 for name, latest in self.latest_of.items() if latest.heap}}

    def restore(self, saved: dict[str, Any]) -> None:
        """Take back `dump()`; every source counts as just heard from."""
        max_seen, floor = saved.get("max_event_time"), saved.get("floor")
        self.load(None if max_seen is None else float(max_seen), saved.get("latest_event_times"))
        self.floor = -math.inf if floor is None else float(floor)
        latest_of = saved.get("sources") or {}
        times = saved.get("source_times") or {}
        # a source may have times kept and no latest yet (fewer than `corroboration` times)
        for name in {*latest_of, *times}:
            kept = times.get(name)
            restored = Latest(self.corroboration,
                              [float(latest_of[name])] * self.corroboration if kept is None
                              else map(float, kept))
            source = int(name)
            self.latest_of[source] = restored
            self.sources[source] = max(restored.value, self.sources.get(source, -math.inf))
        self.heard = dict.fromkeys(self.sources, self.now())


class Progress:
    """How far each input partition has got in event time, by input offset.

    A beat may say an input partition reached eventTime T only once every record before T
    is in the repartition topics, which is when the input offsets holding them are
    committed (Faust publishes a message's output before committing its offset). So the
    worker notes the newest eventTime per input offset and beats what is committed.
    """

    def __init__(self, corroboration: int = 1) -> None:
        self.corroboration = corroboration  # messages that must reach an eventTime (SourceClock)
        self._latest: dict[int, Latest] = {}  # per input partition, of its messages' latest
        self._marks: dict[int, deque[tuple[int, float]]] = {}  # rising (offset, eventTime)
        self._settled: dict[int, float] = {}  # committed progress per input partition
        self._told: dict[int, float] = {}  # what the last beat said
        self._quiet: dict[int, int] = {}  # input partition -> end it was last told read to

    def note(self, source: int, offset: int, latest: float | None) -> None:
        """Input partition `source` had records up to eventTime `latest` at `offset`."""
        if latest is None:
            return
        corroborated = self._latest.get(source)
        if corroborated is None:
            corroborated = self._latest[source] = Latest(self.corroboration)
        if not corroborated.add(latest):
            return
        latest = corroborated.value
        marks = self._marks.setdefault(source, deque())
        if latest > (marks[-1][1] if marks else self._settled.get(source, -math.inf)):
            marks.append((offset, latest))

    def to_tell(self, source: int, committed: int) -> float | None:
        """The eventTime to beat for `source` with offsets before `committed` committed;
        None when it has not moved since the last beat."""
        marks = self._marks.get(source)
        while marks and marks[0][0] < committed:
            self._settled[source] = marks.popleft()[1]
        settled = self._settled.get(source)
        if settled is None or settled <= self._told.get(source, -math.inf):
            return None
        self._told[source] = settled
        return settled

    def quiet(self, source: int, end: int | None) -> bool:
        """True when `source` has just been read to its `end` (None: not read to its end):
        told once per end, so a partition that had records since is told again."""
        if end is None:
            self._quiet.pop(source, None)
            return False
        if self._quiet.get(source) == end:
            return False
        self._quiet[source] = end
        return True

    def forget(self) -> None:
        """After a rebalance the input partitions are read again from their commits."""
        self._latest.clear()
        self._marks.clear()
        self._settled.clear()
        self._told.clear()
        self._quiet.clear()
