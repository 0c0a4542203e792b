"""Slack-compatible incoming webhook: a level-coloured attachment with Block Kit content.

Everything taken from an event (principal, user agent, alert text built from event fields)
is shown literally. Slack mrkdwn has no escape for `*`, `_`, `~` or backticks, so such
values go into `plain_text` objects, which Slack never formats; `&`, `<` and `>` are written
as entities everywhere (Slack parses links and `<!channel>` mentions in any text), control
characters as visible escapes, and the message's fallback `text` is sent with `mrkdwn: false`.
The one mrkdwn object, the CloudTrail link, is built from validated values and is `verbatim`.
The incoming-webhook URL is itself the credential: it is a `Secret` and never logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from detector.alerts import Alert, anomaly_summary
from detector.metrics import Metrics
from detector.sinks.base import HttpSink, HttpSinkConfig
from detector.sinks.console_links import cloudtrail_event_url
from detector.sinks.text import visible

LEVEL_COLOURS = {
    "informational": "#9e9e9e",
    "low": "#2eb886",
    "medium": "#daa038",
    "high": "#e8590c",
    "critical": "#d00000",
}
_HEADER_LIMIT = 150
_TEXT_LIMIT = 3000
_FIELD_LIMIT = 1900


@dataclass(frozen=True, kw_only=True)
class SlackConfig(HttpSinkConfig):
    """A Slack (or Mattermost, Rocket.Chat: same payload) incoming webhook."""


class SlackSink(HttpSink):
    """Posts one message per alert."""

    config: SlackConfig

    def __init__(self, config: SlackConfig, metrics: Metrics) -> None:
        super().__init__(config, metrics)

    def _body(self, batch: list[Alert]) -> bytes:
        return orjson.dumps(slack_message(batch[0]))


def slack_message(alert: Alert) -> dict[str, Any]:
    """The webhook payload: fallback `text` for notifications, a coloured attachment."""
    level = alert.level.upper()
    event = alert.events[0] if alert.events else None
    fields: list[tuple[str, str | None]] = []
    link = None
    if event is not None:
        fields = [
            ("Principal", event.principal_arn),
            ("Source IP", event.source_ip),
            ("Event", f"{event.event_source} {event.event_name}"),
            ("Event time", event.event_time),
            ("Region", event.region),
            ("Account", event.account_id),
        ]
        link = cloudtrail_event_url(event.region, event.event_id, event.event_name)
    fields.append(("Rule", alert.rule_id))
    field_blocks = [plain(f"{title}: {value}", _FIELD_LIMIT) for title, value in fields if value]
    if link:
        field_blocks.append(
            {"type": "mrkdwn", "text": f"CloudTrail: <{link}|open the event>", "verbatim": True}
        )
    context = f"alert {alert.id} · {alert.kind}"
    if alert.tags:
        context += " · " + ", ".join(alert.tags)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": plain(f"{level}: {alert.rule_title}", _HEADER_LIMIT)},
        {"type": "section", "text": plain(alert.text, _TEXT_LIMIT)},
        {"type": "section", "fields": field_blocks[:10]},
        {"type": "context", "elements": [plain(context, _TEXT_LIMIT)]},
    ]
    evidence = anomaly_summary(alert.details)
    if evidence is not None:
        blocks.insert(2, {"type": "section", "text": plain(f"Anomaly: {evidence}", _TEXT_LIMIT)})
    return {
        "text": literal(f"[{level}] {alert.rule_title}: {alert.text}", _TEXT_LIMIT),
        "mrkdwn": False,
        "attachments": [
            {"color": LEVEL_COLOURS.get(alert.level, LEVEL_COLOURS["informational"]),
             "blocks": blocks}
        ],
    }


def plain(text: str, limit: int) -> dict[str, Any]:
    """A `plain_text` object: Slack applies no formatting and no emoji shortcodes to it."""
    return {"type": "plain_text", "text": literal(text, limit), "emoji": False}


def literal(text: str, limit: int) -> str:
    """`text` as Slack shows it character for character, in at most `limit` characters (an
    entity is never cut in half; a cut ends in an ellipsis)."""
    escaped = escape(visible(text))
    if len(escaped) <= limit:
        return escaped
    cut = escaped[: limit - 1]
    entity = cut.rfind("&")
    if entity != -1 and ";" not in cut[entity:]:
        cut = cut[:entity]
    return cut + "…"


def escape(text: str) -> str:
    """Slack's three control characters, as the entities Slack decodes for display."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
