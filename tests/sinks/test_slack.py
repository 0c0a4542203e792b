"""Slack-compatible webhook: a readable, level-coloured message that cannot be injected into."""

from __future__ import annotations

from typing import Any

from detector.metrics import Metrics
from detector.sinks import Secret, SinkSet, SlackConfig, SlackSink
from detector.sinks.slack import LEVEL_COLOURS, slack_message
from sinks.builders import EVENT_ID, make_alert
from sinks.support import FAST, ReceiverFactory


def fields(message: dict[str, Any]) -> dict[str, str]:
    (attachment,) = message["attachments"]
    section = next(block for block in attachment["blocks"] if "fields" in block)
    pairs = (item["text"].split("\n", 1) for item in section["fields"])
    return {title.strip("*"): value for title, value in pairs}


def test_the_message_has_a_title_text_and_the_triage_fields() -> None:
    alert = make_alert(level="critical")
    message = slack_message(alert)
    assert message["text"].startswith("[CRITICAL] Kinesis Video Stream deleted: ")
    (attachment,) = message["attachments"]
    assert attachment["color"] == LEVEL_COLOURS["critical"]
    header = attachment["blocks"][0]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "CRITICAL: Kinesis Video Stream deleted"},
    }
    assert fields(message) == {
        "Principal": "arn:aws:sts::111122223333:assumed-role/CameraFleet/device-1",
        "Source IP": "198.51.100.7",
        "Event": "kinesisvideo.amazonaws.com DeleteStream",
        "Event time": "2026-03-10T12:00:00.000000Z",
        "Region": "eu-west-1",
        "Account": "111122223333",
        "Rule": "kvs-delete-stream",
        "CloudTrail": "<https://eu-west-1.console.aws.amazon.com/cloudtrailv2/home"
        f"?region=eu-west-1#/events/{EVENT_ID}|Open event>",
    }


def test_each_level_has_its_colour() -> None:
    colours = {
        level: slack_message(make_alert(level=level))["attachments"][0]["color"]
        for level in LEVEL_COLOURS
    }
    assert colours == LEVEL_COLOURS
    assert len(set(colours.values())) == len(colours)


def test_event_values_cannot_inject_links_or_mentions() -> None:
    hostile = make_alert(
        principal_arn="<!channel> <https://evil.example|click>",
        text="deleted by <@U123> & friends",
    )
    message = slack_message(hostile)
    assert fields(message)["Principal"] == (
        "&lt;!channel&gt; &lt;https://evil.example|click&gt;"
    )
    assert "<@U123>" not in str(message)
    assert "&amp; friends" in message["text"]


def test_no_link_without_a_region_that_looks_like_aws() -> None:
    message = slack_message(make_alert(region="../../evil"))
    assert "CloudTrail" not in fields(message)


async def test_posts_to_the_incoming_webhook(receiver: ReceiverFactory, metrics: Metrics) -> None:
    server = await receiver()
    config = SlackConfig(name="slack", url=Secret(server.url("/services/T/B/X")), retry=FAST)
    alert = make_alert()
    async with SinkSet([SlackSink(config, metrics)]) as sinks:
        sinks.submit(alert)
        (request,) = await server.wait_for(1)
    assert request.path == "/services/T/B/X"
    assert request.json() == slack_message(alert)
