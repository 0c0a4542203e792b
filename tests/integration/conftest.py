"""Session fixture: one real Kafka broker for all integration tests."""

from __future__ import annotations

import atexit
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka_broker import BrokerUnavailableError, KafkaBroker

from integration.worker_support import WorkerProcess


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """Start a broker on free loopback ports for the session and always stop it.

    A missing java or mvn fails the tests instead of skipping them: CI must run them. The
    atexit hook covers an interpreter exit that skips fixture teardown, and the script's
    owner-pid watchdog covers a killed interpreter.
    """
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    atexit.register(broker.stop)
    try:
        try:
            broker.start()
        except BrokerUnavailableError as exc:
            message = f"integration tests need a local Kafka broker: {exc}"
            raise pytest.fail.Exception(message, pytrace=False) from None
        yield broker
    finally:
        broker.stop()
        atexit.unregister(broker.stop)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers for a test; every one is killed at the end, whatever happened."""
    started: list[WorkerProcess] = []

    def start(broker: KafkaBroker, **kwargs: Any) -> WorkerProcess:
        worker = WorkerProcess(broker, tmp_path, **kwargs).start()
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.kill()
