"""The alert model: what every sink receives and what docs/alert.schema.json describes.

Alert ids are deterministic (a hash of the rule, the group key and the triggering event
ids), so the same input yields the same id in `detector scan` and in the stream worker, and
a consumer of an at-least-once stream can drop repeats.

What an alert carries of a record is bounded (`detector.bounded`): any decoded record can be
written, however deep or long its values.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson

from detector.bounded import bounded, bounded_text
from detector.events import Record

LEVELS = ("informational", "low", "medium", "high", "critical")
_WHOLE = 1 << 62  # size budget when only depth and string length are to be bounded

# Request parameters worth carrying in an alert: enough to triage without the raw event.
_PARAMETERS_OF_INTEREST = (
    "streamName",
    "streamARN",
    "channelName",
    "channelARN",
    "operation",
    "dataRetentionChangeInHours",
    "aPIName",
    "kmsKeyId",
    "bucketName",
    "name",
    "trailName",
    "userName",
    "roleName",
    "policyArn",
    "groupId",
    "instanceType",
)


def level_rank(level: str) -> int:
    """Order of severity; unknown levels rank lowest so they never pass a minimum filter."""
    return LEVELS.index(level) if level in LEVELS else -1


@dataclass(frozen=True, slots=True)
class EventSummary:
    """The few fields of a triggering event an analyst reads first."""

    event_id: str | None
    event_time: str
    event_source: str
    event_name: str
    principal_arn: str | None
    principal_type: str | None
    source_ip: str | None
    user_agent: str | None
    region: str | None
    account_id: str | None
    error_code: str | None
    request_parameters: dict[str, Any]

    @classmethod
    def of(cls, record: Record) -> EventSummary:
        data = record.data
        identity = data.get("userIdentity")
        identity = identity if isinstance(identity, dict) else {}
        params = data.get("requestParameters")
        params = params if isinstance(params, dict) else {}
        return cls(
            event_id=record.event_id,
            event_time=format_time(record.event_time),
            event_source=record.event_source,
            event_name=record.event_name,
            principal_arn=_str_or_none(identity.get("arn")),
            principal_type=_str_or_none(identity.get("type")),
            source_ip=_str_or_none(data.get("sourceIPAddress")),
            user_agent=_str_or_none(data.get("userAgent")),
            region=_str_or_none(data.get("awsRegion")),
            account_id=_str_or_none(data.get("recipientAccountId"))
            or _str_or_none(identity.get("accountId")),
            error_code=_str_or_none(data.get("errorCode")),
            request_parameters={
                key: bounded(params[key]) for key in _PARAMETERS_OF_INTEREST if key in params
            },
        )


@dataclass(frozen=True, slots=True)
class Alert:
    """One detection. `kind` says which rule type raised it."""

    id: str
    rule_id: str
    rule_title: str
    level: str
    tags: tuple[str, ...]
    kind: str
    text: str
    event_time: str
    detected_at: str
    group_key: dict[str, Any] | None
    event_ids: tuple[str, ...]
    events: tuple[EventSummary, ...]
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rule": {
                "id": self.rule_id,
                "title": self.rule_title,
                "level": self.level,
                "tags": list(self.tags),
            },
            "kind": self.kind,
            "text": self.text,
            "event_time": self.event_time,
            "detected_at": self.detected_at,
            "group_key": self.group_key,
            "event_ids": list(self.event_ids),
            "events": [_summary_dict(summary) for summary in self.events],
            "details": self.details,
        }

    def to_json(self) -> bytes:
        document = self.to_dict()
        try:
            return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:  # a value no builder bounded: never lose the alert
            return orjson.dumps(bounded(document, _WHOLE), option=orjson.OPT_SORT_KEYS)


def alert_id(rule_id: str, group_key: Mapping[str, Any] | None, event_ids: Iterable[str]) -> str:
    """A stable id: same rule, same group, same triggering events, same id."""
    material = orjson.dumps(
        [rule_id, dict(group_key) if group_key else None, sorted(event_ids)],
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(material).hexdigest()[:32]


def event_key(record: Record) -> str:
    """The id used for a record in alert ids: its eventID, or a hash of its content."""
    if record.event_id:
        return record.event_id
    try:
        content = orjson.dumps(record.data, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (254 levels)
        content = orjson.dumps(bounded(record.data, _WHOLE), option=orjson.OPT_SORT_KEYS)
    return "sha256:" + hashlib.sha256(content).hexdigest()[:32]


@lru_cache(maxsize=1 << 16)
def format_time(epoch_seconds: float) -> str:
    """Cached: a correlation alert lists up to 50 events, mostly the same as its last one's.

    Decode refuses event times outside the calendar; a time computed from one (a window's end)
    can still leave it, and is written as the calendar's first or last instant.
    """
    try:
        return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except (ValueError, OverflowError, OSError):
        if epoch_seconds < 0 or math.isnan(epoch_seconds):
            return "0001-01-01T00:00:00.000000Z"
        return "9999-12-31T23:59:59.999999Z"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _summary_dict(summary: EventSummary) -> dict[str, Any]:
    return {name: getattr(summary, name) for name in EventSummary.__slots__}


def _str_or_none(value: object) -> str | None:
    return bounded_text(value) if isinstance(value, str) else None
