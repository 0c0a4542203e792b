"""JSON lines on standard output (one alert document per line, native or OCSF) for log
shippers and demos.

Logging goes to stderr, so stdout carries nothing but alerts. Writing to a pipe blocks as
soon as the reader stops reading, so the write happens on a daemon thread and the event loop
only waits `retry.timeout` seconds for it: a stuck reader costs dropped alerts (counted like
any sink's), never the worker's health checks, heartbeats or commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from dataclasses import dataclass
from typing import BinaryIO

from detector.alerts import Alert
from detector.metrics import Metrics
from detector.sinks.base import Sink, SinkConfig, log
from detector.sinks.formats import DEFAULT_FORMAT, AlertFormat, encode_alert


@dataclass(frozen=True, kw_only=True)
class StdoutConfig(SinkConfig):
    """Routing, the queue bound and `retry.timeout` (how long one write may block) apply;
    `alert_format` says which document each line is."""

    alert_format: AlertFormat = DEFAULT_FORMAT


class StdoutSink(Sink):
    """Writes batches of alerts as JSON lines and flushes after each batch.

    At most one write is in progress: while a timed-out write is still blocked, later batches
    are dropped at once instead of piling up threads behind it. A batch whose write timed out
    counts as dropped even if the reader later takes it, since that cannot be known in time.
    """

    max_batch = 256

    config: StdoutConfig

    def __init__(
        self, config: StdoutConfig, metrics: Metrics, stream: BinaryIO | None = None
    ) -> None:
        super().__init__(config, metrics)
        self._stream = stream
        self._writing: asyncio.Future[Exception | None] | None = None

    async def _deliver(self, batch: list[Alert]) -> bool:
        timeout = self.config.retry.timeout
        if self._writing is not None and not self._writing.done():
            self._metrics.sink_failures.labels(self.name).inc()
            return False  # warned once when that write timed out, not once per batch
        alert_format = self.config.alert_format
        data = b"".join(encode_alert(alert, alert_format) + b"\n" for alert in batch)
        self._writing = self._write_in_thread(self._stream or _raw_stdout(), data)
        try:
            error = await asyncio.wait_for(asyncio.shield(self._writing), timeout)
        except TimeoutError:
            return self._failed(batch, f"the write blocked for more than {timeout:g}s; "
                                "alerts are dropped until it completes")
        return True if error is None else self._failed(batch, str(error))

    def _failed(self, batch: list[Alert], reason: str) -> bool:
        self._metrics.sink_failures.labels(self.name).inc()
        log.warning("sink %s: cannot write %d alert(s): %s", self.name, len(batch), reason)
        return False

    @staticmethod
    def _write_in_thread(stream: BinaryIO, data: bytes) -> asyncio.Future[Exception | None]:
        """Write and flush on a daemon thread (the default executor would be joined at exit
        and hang on a blocked write). The future's result is the write's error or None: an
        error nobody awaits any more (the write had timed out) must not be logged as lost."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Exception | None] = loop.create_future()

        def settle(error: Exception | None) -> None:
            if not future.done():
                future.set_result(error)

        def write() -> None:
            error: Exception | None = None
            try:
                view = memoryview(data)
                while view:
                    written = stream.write(view)  # a raw stream may write a part
                    if not written:  # None: a non-blocking descriptor is full
                        raise BlockingIOError("stdout accepts no more data")
                    view = view[written:]
                stream.flush()
            except (OSError, ValueError) as exc:
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop closed while it was blocked
                loop.call_soon_threadsafe(settle, error)

        threading.Thread(target=write, name="stdout-sink-write", daemon=True).start()
        return future


def _raw_stdout() -> BinaryIO:
    """Unbuffered stdout: a write blocked in the buffered writer would hold its lock, and
    the interpreter aborts at exit when it cannot take that lock to flush stdout."""
    buffer = sys.stdout.buffer
    raw: BinaryIO = getattr(buffer, "raw", buffer)
    return raw
