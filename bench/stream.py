"""Benchmarks 5-8: the stream worker on a real local Kafka broker (scripts/kafka).

Every contender (the worker, the no-op faust agent, the plain aiokafka loop) is a separate
process reading a topic filled beforehand, with a fresh consumer group each repetition. The
harness watches the group's committed offsets: throughput is the committed-offset progress
between the first and the last commit, so process start-up does not count and all three are
measured the same way. Latency and recovery watch the alerts topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson

from bench.data import synthetic
from bench.report import NOT_AVAILABLE, SKIPPED, Result, new_result
from bench.rules import SIGMA_DIR, product_paths, write_sigma_lists
from bench.timing import median, paired_ratio, profile_file
from detector.settings.worker import WorkerSettings

REPO = Path(__file__).resolve().parents[1]
BROKER_HELPER = REPO / "tests" / "kafka_broker.py"
# Seconds between commits, for every contender: the worker's default. Fewer records per commit
# mean more table changes per record (a changed entry is sent once per commit): the breakdown
# runs the worker at 0.2 s too.
COMMIT_INTERVAL: float = WorkerSettings.model_fields["commit_interval"].default
FINE_COMMITS = {"DETECTOR_COMMIT_INTERVAL": "0.2s"}
RECORDS_PER_FILE = 100


@dataclass(frozen=True)
class Sizes:
    single_messages: int
    file_messages: int  # of RECORDS_PER_FILE records each
    repetitions: int
    latency_seconds: float
    latency_rate: int  # events/s
    recovery: bool
    recovery_rate: int
    drain_timeout: float


FULL = Sizes(single_messages=24_000, file_messages=600, repetitions=3, latency_seconds=15.0,
             latency_rate=2_000, recovery=True, recovery_rate=200, drain_timeout=300.0)
QUICK = Sizes(single_messages=1_500, file_messages=30, repetitions=1, latency_seconds=3.0,
              latency_rate=2_000, recovery=False, recovery_rate=200, drain_timeout=60.0)


class StreamError(RuntimeError):
    """A contender process failed or did not finish in time."""


class BrokerMissing(RuntimeError):
    """No local broker can run here (java or mvn missing): the stream benchmarks cannot."""


@dataclass
class Context:
    sizes: Sizes
    work: Path
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])


def placeholder(number: int) -> Result:
    return new_result(number)


def _stream_missing() -> str | None:
    for module in ("detector.stream.worker", "detector.stream.app"):
        try:
            if importlib.util.find_spec(module) is None:
                return f"{module} does not exist yet"
        except ImportError as error:
            return f"{module} cannot be imported: {error}"
    return None


# --- the broker -------------------------------------------------------------------------------

_brokers: dict[str, Any] = {}  # "broker": the one broker of this run; "missing": why none


def _broker_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_kafka_broker", BROKER_HELPER)
    if spec is None or spec.loader is None:
        raise StreamError(f"cannot load {BROKER_HELPER}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def broker(work: Path) -> Any:
    """The one broker of this run, started on first use (tests/kafka_broker.py drives it)."""
    if "missing" in _brokers:
        raise BrokerMissing(_brokers["missing"])
    if "broker" not in _brokers:
        module = _broker_module()
        candidate = module.KafkaBroker(work / "kafka")
        for attempt in range(3):
            try:
                candidate.start()
                break
            except module.BrokerUnavailableError as error:
                _brokers["missing"] = str(error)
                raise BrokerMissing(str(error)) from None
            except module.BrokerError:
                # scripts/kafka sometimes draws a cluster id starting with "-", which the
                # storage tool takes for an option; a new draw fixes it
                if attempt == 2:
                    raise
        _brokers["broker"] = candidate
    return _brokers["broker"]


def shutdown() -> None:
    started = _brokers.pop("broker", None)
    if started is not None:
        started.stop()


def run(function: Callable[[Context], Result], ctx: Context, *, enabled: bool) -> Result:
    """Run a stream benchmark, or say clearly why it cannot run here."""
    number = BENCHMARKS.index(function) + 5
    if not enabled:
        return placeholder(number).unavailable(
            "quick mode: stream benchmarks need the broker (add --with-broker)", status=SKIPPED)
    missing = _stream_missing()
    if missing:
        return placeholder(number).unavailable(missing, status=NOT_AVAILABLE)
    try:
        return function(ctx)
    except BrokerMissing as error:
        return placeholder(number).unavailable(f"no local Kafka broker: {error}",
                                               status=NOT_AVAILABLE)


# --- processes --------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    web_port: int | None = None

    def check(self) -> None:
        code = self.popen.poll()
        if code is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise StreamError(f"{self.name} exited with status {code}:\n{tail}")

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit status."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        return self.popen.returncode

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)


def _spawn(name: str, argv: Sequence[str], env: dict[str, str], log: Path,
           web_port: int | None = None) -> Process:
    handle = log.open("wb")
    popen = subprocess.Popen([sys.executable, *argv], cwd=REPO, env={**os.environ, **env},
                             stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT)
    handle.close()
    return Process(name, popen, log, web_port)


@dataclass(frozen=True)
class Topics:
    input: str
    alerts: str
    dead_letter: str


def start_worker(ctx: Context, bootstrap: str, topics: Topics, group: str, label: str,
                 *, profile: Path | None = None, extra: dict[str, str] | None = None) -> Process:
    """`python -m detector worker` with the shipped packs + SigmaHQ, configured by env."""
    paths, lists, _ = product_paths(ctx.work / "worker-lists")
    port = _free_port()
    env = {
        "DETECTOR_BOOTSTRAP_SERVERS": bootstrap,
        "DETECTOR_INPUT_TOPIC": topics.input,
        "DETECTOR_ALERTS_TOPIC": topics.alerts,
        "DETECTOR_DEAD_LETTER_TOPIC": topics.dead_letter,
        "DETECTOR_GROUP_ID": group,
        "DETECTOR_RULES_DIR": ",".join(str(path) for path in paths),
        "DETECTOR_LISTS_DIR": ",".join(str(path) for path in lists),
        "DETECTOR_WEB_HOST": "127.0.0.1",
        "DETECTOR_WEB_PORT": str(port),
        "DETECTOR_DATA_DIR": str(ctx.work / f"data-{label}"),
        "DETECTOR_LOG_LEVEL": "warning",
        **(extra or {}),
    }
    if not lists:
        env.pop("DETECTOR_LISTS_DIR")
    return _spawn(f"worker {label}", [*_profiled(profile), "-m", "detector", "worker"], env,
                  ctx.work / f"{label}.log", port)


def start_peer(ctx: Context, kind: str, bootstrap: str, topic: str, *, group: str,
               label: str, profile: Path | None = None) -> Process:
    env = {"BENCH_BOOTSTRAP": bootstrap, "BENCH_TOPIC": topic, "BENCH_GROUP": group,
           "BENCH_COMMIT_INTERVAL": str(COMMIT_INTERVAL),
           "BENCH_DATA_DIR": str(ctx.work / f"data-{label}")}
    return _spawn(f"{kind} {label}", [*_profiled(profile), "-m", "bench.peers", kind], env,
                  ctx.work / f"{label}.log")


def _profiled(profile: Path | None) -> list[str]:
    return [] if profile is None else ["-m", "cProfile", "-o", str(profile)]


def _ready(process: Process) -> bool:
    try:
        url = f"http://127.0.0.1:{process.web_port}/readyz"
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


async def wait_ready(processes: Iterable[Process], timeout: float = 90.0) -> None:
    pending = list(processes)
    deadline = time.monotonic() + timeout
    while pending:
        for process in pending:
            process.check()
        ready = await asyncio.gather(*(asyncio.to_thread(_ready, p) for p in pending))
        pending = [p for p, ok in zip(pending, ready, strict=True) if not ok]
        if pending and time.monotonic() > deadline:
            raise StreamError(f"{pending[0].name} not ready after {timeout:.0f} s")
        await asyncio.sleep(0.2)


# --- Kafka clients ----------------------------------------------------------------------------

async def produce(bootstrap: str, topic: str, payloads: Sequence[bytes]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                                max_batch_size=1024 * 1024, max_request_size=8 * 1024 * 1024)
    await producer.start()
    try:
        for start in range(0, len(payloads), 2000):
            futures = [await producer.send(topic, payload)
                       for payload in payloads[start:start + 2000]]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def committed(admin: Any, group: str, topic: str) -> int:
    """The group's committed offsets on `topic`, summed (0 while the group has none)."""
    from aiokafka.errors import KafkaError

    try:
        offsets = await admin.list_consumer_group_offsets(group)
    except KafkaError:  # the group or its coordinator does not exist yet
        return 0
    return sum(meta.offset for tp, meta in offsets.items()
               if tp.topic == topic and meta.offset > 0)


async def drain_rate(bootstrap: str, process: Process, group: str, topic: str, *, total: int,
                     timeout: float) -> float:
    """Messages/s of `process` over `topic`, from its group's committed offsets."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    spawned = time.monotonic()
    first: tuple[float, int] | None = None
    try:
        while True:
            process.check()
            done = await committed(admin, group, topic)
            now = time.monotonic()
            if done and first is None:
                first = (now, done)
            if done >= total and first is not None:
                if now - first[0] > 0.5:
                    return (done - first[1]) / (now - first[0])
                return done / (now - spawned)  # tiny input: gone in one commit
            if now - spawned > timeout:
                raise StreamError(f"{process.name}: {done}/{total} messages after {timeout} s")
            await asyncio.sleep(0.05)
    finally:
        await admin.close()


# --- 5 and 6: throughput ----------------------------------------------------------------------

def _single_payloads(count: int) -> list[bytes]:
    return [orjson.dumps(record) for record in synthetic(count, seed=5)]


def _file_payloads(count: int) -> list[bytes]:
    records = synthetic(count * RECORDS_PER_FILE, seed=6)
    return [orjson.dumps({"Records": records[n:n + RECORDS_PER_FILE]})
            for n in range(0, len(records), RECORDS_PER_FILE)]


async def _throughput(ctx: Context, topic: str, payloads: list[bytes],
                      contenders: Sequence[str], *, profile: Path | None = None,
                      breakdown: dict[str, dict[str, str]] | None = None,
                      ) -> tuple[dict[str, list[float]], list[str]]:
    """Rates (messages/s) per contender; then one run of each `breakdown` worker variant
    (its extra settings), and one profiled worker run when `profile` is given."""
    bootstrap = broker(ctx.work).bootstrap
    broker(ctx.work).create_topic(topic, 1)
    await produce(bootstrap, topic, payloads)
    topics = Topics(topic, f"{topic}-alerts", f"{topic}-dead-letter")
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    notes: list[str] = []
    warmup = start_peer(ctx, "loop", bootstrap, topic, group=f"{topic}-warmup",
                        label=f"{topic}-warmup")  # the broker's first read of the topic is slow
    try:
        await drain_rate(bootstrap, warmup, f"{topic}-warmup", topic, total=len(payloads),
                         timeout=ctx.sizes.drain_timeout)
    finally:
        warmup.stop()
    for repetition in range(ctx.sizes.repetitions):
        order = contenders if repetition % 2 == 0 else list(reversed(contenders))
        for name in order:
            group = f"{topic}-{name}-{repetition}"
            label = f"{topic}-{name}-{repetition}"
            process = (start_worker(ctx, bootstrap, topics, group, label) if name == "worker"
                       else start_peer(ctx, name, bootstrap, topic, group=group, label=label))
            try:
                rates[name].append(await drain_rate(bootstrap, process, group, topic,
                                                    total=len(payloads),
                                                    timeout=ctx.sizes.drain_timeout))
            finally:
                process.stop()
    for number, (name, extra) in enumerate((breakdown or {}).items()):
        group = f"{topic}-variant-{number}"
        process = start_worker(ctx, bootstrap, topics, group, f"{topic}-variant-{number}",
                               extra=extra)
        try:
            rates[name] = [await drain_rate(bootstrap, process, group, topic,
                                            total=len(payloads),
                                            timeout=ctx.sizes.drain_timeout)]
        finally:
            process.stop()
    if profile is not None:
        group = f"{topic}-profile"
        process = start_worker(ctx, bootstrap, topics, group, f"{topic}-profile",
                               profile=profile)
        try:
            await drain_rate(bootstrap, process, group, topic, total=len(payloads),
                             timeout=ctx.sizes.drain_timeout)
        finally:
            status = process.stop()
        if not profile.exists():
            notes.append(f"no profile written (worker exit status {status})")
    return rates, notes


def _throughput_result(result: Result, rates: dict[str, list[float]], per_message: int,
                       baseline: str) -> None:
    labels = {"worker": "detector worker", "noop": "no-op faust agent",
              "loop": "aiokafka loop"}
    for name, runs in rates.items():
        records = [rate * per_message for rate in runs]
        result.measure(labels.get(name, name), "records/s", records, median(records))
    for name, runs in rates.items():
        if name in labels and name != "worker":
            result.ratios[f"worker/{name}"] = round(paired_ratio(rates["worker"], runs), 3)
    if "noop" in rates and "loop" in rates:
        result.ratios["noop/loop"] = round(paired_ratio(rates["noop"], rates["loop"]), 3)
    result.conclude(paired_ratio(rates["worker"], rates[baseline]),
                    f"worker/{labels[baseline]} records/s")


def stream_single(ctx: Context) -> Result:
    result = new_result(5)
    count = ctx.sizes.single_messages
    profile = ctx.work / "worker.prof"
    lists = write_sigma_lists(ctx.work / "breakdown-lists")
    breakdown = {"worker, commits every 0.2 s (1 run)": FINE_COMMITS,
                 "worker, faust's sensors on (1 run)": {"DETECTOR_FAUST_METRICS": "true"},
                 "worker, Faust's 1.5 s fetch wait (1 run)": {"DETECTOR_FETCH_MAX_WAIT": "1.5s"}}
    if SIGMA_DIR.is_dir():
        breakdown["worker, SigmaHQ rules only: no stateful rule (1 run)"] = {
            "DETECTOR_RULES_DIR": str(SIGMA_DIR), "DETECTOR_LISTS_DIR": str(lists)}
    rates, notes = asyncio.run(_throughput(
        ctx, f"bench-{ctx.run_id}-single", _single_payloads(count),
        ["worker", "noop", "loop"], profile=profile, breakdown=breakdown))
    _throughput_result(result, rates, 1, "noop")
    noop = median(rates["noop"])
    for name in breakdown:
        result.ratios[f"{name.split(' (')[0]} / no-op"] = round(rates[name][0] / noop, 3)
    result.notes.extend(notes)
    result.notes.append(
        "breakdown: the same input through worker variants, one run each after the "
        "alternating repetitions, to attribute the worker's cost (faust's Prometheus sensors; "
        "the consumer's fetch wait, Faust's own 1.5 s instead of DETECTOR_FETCH_MAX_WAIT; "
        "the stateful path: repartition topics and changelogged tables)")
    result.notes.append(
        f"{count:,} single-record messages pre-produced to a 1-partition topic; each contender "
        f"a fresh process and consumer group, {ctx.sizes.repetitions} alternating repetitions, "
        f"commit interval {COMMIT_INTERVAL} s for all (the worker's default); the worker runs "
        f"the shipped packs + SigmaHQ with its default settings (faust's Prometheus sensors off)")
    if profile.exists():
        result.profile = profile_file(profile)
        result.profile["subject"] = f"the worker draining {count:,} single-record messages"
    return result


def stream_log_files(ctx: Context) -> Result:
    result = new_result(6)
    count = ctx.sizes.file_messages
    rates, notes = asyncio.run(_throughput(
        ctx, f"bench-{ctx.run_id}-files", _file_payloads(count), ["worker", "loop"]))
    _throughput_result(result, rates, RECORDS_PER_FILE, "loop")
    result.notes.extend(notes)
    result.notes.append(
        f"{count:,} messages of {RECORDS_PER_FILE} records ({{\"Records\": [...]}}), "
        f"{count * RECORDS_PER_FILE:,} records; otherwise as benchmark 5")
    return result


# --- 7 and 8: alerts --------------------------------------------------------------------------

MARKER_PRINCIPAL = {
    "type": "IAMUser", "principalId": "AIDABENCHMARKER00001",
    "arn": "arn:aws:iam::111122223333:user/mallory", "accountId": "111122223333",
    "accessKeyId": "AKIABENCHMARKER00001", "userName": "mallory",
}


def marker(event_id: str) -> dict[str, Any]:
    """A record every shipped pack set alerts on at once (Kinesis Video stream deleted by a
    principal outside the stream admins list: no suppression, no state)."""
    return {
        "eventVersion": "1.09", "userIdentity": MARKER_PRINCIPAL,
        "eventTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "eventSource": "kinesisvideo.amazonaws.com", "eventName": "DeleteStream",
        "awsRegion": "us-east-1", "sourceIPAddress": "198.51.100.23",
        "userAgent": "aws-cli/2.17.43", "eventID": event_id,
        "requestParameters": {"streamARN": "arn:aws:kinesisvideo:us-east-1:111122223333:"
                                           f"stream/bench-{event_id}/1"},
        "responseElements": None, "eventType": "AwsApiCall", "managementEvent": True,
        "recipientAccountId": "111122223333", "eventCategory": "Management",
    }


class AlertWatch:
    """Reads the alerts topic from its end and notes when each triggering event's alert came."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.arrived: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._consumer: Any = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer

        self._consumer = AIOKafkaConsumer(self.topic, bootstrap_servers=self.bootstrap,
                                          auto_offset_reset="latest", enable_auto_commit=False,
                                          fetch_max_wait_ms=20)
        await self._consumer.start()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self._consumer:
            now = time.monotonic()
            alert = orjson.loads(message.value)
            for event_id in alert.get("event_ids", [])[-1:]:
                self.arrived.setdefault(event_id, now)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()


class Pacer:
    """Produces at a fixed rate, remembering when each event was handed to the producer."""

    def __init__(self, bootstrap: str, topic: str, rate: int, partitions: int = 1) -> None:
        self.bootstrap, self.topic, self.rate, self.partitions = bootstrap, topic, rate, partitions
        self.sent: dict[str, tuple[float, int]] = {}  # event id -> (monotonic time, partition)
        self.stopped = asyncio.Event()
        self.seconds = 0.0  # how long it produced

    async def run(self, events: Callable[[int], dict[str, Any]], seconds: float) -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=0)
        await producer.start()
        try:
            began = time.monotonic()
            n = 0
            while not self.stopped.is_set() and time.monotonic() - began < seconds:
                due = int((time.monotonic() - began) * self.rate)
                while n < due:
                    record = events(n)
                    partition = n % self.partitions
                    self.sent[record["eventID"]] = (time.monotonic(), partition)
                    await producer.send(self.topic, orjson.dumps(record), partition=partition)
                    n += 1
                await asyncio.sleep(0.005)
            await producer.flush()
            self.seconds = time.monotonic() - began
        finally:
            await producer.stop()


@dataclass
class Latency:
    milliseconds: list[float]
    markers: int
    markers_alerted: int
    produced_rate: float  # events/s the producer achieved


async def _latency(ctx: Context) -> Latency:
    kafka = broker(ctx.work)
    topic = f"bench-{ctx.run_id}-latency"
    kafka.create_topic(topic, 1)
    topics = Topics(topic, f"{topic}-alerts", f"{topic}-dead-letter")
    kafka.create_topic(topics.alerts, 1)
    worker = start_worker(ctx, kafka.bootstrap, topics, f"bench-{ctx.run_id}-latency",
                          "latency")
    watch = AlertWatch(kafka.bootstrap, topics.alerts)
    try:
        await wait_ready([worker])
        await watch.start()
        mix = synthetic(int(ctx.sizes.latency_rate * ctx.sizes.latency_seconds) + 1, seed=7)
        for n, record in enumerate(mix):
            record["eventID"] = f"lat-{ctx.run_id}-{n}"
            if n % 100 == 0:
                mix[n] = marker(record["eventID"])
        pacer = Pacer(kafka.bootstrap, topic, ctx.sizes.latency_rate)
        await pacer.run(lambda n: mix[n], ctx.sizes.latency_seconds)
        markers = [event for event in pacer.sent if int(event.rsplit("-", 1)[1]) % 100 == 0]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not all(m in watch.arrived for m in markers):
            worker.check()
            await asyncio.sleep(0.1)
        waited = time.monotonic()
        latencies = [(watch.arrived[event] - sent) * 1000 for event, (sent, _) in
                     pacer.sent.items() if event in watch.arrived]
        # a marker still without alert counts with the time waited so far: a lower bound
        latencies += [(waited - pacer.sent[m][0]) * 1000 for m in markers
                      if m not in watch.arrived]
        return Latency(latencies, len(markers), sum(m in watch.arrived for m in markers),
                       len(pacer.sent) / pacer.seconds)
    finally:
        await watch.stop()
        worker.stop()


def latency(ctx: Context) -> Result:
    result = new_result(7)
    measured = asyncio.run(_latency(ctx))
    latencies = measured.milliseconds
    if not latencies:
        return result.unavailable("no alert arrived for any produced event", status="failed")
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    p50, p99 = statistics.median(latencies), cuts[98]
    result.measure("p50", "ms", [p50], p50)
    result.measure("p99", "ms", [p99], p99)
    result.measure("max", "ms", [max(latencies)], max(latencies))
    result.ratios["p99/p50"] = round(p99 / p50, 3)
    result.ratios["p99 / 250 ms budget"] = round(p99 / 250.0, 3)
    result.conclude(p99, "p99 ms")
    result.notes.append(
        f"{ctx.sizes.latency_rate:,} single-record messages/s for {ctx.sizes.latency_seconds:.0f}"
        f" s (achieved {measured.produced_rate:,.0f}/s; synthetic mix, 1 % alerting markers); "
        f"{len(latencies)} alerts timed from the producer send call to arrival on the alerts "
        f"topic; {measured.markers_alerted}/{measured.markers} markers alerted (a missing one "
        f"counts with the time waited for it)")
    if p50 > 1000:
        result.notes.append(
            "the worker fell behind: alerts wait in a growing backlog, so this rate is above "
            "the worker's single-record throughput (benchmark 5)")
    return result


async def _recovery(ctx: Context, extra: dict[str, str], label: str) -> float:
    kafka = broker(ctx.work)
    partitions = 4
    topic = f"bench-{ctx.run_id}-recovery-{label}"
    kafka.create_topic(topic, partitions)
    topics = Topics(topic, f"{topic}-alerts", f"{topic}-dead-letter")
    kafka.create_topic(topics.alerts, 1)
    group = f"bench-{ctx.run_id}-recovery-{label}"
    workers = [start_worker(ctx, kafka.bootstrap, topics, group, f"recovery-{label}-{side}",
                            extra=extra) for side in ("a", "b")]
    watch = AlertWatch(kafka.bootstrap, topics.alerts)
    pacer = Pacer(kafka.bootstrap, topic, ctx.sizes.recovery_rate, partitions)
    producing: asyncio.Task[None] | None = None
    try:
        await wait_ready(workers)
        await watch.start()
        producing = asyncio.create_task(pacer.run(
            lambda n: marker(f"rec-{ctx.run_id}-{label}-{n}"), 600.0))

        def alerted_since(moment: float) -> set[int]:
            return {partition for event, (sent, partition) in list(pacer.sent.items())
                    if sent > moment and event in watch.arrived}

        began = time.monotonic()
        while len(alerted_since(began)) < partitions:  # both workers alerting on every partition
            if time.monotonic() - began > 60:
                raise StreamError("alerts did not flow on every partition before the kill")
            await asyncio.sleep(0.1)
        killed = time.monotonic()
        workers[0].kill()
        while len(alerted_since(killed)) < partitions:
            workers[1].check()
            if time.monotonic() - killed > 120:
                raise StreamError("alerts did not flow again within 120 s of the kill")
            await asyncio.sleep(0.05)
        recovered = max(
            min(watch.arrived[event] for event, (sent, part) in list(pacer.sent.items())
                if sent > killed and part == partition and event in watch.arrived)
            for partition in range(partitions))
        return recovered - killed
    finally:
        pacer.stopped.set()
        if producing is not None:
            await producing
        await watch.stop()
        for worker in workers:
            worker.stop()


def recovery(ctx: Context) -> Result:
    result = new_result(8)
    if not ctx.sizes.recovery:
        return result.unavailable("quick mode: recovery waits out a consumer session timeout",
                                  status=SKIPPED)
    from detector.settings.worker import WorkerSettings as Settings

    default_timeout = Settings().session_timeout
    seconds = asyncio.run(_recovery(ctx, {}, "default"))
    result.measure(f"default settings (session timeout {default_timeout:g} s)", "s",
                   [seconds], seconds)
    tuned = asyncio.run(_recovery(ctx, {"DETECTOR_SESSION_TIMEOUT": "10s"}, "tuned"))
    result.measure("session timeout 10 s", "s", [tuned], tuned)
    result.ratios["default / 30 s budget"] = round(seconds / 30.0, 3)
    result.ratios["session timeout 10 s / 30 s budget"] = round(tuned / 30.0, 3)
    result.conclude(seconds, "recovery s (defaults)")
    result.notes.append(
        f"two workers, one group, a 4-partition input topic, {ctx.sizes.recovery_rate} alerting "
        "events/s round-robin over the partitions; SIGKILL one worker, then time until an event "
        "produced after the kill has alerted on every partition. The broker notices a killed "
        "member only when its session times out, so the session timeout bounds this from below")
    return result


BENCHMARKS: tuple[Callable[[Context], Result], ...] = (
    stream_single, stream_log_files, latency, recovery,
)
