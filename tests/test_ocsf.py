"""An alert as an OCSF Detection Finding: given alerts, expect findings that the published
OCSF schema accepts, carrying the rule, the CloudTrail records and the anomaly evidence."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sinks.builders import make_alert, make_event
from sinks.ocsf_schema import RELEASES, ocsf_errors

from detector import __version__
from detector.alerts import LEVELS, Alert
from detector.ocsf import OCSF_VERSION, SEVERITIES, detection_finding, epoch_ms
from detector.sinks.formats import encode_alert

ROLE = "arn:aws:sts::111122223333:assumed-role/CameraFleet/device-1"
HOSTILE = 'x"}, "severity_id": 1, "y": "\n<script>*b*</script> \u202e\r\n\x00 \\" ${jndi:x}'
ANOMALY = {
    "method": "rate",
    "field": "GetMedia calls per 5 min",
    "observed": 42,
    "expected": 3.5,
    "threshold": 12.0,
    "score": 7.1,
    "history": {"start": "2026-02-24T00:00:00.000000Z", "end": "2026-03-10T00:00:00.000000Z"},
    "slot": "Tue 03",
    "learning": False,
}


def ms(text: str) -> int:
    value = epoch_ms(text)
    assert value is not None
    return value


def correlation_alert() -> Alert:
    """Three reads of stream media by one role from two networks, the last one the trigger."""
    events = (
        make_event(event_id="e-1", event_time="2026-03-10T02:58:00.000000Z",
                   event_name="GetMedia", source_ip="203.0.113.9"),
        make_event(event_id="e-2", event_time="2026-03-10T03:01:30.500000Z",
                   event_name="GetMedia", source_ip="2001:db8::7", region="eu-west-1"),
        make_event(event_id="e-3", event_time="2026-03-10T03:04:00.000000Z",
                   event_name="GetClip", region="us-east-1", account_id="444455556666"),
    )
    return Alert(
        id="0123456789abcdef0123456789abcdef",
        rule_id="kvs-media-burst",
        rule_title="Kinesis Video media read far above the principal's normal",
        level="critical",
        tags=("attack.collection", "attack.t1530", "attack.t1078.004"),
        kind="event_count",
        text=f"{ROLE} read media of 3 streams in 6 minutes",
        event_time="2026-03-10T03:04:00.000000Z",
        detected_at="2026-03-10T03:04:01.250000Z",
        group_key={"userIdentity.arn": ROLE},
        event_ids=("e-1", "e-2", "e-3"),
        events=events,
        details={"correlation": {"type": "event_count", "count": 3}, "anomaly": ANOMALY},
    )


@pytest.mark.parametrize("version", RELEASES)
def test_findings_are_valid_for_the_declared_release_and_every_later_one(version: str) -> None:
    for alert in (make_alert(), correlation_alert()):
        assert ocsf_errors(detection_finding(alert), version) == []


def test_the_validation_is_strict_enough_to_fail() -> None:
    finding = detection_finding(make_alert())
    assert ocsf_errors({**finding, "undefined_attribute": 1}) != []
    assert ocsf_errors({**finding, "severity_id": 7}) != []
    assert ocsf_errors({**finding, "time": "2026-03-10T12:00:00Z"}) != []
    assert ocsf_errors({key: value for key, value in finding.items() if key != "cloud"}) != []
    evidence = {**finding["evidences"][0], "src_endpoint": {"ip": "ec2.amazonaws.com"}}
    assert ocsf_errors({**finding, "evidences": [evidence]}) != []


def test_a_single_event_alert_becomes_a_detection_finding() -> None:
    alert = make_alert(error_code="AccessDenied")
    finding = detection_finding(alert)
    assert {key: finding[key] for key in (
        "class_uid", "category_uid", "activity_id", "type_uid", "severity_id", "severity",
        "status_id", "is_alert", "time", "start_time", "end_time", "message",
    )} == {
        "class_uid": 2004, "category_uid": 2, "activity_id": 1, "type_uid": 200401,
        "severity_id": 4, "severity": "High", "status_id": 1, "is_alert": True,
        "time": 1773144000000, "start_time": 1773144000000, "end_time": 1773144000000,
        "message": alert.text,
    }
    assert finding["metadata"] == {
        "version": OCSF_VERSION,
        "uid": alert.id,
        "product": {"name": "cloudtrail-detector", "version": __version__},
        "profiles": ["cloud"],
        "labels": ["attack.impact", "attack.t1485"],
    }
    assert finding["finding_info"] == {
        "uid": alert.id,
        "title": "Kinesis Video Stream deleted",
        "desc": alert.text,
        "types": [alert.kind],
        "analytic": {"uid": "kvs-delete-stream", "name": "Kinesis Video Stream deleted",
                     "type_id": 1, "type": "Rule"},
        "attacks": [{"technique": {"uid": "T1485"}}],
        "created_time": ms("2026-03-10T12:05:00Z"),
        "first_seen_time": 1773144000000,
        "last_seen_time": 1773144000000,
        "data_sources": ["AWS CloudTrail"],
    }
    assert finding["cloud"] == {
        "provider": "AWS", "region": "eu-west-1",
        "account": {"uid": "111122223333", "type_id": 10, "type": "AWS Account"},
    }
    assert finding["evidences"] == [{
        "uid": "6f1c1e0a-2b3c-4d5e-8f90-1a2b3c4d5e6f",
        "api": {"operation": "DeleteStream", "service": {"name": "kinesisvideo.amazonaws.com"},
                "response": {"error": "AccessDenied"}},
        "actor": {"user": {
            "uid": ROLE, "type": "AssumedRole",
            "account": {"uid": "111122223333", "type_id": 10, "type": "AWS Account"},
        }},
        "src_endpoint": {"ip": "198.51.100.7"},
        "http_request": {"user_agent": "aws-cli/2.15.0"},
        "data": {"event_time": "2026-03-10T12:00:00.000000Z", "region": "eu-west-1",
                 "account_id": "111122223333", "request_parameters": {"streamName": "front-door"}},
    }]
    assert "anomaly_analyses" not in finding
    assert "unmapped" not in finding


@pytest.mark.parametrize(
    ("level", "severity_id", "severity"),
    [("informational", 1, "Informational"), ("low", 2, "Low"), ("medium", 3, "Medium"),
     ("high", 4, "High"), ("critical", 5, "Critical")],
)
def test_each_level_has_its_severity(level: str, severity_id: int, severity: str) -> None:
    finding = detection_finding(make_alert(level=level))
    assert (finding["severity_id"], finding["severity"]) == (severity_id, severity)
    assert ocsf_errors(finding) == []


def test_the_severity_table_covers_every_level() -> None:
    assert tuple(SEVERITIES) == LEVELS


def test_a_level_outside_the_five_is_other_with_its_own_name() -> None:
    finding = detection_finding(replace(make_alert(), level="severe"))
    assert (finding["severity_id"], finding["severity"]) == (99, "severe")
    assert ocsf_errors(finding) == []


def test_a_correlation_spans_its_events_and_takes_cloud_from_the_trigger() -> None:
    alert = correlation_alert()
    finding = detection_finding(alert)
    first, last = ms("2026-03-10T02:58:00Z"), ms("2026-03-10T03:04:00Z")
    assert (finding["start_time"], finding["end_time"], finding["time"]) == (first, last, last)
    info = finding["finding_info"]
    assert (info["first_seen_time"], info["last_seen_time"]) == (first, last)
    assert info["created_time"] == ms("2026-03-10T03:04:01.250Z")
    assert info["types"] == ["event_count"]
    assert [evidence["uid"] for evidence in finding["evidences"]] == ["e-1", "e-2", "e-3"]
    assert [evidence["api"]["operation"] for evidence in finding["evidences"]] == [
        "GetMedia", "GetMedia", "GetClip"]
    assert [evidence["src_endpoint"] for evidence in finding["evidences"]] == [
        {"ip": "203.0.113.9"}, {"ip": "2001:db8::7"}, {"ip": "198.51.100.7"}]
    assert finding["cloud"]["region"] == "us-east-1"
    assert finding["cloud"]["account"]["uid"] == "444455556666"
    assert finding["unmapped"] == {"group_key": alert.group_key, "details": alert.details}


def test_attack_technique_tags_become_attacks() -> None:
    info = detection_finding(correlation_alert())["finding_info"]
    assert info["attacks"] == [
        {"technique": {"uid": "T1530"}},
        {"technique": {"uid": "T1078"}, "sub_technique": {"uid": "T1078.004"}},
    ]


def test_anomaly_details_become_an_anomaly_analysis() -> None:
    finding = detection_finding(correlation_alert())
    history = {"start_time": ms("2026-02-24T00:00:00Z"), "end_time": ms("2026-03-10T00:00:00Z")}
    measured = {"observation_parameter": "GetMedia calls per 5 min",
                "observation_type": "Volume Analysis"}
    assert finding["anomaly_analyses"] == [{
        "analysis_targets": [{"name": ROLE, "type": "userIdentity.arn"}],
        "anomalies": [{**measured, "observations": [{"value": "42"}]}],
        "baselines": [
            {**measured, "observed_pattern": "EXPECTED",
             "observations": [{"value": "3.5", "timespan": history}]},
            {**measured, "observed_pattern": "THRESHOLD",
             "observations": [{"value": "12.0", "timespan": history}]},
        ],
    }]
    # What OCSF has no attribute for (score, slot, learning state) is kept, unmapped.
    assert finding["unmapped"]["details"]["anomaly"] == ANOMALY


def test_a_rare_value_without_a_key_or_numbers_is_analysed_for_the_principal() -> None:
    alert = replace(make_alert(), details={"anomaly": {
        "method": "rare", "field": "eventName", "observed": "DeleteStream", "learning": "ready",
    }})
    finding = detection_finding(alert)
    assert finding["anomaly_analyses"] == [{
        "analysis_targets": [{"name": ROLE, "type": "userIdentity.arn"}],
        "anomalies": [{"observation_parameter": "eventName",
                       "observation_type": "Frequency Analysis",
                       "observations": [{"value": "DeleteStream"}]}],
    }]
    assert ocsf_errors(finding) == []


@pytest.mark.parametrize(
    "anomaly",
    [{}, {"observed": None, "history": "14d", "expected": [1]}, {"method": 3, "field": {}},
     {"observed": {"nested": True}, "history": {"start": 5, "end": "not a time"}}],
)
def test_anomaly_details_of_any_shape_give_a_valid_finding(anomaly: dict[str, Any]) -> None:
    alert = replace(correlation_alert(), details={"anomaly": anomaly},
                    group_key={"a": ["list"], "b": None, "c": 3})
    finding = detection_finding(alert)
    assert finding["anomaly_analyses"][0]["analysis_targets"] == [
        {"name": '["list"]', "type": "a"}, {"name": "null", "type": "b"},
        {"name": "3", "type": "c"}]
    assert ocsf_errors(finding) == []


def test_a_service_calling_from_aws_has_a_service_endpoint_and_no_user() -> None:
    alert = make_alert(principal_arn=None, principal_type="AWSService",
                       source_ip="ec2.amazonaws.com", user_agent=None, event_id=None)
    (evidence,) = detection_finding(alert)["evidences"]
    assert evidence["src_endpoint"] == {"svc_name": "ec2.amazonaws.com"}
    assert "actor" not in evidence and "uid" not in evidence and "http_request" not in evidence
    assert evidence["data"]["principal_type"] == "AWSService"
    assert ocsf_errors(detection_finding(alert)) == []


def test_the_principal_account_is_the_one_its_arn_names() -> None:
    alert = make_alert(principal_arn="arn:aws:iam::999988887777:user/ops",
                       account_id="111122223333")
    finding = detection_finding(alert)
    assert finding["evidences"][0]["actor"]["user"]["account"]["uid"] == "999988887777"
    assert finding["cloud"]["account"]["uid"] == "111122223333"
    odd = detection_finding(make_alert(principal_arn="not-an-arn", principal_type=None))
    assert odd["evidences"][0]["actor"] == {"user": {"uid": "not-an-arn"}}


def test_an_event_time_that_is_not_iso_8601_falls_back_to_the_detection_time() -> None:
    """Years before 1000 are written without leading zeros by format_time (strftime)."""
    alert = make_alert(event_time="500-01-01T00:00:00.000000Z")
    finding = detection_finding(alert)
    assert finding["time"] == ms(alert.detected_at)
    assert "start_time" not in finding and "first_seen_time" not in finding["finding_info"]
    assert ocsf_errors(finding) == []


def test_times_are_exact_milliseconds() -> None:
    assert epoch_ms("1970-01-01T00:00:00.000999Z") == 0
    assert epoch_ms("2026-03-10T12:00:00.123999Z") == 1773144000123
    assert epoch_ms("0001-01-01T00:00:00.000000Z") == -62135596800000
    assert epoch_ms("2026-03-10T13:00:00+01:00") == 1773144000000
    assert epoch_ms("500-01-01T00:00:00Z") is None


def test_hostile_values_pass_through_as_json_data() -> None:
    alert = make_alert(principal_arn=HOSTILE, user_agent=HOSTILE, source_ip=HOSTILE,
                       event_name=HOSTILE, error_code=HOSTILE, text=HOSTILE,
                       request_parameters={"streamName": HOSTILE})
    body = encode_alert(alert, "ocsf")
    document = orjson.loads(body)
    (evidence,) = document["evidences"]
    assert evidence["actor"]["user"]["uid"] == HOSTILE
    assert evidence["http_request"]["user_agent"] == HOSTILE
    assert evidence["src_endpoint"] == {"svc_name": HOSTILE}
    assert evidence["api"]["operation"] == HOSTILE
    assert evidence["data"]["request_parameters"] == {"streamName": HOSTILE}
    assert document["message"] == HOSTILE
    assert document["severity_id"] == 4
    assert b"\n" not in body
    assert ocsf_errors(document) == []


def test_the_same_alert_always_gives_the_same_bytes() -> None:
    alert = correlation_alert()
    reordered = replace(alert, details=dict(reversed(list(alert.details.items()))),
                        group_key=dict(reversed(list((alert.group_key or {}).items()))))
    assert encode_alert(alert, "ocsf") == encode_alert(alert, "ocsf")
    assert encode_alert(reordered, "ocsf") == encode_alert(alert, "ocsf")
    assert encode_alert(alert, "ocsf") == orjson.dumps(
        detection_finding(alert), option=orjson.OPT_SORT_KEYS)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(address=st.ip_addresses())
def test_every_address_python_accepts_is_an_ocsf_ip(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    for text in {str(address), address.exploded}:
        finding = detection_finding(make_alert(source_ip=text))
        assert finding["evidences"][0]["src_endpoint"] == {"ip": text}
        assert ocsf_errors(finding) == []


_text = st.text(max_size=40)
_optional = st.none() | _text


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    principal_arn=_optional, principal_type=_optional, source_ip=_optional,
    user_agent=_optional, region=_optional, account_id=_optional, error_code=_optional,
    event_id=_optional, event_name=_text, event_source=_text,
    level=st.sampled_from(LEVELS) | _text,
    tags=st.lists(_text | st.from_regex(r"attack\.t\d{4}(\.\d{3})?", fullmatch=True),
                  max_size=4),
)
def test_any_event_values_give_a_valid_finding(level: str, tags: list[str],
                                               **event: Any) -> None:
    finding = detection_finding(make_alert(level=level, tags=tuple(tags), **event))
    assert ocsf_errors(finding) == []
