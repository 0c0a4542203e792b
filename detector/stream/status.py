"""What /healthz, /readyz and /status report, kept apart from Faust so it is unit-tested.

Ready means: rules loaded, the consumer group gave this worker its assignment (possibly empty
when there are more workers than partitions), table recovery is over, and no assigned
partition with waiting messages has stood still longer than the stall timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client import Gauge

from detector.stream.rules import RuleSource

TopicPartition = tuple[str, int]


@dataclass
class _Progress:
    committed: int | None
    since: float  # monotonic time the committed offset last moved (or lag appeared)


class LagTracker:
    """Keeps the lag gauge per assigned partition and notices partitions that stall."""

    def __init__(self, gauge: Gauge, stall_timeout: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.gauge = gauge
        self.stall_timeout = stall_timeout
        self.clock = clock
        self.lag: dict[TopicPartition, int] = {}
        self._progress: dict[TopicPartition, _Progress] = {}

    def update(self, offsets: Mapping[TopicPartition, tuple[int | None, int]]) -> None:
        """Record (committed, end) for every assigned partition; forget the others."""
        now = self.clock()
        for tp in set(self.lag) - set(offsets):
            self.gauge.remove(tp[0], str(tp[1]))
            del self.lag[tp]
            self._progress.pop(tp, None)
        for tp, (committed, end) in offsets.items():
            lag = max(0, end - (committed or 0))
            self.lag[tp] = lag
            self.gauge.labels(tp[0], str(tp[1])).set(lag)
            previous = self._progress.get(tp)
            if previous is None or previous.committed != committed or lag == 0:
                self._progress[tp] = _Progress(committed, now)

    def stalled(self) -> list[TopicPartition]:
        """Partitions with waiting messages whose committed offset stood still too long."""
        now = self.clock()
        return sorted(
            tp for tp, progress in self._progress.items()
            if self.lag.get(tp, 0) > 0 and now - progress.since > self.stall_timeout
        )


@dataclass
class WorkerStatus:
    """The live facts the health pages are computed from."""

    rules: RuleSource
    lag: LagTracker
    rule_count: Callable[[], int]
    rebalancing: Callable[[], bool] = lambda: False
    assignment_received: bool = False
    assigned: set[TopicPartition] = field(default_factory=set)
    started: float = field(default_factory=time.time)
    last_tick: float | None = None  # None until the heartbeat timer first ran

    def on_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.assignment_received = True
        self.assigned = set(assigned)

    def on_revoked(self) -> None:
        self.assigned = set()

    def readiness(self) -> tuple[bool, str]:
        """Whether to take traffic, and why not."""
        if self.rule_count() == 0:
            return False, "no rules loaded"
        if not self.assignment_received:
            return False, "waiting for the consumer group to assign partitions"
        if self.rebalancing():
            return False, "rebalancing or recovering tables"
        stalled = self.lag.stalled()
        if stalled:
            names = ", ".join(f"{topic}[{partition}]" for topic, partition in stalled[:5])
            return False, f"consumer stalled on {names}"
        return True, "ready"

    def tick(self) -> None:
        self.last_tick = time.monotonic()

    def liveness(self, max_tick_age: float = 30.0) -> tuple[bool, str]:
        """Alive while the event loop runs its heartbeat timer on time.

        Faust starts timers only once the worker is ready; before that (startup, a long
        table recovery) answering at all is what shows the loop is alive.
        """
        if self.last_tick is None:
            return True, "starting"
        age = time.monotonic() - self.last_tick
        if age > max_tick_age:
            return False, f"event loop heartbeat is {age:.0f}s old"
        return True, "alive"

    def snapshot(self) -> dict[str, object]:
        ready, reason = self.readiness()
        reload = self.rules.status
        return {
            "ready": ready,
            "reason": reason,
            "started_at": self.started,
            "rules": {
                "loaded": self.rule_count(),
                "files": self.rules.files,
                "paths": [str(path) for path in self.rules.rule_paths],
                "list_paths": [str(path) for path in self.rules.list_paths],
                "last_reload": {"ok": reload.ok, "at": reload.at, "errors": reload.errors},
            },
            "assigned_partitions": [
                {"topic": topic, "partition": partition, "lag": self.lag.lag.get((topic,
                                                                                    partition))}
                for topic, partition in sorted(self.assigned)
            ],
        }
