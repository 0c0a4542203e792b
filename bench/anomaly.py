"""Benchmarks 14-15: what each principal's own normal costs.

14. Memory per baseline key and per rare value at 100,000 keys: tracemalloc around the
    engine while 100,000 principals each call on 15 days (one read a day at an hour of their
    own: every profile is the full 15 x 24 cells of a 14-day daily profile), then while
    100,000 principals use 5 API names each under a rare-value rule (threshold 2: each value
    keeps its two latest minutes). Also the largest serialized entry of each kind (what the
    changelog carries).
15. Cost per record of the shipped packs with their baseline and rare-value rules
    (rules/*/baselines.yml) against the same packs without those files, on benchmark 1-3's
    synthetic mix, both through make_engine (stateful evaluation on), alternating.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench.data import decoded, jsonl_payloads, synthetic
from bench.report import Result, new_result
from bench.rules import SHIPPED, load
from bench.timing import alternate, median, paired_ratio, profile_call, timed
from detector.engine import Engine, RuleSet
from detector.engine.factory import make_engine
from detector.engine.state import MemoryState
from detector.events import Record, decode_record

BASELINE_FILES = "baselines.yml"
PAYLOAD_RECORDS = 1000
START = 1_768_435_200.0  # 2026-01-15T00:00:00Z
DAYS = 15


@dataclass(frozen=True)
class Sizes:
    keys: int
    values: int  # per key, for the rare-value rule
    records: int  # of the mix, benchmark 15
    repetitions: int


FULL = Sizes(keys=100_000, values=5, records=50_000, repetitions=5)
QUICK = Sizes(keys=2_000, values=5, records=2_000, repetitions=2)


@dataclass
class Context:
    sizes: Sizes
    work: Path


BASELINE_RULE = """\
title: bench baseline
id: 14141414-0000-4000-8000-000000000001
logsource: {product: aws, service: cloudtrail}
detection: {selection: {eventName: GetMedia}, condition: selection}
detector:
  baseline: {key: userIdentity.arn, bucket: 5m, window: 14d, seasonality: hour_of_day,
             floor: 10, learning: 7d}
"""
RARE_RULE = """\
title: bench rare
id: 14141414-0000-4000-8000-000000000002
logsource: {product: aws, service: cloudtrail}
detection: {selection: {eventSource: kinesisvideo.amazonaws.com}, condition: selection}
detector:
  rare: {key: userIdentity.arn, value: eventName, threshold: 2, window: 14d, learning: 365d}
"""


def _record(key: int, name: str, when: float) -> Record:
    record = decode_record({
        "eventSource": "kinesisvideo.amazonaws.com", "eventName": name,
        "eventTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)),
        "eventID": f"{key}-{name}-{when}",
        "userIdentity": {"type": "IAMUser",
                         "arn": f"arn:aws:iam::111122223333:user/user-{key:06d}"},
        "sourceIPAddress": "10.0.0.1"})
    assert isinstance(record, Record)
    return record


def _traced(rule: str, work: Path, feed: list[tuple[int, str, float]]) -> tuple[int, int]:
    """(bytes the engine's state holds after `feed`, largest serialized entry)."""
    (work / "rule.yml").write_text(rule)
    engine = make_engine(load([work / "rule.yml"]))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for key, name, when in feed:
        engine.process(_record(key, name, when))
    engine.flush()
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    state = engine.stateful.state
    assert isinstance(state, MemoryState)
    largest = max(len(orjson.dumps(entry)) for entry in state.snapshot().values())
    return held, largest


def anomaly_memory(ctx: Context) -> Result:
    keys, values = ctx.sizes.keys, ctx.sizes.values
    result = new_result(14, f"Memory per baseline key and per rare value at {keys:,} keys")
    # every key reads once a day at its own hour, days in order: all 15 x 24 cells exist
    daily = [(key, "GetMedia", START + day * 86400 + (key % 24) * 3600 + key % 3600)
             for day in range(DAYS) for key in range(keys)]
    daily.sort(key=lambda item: item[2])
    (ctx.work / "baseline").mkdir()
    baseline, baseline_entry = _traced(BASELINE_RULE, ctx.work / "baseline", daily)
    names = [f"Api{value}" for value in range(values)]
    step = 86400.0 / (keys * values)
    uses = [(key, names[value], START + (value * keys + key) * step)
            for value in range(values) for key in range(keys)]
    (ctx.work / "rare").mkdir()
    rare, rare_entry = _traced(RARE_RULE, ctx.work / "rare", uses * 2)
    per_key = baseline / keys
    per_value = rare / (keys * values)
    result.measure("per baseline key (24-slot daily profile, 14 days)", "bytes", [per_key],
                   per_key)
    result.measure("largest baseline entry, serialized", "bytes", [baseline_entry],
                   baseline_entry)
    result.measure("per rare value (threshold 2)", "bytes", [per_value], per_value)
    result.measure("largest rare-value entry, serialized", "bytes", [rare_entry], rare_entry)
    result.ratios["bytes per baseline key / 1 KiB"] = round(per_key / 1024, 3)
    result.conclude(per_key, "bytes per baseline key")
    result.notes.append(
        f"tracemalloc around make_engine() fed {len(daily):,} records ({keys:,} keys x "
        f"{DAYS} days, one read a day at the key's own hour) under a baseline rule (5m "
        f"buckets, 14d window, hour_of_day), flushed; then {2 * len(uses):,} records "
        f"({keys:,} keys x {values} API names, each used twice) under a rare-value rule "
        f"(threshold 2, learning longer than the run: no alert is built); everything the "
        f"state holds is counted (keys, dicts, strings, lists)")
    return result


def _without_baselines(root: Path) -> list[Path]:
    return [path for path in sorted(root.rglob("*.yml")) if path.name != BASELINE_FILES
            and "lists" not in path.relative_to(root).parts]


def anomaly_cost(ctx: Context) -> Result:
    result = new_result(15)
    lists = sorted((SHIPPED / "lists").rglob("*.yml"))
    with_them: RuleSet = load([SHIPPED], [])
    without: RuleSet = load(_without_baselines(SHIPPED), lists)
    records = decoded(jsonl_payloads(synthetic(ctx.sizes.records), PAYLOAD_RECORDS))
    alerts: dict[str, int] = {}

    def run(name: str, rules: RuleSet) -> float:
        engine = make_engine(rules)  # fresh state each time
        started = time.perf_counter()
        count = 0
        for record in records:
            count += len(engine.process(record))
        elapsed = time.perf_counter() - started
        alerts[name] = count
        return elapsed

    seconds = alternate({"packs with baselines": lambda: run("with", with_them),
                         "packs without baselines": lambda: run("without", without)},
                        ctx.sizes.repetitions)
    for name, runs in seconds.items():
        micros = [run / len(records) * 1e6 for run in runs]
        result.measure(name, "us/record", micros, median(micros))
    ratio = paired_ratio(seconds["packs with baselines"], seconds["packs without baselines"])
    result.ratios["with/without cost"] = round(ratio, 3)
    result.conclude(ratio, "with/without cost")
    profiled: Engine = make_engine(with_them)
    result.profile = profile_call(timed(lambda: [profiled.process(record)
                                                 for record in records]))
    result.profile["subject"] = f"make_engine(shipped packs) over {len(records):,} records"
    result.notes.append(
        f"{len(records):,} records of the synthetic mix, decoded beforehand; {len(with_them)} "
        f"rules with rules/*/baselines.yml, {len(without)} without; alerts per pass: "
        f"{alerts.get('with', 0)} with, {alerts.get('without', 0)} without")
    return result


BENCHMARKS = (anomaly_memory, anomaly_cost)
