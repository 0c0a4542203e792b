"""Alerts: the documented schema holds, ids are deterministic, text renders from fields."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import orjson
from helpers import REPO, engine, record, rule

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
