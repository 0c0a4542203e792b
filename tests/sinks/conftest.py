"""Fixtures for sink tests: a fresh metrics registry and real loopback HTTP receivers."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from detector.metrics import Metrics
from sinks.http_receiver import Receiver, Reply
from sinks.support import ReceiverFactory
from sinks.tls import PrivateCA, make_ca


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


@pytest.fixture
async def receiver() -> AsyncIterator[ReceiverFactory]:
    started: list[Receiver] = []

    async def make(
        replies: Iterable[Reply] = (),
        default: Reply | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> Receiver:
        server = await Receiver(replies, default, tls).start()
        started.append(server)
        return server

    yield make
    for server in started:
        await server.close()


@pytest.fixture(scope="session")
def private_ca(tmp_path_factory: pytest.TempPathFactory) -> PrivateCA:
    """A private CA and a server certificate for 127.0.0.1 it signed."""
    directory: Path = tmp_path_factory.mktemp("tls")
    return make_ca(directory)
