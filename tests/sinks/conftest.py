"""Fixtures for sink tests: a fresh metrics registry and real loopback HTTP receivers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import pytest
from prometheus_client import CollectorRegistry

from detector.metrics import Metrics
from sinks.http_receiver import Receiver, Reply
from sinks.support import ReceiverFactory


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


@pytest.fixture
async def receiver() -> AsyncIterator[ReceiverFactory]:
    started: list[Receiver] = []

    async def make(replies: Iterable[Reply] = (), default: Reply | None = None) -> Receiver:
        server = await Receiver(replies, default).start()
        started.append(server)
        return server

    yield make
    for server in started:
        await server.close()
