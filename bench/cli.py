"""`python -m bench`: run every benchmark, write the JSON result and the Markdown table.

    python -m bench                  full run; writes bench/results/latest.json and the table
                                     in docs/BENCHMARKS.md
    python -m bench --quick          tiny inputs (smoke test, under a minute); stream
                                     benchmarks are skipped unless --with-broker is given
    python -m bench --only 1,2       some benchmarks only
    python -m bench --only 10,11     the memory benchmarks (quick mode runs them only when
                                     named by --only)
    python -m bench --only 12,13     detector scan where every record alerts, rule start-up
    python -m bench --only 16 --with-broker
                                     stateful alerts' latency through a worker, per kind
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import alerting, anomaly, engine, latency, machine, memory, patterns, stream
from bench.report import (
    FAILED,
    Result,
    as_dict,
    markdown,
    new_result,
    update_docs,
    write_json,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "bench" / "results"
DEFAULT_DOCS = REPO / "docs" / "BENCHMARKS.md"
Benchmark = Callable[[Path], Result]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="tiny inputs, few repetitions: checks the harness, not the speed")
    parser.add_argument("--with-broker", action="store_true",
                        help="in --quick mode, run the stream benchmarks too (tiny)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, metavar="DIR",
                        help="where latest.json goes (default bench/results)")
    parser.add_argument("--docs", type=Path, default=None, metavar="FILE",
                        help="Markdown file whose marked block gets the table "
                             "(default docs/BENCHMARKS.md, and none in --quick mode)")
    parser.add_argument("--no-docs", action="store_true", help="do not touch any Markdown file")
    parser.add_argument("--only", default="", metavar="N,N",
                        help="comma-separated benchmark numbers (1-16) to run")
    return parser


MEMORY = (10, 11)  # benchmark numbers quick mode runs only when --only names them


def _benchmarks(quick: bool, with_broker: bool) -> list[Benchmark]:
    sizes = engine.QUICK if quick else engine.FULL
    stream_sizes = stream.QUICK if quick else stream.FULL
    memory_sizes = memory.QUICK if quick else memory.FULL
    alerting_sizes = alerting.QUICK if quick else alerting.FULL
    anomaly_sizes = anomaly.QUICK if quick else anomaly.FULL
    run_stream = with_broker or not quick

    def engine_bench(function: Callable[[engine.Context], Result]) -> Benchmark:
        return lambda work: function(engine.Context(sizes, work))

    def stream_bench(function: Callable[[stream.Context], Result]) -> Benchmark:
        return lambda work: stream.run(function, stream.Context(stream_sizes, work),
                                       enabled=run_stream)

    def patterns_bench(work: Path) -> Result:
        return patterns.hostile_patterns(
            patterns.Context(patterns.QUICK if quick else patterns.FULL, work))

    def memory_bench(function: Callable[[memory.Context], Result]) -> Benchmark:
        return lambda work: function(memory.Context(memory_sizes, work))

    def alerting_bench(function: Callable[[alerting.Context], Result]) -> Benchmark:
        return lambda work: function(alerting.Context(alerting_sizes, work))

    def anomaly_bench(function: Callable[[anomaly.Context], Result]) -> Benchmark:
        return lambda work: function(anomaly.Context(anomaly_sizes, work))

    def latency_bench(work: Path) -> Result:
        return latency.run(latency.Context(latency.QUICK if quick else latency.FULL, work),
                           enabled=run_stream)

    return ([engine_bench(function) for function in engine.BENCHMARKS]
            + [stream_bench(function) for function in stream.BENCHMARKS]
            + [patterns_bench]
            + [memory_bench(function) for function in memory.BENCHMARKS]
            + [alerting_bench(function) for function in alerting.BENCHMARKS]
            + [anomaly_bench(function) for function in anomaly.BENCHMARKS]
            + [latency_bench])


def _safely(number: int, benchmark: Benchmark, work: Path) -> Result:
    try:
        return benchmark(work)
    except Exception as error:  # one broken benchmark must not hide the others' results
        trace = traceback.format_exc(limit=6)
        print(trace, file=sys.stderr)
        return new_result(number).unavailable(f"{type(error).__name__}: {error}",
                                                      status=FAILED)


def _run_all(args: argparse.Namespace, only: set[int], temporary: Path,
             results: list[Result]) -> None:
    for number, benchmark in enumerate(_benchmarks(args.quick, args.with_broker), 1):
        if (only and number not in only) or (args.quick and number in MEMORY
                                             and number not in only):
            continue
        print(f"bench: running benchmark {number} ...", file=sys.stderr, flush=True)
        work = temporary / f"b{number}"
        work.mkdir()
        began = time.monotonic()
        result = _safely(number, benchmark, work)
        results.append(result)
        print(f"bench: {number} {result.status} in {time.monotonic() - began:.0f} s: "
              f"{result.value_label} {result.value} {result.reason}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    only = {int(part) for part in args.only.split(",") if part.strip()}
    began = time.monotonic()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    document: dict[str, Any] = {
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        "quick": args.quick,
        "started": started,
        "machine": machine.describe(),
    }
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="detector-bench-") as temporary:
        try:
            _run_all(args, only, Path(temporary), results)
        finally:
            stream.shutdown()
    document["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    document["duration_s"] = round(time.monotonic() - began, 1)
    document["benchmarks"] = as_dict(results)
    write_json(args.output / "latest.json", document)
    block = markdown(document, results)
    print(block)
    docs = args.docs or (None if args.quick else DEFAULT_DOCS)
    if docs is not None and not args.no_docs:
        update_docs(docs, block)
    return 0 if all(result.status != FAILED for result in results) else 1
