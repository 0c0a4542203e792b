"""Alertmanager API v2: `POST {url}/api/v2/alerts` with a JSON list of alerts.

Mapping (documented in docs/sinks.md):
- labels: `alertname` (the rule title in CamelCase, e.g. `KinesisVideoStreamDeleted`, so
  notifications read well; the rule id when the title has no letters or digits),
  `severity` (the Sigma level), `category: detection` (what Alertmanager routes on, as it
  does for the detector's own health alerts from Prometheus: see
  deploy/prometheus/alertmanager-example.yml), `rule_id` (stable: silence on this, titles
  get edited), `kind`, and from the triggering event `account_id`, `region`, `event_source`
  when they look like what AWS writes; `alert_id` unless turned off, so two detections of
  one rule stay two alerts (without it Alertmanager merges them by label set and shows only
  the last one's principal) while a redelivered alert, same id, stays one.
- annotations: summary (the alert text), description, alert_id, rule_title, tags, principal,
  source_ip, event_name, event_time, detected_at, and for baseline and rare-value alerts
  anomaly (the evidence in one line, `detector.alerts.anomaly_summary`); control characters
  and bidi overrides written as escapes (`detector.sinks.text.visible`), since receivers'
  templates put them into mails, pages and chat messages as they are.
- startsAt: the event time. endsAt: send time + `resolve_timeout` (default 1h), so alerts
  resolve on their own: a detection is an event, nobody will send a "resolved".
- generatorURL: the configured template (`{alert_id}` and `{rule_id}` are substituted), else a
  CloudTrail console link for the event when one can be built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from detector.alerts import Alert, EventSummary, anomaly_summary
from detector.metrics import Metrics
from detector.sinks.base import HttpSink, HttpSinkConfig
from detector.sinks.console_links import cloudtrail_event_url
from detector.sinks.text import visible

_WORD = re.compile(r"[A-Za-z0-9]+")
_ACCOUNT = re.compile(r"[0-9]{12}")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]{1,2}")
_EVENT_SOURCE = re.compile(r"[a-z0-9.-]{1,100}\.amazonaws\.com")
_MAX_ANNOTATION = 2048
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
CATEGORY = "detection"


@dataclass(frozen=True, kw_only=True)
class AlertmanagerConfig(HttpSinkConfig):
    """`url` is Alertmanager's base URL (no `/api/v2/alerts`)."""

    resolve_timeout: float = 3600.0
    generator_url: str | None = None
    alert_id_label: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.resolve_timeout <= 0:
            raise ValueError(f"sink {self.name}: resolve_timeout must be positive")


class AlertmanagerSink(HttpSink):
    """Sends alerts to Alertmanager, up to `max_batch` per request."""

    config: AlertmanagerConfig
    max_batch = 64

    def __init__(self, config: AlertmanagerConfig, metrics: Metrics) -> None:
        super().__init__(config, metrics)

    @property
    def target(self) -> str:
        return self.config.url.reveal().rstrip("/") + "/api/v2/alerts"

    def _body(self, batch: list[Alert]) -> bytes:
        now = datetime.now(UTC)
        return orjson.dumps([alertmanager_alert(alert, self.config, now) for alert in batch])


def alertmanager_alert(alert: Alert, config: AlertmanagerConfig, now: datetime) -> dict[str, Any]:
    """One element of the API v2 `postableAlerts` list."""
    event = alert.events[0] if alert.events else None
    labels = {
        "alertname": alert_name(alert),
        "severity": alert.level,
        "category": CATEGORY,
        "rule_id": alert.rule_id,
        "kind": alert.kind,
    }
    if config.alert_id_label:
        labels["alert_id"] = alert.id
    if event is not None:
        for name, value, pattern in (
            ("account_id", event.account_id, _ACCOUNT),
            ("region", event.region, _REGION),
            ("event_source", event.event_source, _EVENT_SOURCE),
        ):
            if value and pattern.fullmatch(value):
                labels[name] = value
    annotations = {
        "summary": alert.text,
        "description": _description(alert, event),
        "alert_id": alert.id,
        "rule_title": alert.rule_title,
        "tags": ", ".join(alert.tags),
        "principal": event.principal_arn if event else None,
        "source_ip": event.source_ip if event else None,
        "event_name": event.event_name if event else None,
        "event_time": alert.event_time,
        "detected_at": alert.detected_at,
        "anomaly": anomaly_summary(alert.details),
    }
    starts = _parse_time(alert.event_time) or now
    body: dict[str, Any] = {
        "labels": labels,
        "annotations": {
            key: visible(value)[:_MAX_ANNOTATION] for key, value in annotations.items() if value
        },
        "startsAt": starts.strftime(_TIME_FORMAT),
        "endsAt": (max(now, starts) + timedelta(seconds=config.resolve_timeout)).strftime(
            _TIME_FORMAT
        ),
    }
    generator = _generator_url(alert, event, config.generator_url)
    if generator:
        body["generatorURL"] = generator
    return body


def alert_name(alert: Alert) -> str:
    """The rule title as a CamelCase identifier, or the rule id when nothing is left."""
    words = _WORD.findall(alert.rule_title)
    name = "".join(word[:1].upper() + word[1:] for word in words)[:128]
    return name or alert.rule_id


def _description(alert: Alert, event: EventSummary | None) -> str:
    if event is None:
        return alert.rule_title
    parts = [f"{alert.rule_title}: {event.event_source} {event.event_name}"]
    if event.principal_arn:
        parts.append(f"by {event.principal_arn}")
    if event.source_ip:
        parts.append(f"from {event.source_ip}")
    if event.account_id:
        parts.append(f"in account {event.account_id}")
    if event.region:
        parts.append(f"({event.region})")
    if len(alert.events) > 1:
        parts.append(f"and {len(alert.events) - 1} more event(s)")
    return " ".join(parts)


def _generator_url(alert: Alert, event: EventSummary | None, template: str | None) -> str | None:
    if template:
        return template.replace("{alert_id}", alert.id).replace("{rule_id}", alert.rule_id)
    if event is None:
        return None
    return cloudtrail_event_url(event.region, event.event_id, event.event_name)


def _parse_time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
