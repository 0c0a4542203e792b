"""A real local Kafka broker for tests, driven through scripts/kafka.

The broker is a separate JVM, so this module's job is to make sure it is started on free
loopback ports, is stopped whatever happens to the test run, and can create topics that are
ready to use (every partition has a leader) when `create_topic` returns.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "kafka"
MISSING_TOOL_EXIT = 2


class BrokerUnavailableError(RuntimeError):
    """Java 17+ or Maven is missing, so no broker can be started on this machine."""


class BrokerError(RuntimeError):
    """The broker failed to start, stop or answer an admin request."""


def free_port() -> int:
    """Return a loopback TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class KafkaBroker:
    """One single-node KRaft broker living in `directory` (pid, log, data)."""

    def __init__(self, directory: Path, *, start_timeout: float = 120.0) -> None:
        self.directory = directory
        self.start_timeout = start_timeout
        self.bootstrap = ""
        self.start_seconds = 0.0

    @property
    def log_file(self) -> Path:
        return self.directory / "kafka.log"

    def start(self) -> str:
        """Start the broker and return its bootstrap address once it serves metadata.

        Raises BrokerUnavailableError when java or mvn is missing, BrokerError otherwise.
        The broker is tied to this process: if it dies without calling stop, the script's
        watchdog stops the broker.
        """
        port = free_port()
        controller_port = free_port()
        while controller_port == port:
            controller_port = free_port()
        began = time.monotonic()
        result = self._run(
            "start",
            "--port",
            str(port),
            "--controller-port",
            str(controller_port),
            "--owner-pid",
            str(os.getpid()),
            "--timeout",
            str(int(self.start_timeout)),
            timeout=self.start_timeout + 600,  # the first run also downloads the jars
        )
        if result.returncode == MISSING_TOOL_EXIT:
            raise BrokerUnavailableError(result.stderr.strip())
        if result.returncode != 0:
            raise BrokerError(f"scripts/kafka start failed:\n{result.stderr.strip()}")
        self.start_seconds = time.monotonic() - began
        self.bootstrap = result.stdout.strip().splitlines()[-1]
        return self.bootstrap

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL); safe to call when it is not running."""
        result = self._run("stop", timeout=120)
        if result.returncode != 0:
            raise BrokerError(f"scripts/kafka stop failed:\n{result.stderr.strip()}")

    def is_running(self) -> bool:
        return self._run("status", timeout=30).returncode == 0

    def create_topic(self, name: str, partitions: int = 1, timeout: float = 30.0,
                     config: dict[str, str] | None = None) -> None:
        """Create `name` (with topic `config`) and wait until every partition has a leader.

        Synchronous so that it works from sync and async tests alike: the admin client runs
        on its own event loop in a worker thread.
        """
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(asyncio.run,
                        self._create_topic(name, partitions, timeout, config or {})).result()

    def set_topic_config(self, name: str, config: dict[str, str]) -> None:
        """Change settings of an existing topic (as `kafka-configs --alter` would)."""
        async def alter() -> None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await admin.start()
            try:
                await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name,
                                                          configs=config)])
            finally:
                await admin.close()

        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(asyncio.run, alter()).result()

    async def _create_topic(self, name: str, partitions: int, timeout: float,
                            config: dict[str, str]) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            response = await admin.create_topics(
                [NewTopic(name, num_partitions=partitions, replication_factor=1,
                          topic_configs=config)],
                timeout_ms=int(timeout * 1000),
            )
            for topic, error_code, *detail in response.topic_errors:
                if error_code != 0:
                    raise BrokerError(f"cannot create topic {topic}: error {error_code} {detail}")
            await self._wait_for_leaders(admin, name, partitions, timeout)
        finally:
            await admin.close()

    @staticmethod
    async def _wait_for_leaders(
        admin: AIOKafkaAdminClient, name: str, partitions: int, timeout: float
    ) -> None:
        deadline = time.monotonic() + timeout
        while True:
            described: list[dict[str, Any]] = await admin.describe_topics([name])
            ready = [
                p
                for t in described
                if t["error_code"] == 0
                for p in t["partitions"]
                if p["error_code"] == 0 and p["leader"] >= 0
            ]
            if len(ready) == partitions:
                return
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"topic {name}: {len(ready)}/{partitions} partitions have a leader"
                )
            await asyncio.sleep(0.1)

    def _run(self, command: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), command, "--dir", str(self.directory), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
