"""Running `python -m detector worker` subprocesses against the test broker, and reading and
writing its topics: shared by the worker, scaling, reload and Prometheus integration tests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka_broker import KafkaBroker, free_port

from detector.cli import main as detector_main

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "stream"
RULES = FIXTURES / "rules"
SCENARIO = FIXTURES / "kvs-intruder.jsonl"
DELETE_RULE = "5f0e4d2a-1c3b-4a5e-9f6d-7a8b9c0d1e2f"
NEW_IP_RULE = "8c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
FAST = ["--session-timeout", "6s", "--heartbeat-interval", "1s", "--commit-interval", "300ms",
        "--lag-interval", "1s", "--reload-interval", "0", "--log-level", "warning"]
# stateful workers of the scaling and redelivery tests: four state partitions, short lateness
STATEFUL = ["--allowed-lateness", "1m", "--state-partitions", "4"]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Message:
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]
    partition: int


@dataclass
class WorkerProcess:
    """One `detector worker` subprocess with its own data dir and web port."""

    broker: KafkaBroker
    directory: Path
    group: str
    input_topic: str
    rules: Sequence[Path] = (RULES,)
    extra: Sequence[str] = ()
    program: Sequence[str] = ("-m", "detector")  # or a script that calls detector.cli.main
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def alerts_topic(self) -> str:
        return f"{self.group}-alerts"

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.group}-dead-letter"

    @property
    def log(self) -> Path:
        return self.directory / f"worker-{self.port}.log"

    @property
    def stdout(self) -> Path:
        return self.directory / f"worker-{self.port}.out"

    def start(self) -> WorkerProcess:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, *self.program, "worker",
                "--bootstrap-servers", self.broker.bootstrap,
                "--input-topic", self.input_topic, "--alerts-topic", self.alerts_topic,
                "--dead-letter-topic", self.dead_letter_topic, "--group-id", self.group,
                "--data-dir", str(self.directory / f"data-{self.port}"),
                "--web-host", "127.0.0.1", "--web-port", str(self.port), *FAST]
        for path in self.rules:
            args += ["--rules", str(path)]
        args += list(self.extra)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTOR_")}
        env.update(self.env)
        with self.log.open("ab") as log, self.stdout.open("ab") as out:
            self.process = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=log,
                                            stdin=subprocess.DEVNULL)
        return self

    def restart(self) -> WorkerProcess:
        """Start it again after it died, with its data dir (as a container restarted in its
        pod keeps its emptyDir)."""
        assert self.process is not None and self.process.poll() is not None
        return self.start()

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.assert_running()
            try:
                if self.get("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.25)
        raise AssertionError(f"worker not ready after {timeout}s:\n{self.tail()}")

    def status(self) -> dict[str, Any]:
        code, body = self.get("/status")
        assert code == 200
        parsed: dict[str, Any] = json.loads(body)
        return parsed

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Until every assigned partition has no lag (what was produced is committed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            partitions = self.status()["assigned_partitions"]
            if partitions and all(p["lag"] == 0 for p in partitions):
                return
            time.sleep(0.5)
        raise AssertionError(f"worker still lagging after {timeout}s: {self.status()}")

    def metric(self, name: str, **labels: str) -> float:
        code, body = self.get("/metrics")
        assert code == 200
        wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
                         if labels else "")
        for line in body.decode().splitlines():
            if line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            if _normalise(series) == wanted:
                return float(value)
        return 0.0

    def assert_running(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.tail()}")

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _normalise(series: str) -> str:
    """`name{b="2",a="1"}` with its labels sorted, to compare with what a test asks for."""
    name, brace, rest = series.partition("{")
    if not brace:
        return name
    labels = sorted(rest.rstrip("}").split(","))
    return name + "{" + ",".join(labels) + "}"


def produce(broker: KafkaBroker, topic: str,
            messages: Sequence[bytes | tuple[bytes | None, bytes]],
            headers: Sequence[tuple[str, bytes]] = (),
            max_request_size: int = 4 * 1024 * 1024) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap,
                                    max_request_size=max_request_size)
        await producer.start()
        try:
            for message in messages:
                key, value = message if isinstance(message, tuple) else (None, message)
                await producer.send_and_wait(topic, value, key=key, headers=list(headers))
        finally:
            await producer.stop()

    asyncio.run(run())


def read_topic(broker: KafkaBroker, topic: str, done: Callable[[list[Message]], bool],
               timeout: float = 60.0, settle: float = 0.0, *,
               fetch_bytes: int = 8 * 1024 * 1024) -> list[Message]:
    """Everything in `topic` from the start, read until `done` holds (or the timeout), then
    on until nothing new came for `settle` seconds (to see that nothing more comes)."""

    async def run() -> list[Message]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap,
                                    auto_offset_reset="earliest", group_id=None,
                                    fetch_max_bytes=fetch_bytes,
                                    max_partition_fetch_bytes=fetch_bytes)
        await consumer.start()
        found: list[Message] = []
        try:
            deadline = time.monotonic() + timeout
            quiet_since = time.monotonic()
            while time.monotonic() < deadline:
                if done(found) and time.monotonic() - quiet_since >= settle:
                    break
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    found += [Message(r.key, r.value, dict(r.headers), r.partition)
                              for r in records]
                    quiet_since = time.monotonic()
        finally:
            await consumer.stop()
        return found

    return asyncio.run(run())


def alert_ids(messages: list[Message]) -> set[str]:
    return {orjson.loads(message.value)["id"] for message in messages}


def scan_alerts(paths: Sequence[Path], rules: Sequence[Path], tmp: Path,
                *extra: str) -> dict[str, dict[str, Any]]:
    """`detector scan` over the paths: alert id -> alert (without its detection time)."""
    output = tmp / f"scan-{uuid.uuid4().hex[:6]}.jsonl"
    args = ["scan", *[a for rule in rules for a in ("--rules", str(rule))],
            "--output", str(output), "--no-progress", *extra, *map(str, paths)]
    assert detector_main(args) == 0
    return by_id(orjson.loads(line) for line in output.read_bytes().splitlines())


def by_id(alerts: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {alert["id"]: {k: v for k, v in alert.items() if k != "detected_at"}
            for alert in alerts}


def scan_ids(paths: Sequence[Path], rules: Sequence[Path], tmp: Path, *extra: str) -> set[str]:
    return set(scan_alerts(paths, rules, tmp, *extra))


def replay(broker: KafkaBroker, topic: str, *paths: Path | str, options: Sequence[str] = ())\
        -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "detector", "replay", "--topic", topic,
         "--bootstrap-servers", broker.bootstrap, *options, *map(str, paths)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


def scenario_events() -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in SCENARIO.read_bytes().splitlines()]


def wait_for_split(pair: list[WorkerProcess], topic: str, timeout: float = 60.0) -> None:
    """Until each worker of the pair owns some input partitions and both are ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        owned = [{p["partition"] for p in w.status()["assigned_partitions"] if p["topic"] == topic}
                 for w in pair]
        if all(owned) and not owned[0] & owned[1] and all(
            w.get("/readyz")[0] == 200 for w in pair
        ):
            return
        time.sleep(0.5)
    raise AssertionError(f"partitions never split between the workers: {owned}")
