"""`detector scan`: CloudTrail files in, alerts out, through the same engine as the worker.

Memory is bounded by the reorder window, not by the input (docs/scan.md):

- Inputs are read in chunks. gzip is inflated as it is read. JSON lines are read line by
  line, each line a record (or an EventBridge envelope around one) of at most
  `Limits.max_message_bytes`: a longer line is a `too_large` error for that line, the others
  are read. Other content (a CloudTrail log file, an array, a pretty-printed record) is read
  whole, up to `Limits.max_message_bytes` (`Limits.max_decompressed_bytes` once inflated):
  beyond that it is a `too_large` (`decompressed_too_large`) error, never skipped silently.
  Content is read as JSON lines when a line in its first MiB (or up to its first line break)
  is a record on its own.
- Records are evaluated in event-time order: the single-event rules take each as it is read
  (`StatefulEngine.arrive`, while it is in the CPU's caches), and what it made waits in a heap
  for `settle` (admission, its alerts out, the stateful rules): its alerts, its time and
  eventID, the record only when a stateful rule matched it. Up to `SORTED` records, an
  input is evaluated in exact event-time order, whatever the order of its files and lines;
  beyond, each record waits until the watermark (the engine's rule: the second latest
  eventTime seen, minus the lateness) passes it, so a scan holds about one lateness of
  records at a time (reported as `held`), plus what the engine keeps; never more than
  `MAX_HELD` (then the earliest go to the engine at once, which takes records out of order
  within the lateness anyway).
- Input files are read in the order of the time in their CloudTrail file names
  (`..._CloudTrail_<region>_<YYYYMMDDTHHMMZ>_...`), then by path, so the files of several
  accounts and regions interleave in time.
- Python's cycle collector is set for a scan (`_collector`): records are dicts without
  cycles, freed by reference counting, but every young collection walks the records that wait
  in the heap, and every old one the rules; docs/BENCHMARKS.md (benchmark 12) measures it.
"""

from __future__ import annotations

import gc
import heapq
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import BinaryIO, Generic, TypeVar

from detector.alerts import Alert, level_rank
from detector.engine.evaluator import Arrival, Failure
from detector.engine.factory import StatefulEngine
from detector.engine.rule import Rule
from detector.engine.stateful.clock import Clock
from detector.events import (
    DecodeError,
    Limits,
    Record,
    decode_content,
    decode_line,
    inflate,
)

LOG_SUFFIXES = (".json", ".jsonl", ".ndjson", ".gz", ".log")
CHUNK = 1024 * 1024  # bytes read (and inflated) at a time
HEAD = 1024 * 1024  # content (up to a line break) looked at to tell JSON lines from the rest
SHOWN = 20  # error messages a summary lists
SORTED = 10_000  # records held whatever the watermark: small inputs in exact time order
YOUNG_COLLECTION = 100_000  # allocations between young collections during a scan (Python: 700)
MAX_HELD = 100_000  # records waiting for event-time order (a few hundred MB at most)
UNREADABLE = "unreadable"
INTERNAL_ERROR = "internal_error"
WHOLE_RECORD = "(record)"  # the rule of a failure that is not one rule's
_GZIP_MAGIC = b"\x1f\x8b"
T = TypeVar("T")
_CLOUDTRAIL_NAME = re.compile(r"_CloudTrail(?:-Digest)?_[a-z0-9-]+_(\d{8}T\d{4}Z)_")


@dataclass
class ScanSummary:
    files: int = 0
    records: int = 0
    decode_errors: Counter[str] = field(default_factory=Counter)
    error_messages: list[str] = field(default_factory=list)  # the first SHOWN
    internal_errors: Counter[str] = field(default_factory=Counter)  # by rule id
    failure_messages: list[str] = field(default_factory=list)  # the first SHOWN
    alerts: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    held: int = 0  # most records waiting for event-time order at once
    seconds: float = 0.0

    def count(self, alert: Alert) -> None:
        self.alerts[(alert.level, alert.rule_id, alert.rule_title)] += 1

    @property
    def input_errors(self) -> int:
        """What could not be read, decoded or evaluated: exit code 3."""
        return sum(self.decode_errors.values()) + sum(self.internal_errors.values())


def find_inputs(paths: Iterable[str]) -> list[str]:
    """Files to read: explicit files as given, directories walked for log files, `-` is stdin.

    Ordered by the time in CloudTrail file names, then by path, so the result does not depend
    on the order given on the command line and accounts and regions interleave in time.
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
    return sorted(found, key=_reading_order)


def _reading_order(name: str) -> tuple[str, str]:
    stamp = _CLOUDTRAIL_NAME.search(Path(name).name)
    return (stamp.group(1) if stamp else "", name)


class JsonLines:
    """Alerts as JSON lines (each `Alert.to_json()` and a line break) to `write`, instead of
    `Alert`s to a callback: scan then never builds the single-event alerts as objects."""

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self.write = write


def scan(
    inputs: list[str],
    engine: StatefulEngine,
    limits: Limits,
    emit: Callable[[Alert], None] | JsonLines,
    progress: Callable[[Iterable[str]], Iterable[str]] = lambda names: names,
    *,
    now: float | None = None,
    on_failure: Callable[[Failure], None] = lambda failure: None,
    final: bool = True,
    sorted_below: int = SORTED,
    max_held: int = MAX_HELD,
) -> ScanSummary:
    """Read every input, evaluate its records in event-time order, emit each alert.

    `now`: the wall clock eventTimes are checked against. `on_failure`: told of each record
    (or rule on a record) the engine could not evaluate, once. `final`: the end of input
    closes every window (not when the state is saved for a later run: windows the
    watermark has not passed then carry over).

    The single-event rules take each record as it is read (`StatefulEngine.arrive`): only
    their alerts wait for event-time order, and the record itself only when a stateful rule
    matched it (docs/BENCHMARKS.md, benchmark 12).
    """
    run = _Run(inputs, engine, limits, progress, now, on_failure, sorted_below, max_held)
    if isinstance(emit, JsonLines):
        write = emit.write
        return run.go(engine.match_json, write, lambda alert: write(alert.to_json() + b"\n"),
                      final)
    return run.go(engine.match_alert, emit, emit, final)


@dataclass
class _Run:
    inputs: list[str]
    engine: StatefulEngine
    limits: Limits
    progress: Callable[[Iterable[str]], Iterable[str]]
    now: float | None
    on_failure: Callable[[Failure], None]
    sorted_below: int
    max_held: int

    def go(self, build: Callable[[Rule, Record], T], single: Callable[[T], object],
           emit: Callable[[Alert], object], final: bool) -> ScanSummary:
        """The scan, single-event alerts made by `build` and given to `single`, the others
        to `emit`."""
        with _collector():
            engine, on_failure = self.engine, self.on_failure
            summary = ScanSummary(files=len(self.inputs))
            started = time.perf_counter()
            wall = time.time() if self.now is None else self.now
            clock = engine.stateful.clock
            window: Reorder[Arrival[T]] = Reorder(Clock(clock.lateness, clock.latest.count),
                                                  self.sorted_below, self.max_held)
            arrive, settle, push = engine.arrive, engine.settle, window.push
            counts, count, stateful = summary.alerts, summary.count, engine.stateful

            def tell(alerts: list[Alert]) -> None:
                for alert in alerts:
                    count(alert)
                    emit(alert)
                if engine.failures or stateful.failures:
                    for failure in engine.take_failures():
                        _failed(summary, failure)
                        on_failure(failure)

            def evaluate(arrivals: Iterable[Arrival[T]]) -> None:
                for arrival in arrivals:
                    decided = settle(arrival)
                    if decided is None:
                        tell([])
                        continue
                    for meta, alert in arrival.alerts:
                        counts[(meta.level, meta.id, meta.title)] += 1
                        single(alert)
                    tell(decided)

            for name in self.progress(self.inputs):
                for item in read_records(name, self.limits, wall):
                    if isinstance(item, DecodeError):
                        _error(summary, name, item)
                    else:
                        summary.records += 1
                        evaluate(push(item.event_time, arrive(item, build)))
            evaluate(window.drain())
            tell(engine.flush(final))
            summary.held = window.most
            summary.seconds = time.perf_counter() - started
            return summary


@contextmanager
def _collector() -> Iterator[None]:
    """The cycle collector for the length of a scan: what exists before it (rules, engine,
    imports) is frozen out of its walks, and young collections come every YOUNG_COLLECTION
    allocations; both as they were afterwards."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


class Reorder(Generic[T]):
    """Items (what records made) in event-time order within the allowed lateness: once more
    than `sort` wait, each waits in a heap until `clock`'s watermark passes it (ties in
    arrival order), `most` at a time at most."""

    def __init__(self, clock: Clock, sort: int = SORTED, most: int = MAX_HELD) -> None:
        self.clock = clock
        self.sort = sort
        self.limit = most
        self.heap: list[tuple[float, int, T]] = []
        self.arrived = 0
        self.most = 0

    def push(self, event_time: float, item: T) -> list[T]:
        """Take the item of a record of `event_time`; the items the watermark has now passed,
        oldest first."""
        heap = self.heap
        heapq.heappush(heap, (event_time, self.arrived, item))
        self.arrived += 1
        self.most = max(self.most, len(heap))
        self.clock.advance(event_time)
        released: list[T] = []
        if len(heap) <= self.sort:
            return released
        watermark = self.clock.watermark
        while heap[0][0] < watermark or len(heap) > self.limit:
            released.append(heapq.heappop(heap)[2])
            if len(heap) <= self.sort:
                break
        return released

    def drain(self) -> list[T]:
        """End of input: every item still waiting, oldest first."""
        released = [item[2] for item in sorted(self.heap)]
        self.heap = []
        return released


def read_input(name: str) -> bytes | str:
    """The bytes of an input read whole (`detector replay` sends files as they are), or why it
    could not be read."""
    try:
        if name == "-":
            return sys.stdin.buffer.read()
        return Path(name).read_bytes()
    except OSError as error:
        return f"cannot read: {error.strerror or error}"


def read_records(name: str, limits: Limits, now: float) -> Iterator[Record | DecodeError]:
    """The records of one input (a file, or `-` for stdin), and why parts could not be read."""
    try:
        stream: BinaryIO = sys.stdin.buffer if name == "-" else open(name, "rb")  # noqa: SIM115
    except OSError as error:
        yield DecodeError(UNREADABLE, f"cannot read: {error.strerror or error}")
        return
    try:
        yield from read_content(_chunks(stream), limits, now)
    except OSError as error:
        yield DecodeError(UNREADABLE, f"cannot read: {error.strerror or error}")
    finally:
        if name != "-":
            stream.close()


def read_content(
    chunks: Iterator[bytes], limits: Limits, now: float
) -> Iterator[Record | DecodeError]:
    """The records of a stream of bytes: JSON lines line by line, anything else whole."""
    first = next(chunks, b"")
    while 0 < len(first) < 2:  # the gzip magic is two bytes
        more = next(chunks, b"")
        if not more:
            break
        first += more
    raw = chain((first,), chunks)
    if first[:2] == _GZIP_MAGIC:
        content: Iterator[bytes | DecodeError] = inflate(raw, CHUNK)
        cap, reason, fmt = limits.max_decompressed_bytes, "decompressed_too_large", "gzip"
    else:
        content = iter(raw)
        cap, reason, fmt = limits.max_message_bytes, "too_large", "unknown"
    lines = _Lines(limits.max_message_bytes, now + limits.max_clock_skew)
    head = _Head(content, max(cap, lines.cap))
    if not head.ended and not head.broken:  # a first line over the cap, whatever the content
        yield lines.too_long()
        yield from lines.lines(content, dropping=True)
        return
    start = b"".join(head.pieces)
    if lines.find_record(start, head.ended):
        yield from lines.read
        yield from lines.lines(chain((start[lines.offset:],), content))
        if head.error is not None:
            yield head.error
        return
    if head.error is None and not head.ended:
        head.read_on(cap)
    if head.error is not None:
        yield head.error
    elif head.size > cap:
        flag = "--max-decompressed-bytes" if fmt == "gzip" else "--max-message-bytes"
        yield DecodeError(reason, f"content is over the limit of {cap} bytes and is not JSON "
                                  f"lines (raise {flag} to read it whole)")
    else:
        decoded = decode_content(b"".join(head.pieces), limits, now, fmt)
        yield from decoded.records
        yield from decoded.errors


class _Head:
    """The first pieces of a content: at least HEAD bytes and a line break, or `stop` bytes,
    or all of it."""

    def __init__(self, content: Iterator[bytes | DecodeError], stop: int) -> None:
        self.content = content
        self.pieces: list[bytes] = []
        self.size = 0
        self.error: DecodeError | None = None
        self.ended = True  # the content was read to its end (or to an error)
        self.broken = False  # the pieces hold a line break
        for piece in content:
            if isinstance(piece, DecodeError):
                self.error = piece
                return
            self._add(piece)
            self.broken = self.broken or b"\n" in piece
            if (self.size >= HEAD and self.broken) or self.size > stop:
                self.ended = False
                return

    def read_on(self, cap: int) -> None:
        """Read further, to the end or just past `cap` bytes."""
        for piece in self.content:
            if isinstance(piece, DecodeError):
                self.error = piece
                return
            self._add(piece)
            if self.size > cap:
                return
        self.ended = True

    def _add(self, piece: bytes) -> None:
        self.pieces.append(piece)
        self.size += len(piece)


class _Lines:
    """JSON lines read one by one, each at most `cap` bytes: line numbers are 1-based lines of
    the content, indexes count the non-blank lines."""

    def __init__(self, cap: int, latest: float) -> None:
        self.cap = cap
        self.latest = latest
        self.number = 0  # lines read
        self.index = 0  # non-blank lines read
        self.offset = 0  # bytes of the content read
        self.read: list[Record | DecodeError] = []

    def find_record(self, start: bytes, ended: bool) -> bool:
        """Read the complete lines of `start` up to the first one that is a record; False
        (the content is then not JSON lines) when none is."""
        lines = start.split(b"\n")
        if not ended or len(lines) == 1:
            lines.pop()  # unfinished, or no line break at all: that is not JSON lines
        for line in lines:
            self.offset += len(line) + 1
            result = self.too_long() if len(line) > self.cap else self.one(line)
            if result is not None:
                self.read.append(result)
            if isinstance(result, Record):
                return True
        return False

    def lines(self, content: Iterator[bytes | DecodeError],
              dropping: bool = False) -> Iterator[Record | DecodeError]:
        """The results of every further line (stops at a DecodeError of the content).
        `dropping`: the content starts within a line already reported as too long."""
        partial = b""
        cap = self.cap
        one = self.one
        for piece in content:
            if isinstance(piece, DecodeError):
                yield piece
                return
            lines = (partial + piece).split(b"\n")
            partial = lines.pop()
            for line in lines:
                if dropping:
                    dropping = False
                elif len(line) > cap:
                    yield self.too_long()
                elif (result := one(line)) is not None:
                    yield result
            if len(partial) > cap:
                if not dropping:
                    yield self.too_long()
                    dropping = True
                partial = b""
        if partial and not dropping and (result := one(partial)) is not None:
            yield result

    def too_long(self) -> DecodeError:
        """The error for the next line, over the cap (its content is not kept)."""
        self.number += 1
        self.index += 1
        return DecodeError("too_large", f"line is over the limit of {self.cap} bytes (raise "
                           "--max-message-bytes)", self.index - 1, self.number)

    def one(self, line: bytes) -> Record | DecodeError | None:
        """The next line's record or error; None for a blank line."""
        self.number += 1
        result = decode_line(line, self.index, self.number, self.latest)
        if result is not None:
            self.index += 1
        return result


def _failed(summary: ScanSummary, failure: Failure) -> None:
    summary.internal_errors[failure.rule_id or WHOLE_RECORD] += 1
    if len(summary.failure_messages) < SHOWN:
        summary.failure_messages.append(describe_failure(failure))


def describe_failure(failure: Failure) -> str:
    """One line naming the rule and the event, for logs and the summary."""
    rule = f"rule {failure.rule_id}" if failure.rule_id else "the record"
    event = f"event {failure.event_id}" if failure.event_id else "a decision taken later"
    return f"{INTERNAL_ERROR}: {rule} on {event}: {failure.error}"


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK):
        yield chunk


def _error(summary: ScanSummary, name: str, error: DecodeError) -> None:
    summary.decode_errors[error.reason] += 1
    if len(summary.error_messages) >= SHOWN:
        return
    where = name
    if error.line is not None:
        where += f":{error.line}" + (f":{error.column}" if error.column is not None else "")
    if error.index is not None:
        where += f" record #{error.index}"
    summary.error_messages.append(f"{where}: {error.reason}: {error.message}")


def format_summary(summary: ScanSummary, *, late: int = 0, duplicates: int = 0,
                   contradicted: int = 0, evicted: int = 0, trimmed: int = 0) -> str:
    """The human summary; `contradicted` says how many first-seen and rare-value decisions,
    taken at once, an earlier event read after them contradicted (docs/stateful-rules.md),
    `evicted` and `trimmed` what the state's bounds cost (state entries dropped at the entry
    cap, entries cut to the largest message), never silently."""
    lines = [
        f"scanned {summary.files} file(s), {summary.records} record(s) in {summary.seconds:.2f}s "
        f"(at most {summary.held} held for event-time order)",
    ]
    for title, counts, messages in (
        ("decode errors", summary.decode_errors, summary.error_messages),
        ("internal errors (by rule)", summary.internal_errors, summary.failure_messages),
    ):
        if not counts:
            continue
        total = sum(counts.values())
        lines.append(f"{title}: {total}")
        lines += [f"  {reason}: {count}" for reason, count in sorted(counts.items())]
        lines += [f"  - {message}" for message in messages]
        if total > len(messages):
            lines.append(f"  ... and {total - len(messages)} more")
    if late or duplicates:
        lines.append(f"late events: {late}, duplicate events: {duplicates}")
    if contradicted:
        lines.append(f"early decisions contradicted by earlier events read later: {contradicted}")
    if evicted or trimmed:
        lines.append(f"state entries evicted at the cap: {evicted}, "
                     f"cut to the largest message: {trimmed}")
    lines.append(f"alerts: {sum(summary.alerts.values())}")
    for (level, rule_id, title), count in sorted(
        summary.alerts.items(), key=lambda item: (-level_rank(item[0][0]), item[0][2])
    ):
        lines.append(f"  {count:6d}  {level:<13} {title} ({rule_id})")
    return "\n".join(lines)
