"""JSON lines on standard output (one `Alert.to_json()` per line) for log shippers and demos.

Logging goes to stderr, so stdout carries nothing but alerts.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import BinaryIO

from detector.alerts import Alert
from detector.metrics import Metrics
from detector.sinks.base import Sink, SinkConfig, log


@dataclass(frozen=True, kw_only=True)
class StdoutConfig(SinkConfig):
    """Only routing and the queue bound apply; there is nothing to retry."""


class StdoutSink(Sink):
    """Writes batches of alerts as JSON lines and flushes after each batch."""

    max_batch = 256

    def __init__(
        self, config: StdoutConfig, metrics: Metrics, stream: BinaryIO | None = None
    ) -> None:
        super().__init__(config, metrics)
        self._stream = stream

    async def _deliver(self, batch: list[Alert]) -> bool:
        stream = self._stream or sys.stdout.buffer
        try:
            stream.write(b"".join(alert.to_json() + b"\n" for alert in batch))
            stream.flush()
        except (OSError, ValueError) as exc:
            self._metrics.sink_failures.labels(self.name).inc()
            log.warning("sink %s: cannot write %d alert(s): %s", self.name, len(batch), exc)
            return False
        return True
