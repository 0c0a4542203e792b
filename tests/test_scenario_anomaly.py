"""A principal far above its own normal, from the engine to every place a person reads it.

Two days of a human reading a few media streams each afternoon, then forty reads at 03:00 and
a first GetClip: one baseline alert and one rare-value alert, each carrying its evidence
(`details.anomaly`) in the native document (docs/alert.schema.json), in Slack's message, in
Alertmanager's annotations and in the OCSF finding's anomaly_analyses.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import orjson
import pytest
from sinks.ocsf_schema import ocsf_errors

from detector.alerts import Alert, anomaly_summary
from detector.engine import load_rules
from detector.engine.factory import make_engine
from detector.events import Record, decode_record
from detector.ocsf import detection_finding
from detector.sinks import Secret
from detector.sinks.alertmanager import AlertmanagerConfig, alertmanager_alert
from detector.sinks.slack import slack_message

REPO = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((REPO / "docs" / "alert.schema.json").read_text())
HUMAN = "arn:aws:iam::111122223333:user/video-admin"
BASELINE_ID = "aaaaaaaa-0000-4000-8000-000000000001"
RARE_ID = "aaaaaaaa-0000-4000-8000-000000000002"
RULES = f"""\
title: Media reads far above the principal's own normal
id: {BASELINE_ID}
level: high
logsource: {{product: aws, service: cloudtrail}}
detection:
  selection: {{eventName: GetMedia}}
  condition: selection
detector:
  baseline: {{key: userIdentity.arn, bucket: 5m, window: 2d, seasonality: hour_of_day,
              floor: 10, learning: 1d}}
---
title: Kinesis Video API rare for the principal
id: {RARE_ID}
level: medium
logsource: {{product: aws, service: cloudtrail}}
detection:
  selection: {{eventSource: kinesisvideo.amazonaws.com}}
  condition: selection
detector:
  rare: {{key: userIdentity.arn, value: eventName, threshold: 2, window: 2d, learning: 1d}}
"""


def call(seconds: float, name: str, n: int) -> Record:
    moment = datetime(2026, 3, 10, tzinfo=UTC).timestamp() + seconds
    record = decode_record({
        "eventVersion": "1.09",
        "eventTime": datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": "kinesisvideo.amazonaws.com", "eventName": name,
        "eventID": f"{name}-{seconds}-{n}", "awsRegion": "eu-west-1",
        "sourceIPAddress": "198.51.100.20", "userAgent": "aws-cli/2.17.43",
        "userIdentity": {"type": "IAMUser", "arn": HUMAN, "accountId": "111122223333"},
        "recipientAccountId": "111122223333"})
    assert isinstance(record, Record)
    return record


@pytest.fixture(scope="module")
def alerts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Alert]:
    folder = tmp_path_factory.mktemp("rules")
    (folder / "rules.yml").write_text(RULES)
    loaded = load_rules([folder])
    assert not loaded.errors
    engine = make_engine(loaded.ruleset)
    afternoons = [call(day * 86400 + 15 * 3600 + 30 * n, "GetMedia", n)
                  for day in range(2) for n in range(5)]
    night = [call(2 * 86400 + 3 * 3600 + 5 * n, "GetMedia", n) for n in range(40)]
    clip = [call(2 * 86400 + 3 * 3600 + 400, "GetClip", 0)]
    raised = [alert for record in [*afternoons, *night, *clip]
              for alert in engine.process(record)] + engine.flush()
    return {alert.kind: alert for alert in raised}


def test_one_baseline_and_one_rare_alert_with_their_evidence(alerts: dict[str, Alert]) -> None:
    assert sorted(alerts) == ["baseline", "rare"]
    rate = alerts["baseline"].details["anomaly"]
    assert (rate["observed"], rate["expected"], rate["threshold"]) == (10, 0, 10)
    assert rate["slot"] == "03:00-04:00 UTC"
    rare = alerts["rare"].details["anomaly"]
    assert (rare["method"], rare["observed"], rare["threshold"]) == ("rare", 0, 2)


@pytest.mark.parametrize("kind", ["baseline", "rare"])
def test_the_native_document_follows_the_schema(alerts: dict[str, Alert], kind: str) -> None:
    jsonschema.validate(orjson.loads(alerts[kind].to_json()), SCHEMA)


def test_the_evidence_reads_as_one_line(alerts: dict[str, Alert]) -> None:
    assert anomaly_summary(alerts["baseline"].details) == (
        "10 events (expected 0, threshold 10, score 10) in the bucket of "
        "2026-03-12T03:00:00.000000Z, slot 03:00-04:00 UTC")
    assert anomaly_summary(alerts["rare"].details) == (
        "eventName used 0 time(s) before (rare below 2) since 2026-03-10T03:06:40.000000Z")
    assert anomaly_summary({}) is None
    assert anomaly_summary({"anomaly": {"observed": ["not", "a", "number"]}}) == (
        "None value (expected None, threshold None)")


def test_slack_shows_the_evidence_under_the_alert_text(alerts: dict[str, Alert]) -> None:
    blocks = slack_message(alerts["baseline"])["attachments"][0]["blocks"]
    assert blocks[2]["type"] == "section" and blocks[2]["text"]["type"] == "plain_text"
    assert blocks[2]["text"]["text"].startswith("Anomaly: 10 events (expected 0")
    assert all("Anomaly" not in str(block) for block in
               slack_message(_without_evidence(alerts["baseline"]))["attachments"][0]["blocks"])


def test_alertmanager_carries_the_evidence_as_an_annotation(alerts: dict[str, Alert]) -> None:
    config = AlertmanagerConfig(name="am", url=Secret("http://am:9093"))
    body = alertmanager_alert(alerts["rare"], config, datetime.now(UTC))
    assert body["annotations"]["anomaly"].startswith("eventName used 0 time(s) before")


def test_the_ocsf_finding_has_an_anomaly_analysis(alerts: dict[str, Alert]) -> None:
    finding = detection_finding(alerts["baseline"])
    assert ocsf_errors(finding) == []
    [analysis] = finding["anomaly_analyses"]
    assert analysis["anomalies"][0]["observation_type"] == "Volume Analysis"
    assert analysis["anomalies"][0]["observations"] == [{"value": "10"}]
    assert [(b["observed_pattern"], b["observations"][0]["value"])
            for b in analysis["baselines"]] == [("EXPECTED", "0.0"), ("THRESHOLD", "10")]
    assert analysis["analysis_targets"] == [{"name": HUMAN, "type": "userIdentity.arn"}]
    rare = detection_finding(alerts["rare"])["anomaly_analyses"][0]
    assert rare["anomalies"][0]["observation_type"] == "Frequency Analysis"


def _without_evidence(alert: Alert) -> Alert:
    return replace(alert, details={})
