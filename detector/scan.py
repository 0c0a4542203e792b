"""`detector scan`: CloudTrail files in, alerts out, through the same engine as the worker."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from detector.alerts import Alert, level_rank
from detector.engine import Engine
from detector.events import DecodeError, Limits, Record, decode

LOG_SUFFIXES = (".json", ".jsonl", ".ndjson", ".gz", ".log")
_SORT_LIMIT = 2_000_000  # records; beyond this a scan evaluates file by file in path order


@dataclass
class ScanSummary:
    files: int = 0
    records: int = 0
    decode_errors: Counter[str] = field(default_factory=Counter)
    error_messages: list[str] = field(default_factory=list)
    alerts: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    seconds: float = 0.0

    def count(self, alert: Alert) -> None:
        self.alerts[(alert.level, alert.rule_id, alert.rule_title)] += 1


def find_inputs(paths: Iterable[str]) -> list[str]:
    """Files to read: explicit files as given, directories walked for log files, `-` is stdin.

    Paths are sorted so the result does not depend on the order given on the command line.
    """
    found: set[str] = set()
    for raw in paths:
        if raw == "-":
            found.add(raw)
            continue
        path = Path(raw)
        if path.is_dir():
            found.update(
                str(candidate) for candidate in path.rglob("*")
                if candidate.is_file() and not candidate.name.startswith(".")
                and candidate.name.lower().endswith(LOG_SUFFIXES)
            )
        else:
            found.add(str(path))
    return sorted(found)


def read_input(name: str) -> bytes | str:
    """The bytes of an input, or why it could not be read."""
    try:
        if name == "-":
            return sys.stdin.buffer.read()
        return Path(name).read_bytes()
    except OSError as error:
        return f"cannot read: {error.strerror or error}"


def scan(
    inputs: list[str],
    engine: Engine,
    limits: Limits,
    emit: Callable[[Alert], None],
    progress: Callable[[Iterable[str]], Iterable[str]] = lambda names: names,
) -> ScanSummary:
    """Decode every input, evaluate the records in event-time order, emit each alert."""
    summary = ScanSummary(files=len(inputs))
    started = time.perf_counter()
    batches = list(_decoded(progress(inputs), limits, summary))
    total = sum(len(batch) for batch in batches)
    if total <= _SORT_LIMIT:
        records: Iterable[Record] = sorted(
            (record for batch in batches for record in batch), key=lambda r: r.event_time
        )
    else:
        records = (record for batch in batches for record in batch)
    for record in records:
        for alert in engine.process(record):
            summary.count(alert)
            emit(alert)
    summary.seconds = time.perf_counter() - started
    return summary


def _decoded(names: Iterable[str], limits: Limits, summary: ScanSummary) -> Iterator[list[Record]]:
    for name in names:
        payload = read_input(name)
        if isinstance(payload, str):
            _error(summary, name, DecodeError("unreadable", payload))
            continue
        decoded = decode(payload, limits)
        summary.records += len(decoded.records)
        for error in decoded.errors:
            _error(summary, name, error)
        yield decoded.records


def _error(summary: ScanSummary, name: str, error: DecodeError) -> None:
    summary.decode_errors[error.reason] += 1
    where = name
    if error.line is not None:
        where += f":{error.line}" + (f":{error.column}" if error.column is not None else "")
    if error.index is not None:
        where += f" record #{error.index}"
    summary.error_messages.append(f"{where}: {error.reason}: {error.message}")


def format_summary(summary: ScanSummary, *, late: int = 0, duplicates: int = 0) -> str:
    lines = [
        f"scanned {summary.files} file(s), {summary.records} record(s) in {summary.seconds:.2f}s",
    ]
    if summary.decode_errors:
        lines.append(f"decode errors: {sum(summary.decode_errors.values())}")
        lines += [f"  {reason}: {count}" for reason, count in sorted(summary.decode_errors.items())]
        lines += [f"  - {message}" for message in summary.error_messages[:20]]
        if len(summary.error_messages) > 20:
            lines.append(f"  ... and {len(summary.error_messages) - 20} more")
    if late or duplicates:
        lines.append(f"late events: {late}, duplicate events: {duplicates}")
    lines.append(f"alerts: {sum(summary.alerts.values())}")
    for (level, rule_id, title), count in sorted(
        summary.alerts.items(), key=lambda item: (-level_rank(item[0][0]), item[0][2])
    ):
        lines.append(f"  {count:6d}  {level:<13} {title} ({rule_id})")
    return "\n".join(lines)

