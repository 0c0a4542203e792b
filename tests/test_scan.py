"""`detector scan` reads inputs of any size in bounded memory: JSON lines line by line (gzip
inflated as it is read), other content whole up to a cap that is an error, never a skip; and
evaluates records in event-time order within the allowed lateness, holding about one lateness
of records at a time."""

from __future__ import annotations

import gc
import gzip
import io
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from helpers import load, rule

from detector.alerts import Alert
from detector.engine.factory import make_engine
from detector.engine.state import MemoryState
from detector.events import DEFAULT_LIMITS, DecodeError, Limits, Record
from detector.scan import (
    MAX_HELD,
    SORTED,
    YOUNG_COLLECTION,
    JsonLines,
    ScanSummary,
    find_inputs,
    format_summary,
    read_content,
    read_records,
    scan,
)

NOW = 1_790_000_000.0  # 2026-09-21: after every eventTime below
START = 1_773_100_800.0  # 2026-03-10T00:00:00Z
DELETE = rule("sel:\n  eventName: DeleteStream\ncondition: sel")


def at(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(START + seconds))


def kvs(n: int, seconds: float, name: str = "DescribeStream") -> dict[str, object]:
    return {"eventVersion": "1.08", "eventSource": "kinesisvideo.amazonaws.com",
            "eventName": name, "eventTime": at(seconds), "eventID": f"e-{n}",
            "awsRegion": "us-east-1", "sourceIPAddress": "203.0.113.9",
            "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/op"},
            "requestParameters": {"streamName": "front-door"}}


def jsonl(records: list[dict[str, object]]) -> bytes:
    return b"".join(orjson.dumps(item) + b"\n" for item in records)


def read(content: bytes, limits: Limits = DEFAULT_LIMITS,
         piece: int = 1 << 20) -> list[Record | DecodeError]:
    chunks: Iterator[bytes] = (content[at:at + piece] for at in range(0, len(content), piece))
    return list(read_content(chunks, limits, NOW))


def ids(items: list[Record | DecodeError]) -> list[str | None]:
    return [item.event_id for item in items if isinstance(item, Record)]


def errors(items: list[Record | DecodeError]) -> list[tuple[str, int | None]]:
    return [(item.reason, item.line) for item in items if isinstance(item, DecodeError)]


def test_json_lines_larger_than_the_cap_are_read_line_by_line() -> None:
    content = jsonl([kvs(n, n) for n in range(3000)])  # ~ 1 MB: 16 times the cap
    limits = Limits(max_message_bytes=64 * 1024)

    items = read(content, limits, piece=10_000)

    assert ids(items) == [f"e-{n}" for n in range(3000)]
    assert errors(items) == []


def test_a_line_over_the_cap_is_an_error_for_that_line_only() -> None:
    long = orjson.dumps({**kvs(1, 1), "userAgent": "x" * 100_000})
    content = jsonl([kvs(0, 0)]) + long + b"\n" + jsonl([kvs(2, 2)])

    items = read(content, Limits(max_message_bytes=10_000), piece=4096)

    assert ids(items) == ["e-0", "e-2"]
    assert errors(items) == [("too_large", 2)]


def test_a_first_line_over_the_cap_costs_that_line_only() -> None:
    long = orjson.dumps({**kvs(0, 0), "userAgent": "x" * 100_000})
    content = long + b"\n" + jsonl([kvs(n, n) for n in range(1, 2000)])

    items = read(content, Limits(max_message_bytes=10_000), piece=4096)

    assert ids(items) == [f"e-{n}" for n in range(1, 2000)]
    assert errors(items) == [("too_large", 1)]


def test_a_first_line_longer_than_the_head_is_still_json_lines() -> None:
    long = orjson.dumps({**kvs(0, 0), "userAgent": "x" * 1_500_000})
    content = long + b"\n" + jsonl([kvs(n, n) for n in range(1, 5000)])

    items = read(content, Limits(max_message_bytes=2_000_000), piece=65536)

    assert ids(items) == [f"e-{n}" for n in range(5000)]


def test_a_document_over_the_cap_is_an_error_not_a_skip() -> None:
    content = orjson.dumps({"Records": [kvs(n, n) for n in range(200)]})

    assert len(ids(read(content, Limits(max_message_bytes=len(content))))) == 200
    [error] = read(content, Limits(max_message_bytes=len(content) - 1), piece=1000)
    assert isinstance(error, DecodeError) and error.reason == "too_large"
    assert "--max-message-bytes" in error.message


def test_gzip_json_lines_are_inflated_as_they_are_read() -> None:
    content = gzip.compress(jsonl([kvs(n, n) for n in range(5000)]))
    limits = Limits(max_message_bytes=4096, max_decompressed_bytes=4096)

    items = read(content, limits, piece=1000)

    assert len(ids(items)) == 5000 and errors(items) == []


def test_a_gzip_document_over_the_inflated_cap_is_decompressed_too_large() -> None:
    content = gzip.compress(orjson.dumps({"Records": [kvs(n, n) for n in range(100)]}))

    [error] = read(content, Limits(max_decompressed_bytes=1000))

    assert isinstance(error, DecodeError) and error.reason == "decompressed_too_large"


def test_truncated_gzip_json_lines_keep_the_lines_before_the_break() -> None:
    content = gzip.compress(jsonl([kvs(n, n) for n in range(3000)]))[:-30]

    items = read(content, piece=4096)

    assert len(ids(items)) > 2000
    assert errors(items)[-1][0] == "bad_gzip"


@pytest.mark.parametrize("content", [
    orjson.dumps(kvs(0, 0)),
    orjson.dumps(kvs(0, 0)) + b"\n",
    orjson.dumps({"Records": [kvs(0, 0), kvs(1, 1)]}) + b"\n",
    json.dumps({"Records": [kvs(0, 0), kvs(1, 1)]}, indent=2).encode(),
    orjson.dumps([kvs(0, 0), kvs(1, 1)]),
])
def test_small_inputs_read_as_a_message_would_be(content: bytes) -> None:
    assert ids(read(content)) == ids(read(content, piece=7))
    assert len(ids(read(content))) in (1, 2)


def test_a_pretty_printed_log_file_over_the_head_is_read_whole() -> None:
    content = json.dumps({"Records": [kvs(n, n) for n in range(5000)]}, indent=2).encode()
    assert len(content) > 1024 * 1024

    assert len(ids(read(content, Limits(max_message_bytes=len(content)), piece=65536))) == 5000


def records_scan(tmp_path: Path, files: dict[str, bytes], lateness: str = "1m",
                 sorted_below: int = 0, max_held: int = MAX_HELD
                 ) -> tuple[list[Alert], ScanSummary]:
    result = load(tmp_path, DELETE)
    engine = make_engine(result.ruleset, lateness=lateness)
    names = []
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        names.append(str(tmp_path / name))
    alerts: list[Alert] = []
    summary = scan(find_inputs(names), engine, Limits(), alerts.append, now=NOW,
                   sorted_below=sorted_below, max_held=max_held)
    return alerts, summary


def test_a_scan_holds_about_one_lateness_of_records_not_its_input(tmp_path: Path) -> None:
    # three .jsonl.gz files, an hour each at one record a second: 10,800 records
    files = {f"part-{hour}.jsonl.gz": gzip.compress(jsonl([
        kvs(hour * 3600 + n, hour * 3600 + n, "DeleteStream" if n % 600 == 0 else "Describe")
        for n in range(3600)])) for hour in range(3)}

    alerts, summary = records_scan(tmp_path, files, lateness="1m")

    assert summary.records == 10_800
    # the watermark is the second latest eventTime minus 60 s: 62 records wait, and one arrives
    assert summary.held == 63
    assert [alert.event_ids[0] for alert in alerts] == [f"e-{n}" for n in range(0, 10_800, 600)]


def test_records_are_evaluated_in_event_time_order_within_the_lateness(tmp_path: Path) -> None:
    shuffled = [kvs(n, seconds, "DeleteStream") for n, seconds in
                enumerate([30, 10, 50, 20, 40, 100, 70, 90, 60, 80])]

    alerts, summary = records_scan(tmp_path, {"a.jsonl": jsonl(shuffled)}, lateness="1m")

    times = [alert.event_time for alert in alerts]
    assert times == sorted(times)
    assert summary.records == 10


def test_a_small_input_is_evaluated_in_exact_time_order_whatever_its_order(
    tmp_path: Path,
) -> None:
    days = [kvs(n, (n % 4) * 86400 - n, "DeleteStream") for n in range(40)]  # days apart

    alerts, summary = records_scan(tmp_path, {"a.jsonl": jsonl(days)}, sorted_below=SORTED)

    times = [alert.event_time for alert in alerts]
    assert times == sorted(times) and len(times) == 40
    assert summary.held == 40
    _, windowed = records_scan(tmp_path, {"a.jsonl": jsonl(days)}, sorted_below=10)
    assert windowed.held == 11


def test_no_more_than_the_cap_is_held_even_when_all_records_share_a_time(tmp_path: Path) -> None:
    same = [kvs(n, 0, "DeleteStream") for n in range(500)]

    alerts, summary = records_scan(tmp_path, {"a.jsonl": jsonl(same)}, max_held=50)

    assert len(alerts) == 500
    assert summary.held == 51


NEW_ADDRESS = rule("sel:\n  eventName: CreateStream\ncondition: sel",
                   rule_id="0b1c2d3e-0000-4000-8000-000000000002",
                   extra="detector:\n  first_seen: {key: [userIdentity.arn], "
                         "value: [sourceIPAddress], learning: 1s}\n")
DETECTED_AT = re.compile(rb'"detected_at":"[^"]*"')


def test_alerts_written_as_json_lines_are_the_alerts_as_objects_would_be(
    tmp_path: Path,
) -> None:
    records = [kvs(n, seconds, name) for n, (seconds, name) in enumerate(
        [(30, "DeleteStream"), (10, "CreateStream"), (50, "DeleteStream"), (20, "Describe"),
         (5000, "CreateStream"), (40, "DeleteStream"), (5001, "DeleteStream"),
         (5100, "Describe"), (5200, "Describe"), (100, "DeleteStream"),  # late
         (5202, "CreateStream")])]
    records[3]["eventID"] = records[2]["eventID"]  # redelivered, earlier: the one kept
    records[-1]["sourceIPAddress"] = "198.51.100.7"  # new for its principal
    (tmp_path / "in.jsonl").write_bytes(jsonl(records))
    rules = load(tmp_path, DELETE, NEW_ADDRESS).ruleset

    def run(emit: Callable[[Alert], None] | JsonLines) -> tuple[ScanSummary, dict[str, int]]:
        engine = make_engine(rules, lateness="1m")
        summary = scan([str(tmp_path / "in.jsonl")], engine, Limits(), emit, now=NOW,
                       sorted_below=0)
        summary.seconds = 0.0
        return summary, engine.stats()

    alerts: list[Alert] = []
    as_objects = run(alerts.append)
    written = io.BytesIO()
    as_lines = run(JsonLines(written.write))

    assert as_lines == as_objects
    assert as_objects[1]["late"] == 1 and as_objects[1]["duplicates"] == 1
    assert DETECTED_AT.sub(b"", written.getvalue()) == DETECTED_AT.sub(
        b"", b"".join(alert.to_json() + b"\n" for alert in alerts))
    assert {alert.kind for alert in alerts} == {"match", "first_seen"}
    assert ("e-3", "e-2") not in [alert.event_ids for alert in alerts]


def test_cloudtrail_files_are_read_in_the_order_of_their_time_then_path(tmp_path: Path) -> None:
    names = ["b/111111111111_CloudTrail_us-east-1_20260310T0005Z_x.json.gz",
             "a/222222222222_CloudTrail_eu-west-1_20260310T0010Z_y.json.gz",
             "a/222222222222_CloudTrail_eu-west-1_20260310T0000Z_z.json.gz",
             "notes.json"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")

    found = [Path(name).relative_to(tmp_path).as_posix() for name in find_inputs([str(tmp_path)])]

    assert found == ["notes.json", names[2], names[0], names[1]]


def test_an_unreadable_input_is_an_error(tmp_path: Path) -> None:
    [error] = list(read_records(str(tmp_path), Limits(), NOW))  # a directory
    assert isinstance(error, DecodeError) and error.reason == "unreadable"


def test_a_scan_leaves_the_cycle_collector_as_it_found_it(tmp_path: Path) -> None:
    """Scan sets the collector for its length only (docs/BENCHMARKS.md, benchmark 12)."""
    threshold = gc.get_threshold()
    seen: list[tuple[tuple[int, int, int], int]] = []

    def emit(alert: Alert) -> None:
        seen.append((gc.get_threshold(), gc.get_freeze_count()))

    (tmp_path / "in.jsonl").write_bytes(jsonl([kvs(1, 0, "DeleteStream")]))
    engine = make_engine(load(tmp_path, DELETE).ruleset)
    scan([str(tmp_path / "in.jsonl")], engine, Limits(), emit, now=NOW)

    [(during, frozen)] = seen
    assert during[0] == YOUNG_COLLECTION and frozen > 0
    assert gc.get_threshold() == threshold and gc.get_freeze_count() == 0


def test_the_summary_counts_state_entries_evicted_at_the_cap(tmp_path: Path) -> None:
    new_ip = rule("sel:\n  eventSource: kinesisvideo.amazonaws.com\ncondition: sel", extra="""
        detector:
          first_seen:
            key: [userIdentity.arn]
            value: sourceIPAddress
            learning: 0s
        """)
    memory = MemoryState(max_entries=3)
    engine = make_engine(load(tmp_path, new_ip).ruleset, lateness="1m", state=memory)
    principals = [{**kvs(n, n), "userIdentity": {"type": "IAMUser", "arn": f"arn:p{n}"}}
                  for n in range(10)]
    (tmp_path / "a.jsonl").write_bytes(jsonl(principals))

    summary = scan(find_inputs([str(tmp_path / "a.jsonl")]), engine, Limits(), lambda _: None,
                   now=NOW)

    assert memory.evicted > 0
    assert (f"state entries evicted at the cap: {memory.evicted}, cut to the largest message: 0"
            in format_summary(summary, evicted=memory.evicted, trimmed=engine.stats()["trimmed"]))
    assert "evicted" not in format_summary(summary)
