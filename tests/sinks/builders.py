"""Alerts for sink tests, built directly so these tests do not depend on the engine."""

from __future__ import annotations

import itertools
from typing import Any

from detector.alerts import Alert, EventSummary

_serial = itertools.count(1)

EVENT_ID = "6f1c1e0a-2b3c-4d5e-8f90-1a2b3c4d5e6f"


def make_event(**fields: Any) -> EventSummary:
    """A KVS DeleteStream call by a camera-fleet role; keyword arguments override fields."""
    defaults: dict[str, Any] = {
        "event_id": EVENT_ID,
        "event_time": "2026-03-10T12:00:00.000000Z",
        "event_source": "kinesisvideo.amazonaws.com",
        "event_name": "DeleteStream",
        "principal_arn": "arn:aws:sts::111122223333:assumed-role/CameraFleet/device-1",
        "principal_type": "AssumedRole",
        "source_ip": "198.51.100.7",
        "user_agent": "aws-cli/2.15.0",
        "region": "eu-west-1",
        "account_id": "111122223333",
        "error_code": None,
        "request_parameters": {"streamName": "front-door"},
    }
    return EventSummary(**{**defaults, **fields})


def make_alert(
    *,
    level: str = "high",
    tags: tuple[str, ...] = ("attack.impact", "attack.t1485"),
    rule_id: str = "kvs-delete-stream",
    rule_title: str = "Kinesis Video Stream deleted",
    text: str | None = None,
    **event: Any,
) -> Alert:
    """A single-event alert; keyword arguments override EventSummary fields."""
    serial = next(_serial)
    summary = make_event(**event)
    return Alert(
        id=f"alert-{serial:04d}",
        rule_id=rule_id,
        rule_title=rule_title,
        level=level,
        tags=tags,
        kind="single",
        text=text or f"{summary.principal_arn} deleted stream front-door",
        event_time=summary.event_time,
        detected_at="2026-03-10T12:05:00.000000Z",
        group_key=None,
        event_ids=(summary.event_id or "",),
        events=(summary,),
    )
