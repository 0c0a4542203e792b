"""Benchmarks 10-11: peak memory (RSS) of the worst messages the decoding limits let through,
and of `detector scan` over a gigabyte.

Each measurement is a fresh process, so one peak does not hide another: `python -m
bench.memory message <path> <contender> <caps>` reads a message prepared beforehand (building
it would count), loads the shipped packs, notes its RSS, handles the message once and prints its
peak RSS as JSON; `python -m bench.memory scan <args>` runs `detector scan` in-process and
prints its peak. Peaks are VmHWM of /proc/self/status: `ru_maxrss` would count the parent's
pages the child held between fork and exec.
"""

from __future__ import annotations

import calendar
import gc
import gzip
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.data import MixGenerator
from bench.report import Result, new_result
from detector.events import DEFAULT_LIMITS, Limits

REPO = Path(__file__).resolve().parents[1]
POD_LIMIT_MIB = 1024  # deploy/k8s/base/deployment.yaml: resources.limits.memory
TINY = b'{"eventName":"a","eventSource":"b","eventTime":"2026-01-15T00:00:00Z"}\n'
ALERTING = {"eventVersion": "1.08", "eventTime": "2026-01-15T00:00:00Z",
            "eventSource": "cloudtrail.amazonaws.com", "eventName": "StopLogging",
            "awsRegion": "us-east-1", "sourceIPAddress": "203.0.113.9",
            "userIdentity": {"type": "Root", "arn": "arn:aws:iam::111122223333:root",
                             "accountId": "111122223333"},
            "requestParameters": {"name": "arn:aws:cloudtrail:us-east-1:111122223333:trail/org"}}
CONTENDERS = ("decode + engine", "Processor.on_message")


@dataclass(frozen=True)
class Sizes:
    limits: Limits  # the caps the messages are made to fill
    tiny_records: int  # in the gzip of tiny records
    scan_bytes: int  # of the large scan; the small one is a tenth
    block: int  # mix records written per 6 hours of event time


FULL = Sizes(DEFAULT_LIMITS, tiny_records=1_500_000, scan_bytes=1_000_000_000, block=20_000)
QUICK = Sizes(Limits(max_message_bytes=256 * 1024, max_decompressed_bytes=256 * 1024,
                     max_records=500), tiny_records=20_000, scan_bytes=6_000_000, block=2_000)


@dataclass
class Context:
    sizes: Sizes
    work: Path


def _cases(sizes: Sizes) -> dict[str, bytes]:
    """The worst messages the caps let through, and the largest legitimate ones."""
    limits = sizes.limits
    empties = limits.max_message_bytes // 3 - 8
    inflated = limits.max_decompressed_bytes // 3 - 8
    real: list[dict[str, Any]] = []
    size = len(b'{"Records":[]}')
    for record in MixGenerator().records(limits.max_records):
        size += len(orjson.dumps(record)) + 1
        if size > limits.max_message_bytes:
            break
        real.append(record)
    alerting = [dict(ALERTING, eventID=f"alerting-{n}") for n in range(limits.max_records)]
    return {
        f"gzip of {sizes.tiny_records:,} tiny records": gzip.compress(
            TINY * sizes.tiny_records, compresslevel=9),
        "log file of empty objects at the message cap": (
            b'{"Records":[' + b"{}," * (empties - 1) + b"{}]}"),
        "gzip of empty objects at the inflated cap": gzip.compress(
            b"[" + b"{}," * (inflated - 1) + b"{}]", compresslevel=9),
        "JSON lines of empty objects at the message cap": b"{}\n" * empties,
        f"log file of {len(real):,} mix records (the message cap)": orjson.dumps(
            {"Records": real}),
        f"log file of {len(alerting):,} alerting records (the records cap)": orjson.dumps(
            {"Records": alerting}),
    }


def message_memory(ctx: Context) -> Result:
    result = new_result(10)
    limits = ctx.sizes.limits
    peaks: dict[str, float] = {}
    for number, (case, payload) in enumerate(_cases(ctx.sizes).items()):
        path = ctx.work / f"message-{number}.bin"
        path.write_bytes(payload)
        for contender in CONTENDERS:
            measured = _child(["message", str(path), contender, *_limit_args(limits)])
            name = f"{case} ({len(payload):,} bytes), {contender}"
            result.measure(name, "MiB peak RSS", [measured["peak_mib"]], measured["peak_mib"])
            result.notes.append(f"{name}: {measured['before_mib']:.0f} MiB before the "
                                f"message, {measured['peak_mib']:.0f} MiB peak; "
                                f"{measured['outcome']}")
            peaks[name] = measured["peak_mib"]
        path.unlink()
    worst = max(peaks, key=peaks.__getitem__)
    result.ratios["worst peak / pod memory limit"] = round(peaks[worst] / POD_LIMIT_MIB, 3)
    result.conclude(peaks[worst], "worst peak RSS, MiB")
    result.notes.append(
        f"each message read from a file by a fresh process with the shipped packs loaded "
        f"(the worker's baseline is higher: faust, aiokafka buffers, tables); caps: "
        f"{limits.max_message_bytes:,} bytes per message, {limits.max_decompressed_bytes:,} "
        f"inflated, {limits.max_records:,} records; worst: {worst}")
    return result


def scan_memory(ctx: Context) -> Result:
    result = new_result(11)
    large = ctx.sizes.scan_bytes
    small_file = ctx.work / "small.jsonl"
    block = ctx.sizes.block
    _, tenth = _write_mix([small_file], large // 10, block, gzipped=False)
    parts = [ctx.work / f"large-{n}.jsonl.gz" for n in range(3)]
    records, written = _write_mix(parts, large, block, gzipped=True)
    small = _scan([small_file])
    big = _scan(parts)
    for label, measured in ((f"{tenth / 1e6:,.0f} MB, one .jsonl file", small),
                            (f"{written / 1e6:,.0f} MB, three .jsonl.gz files", big)):
        result.measure(f"scan of {label}", "MiB peak RSS", [measured["peak_mib"]],
                       measured["peak_mib"])
        result.notes.append(f"scan of {label}: {measured['peak_mib']:.0f} MiB peak in "
                            f"{measured['seconds']:.0f} s; {measured['summary']}")
    ratio = big["peak_mib"] / small["peak_mib"]
    result.ratios["peak RSS, whole / a tenth"] = round(ratio, 3)
    result.conclude(ratio, "peak RSS ratio, 10x the input")
    compressed = sum(path.stat().st_size for path in parts)
    result.notes.append(
        f"{written:,} bytes of JSON lines ({records:,} mix records, one account over "
        f"{records / block * 6:.0f} h of event time), as three .jsonl.gz files of "
        f"{compressed / 3 / 1e6:.1f} MB; `detector scan --rules rules/ --no-progress "
        f"--allow-input-errors -o /dev/null` (shipped packs, 15m lateness)")
    for path in [small_file, *parts]:
        path.unlink()
    return result


def _write_mix(paths: list[Path], total: int, block_records: int, *,
               gzipped: bool) -> tuple[int, int]:
    """Fill `paths` with about `total` bytes of JSON lines, blocks of the mix shifted in time
    (each copy a new stretch of event time, eventIDs made unique); (records, bytes)."""
    block = MixGenerator().records(block_records)
    times = [calendar.timegm(time.strptime(str(record["eventTime"]), "%Y-%m-%dT%H:%M:%SZ"))
             for record in block]
    span = 6 * 3600  # MixGenerator's default span
    copy = count = written = 0
    per_file = total // len(paths)
    for path in paths:
        with (gzip.open(path, "wb", compresslevel=1) if gzipped else open(path, "wb")) as out:
            size = 0
            while size < per_file:
                lines = []
                for record, when in zip(block, times, strict=True):
                    lines.append(orjson.dumps({
                        **record, "eventID": f"{record['eventID']}-{copy}",
                        "eventTime": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                   time.gmtime(when + copy * span))}))
                chunk = b"\n".join(lines) + b"\n"
                out.write(chunk)
                size += len(chunk)
                count += len(lines)
                copy += 1
            written += size
    return count, written


def _scan(paths: list[Path]) -> dict[str, Any]:
    started = time.monotonic()
    measured = _child(["scan", "--rules", str(REPO / "rules"), "--no-progress",
                       "--allow-input-errors", "-o", os.devnull, *map(str, paths)])
    measured["seconds"] = time.monotonic() - started
    return measured


def _limit_args(limits: Limits) -> list[str]:
    return [str(limits.max_message_bytes), str(limits.max_decompressed_bytes),
            str(limits.max_records)]


def _child(arguments: list[str]) -> dict[str, Any]:
    completed = subprocess.run([sys.executable, "-m", "bench.memory", *arguments], cwd=REPO,
                               capture_output=True, text=True, check=False, timeout=1800)
    if completed.returncode != 0:
        raise RuntimeError(f"bench.memory {arguments[0]} failed: {completed.stderr[-2000:]}")
    measured: dict[str, Any] = json.loads(completed.stdout.splitlines()[-1])
    return measured


def _status_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process, in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _rss_mib() -> float:
    return _status_mib("VmRSS")


def _peak_mib() -> float:
    return _status_mib("VmHWM")


def _run_scan(arguments: list[str]) -> dict[str, Any]:
    """In the child: `detector scan` with `arguments`; its summary line and peak."""
    import contextlib
    import io

    from detector.cli import main as detector_main

    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        code = detector_main(["scan", *arguments])
    if code != 0:
        raise SystemExit(f"detector scan exited {code}: {errors.getvalue()[-2000:]}")
    return {"peak_mib": _peak_mib(), "summary": errors.getvalue().splitlines()[0]}


def _handle_message(path: str, contender: str, limits: Limits) -> dict[str, Any]:
    """In the child: one message through decode + engine or through the worker's Processor."""
    from prometheus_client import CollectorRegistry

    from detector.engine import load_rules
    from detector.engine.factory import make_engine
    from detector.events import decode
    from detector.metrics import Metrics
    from detector.stream.deadletter import Source
    from detector.stream.processor import Processor

    ruleset = load_rules([REPO / "rules"]).ruleset
    engine = make_engine(ruleset)
    processor = Processor(ruleset, Metrics(CollectorRegistry()), limits, partitions=8)
    payload = Path(path).read_bytes()
    gc.collect()
    before = _rss_mib()
    if contender == CONTENDERS[0]:
        decoded = decode(payload, limits)
        alerts = sum(len(engine.process(record)) for record in decoded.records)
        outcome = (f"{len(decoded.records):,} records, {alerts:,} alerts, errors: "
                   f"{sorted({error.reason for error in decoded.errors})}")
    else:
        output = processor.on_message(payload, Source("input", 0, 0, None, []))
        outcome = (f"{len(output.alerts):,} alerts, {len(output.forwards):,} forwards, dead "
                   f"letters: {sorted({letter.reason for letter in output.dead_letters})}")
    return {"before_mib": before, "peak_mib": _peak_mib(), "outcome": outcome}


def main(argv: list[str]) -> int:
    if argv[0] == "message":
        path, contender, message, inflated, records = argv[1:6]
        limits = Limits(max_message_bytes=int(message), max_decompressed_bytes=int(inflated),
                        max_records=int(records))
        print(json.dumps(_handle_message(path, contender, limits)))
        return 0
    if argv[0] == "scan":
        print(json.dumps(_run_scan(argv[1:])))
        return 0
    raise SystemExit(f"unknown measurement {argv[0]!r}")


BENCHMARKS: tuple[Callable[[Context], Result], ...] = (message_memory, scan_memory)

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
