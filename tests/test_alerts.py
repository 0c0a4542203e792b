"""Alerts: the documented schema holds, ids are deterministic, text renders from fields."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import orjson
import pytest
from helpers import REPO, engine, record, rule

from detector.alerts import EventSummary, format_time, now_iso, summary_document
from detector.bounded import MAX_DEPTH
from detector.events import decode

SCHEMA = json.loads((REPO / "docs" / "alert.schema.json").read_text())
OUTPUT = "detector:\n  output: 'Stream {requestParameters.streamName} deleted by " \
         "{userIdentity.arn} from {sourceIPAddress} ({errorCode})'\n"
DELETE = rule("sel:\n  eventName: DeleteStream\ncondition: sel", extra=OUTPUT)


def deletion() -> dict[str, object]:
    return {"eventName": "DeleteStream", "eventID": "7c5a6f6e-1111-4c2b-9a57-0a1b2c3d4e5f",
            "requestParameters": {"streamName": "front-door", "currentVersion": "abc"}}


def test_alert_matches_the_documented_schema(tmp_path: Path) -> None:
    (alert,) = engine(tmp_path, DELETE).process(record(**deletion()))
    jsonschema.validate(orjson.loads(alert.to_json()), SCHEMA)


def test_alert_text_is_rendered_from_the_event(tmp_path: Path) -> None:
    (alert,) = engine(tmp_path, DELETE).process(record(**deletion()))
    assert alert.text == ("Stream front-door deleted by "
                          "arn:aws:sts::111122223333:assumed-role/CameraFleet/device-1 "
                          "from 10.0.0.5 (-)")


def test_alert_summarises_the_triggering_event(tmp_path: Path) -> None:
    (alert,) = engine(tmp_path, DELETE).process(record(**deletion()))
    (summary,) = alert.events
    assert summary.event_name == "DeleteStream"
    assert summary.source_ip == "10.0.0.5"
    assert summary.account_id == "111122223333"
    assert summary.request_parameters == {"streamName": "front-door"}
    assert alert.event_ids == ("7c5a6f6e-1111-4c2b-9a57-0a1b2c3d4e5f",)
    assert alert.event_time == "2026-03-10T12:00:00.000000Z"


def test_an_event_summary_is_written_as_the_document_it_is_read_from(tmp_path: Path) -> None:
    (alert,) = engine(tmp_path, DELETE).process(record(**deletion()))
    (summary,) = alert.events

    document = summary.to_dict()

    assert document == summary_document(record(**deletion()))
    assert EventSummary(**document) == summary


def test_same_input_gives_the_same_id(tmp_path: Path) -> None:
    first = engine(tmp_path, DELETE).process(record(**deletion()))[0]
    again = engine(tmp_path, DELETE).process(record(**deletion()))[0]
    other = engine(tmp_path, DELETE).process(
        record(**{**deletion(), "eventID": "0f0f0f0f-2222-4c2b-9a57-0a1b2c3d4e5f"}))[0]
    assert first.id == again.id
    assert first.id != other.id
    assert first.detected_at <= again.detected_at


def test_records_without_event_id_get_a_content_hash(tmp_path: Path) -> None:
    data = deletion()
    del data["eventID"]
    rec = record(**data)
    rec.data.pop("eventID")
    (alert,) = engine(tmp_path, DELETE).process(
        type(rec)(rec.data, rec.event_source, rec.event_name, rec.event_time, None))
    assert alert.event_ids[0].startswith("sha256:")


def test_content_hash_survives_records_nested_too_deep_for_json_output() -> None:
    from detector.alerts import event_key

    nested: object = "x"
    for _ in range(300):
        nested = [nested]
    rec = record(requestParameters={"deep": nested})
    bare = type(rec)(rec.data, rec.event_source, rec.event_name, rec.event_time, None)
    assert event_key(bare).startswith("sha256:")
    assert event_key(bare) == event_key(bare)


def nested_json(depth: int) -> bytes:
    """A JSON value nested `depth` levels (orjson reads 1,024, writes 254)."""
    return b'{"a":' * depth + b'"x"' + b"}" * depth


@pytest.mark.parametrize("depth", [300, 1000])
def test_an_alert_on_a_record_nested_hundreds_of_levels_is_written_truncated(
    tmp_path: Path, depth: int
) -> None:
    text = orjson.dumps({**record(**deletion()).data, "requestParameters": {"name": "@"}})
    payload = text.replace(b'"@"', nested_json(depth))
    [one] = decode(payload).records
    [again] = decode(payload).records
    rules = DELETE.replace("{requestParameters.streamName}", "{requestParameters.name}")

    (alert,) = engine(tmp_path, rules).process(one)
    written = orjson.loads(alert.to_json())

    jsonschema.validate(written, SCHEMA)
    name = written["events"][0]["request_parameters"]["name"]
    for _ in range(MAX_DEPTH):
        name = name["a"]
    assert name == "…[truncated: nested deeper than 32 levels]"
    assert "truncated: nested deeper than 32 levels" in written["text"]
    (repeated,) = engine(tmp_path, rules).process(again)
    assert (repeated.id, repeated.text, repeated.events) == (alert.id, alert.text, alert.events)


def test_long_strings_in_an_alert_are_cut_with_their_length_and_hash(tmp_path: Path) -> None:
    agents = ["x" * 50_000 + "1", "x" * 50_000 + "2"]
    alerts = [engine(tmp_path, DELETE).process(record(**deletion(), userAgent=agent))[0]
              for agent in agents]

    summaries = [alert.events[0].user_agent or "" for alert in alerts]

    assert all(len(summary) < 4200 for summary in summaries)
    assert all("truncated: 50001 characters, sha256 " in summary for summary in summaries)
    assert summaries[0] != summaries[1]


def test_times_outside_the_calendar_are_written_as_its_first_or_last_instant() -> None:
    assert format_time(253402300800.0 + 3600) == "9999-12-31T23:59:59.999999Z"
    assert format_time(-1e18) == "0001-01-01T00:00:00.000000Z"
    assert format_time(0.0) == "1970-01-01T00:00:00.000000Z"


def test_the_json_is_the_sorted_document_written_once(tmp_path: Path) -> None:
    (alert,) = engine(tmp_path, DELETE).process(record(**deletion()))

    written = alert.to_json()

    assert written == orjson.dumps(alert.to_dict(), option=orjson.OPT_SORT_KEYS)
    assert alert.to_json() is written
    changed = replace(alert, id="0" * 32)  # how the stateful engine renames an alert
    assert orjson.loads(changed.to_json())["id"] == "0" * 32


def test_an_event_name_longer_than_the_string_bound_is_cut_in_the_summary(
    tmp_path: Path,
) -> None:
    anyone = rule("sel:\n  userIdentity.type: AssumedRole\ncondition: sel")
    long_name = "Describe" + "x" * 10_000

    (alert,) = engine(tmp_path, anyone).process(record(eventName=long_name))

    (summary,) = alert.events
    assert len(summary.event_name) < 4200
    assert "truncated: 10008 characters, sha256 " in summary.event_name


def test_detected_at_is_the_wall_clock_to_the_microsecond() -> None:
    before = datetime.now(UTC)
    written = now_iso()
    after = datetime.now(UTC)

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", written)
    parsed = datetime.strptime(written, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert before - timedelta(microseconds=1) <= parsed <= after
