"""A record's evaluation in the two halves scan takes: its single-event rules as it arrives
(`arrive`), its admission and stateful decisions in event-time order (`settle`); and the
single-event alert written as JSON without its objects (`MatchJson`), byte for byte what
`Alert.to_json` writes."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path
from typing import Any

from engine.stateful_support import event, ruleset
from engine.test_failures import CALLED, DELETED, NEW_IP, RULES, raise_on, with_predicate
from fuzz.strategies import JSON, TEXT
from helpers import load
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from detector.alerts import alert_id, match_alert_id
from detector.engine.evaluator import Failure, MatchJson, build_alert
from detector.engine.factory import make_engine
from detector.engine.rule import Meta
from detector.events import Record, decode_record

EXAMPLES = settings(max_examples=300, deadline=timedelta(seconds=2),
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
NOW = "2026-03-10T12:00:00.123456Z"
OUTPUT_RULE = """\
title: a stream deleted
id: 5d7e9f00-0000-4000-8000-000000000001
level: high
tags: [attack.impact, attack.t1485]
logsource: {product: aws, service: cloudtrail}
detection:
  selection: {eventName: DeleteStream}
  condition: selection
detector:
  output: '{requestParameters.streamName} deleted by {userIdentity.arn} ({errorCode})'
"""
PARAMETERS = st.sampled_from(["streamName", "name", "bucketName", "roleName", "kmsKeyId",
                              "other"]) | TEXT


def _deep(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


ANY = JSON | st.builds(_deep, st.integers(250, 400)) | st.just(10**30)


@st.composite
def records(draw: st.DrawFn) -> Record:
    """A DeleteStream record with any value in the fields an alert's summary reads (strings
    where decoding insists on them)."""
    data: dict[str, Any] = {"eventSource": "kinesisvideo.amazonaws.com",
                            "eventName": "DeleteStream", "eventTime": "2026-03-10T12:00:00Z"}
    for key in ("eventID", "awsRegion", "sourceIPAddress", "userAgent"):
        if draw(st.booleans()):
            data[key] = draw(TEXT)
    for key in ("recipientAccountId", "errorCode"):
        if draw(st.booleans()):
            data[key] = draw(TEXT | ANY)
    if draw(st.booleans()):
        data["userIdentity"] = draw(st.fixed_dictionaries(
            {}, optional={"arn": TEXT | ANY, "type": TEXT | ANY, "accountId": TEXT | ANY}))
    if draw(st.booleans()):
        data["requestParameters"] = draw(st.none() | st.dictionaries(PARAMETERS, ANY,
                                                                     max_size=5))
    result = decode_record(data, latest=math.inf)
    assume(isinstance(result, Record))
    assert isinstance(result, Record)
    return result


def _meta(tmp_path: Path) -> Meta:
    loaded = load(tmp_path, OUTPUT_RULE)
    assert not loaded.errors
    return loaded.ruleset.rules[0].meta


@EXAMPLES
@given(record=records())
def test_the_json_of_a_single_event_alert_is_its_alerts_byte_for_byte(
    tmp_path: Path, record: Record
) -> None:
    meta = _meta(tmp_path)

    written = MatchJson(meta)(record, now=lambda: NOW)

    assert written == build_alert(meta, "match", [record], now=lambda: NOW).to_json() + b"\n"


@EXAMPLES
@given(rule_id=TEXT, key=TEXT)
def test_a_single_event_alert_id_is_the_alert_id_of_its_one_event(rule_id: str,
                                                                  key: str) -> None:
    assert match_alert_id(rule_id)(key) == alert_id(rule_id, None, [key])


STATELESS_AND_FIRST_SEEN = f"""\
title: deleted
id: {DELETED}
detection:
  selection: {{eventName: DeleteStream}}
  condition: selection
---
title: new source ip of a creator
id: {NEW_IP}
detection:
  selection: {{eventName: CreateStream}}
  condition: selection
detector:
  first_seen: {{key: [userIdentity.arn], value: [sourceIPAddress], learning: 1s}}
"""


def test_a_record_is_kept_for_event_time_order_only_when_a_stateful_rule_matched_it(
    tmp_path: Path,
) -> None:
    target = make_engine(ruleset(tmp_path, STATELESS_AND_FIRST_SEEN))
    deleted, created = event(0, "DeleteStream"), event(1, "CreateStream")

    alone = target.arrive(deleted, target.match_json)
    kept = target.arrive(created, target.match_json)

    assert (alone.record.data, alone.matched) == ({}, [])
    assert (alone.record.event_time, alone.record.event_id) == (deleted.event_time,
                                                                deleted.event_id)
    assert [meta.id for meta, _ in alone.alerts] == [DELETED]
    assert kept.record is created and [rule.id for rule in kept.matched] == [NEW_IP]
    assert kept.alerts == []


def test_what_a_rule_raised_on_arrival_counts_only_once_the_record_is_admitted(
    tmp_path: Path,
) -> None:
    target = make_engine(with_predicate(ruleset(tmp_path, RULES), CALLED,
                                        raise_on("DeleteStream")))
    first = target.arrive(event(0, "DeleteStream", event_id="e-1"), target.match_json)
    again = target.arrive(event(0, "DeleteStream", event_id="e-1"), target.match_json)
    assert target.take_failures() == []

    assert target.settle(first) is not None
    assert target.take_failures() == [Failure(CALLED, "e-1",
                                              "Boom: cannot evaluate DeleteStream")]
    assert target.settle(again) is None
    assert target.take_failures() == []
    assert target.stats()["duplicates"] == 1
    assert [meta.id for meta, _ in first.alerts] == [DELETED]


def test_arriving_then_settling_in_time_order_alerts_as_processing_does(tmp_path: Path) -> None:
    rules = ruleset(tmp_path, RULES)
    records = [event(seconds, name, event_id=f"e-{n}", ip=f"10.0.0.{n % 3}")
               for n, (seconds, name) in enumerate([(0, "DescribeStream"), (10, "DeleteStream"),
                                                     (20, "DescribeStream"), (30, "GetMedia"),
                                                     (30, "GetMedia"), (700, "DeleteStream")])]
    records.append(records[2])  # redelivered
    processing, halves = make_engine(rules, lateness="1m"), make_engine(rules, lateness="1m")

    expected = [alert.id for record in records for alert in processing.process(record)]
    expected += [alert.id for alert in processing.flush()]
    got: list[str] = []
    for record in records:
        arrival = halves.arrive(record, halves.match_alert)
        decided = halves.settle(arrival)
        if decided is not None:
            got += [alert.id for _, alert in arrival.alerts] + [alert.id for alert in decided]
    got += [alert.id for alert in halves.flush()]

    assert got == expected and len(expected) > len(records)
    assert halves.stats() == processing.stats()
