"""Slack-compatible webhook: a readable, level-coloured message that cannot be injected into."""

from __future__ import annotations

from typing import Any

import pytest

from detector.metrics import Metrics
from detector.sinks import Secret, SinkSet, SlackConfig, SlackSink
from detector.sinks.slack import LEVEL_COLOURS, slack_message
from sinks.builders import EVENT_ID, make_alert
from sinks.support import FAST, ReceiverFactory


def fields(message: dict[str, Any]) -> dict[str, str]:
    (attachment,) = message["attachments"]
    section = next(block for block in attachment["blocks"] if "fields" in block)
    pairs = (item["text"].split(": ", 1) for item in section["fields"])
    return {title: value for title, value in pairs}


def text_objects(message: dict[str, Any]) -> list[dict[str, Any]]:
    """Every Block Kit text object of the message."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("plain_text", "mrkdwn") and "text" in node:
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(message["attachments"])
    return found


def test_the_message_has_a_title_text_and_the_triage_fields() -> None:
    alert = make_alert(level="critical")
    message = slack_message(alert)
    assert message["text"].startswith("[CRITICAL] Kinesis Video Stream deleted: ")
    (attachment,) = message["attachments"]
    assert attachment["color"] == LEVEL_COLOURS["critical"]
    header = attachment["blocks"][0]
    assert header == {
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": "CRITICAL: Kinesis Video Stream deleted",
            "emoji": False,
        },
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
        f"?region=eu-west-1#/events/{EVENT_ID}|open the event>",
    }


def test_each_level_has_its_colour() -> None:
    colours = {
        level: slack_message(make_alert(level=level))["attachments"][0]["color"]
        for level in LEVEL_COLOURS
    }
    assert colours == LEVEL_COLOURS
    assert len(set(colours.values())) == len(colours)


HOSTILE = {
    "bold": "*bold*",
    "italic": "_x_",
    "strike": "~gone~",
    "code": "`rm -rf /` ```block```",
    "quote": "> quoted",
    "link": "<http://evil.example|click here>",
    "mention": "<!channel> <@U123> <#C123>",
    "entity": "&lt;!here&gt;",
    "forged field": "alice\nPrincipal: arn:aws:iam::111122223333:root\r\nRule: benign",
    "bidi": "evil\u202egnp.exe",
    "emoji": ":rotating_light: :white_check_mark:",
}


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_event_values_render_literally(value: str) -> None:
    message = slack_message(make_alert(principal_arn=value, text=f"deleted by {value}"))
    shown = fields(message)["Principal"]
    # What Slack displays after decoding its three entities is the value, with control
    # characters written out.
    decoded = shown.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    assert decoded == value.replace("\n", "\\n").replace("\r", "\\r").replace(
        "\u202e", "\\u202e"
    )
    assert "\n" not in shown and "\r" not in shown
    for obj in text_objects(message):
        if obj["type"] == "mrkdwn":  # only the link, built from validated values
            assert obj["verbatim"] is True
            assert obj["text"].startswith("CloudTrail: <https://")
        else:
            assert obj["emoji"] is False
        assert "<" not in obj["text"] or obj["type"] == "mrkdwn"
    assert message["mrkdwn"] is False
    assert "<" not in message["text"] and "\n" not in message["text"]


def test_the_alert_text_is_plain_text() -> None:
    message = slack_message(make_alert(text="*root* deleted <https://x|all> streams"))
    section = message["attachments"][0]["blocks"][1]
    assert section["text"] == {
        "type": "plain_text",
        "text": "*root* deleted &lt;https://x|all&gt; streams",
        "emoji": False,
    }


def test_long_values_are_cut_without_breaking_an_entity() -> None:
    message = slack_message(make_alert(principal_arn="&" * 5000))
    shown = fields(message)["Principal"]
    assert len(shown) <= 1900
    assert shown.endswith("&amp;…")


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
