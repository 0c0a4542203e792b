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
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from functools import lru_cache
from operator import attrgetter
from typing import Any, Final

import orjson

from detector.bounded import MAX_STRING, bounded, bounded_text
from detector.events import Record

LEVELS = ("informational", "low", "medium", "high", "critical")
_WHOLE = 1 << 62  # size budget when only depth and string length are to be bounded
_NOTHING: dict[str, Any] = {}

# Request parameters worth carrying in an alert: enough to triage without the raw event.
_PARAMETERS_OF_INTEREST = frozenset((
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
))


def level_rank(level: str) -> int:
    """Order of severity; unknown levels rank lowest so they never pass a minimum filter."""
    return LEVELS.index(level) if level in LEVELS else -1


@dataclass(slots=True)
class EventSummary:
    """The few fields of a triggering event an analyst reads first.

    Immutable as far as mypy sees (Final fields), not frozen at run time: see `Alert`.
    """

    event_id: Final[str | None]
    event_time: Final[str]
    event_source: Final[str]
    event_name: Final[str]
    principal_arn: Final[str | None]
    principal_type: Final[str | None]
    source_ip: Final[str | None]
    user_agent: Final[str | None]
    region: Final[str | None]
    account_id: Final[str | None]
    error_code: Final[str | None]
    request_parameters: Final[dict[str, Any]]

    @classmethod
    def of(cls, record: Record) -> EventSummary:
        return cls(**summary_document(record))

    def to_dict(self) -> dict[str, Any]:
        """The document `summary_document` writes: its fields, named as declared."""
        return dict(zip(_SUMMARY_FIELDS, _summary_values(self), strict=True))


# The summary document's keys are EventSummary's fields, declared once above.
_SUMMARY_FIELDS = tuple(summary_field.name for summary_field in fields(EventSummary))
_summary_values = attrgetter(*_SUMMARY_FIELDS)


@dataclass(slots=True)
class Alert:
    """One detection. `kind` says which rule type raised it.

    Immutable as far as mypy sees (Final fields; `dataclasses.replace` makes a changed copy),
    not frozen at run time: a frozen dataclass sets each field through `object.__setattr__`,
    which made building an alert and its event summary cost as much as matching and writing
    it (docs/BENCHMARKS.md, benchmark 12). Its JSON is written on the first `to_json` and
    kept: the stream writes an alert to its topic and to every sink.
    """

    id: Final[str]
    rule_id: Final[str]
    rule_title: Final[str]
    level: Final[str]
    tags: Final[tuple[str, ...]]
    kind: Final[str]
    text: Final[str]
    event_time: Final[str]
    detected_at: Final[str]
    group_key: Final[dict[str, Any] | None]
    event_ids: Final[tuple[str, ...]]
    events: Final[tuple[EventSummary, ...]]
    details: Final[dict[str, Any]] = field(default_factory=dict)
    _json: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return alert_document(
            identifier=self.id,
            rule=rule_document(self.rule_id, self.rule_title, self.level, self.tags),
            kind=self.kind,
            text=self.text,
            event_time=self.event_time,
            detected_at=self.detected_at,
            group_key=self.group_key,
            event_ids=list(self.event_ids),
            events=[summary.to_dict() for summary in self.events],
            details=self.details,
        )

    def to_json(self) -> bytes:
        written = self._json
        if written is None:
            document = self.to_dict()
            try:
                written = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
            except orjson.JSONEncodeError:  # a value no builder bounded: never lose the alert
                written = orjson.dumps(bounded(document, _WHOLE), option=orjson.OPT_SORT_KEYS)
            self._json = written
        return written


def alert_document(
    *, identifier: str, rule: dict[str, Any] | orjson.Fragment, kind: str, text: str,
    event_time: str, detected_at: str, group_key: dict[str, Any] | None, event_ids: list[str],
    events: list[dict[str, Any]], details: dict[str, Any],
) -> dict[str, Any]:
    """The alert as docs/alert.schema.json describes it: `Alert.to_dict`, and what a writer
    that skips the objects (`MatchJson`) writes. `rule` is `rule_document`'s (or its JSON)."""
    return {
        "id": identifier,
        "rule": rule,
        "kind": kind,
        "text": text,
        "event_time": event_time,
        "detected_at": detected_at,
        "group_key": group_key,
        "event_ids": event_ids,
        "events": events,
        "details": details,
    }


def rule_document(rule_id: str, title: str, level: str, tags: Iterable[str]) -> dict[str, Any]:
    """The rule as an alert names it."""
    return {"id": rule_id, "title": title, "level": level, "tags": list(tags)}


def anomaly_summary(details: Mapping[str, Any]) -> str | None:
    """`details.anomaly` in one line for people (None when the alert has none): what was
    observed against the key's own normal, e.g. `27 events (expected 2, threshold 11, score
    8.33) in the bucket of 2026-03-24T03:00:00Z, slot 03:00-04:00 UTC`. Values come from
    the engine, but are read defensively: a hand-made alert may carry anything."""
    anomaly = details.get("anomaly")
    if not isinstance(anomaly, Mapping):
        return None
    field_name = _scalar(anomaly.get("field")) or "value"
    observed = _scalar(anomaly.get("observed"))
    threshold = _scalar(anomaly.get("threshold"))
    if anomaly.get("method") == "rare":
        history = anomaly.get("history")
        since = _scalar(history.get("start")) if isinstance(history, Mapping) else None
        return (f"{field_name} used {observed} time(s) before (rare below {threshold})"
                + (f" since {since}" if since else ""))
    parts = [f"expected {_scalar(anomaly.get('expected'))}", f"threshold {threshold}"]
    if (score := _scalar(anomaly.get("score"))) is not None:
        parts.append(f"score {score}")
    line = f"{observed} {field_name} ({', '.join(parts)})"
    if (start := _scalar(anomaly.get("bucket_start"))) is not None:
        line += f" in the bucket of {start}"
    if (slot := _scalar(anomaly.get("slot"))) is not None:
        line += f", slot {slot}"
    return line


def _scalar(value: object) -> str | None:
    """A number or string of the evidence as text (None for anything else)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    return value if isinstance(value, str) else f"{value:g}"


def summary_document(record: Record) -> dict[str, Any]:
    """`EventSummary.of(record).to_dict()`, for a writer that builds an alert's JSON without
    its objects (keys in any order: alerts are written with sorted keys)."""
    get = record.data.get
    identity = get("userIdentity")
    if type(identity) is not dict:
        identity = _NOTHING
    account = get("recipientAccountId")
    if type(account) is not str or not account:
        account = identity.get("accountId")
    arn, kind, address, agent, region, account, error = [
        value if type(value) is str and len(value) <= MAX_STRING else _text(value)
        for value in (identity.get("arn"), identity.get("type"), get("sourceIPAddress"),
                      get("userAgent"), get("awsRegion"), account, get("errorCode"))
    ]
    params = get("requestParameters")
    kept: dict[str, Any] = {}
    if type(params) is dict and not _PARAMETERS_OF_INTEREST.isdisjoint(params):
        # in sorted order: the same dict whatever the order of the record's keys
        kept = {key: bounded(params[key])
                for key in sorted(_PARAMETERS_OF_INTEREST.intersection(params))}
    source, name = record.event_source, record.event_name
    return {
        "event_id": record.event_id,
        "event_time": format_time(record.event_time),
        "event_source": source if len(source) <= MAX_STRING else bounded_text(source),
        "event_name": name if len(name) <= MAX_STRING else bounded_text(name),
        "principal_arn": arn,
        "principal_type": kind,
        "source_ip": address,
        "user_agent": agent,
        "region": region,
        "account_id": account,
        "error_code": error,
        "request_parameters": kept,
    }


def alert_id(rule_id: str, group_key: Mapping[str, Any] | None, event_ids: Iterable[str]) -> str:
    """A stable id: same rule, same group, same triggering events, same id."""
    material = orjson.dumps(
        [rule_id, dict(group_key) if group_key else None, sorted(event_ids)],
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(material).hexdigest()[:32]


def match_alert_id(rule_id: str) -> Callable[[str], str]:
    """`alert_id(rule_id, None, [key])` as a function of the event key, the rule's part of
    what is hashed written once: the id of a single-event alert."""
    head = orjson.dumps([rule_id, None, []])[:-3] + b"["  # ["<rule id>",null,[
    sha256, dumps = hashlib.sha256, orjson.dumps

    def of(key: str) -> str:
        return sha256(head + dumps(key) + b"]]").hexdigest()[:32]
    return of


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
    """The wall clock as alerts write it (`detected_at`), to the microsecond."""
    micros = time.time_ns() // 1000
    second, micro = divmod(micros, 1_000_000)
    return f"{_second_text(second)}.{micro:06d}Z"


@lru_cache(maxsize=4)
def _second_text(second: int) -> str:
    """Cached: every alert raised within one second of wall clock shares it."""
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _text(value: object) -> str | None:
    """A string field as an alert carries it, bounded; anything else is None."""
    if isinstance(value, str):
        return value if len(value) <= MAX_STRING else bounded_text(value)
    return None
