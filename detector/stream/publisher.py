"""Where what an event produced goes: dead letters to their topic, alerts (each encoded once,
`AlertMessage`) to the alerts topic and then to the sinks.

Both go to the producer at once (Faust's `stream_publish_on_commit` is off), and every commit
of offsets waits until the producer has delivered what it was handed (Faust flushes it before
committing), so an offset is committed only after its alerts are on the broker (at-least-once).
Every message counts as sent once all in-sync replicas have it (acks=all). A message the
producer does not take stops the worker (exit 75, `stop_unsent`) before the offset is
committed, like a send the broker refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from detector.metrics import Metrics
from detector.sinks import SinkSet
from detector.stream.processor import Output
from detector.stream.workarounds import stop_unsent


class Topic(Protocol):
    """What the publisher uses of a faust Topic."""

    async def send(self, *, key: bytes | None = None, value: bytes | None = None,
                   partition: int | None = None,
                   headers: list[tuple[str, bytes]] | None = None) -> Any: ...


class Publisher:
    """Hands an event's dead letters and alerts to their topics, then the alerts to the sinks,
    and times each alert from the record that decided it (`detector_produce_to_alert_seconds`)."""

    def __init__(self, alerts: Topic, dead_letters: Topic, sinks: SinkSet, metrics: Metrics,
                 now: Callable[[], float] = time.time) -> None:
        self.alerts = alerts
        self.dead_letters = dead_letters
        self.sinks = sinks
        self.metrics = metrics
        self.now = now  # the wall clock Kafka timestamps are read against

    async def publish(self, output: Output) -> None:
        try:
            for letter in output.dead_letters:
                await self.dead_letters.send(key=letter.key, value=letter.value,
                                             headers=letter.headers)
            for item in output.alerts:
                await self.alerts.send(key=item.key, value=item.value, headers=item.headers)
                if item.produced is not None:
                    self.metrics.produce_to_alert.observe(max(0.0, self.now() - item.produced))
        except Exception as error:
            stop_unsent(error)
        for item in output.alerts:
            if item.alert is not None:  # when raised, not when a ledger sends it again
                self.sinks.submit(item.alert)
