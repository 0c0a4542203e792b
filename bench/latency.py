"""Benchmark 16: from the deciding event to the stateful alert on the alerts topic, per kind.

A worker (benchmark 7's harness, bench/stream.py) runs the shipped packs, SigmaHQ and
bench/stateful_rules. First every marker principal's history goes in at full speed with old
event times (a first-seen and a rare-value principal used the API hours ago, a baseline
principal's first call was days ago: its learning is over and its slot's history is closed);
then the live part in real time: the benchmark mix at 2,000 events/s, stamped with the wall
clock as produced, plus a round of markers every `interval` after a warm-up; then the same at
a reference rate with a fresh worker. Each marker decides exactly one alert of its kind, for
its own principal: a first-seen source address, an API the principal used once (rare,
threshold 2), the access-denied error that makes the count reach the correlation's
threshold, the clip download that makes the minute's count reach the baseline's threshold
(its floor: the history is all zeros). The time is from the producer's
send call of the deciding record to the alert's arrival, matched by rule id and principal;
the mix's own alerts are timed in the same run as benchmark 7 times them, for comparison.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from bench import stream
from bench.data import synthetic
from bench.report import NOT_AVAILABLE, SKIPPED, Result, new_result
from bench.rules import STATEFUL_DIR, product_paths
from detector.settings.worker import WorkerSettings

NUMBER = 16
TARGET_MS = 1000.0
ACCOUNT = "111122223333"
# the rule of each kind in bench/stateful_rules
RULE_FILES = {
    "first_seen": "kinesisvideo_new_source_ip.yml",
    "rare": "kinesisvideo_rare_api.yml",
    "event_count": "access_denied_burst.yml",
    "baseline": "kinesisvideo_clip_baseline.yml",
}
# Before the first-seen and rare rules' learning (1 h) and within their windows (1 d).
RECENT_HISTORY = 2 * 3600.0
# A baseline key's first call three days ago: two whole periods of its slot's history (zeros)
# within its 7 d window, learning (1 h) over.
BASELINE_HISTORY = 3 * 86400.0
BACKGROUND = "mix-"  # the background events' ids start so
WAIT_AFTER = 15.0  # seconds to wait for the last alerts once the live part ends


@dataclass(frozen=True)
class Sizes:
    live_seconds: float
    rate: int  # background events/s
    reference_rate: int  # a second run's, one the worker keeps up with on a busy machine
    warmup: float  # seconds of the mix before the first markers (the worker's first fetches,
    # sends and table writes are slower than its steady state)
    interval: float  # seconds between marker rounds (one marker of each kind per round)
    drain_timeout: float


FULL = Sizes(live_seconds=35.0, rate=2_000, reference_rate=500, warmup=5.0, interval=0.25,
             drain_timeout=300.0)
QUICK = Sizes(live_seconds=4.0, rate=2_000, reference_rate=500, warmup=1.0, interval=0.5,
              drain_timeout=60.0)


@dataclass
class Context:
    sizes: Sizes
    work: Path
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def harness(self) -> stream.Context:
        """The stream harness's context: start_worker reads only its work directory."""
        return stream.Context(stream.QUICK, self.work, self.run_id)


@dataclass(frozen=True)
class MarkerRule:
    """A bench rule that decides a kind of alert, and how many live events reach it."""

    id: str
    events: int


def _stateful(document: dict[str, Any]) -> bool:
    return "correlation" in document or bool(
        {"first_seen", "rare", "baseline"} & set(document.get("detector") or {}))


def marker_rules() -> dict[str, MarkerRule]:
    """Each kind's rule id and live event count, read from its file (the correlation's
    `gte`, the baseline's floor over an all-zero history, else one)."""
    rules = {}
    for kind, name in RULE_FILES.items():
        with (STATEFUL_DIR / name).open(encoding="utf-8") as handle:
            document = next(doc for doc in yaml.safe_load_all(handle) if _stateful(doc))
        events = (document["correlation"]["condition"]["gte"] if kind == "event_count"
                  else document["detector"]["baseline"]["floor"] if kind == "baseline" else 1)
        rules[kind] = MarkerRule(str(document["id"]), int(events))
    return rules


def event_time(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


@dataclass(frozen=True)
class Marker:
    """One principal's history (old event times) and live events; the last live one decides."""

    kind: str
    arn: str
    history: list[dict[str, Any]]
    live: list[dict[str, Any]]

    @property
    def decider(self) -> str:
        return str(self.live[-1]["eventID"])


def _event(arn: str, source: str, name: str, when: float, event_id: str, *,
           ip: str = "198.51.100.7", **extra: Any) -> dict[str, Any]:
    user = arn.rsplit("/", 1)[1]
    return {
        "eventVersion": "1.09", "eventTime": event_time(when),
        "userIdentity": {"type": "IAMUser", "principalId": f"AIDA{user.upper()}", "arn": arn,
                         "accountId": ACCOUNT, "userName": user},
        "eventSource": source, "eventName": name, "awsRegion": "us-east-1",
        "sourceIPAddress": ip, "userAgent": "aws-cli/2.17.43", "eventID": event_id,
        "requestParameters": {"streamName": "lobby-camera"}, "responseElements": None,
        "eventType": "AwsApiCall", "managementEvent": True, "recipientAccountId": ACCOUNT,
        "eventCategory": "Management", **extra,
    }


def marker(kind: str, label: str, now: float, rules: dict[str, MarkerRule]) -> Marker:
    """The events that make `kind`'s rule alert once for a principal of its own, at `now`."""
    arn = f"arn:aws:iam::{ACCOUNT}:user/latency-{kind.replace('_', '-')}-{label}"
    kvs = "kinesisvideo.amazonaws.com"
    count = rules[kind].events

    def live(name: str, source: str = kvs, **extra: Any) -> list[dict[str, Any]]:
        return [_event(arn, source, name, now, f"{label}-{kind}-live-{n}", **extra)
                for n in range(count)]

    if kind == "first_seen":  # a source address the principal never used
        return Marker(kind, arn, [_event(arn, kvs, "GetDataEndpoint", now - RECENT_HISTORY,
                                         f"{label}-{kind}-history")],
                      live("GetDataEndpoint", ip="203.0.113.99"))
    if kind == "rare":  # an API the principal used once before
        return Marker(kind, arn, [_event(arn, kvs, "DescribeStream", now - RECENT_HISTORY,
                                         f"{label}-{kind}-history")], live("DescribeStream"))
    if kind == "event_count":  # the error that makes the count reach the threshold
        return Marker(kind, arn, [], live("ListBuckets", "s3.amazonaws.com",
                                          errorCode="AccessDenied"))
    if kind == "baseline":  # the download that makes the minute reach the threshold
        return Marker(kind, arn, [_event(arn, kvs, "GetClip", now - BASELINE_HISTORY,
                                         f"{label}-{kind}-history")], live("GetClip"))
    raise ValueError(f"no marker for kind {kind!r}")


@dataclass(frozen=True)
class Plan:
    """The live part: background and marker events in production order; a marker's events
    share one event time (stamped when its first event is produced)."""

    events: list[tuple[dict[str, Any], int | None]]  # (record, marker index or None)
    markers: list[Marker]

    def stamper(self) -> Callable[[int], dict[str, Any]]:
        stamps: dict[int, str] = {}

        def produce(n: int) -> dict[str, Any]:
            record, group = self.events[n]
            now = event_time(time.time())
            record["eventTime"] = now if group is None else stamps.setdefault(group, now)
            return record

        return produce


def plan(sizes: Sizes, rate: int, run_id: str, now: float,
         rules: dict[str, MarkerRule]) -> Plan:
    background = synthetic(int(rate * sizes.live_seconds), seed=NUMBER)
    rounds = int((sizes.live_seconds - sizes.warmup) / sizes.interval)
    markers = [marker(kind, f"{run_id}-{r}", now, rules)
               for r in range(rounds) for kind in RULE_FILES]
    kinds = len(RULE_FILES)  # a round's markers spread evenly over its interval
    due = {int((sizes.warmup + (n // kinds + (n % kinds + 0.5) / kinds) * sizes.interval)
               * rate): n
           for n in range(len(markers))}
    events: list[tuple[dict[str, Any], int | None]] = []
    for n, record in enumerate(background):
        if n in due:
            events.extend((item, due[n]) for item in markers[due[n]].live)
        record["eventID"] = f"{BACKGROUND}{run_id}-{n}"
        events.append((record, None))
    return Plan(events, markers)


class KeyedWatch(stream.AlertWatch):
    """Notes when each (rule id, group key value) first alerted, and how often; and, as
    benchmark 7's watch does, when each alert's last event alerted first."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(bootstrap, topic)
        self.keyed: dict[tuple[str, str], float] = {}
        self.counts: dict[tuple[str, str], int] = {}

    async def _read(self) -> None:
        async for message in self._consumer:
            now = time.monotonic()
            alert = orjson.loads(message.value)
            for event_id in alert.get("event_ids", [])[-1:]:  # as benchmark 7 times them
                self.arrived.setdefault(event_id, now)
            for value in (alert.get("group_key") or {}).values():
                key = (str(alert["rule"]["id"]), str(value))
                self.keyed.setdefault(key, now)
                self.counts[key] = self.counts.get(key, 0) + 1


@dataclass
class Measured:
    milliseconds: dict[str, list[float]]  # per kind
    markers: dict[str, int]  # per kind, deciding events produced
    alerted: dict[str, int]  # per kind, of those
    repeated: int  # marker keys with more than one alert of their rule
    mix: list[float]  # ms, the background's own alerts after the warm-up (as benchmark 7)
    rate: int  # background events/s asked for
    produced_rate: float  # events/s the producer achieved, markers included
    history: int
    live_start: float  # epoch seconds


def _sent(pacer: stream.Pacer, markers: list[Marker]) -> Iterator[Marker]:
    return (item for item in markers if item.decider in pacer.sent)


async def _measure(ctx: Context, rate: int) -> Measured:
    kafka = stream.broker(ctx.work)
    label = f"{ctx.run_id}-{rate}"
    topic = f"bench-{label}-stateful-latency"
    kafka.create_topic(topic, 1)
    topics = stream.Topics(topic, f"{topic}-alerts", f"{topic}-dead-letter")
    kafka.create_topic(topics.alerts, 1)
    paths, _, _ = product_paths(ctx.work / "worker-lists")
    rules_dir = ",".join(str(path) for path in [*paths, STATEFUL_DIR])
    group = f"bench-{label}-stateful-latency"
    worker = stream.start_worker(ctx.harness(), kafka.bootstrap, topics, group,
                                 f"stateful-latency-{rate}",
                                 extra={"DETECTOR_RULES_DIR": rules_dir})
    watch = KeyedWatch(kafka.bootstrap, topics.alerts)
    rules = marker_rules()
    live = plan(ctx.sizes, rate, label, time.time(), rules)
    history = sorted((event for item in live.markers for event in item.history),
                     key=lambda event: str(event["eventTime"]))
    try:
        await stream.wait_ready([worker])
        await watch.start()
        await stream.produce(kafka.bootstrap, topic, [orjson.dumps(e) for e in history])
        await stream.drain_rate(kafka.bootstrap, worker, group, topic, total=len(history),
                                timeout=ctx.sizes.drain_timeout)
        pacer = stream.Pacer(kafka.bootstrap, topic,
                             round(len(live.events) / ctx.sizes.live_seconds))
        live_start = time.time()
        await pacer.run(live.stamper(), ctx.sizes.live_seconds)
        sent = list(_sent(pacer, live.markers))
        deadline = time.monotonic() + WAIT_AFTER
        while time.monotonic() < deadline and not all(
                (rules[item.kind].id, item.arn) in watch.keyed for item in sent):
            worker.check()
            await asyncio.sleep(0.1)
        waited = time.monotonic()
        warm = min(moment for moment, _ in pacer.sent.values()) + ctx.sizes.warmup
        measured = Measured({kind: [] for kind in RULE_FILES}, dict.fromkeys(RULE_FILES, 0),
                            dict.fromkeys(RULE_FILES, 0), 0,
                            [(watch.arrived[event] - moment) * 1000
                             for event, (moment, _) in pacer.sent.items()
                             if event in watch.arrived and event.startswith(BACKGROUND)
                             and moment >= warm],
                            rate, len(pacer.sent) / pacer.seconds, len(history), live_start)
        for item in sent:
            key = (rules[item.kind].id, item.arn)
            arrived = watch.keyed.get(key)
            # a marker still without alert counts with the time waited so far: a lower bound
            measured.milliseconds[item.kind].append(
                ((arrived or waited) - pacer.sent[item.decider][0]) * 1000)
            measured.markers[item.kind] += 1
            measured.alerted[item.kind] += arrived is not None
            measured.repeated += watch.counts.get(key, 0) > 1
        return measured
    finally:
        await watch.stop()
        worker.stop()


def percentile(values: list[float], share: int) -> float:
    """The `share`-th percentile (inclusive method; the value itself for one value)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[share - 1]


def _percentiles(result: Result, name: str, latencies: list[float]) -> float:
    """Measure p50, p99 and max of `latencies` as `name ...`; return the p99."""
    p50, p99 = statistics.median(latencies), percentile(latencies, 99)
    result.measure(f"{name} p50", "ms", [p50], p50)
    result.measure(f"{name} p99", "ms", [p99], p99)
    result.measure(f"{name} max", "ms", [max(latencies)], max(latencies))
    return p99


def _report(result: Result, measured: Measured, sizes: Sizes, suffix: str) -> float | None:
    """Measurements (names ending in `suffix`) and notes of one run; its worst p99 per kind,
    or None when some kind had no marker."""
    worst = 0.0
    for kind, latencies in measured.milliseconds.items():
        if not latencies:
            return None
        p99 = _percentiles(result, f"{kind}{suffix}", latencies)
        result.ratios[f"{kind}{suffix} p99 / 1 s"] = round(p99 / TARGET_MS, 3)
        result.ratios[f"{kind}{suffix} markers alerted / produced"] = round(
            measured.alerted[kind] / measured.markers[kind], 3)
        worst = max(worst, p99)
    result.ratios[f"marker principals alerted more than once / markers{suffix}"] = round(
        measured.repeated / sum(measured.markers.values()), 3)
    alerted = ", ".join(f"{kind} {measured.alerted[kind]}/{measured.markers[kind]}"
                        for kind in RULE_FILES)
    result.notes.append(
        f"at {measured.rate:,} events/s (achieved {measured.produced_rate:,.0f}/s with the "
        f"markers' events): markers alerted {alerted} (a missing one counts with the time "
        f"waited for it); the mix's own alerts: {len(measured.mix)}")
    if measured.mix:
        mix_p50 = statistics.median(measured.mix)
        mix_p99 = _percentiles(result, f"the mix's own alerts{suffix}", measured.mix)
        result.ratios[f"worst kind p99 / the mix's alerts p99{suffix}"] = round(
            worst / mix_p99, 3)
        if mix_p50 > TARGET_MS:
            result.notes.append(
                f"at {measured.rate:,} events/s the worker fell behind: every alert, stateless "
                f"ones included, waits in a growing backlog, so this rate is above the "
                f"worker's throughput here")
    if near_day_start(measured.live_start, measured.live_start + sizes.live_seconds):
        result.notes.append(
            f"at {measured.rate:,} events/s the live part was within the allowed lateness "
            f"after 00:00 UTC: a baseline bucket there waits for the watermark to pass the "
            f"day's start (docs/stateful-rules.md), so the baseline markers' times hold that wait")
    return worst


def near_day_start(began: float, ended: float) -> bool:
    """Whether [began, ended] meets the first allowed lateness of a UTC day."""
    day = ended - ended % 86400
    return began <= day + WorkerSettings().allowed_lateness and ended >= day


def stateful_latency(ctx: Context) -> Result:
    result = new_result(NUMBER)
    sizes = ctx.sizes
    result.notes.append(
        f"the benchmark mix at {sizes.rate:,} events/s for {sizes.live_seconds:.0f} s, stamped "
        f"with the wall clock; after {sizes.warmup:g} s of it (warm-up), a round of markers "
        f"every {sizes.interval:g} s, one per kind, "
        f"each its own principal, whose history was produced first with old event times and "
        f"drained; worker with the shipped packs, SigmaHQ and bench/stateful_rules; the mix's "
        f"own alerts timed in the same run as benchmark 7 does. Then the same at "
        f"{sizes.reference_rate:,} events/s with a fresh worker (measurements 'at ...')")
    worst = _report(result, asyncio.run(_measure(ctx, sizes.rate)), sizes, "")
    if worst is None:
        return result.unavailable("a kind had no marker produced", status="failed")
    result.conclude(worst, "worst p99 of the four kinds, ms")
    _report(result, asyncio.run(_measure(ctx, sizes.reference_rate)), sizes,
            f" at {sizes.reference_rate:,}/s")
    return result


def run(ctx: Context, *, enabled: bool) -> Result:
    """Run benchmark 16, or say why it cannot run here (as stream.run does for 5-8)."""
    if not enabled:
        return new_result(NUMBER).unavailable(
            "quick mode: the latency benchmark needs the broker (add --with-broker)",
            status=SKIPPED)
    missing = stream._stream_missing()
    if missing:
        return new_result(NUMBER).unavailable(missing, status=NOT_AVAILABLE)
    try:
        return stateful_latency(ctx)
    except stream.BrokerMissing as error:
        return new_result(NUMBER).unavailable(f"no local Kafka broker: {error}",
                                              status=NOT_AVAILABLE)
