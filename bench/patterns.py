"""Benchmark 9: what hostile patterns cost against plain ones, measured in one run.

Each pair is two one-rule sets loaded from YAML through the product's loader; what is timed
is the rules' compiled predicates over the same decoded records (matching only: no decode, no
index, no alert), the two sides alternating. Two record sets: the benchmark mix, and "hostile
fields", the mix with userAgent replaced by 30 `a`s and a `!` or by 100 kB of `a`s, the
inputs that stall a backtracking engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from bench.data import decoded, jsonl_payloads, synthetic
from bench.report import Result, new_result
from bench.rules import load
from bench.timing import alternate, median, paired_ratio
from detector.engine.matching import Predicate
from detector.events import Record

PAYLOAD_RECORDS = 1000
HOSTILE_AGENTS = ("a" * 30 + "!", "a" * 100_000)


@dataclass(frozen=True)
class Sizes:
    records: int  # of the synthetic mix
    hostile: int  # records with a hostile userAgent
    values: int  # in the many-values rules
    repetitions: int


FULL = Sizes(records=50_000, hostile=200, values=10_000, repetitions=7)
QUICK = Sizes(records=1_000, hostile=10, values=1_000, repetitions=2)


@dataclass
class Context:
    sizes: Sizes
    work: Path


@dataclass(frozen=True)
class Side:
    label: str
    item: str  # a detection item on userAgent, as YAML


def _pairs(values: int) -> tuple[tuple[Side, Side], ...]:
    """(hostile, plain) pairs; the second pair is the one the target is about."""
    listed = "".join(f"\n      - 'bench-tool-{n}/'" for n in range(values))
    return (
        (Side("re (a+)+$", "userAgent|re: '(a+)+$'"),
         Side("re ^aws-cli/", "userAgent|re: '^aws-cli/'")),
        (Side(f"{values:,} contains", f"userAgent|contains:{listed}"),
         Side(f"{values:,} equals", f"userAgent:{listed}")),
        (Side("*a*a*a*a*a*b", "userAgent: '*a*a*a*a*a*b'"),
         Side("contains aws-cli", "userAgent|contains: aws-cli")),
    )


def _predicate(directory: Path, item: str) -> Predicate:
    directory.mkdir(parents=True)
    (directory / "rule.yml").write_text(f"""\
title: pattern benchmark
id: 5d0c6f1e-9b7a-4c3e-8f21-0a9e7d4b6c01
logsource:
  product: aws
  service: cloudtrail
detection:
  selection:
    {item}
  condition: selection
level: low
""", encoding="utf-8")
    (rule,) = load([directory]).rules
    return rule.predicate


def _timed(predicate: Predicate, records: list[Record]) -> Callable[[], float]:
    datas = [record.data for record in records]

    def run() -> float:
        started = time.perf_counter()
        for data in datas:
            predicate(data)
        return time.perf_counter() - started

    return run


def _hostile(records: list[Record], count: int) -> list[Record]:
    return [replace(record, data={**record.data,
                                  "userAgent": HOSTILE_AGENTS[n % len(HOSTILE_AGENTS)]})
            for n, record in enumerate(records[:count])]


def hostile_patterns(ctx: Context) -> Result:
    sizes = ctx.sizes
    result = new_result(9)
    mix = decoded(jsonl_payloads(synthetic(sizes.records), PAYLOAD_RECORDS))
    inputs = {"mix": mix, "hostile fields": _hostile(mix, sizes.hostile)}
    pairs = _pairs(sizes.values)
    for number, (hostile, plain) in enumerate(pairs):
        predicates = {side.label: _predicate(ctx.work / f"pair{number}-{role}", side.item)
                      for role, side in (("hostile", hostile), ("plain", plain))}
        for label, records in inputs.items():
            seconds = alternate({name: _timed(predicate, records)
                                 for name, predicate in predicates.items()}, sizes.repetitions)
            for name, runs in seconds.items():
                micros = [run / len(records) * 1e6 for run in runs]
                result.measure(f"{name} ({label})", "us/record", micros, median(micros))
            result.ratios[f"{hostile.label} / {plain.label} ({label})"] = round(
                paired_ratio(seconds[hostile.label], seconds[plain.label]), 3)
    hostile, plain = pairs[1]
    checked = f"{hostile.label} / {plain.label} (mix)"
    result.conclude(result.ratios[checked], checked)
    result.notes.append(
        f"one rule per side, its predicate only, over {len(mix):,} mix records and "
        f"{len(inputs['hostile fields']):,} records whose userAgent is 31 characters or "
        f"100 kB of 'a'; ratios are hostile/plain cost of the same records in the same run")
    return result
