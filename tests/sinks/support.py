"""Helpers shared by the sink tests: metric samples, polling, a fast retry policy."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterable
from typing import Protocol

from detector.metrics import Metrics
from detector.sinks import RetryPolicy
from sinks.http_receiver import Receiver, Reply

FAST = RetryPolicy(base_delay=0.01, max_delay=0.05, max_attempts=3, timeout=1.0)


class ReceiverFactory(Protocol):
    """The `receiver` fixture: start a loopback receiver with scripted replies."""

    async def __call__(
        self,
        replies: Iterable[Reply] = (),
        default: Reply | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> Receiver: ...


def sample(metrics: Metrics, name: str, sink: str) -> float:
    """The value of one sink series (0 when absent)."""
    value = metrics.registry.get_sample_value(name, {"sink": sink})
    return value or 0.0


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll until the condition holds; fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)
