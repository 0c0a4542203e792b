"""Alertmanager API v2 mapping and delivery (the real Alertmanager: tests/integration)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from detector.metrics import Metrics
from detector.sinks import AlertmanagerConfig, AlertmanagerSink, Secret, SinkSet
from detector.sinks.alertmanager import alert_name, alertmanager_alert
from sinks.builders import EVENT_ID, make_alert
from sinks.support import FAST, ReceiverFactory, eventually, sample

NOW = datetime(2026, 3, 10, 12, 5, tzinfo=UTC)


def config(**options: object) -> AlertmanagerConfig:
    return AlertmanagerConfig(name="am", url=Secret("http://am:9093"), **options)  # type: ignore[arg-type]


def test_labels_identify_the_rule_and_where_it_fired() -> None:
    alert = make_alert(level="critical")
    posted = alertmanager_alert(alert, config(), NOW)
    assert posted["labels"] == {
        "alertname": "KinesisVideoStreamDeleted",
        "severity": "critical",
        "category": "detection",
        "rule_id": "kvs-delete-stream",
        "kind": "single",
        "alert_id": alert.id,
        "account_id": "111122223333",
        "region": "eu-west-1",
        "event_source": "kinesisvideo.amazonaws.com",
    }


def test_annotations_carry_what_an_analyst_reads() -> None:
    alert = make_alert(text="device-1 deleted stream front-door")
    annotations = alertmanager_alert(alert, config(), NOW)["annotations"]
    assert annotations["summary"] == "device-1 deleted stream front-door"
    assert annotations["alert_id"] == alert.id
    assert annotations["principal"] == (
        "arn:aws:sts::111122223333:assumed-role/CameraFleet/device-1"
    )
    assert annotations["source_ip"] == "198.51.100.7"
    assert annotations["event_name"] == "DeleteStream"
    assert annotations["event_time"] == "2026-03-10T12:00:00.000000Z"
    assert annotations["tags"] == "attack.impact, attack.t1485"
    assert annotations["description"] == (
        "Kinesis Video Stream deleted: kinesisvideo.amazonaws.com DeleteStream by "
        "arn:aws:sts::111122223333:assumed-role/CameraFleet/device-1 from 198.51.100.7 "
        "in account 111122223333 (eu-west-1)"
    )
    assert all(isinstance(value, str) and value for value in annotations.values())


def test_annotations_show_control_characters_instead_of_obeying_them() -> None:
    alert = make_alert(
        principal_arn="alice\nsource_ip: 10.0.0.1\u202e",
        text="deleted by alice\r\nSeverity: low",
    )
    annotations = alertmanager_alert(alert, config(), NOW)["annotations"]
    assert annotations["principal"] == "alice\\nsource_ip: 10.0.0.1\\u202e"
    assert annotations["summary"] == "deleted by alice\\r\\nSeverity: low"
    assert all("\n" not in value and "\r" not in value for value in annotations.values())


def test_alerts_start_at_the_event_and_resolve_after_the_resolve_timeout() -> None:
    posted = alertmanager_alert(make_alert(), config(resolve_timeout=600), NOW)
    assert posted["startsAt"] == "2026-03-10T12:00:00.000000Z"
    assert posted["endsAt"] == (NOW + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_an_event_from_the_future_still_ends_after_it_starts() -> None:
    future = make_alert(event_time="2026-03-10T18:00:00.000000Z")
    posted = alertmanager_alert(future, config(resolve_timeout=60), NOW)
    assert posted["endsAt"] > posted["startsAt"]


def test_event_values_that_do_not_look_like_aws_ones_are_not_labels() -> None:
    odd = make_alert(account_id="1234", region="<script>", event_source="evil.example.com")
    labels = alertmanager_alert(odd, config(), NOW)["labels"]
    assert not {"account_id", "region", "event_source"} & set(labels)


def test_the_alert_id_label_can_be_turned_off() -> None:
    labels = alertmanager_alert(make_alert(), config(alert_id_label=False), NOW)["labels"]
    assert "alert_id" not in labels


def test_generator_url_is_a_cloudtrail_link_or_the_configured_template() -> None:
    alert = make_alert()
    assert alertmanager_alert(alert, config(), NOW)["generatorURL"] == (
        "https://eu-west-1.console.aws.amazon.com/cloudtrailv2/home?region=eu-west-1"
        f"#/events/{EVENT_ID}"
    )
    templated = config(generator_url="https://grafana.example/d/alerts?var-id={alert_id}")
    assert alertmanager_alert(alert, templated, NOW)["generatorURL"] == (
        f"https://grafana.example/d/alerts?var-id={alert.id}"
    )


def test_alertname_is_the_title_in_camel_case_or_the_rule_id() -> None:
    assert alert_name(make_alert(rule_title="AWS KVS: retention cut to 0")) == (
        "AWSKVSRetentionCutTo0"
    )
    assert alert_name(make_alert(rule_title="—", rule_id="abc-123")) == "abc-123"


async def test_queued_alerts_go_out_as_one_list_to_the_v2_endpoint(
    receiver: ReceiverFactory, metrics: Metrics
) -> None:
    server = await receiver()
    sink = AlertmanagerSink(
        AlertmanagerConfig(name="am", url=Secret(server.url("/prefix/")), retry=FAST), metrics
    )
    alerts = [make_alert() for _ in range(3)]
    sinks = SinkSet([sink])
    for alert in alerts:
        sinks.submit(alert)
    async with sinks:
        (request,) = await server.wait_for(1)
        await eventually(lambda: sample(metrics, "detector_sink_deliveries_total", "am") == 3)
    assert request.path == "/prefix/api/v2/alerts"
    assert [item["labels"]["alert_id"] for item in request.json()] == [a.id for a in alerts]
