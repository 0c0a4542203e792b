"""Hypothesis strategies for what an attacker or a broken forwarder can put on the input topic:
CloudTrail records with hostile values in every known field, in every envelope decode reads,
gzip-compressed or not, and bytes that are none of these."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import reject
from hypothesis import strategies as st

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
_DEEP = "\x00deep\x00"  # stands for a value nested deeper than orjson writes (254 levels)
_HUGE = "\x00huge\x00"  # stands for a number orjson does not write: 10**30, 1e400

# Text an attacker chooses: controls, bidi overrides, mrkdwn and HTML, format braces, a NUL,
# and long runs (the bounds cut at 4,096 characters).
_NASTY = ["", " ", "\n", "\r\n", "\u202e", "\u200b", "<!channel>", "*bold*", "`x`", "<a>", "&amp;",
          "{eventName}", "{0}", "%s", "İ", "\ufeff", "\x00", "../../",
          "arn:aws:iam::111122223333:root", "203.0.113.0/33", "::1", "999.1.1.1"]
TEXT = st.sampled_from(_NASTY) | st.text(max_size=40) | st.builds(
    lambda piece, count: piece * count, st.text(min_size=1, max_size=3) | st.just("🦆"),
    st.integers(1000, 20_000))
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | TEXT | st.sampled_from([_DEEP, _HUGE]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12)


def _iso(moment: datetime, style: int) -> str:
    return (moment.strftime("%Y-%m-%dT%H:%M:%SZ"), moment.isoformat(),
            moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))[style]


_AROUND_NOW = st.builds(lambda seconds, style: _iso(NOW + timedelta(seconds=seconds), style),
                       st.integers(-20 * 86400, 3600), st.integers(0, 2))
EVENT_TIME = (
    _AROUND_NOW | _AROUND_NOW | _AROUND_NOW  # these can alert
    | st.builds(_iso, st.datetimes(timezones=st.just(UTC)), st.integers(0, 2))  # year 1..9999
    | st.sampled_from(["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "2099-01-01T00:00:00Z",
                       "2026-02-30T00:00:00Z", "2026-03-10T24:00:00Z", "2026-03-10T12:00:00+99:99",
                       "2026-03-10T12:00:00.9999999999999999999Z", "2026-03-10", "now"])
    | TEXT | JSON)
OBJECT = st.dictionaries(TEXT, JSON, max_size=4) | st.just({"a": _DEEP})
# Every field the decoder, the rules and the alert read, as a path into the record.
KNOWN_FIELDS = [
    ("eventName",), ("eventSource",), ("eventTime",), ("eventID",), ("awsRegion",),
    ("sourceIPAddress",), ("userAgent",), ("errorCode",), ("errorMessage",), ("readOnly",),
    ("recipientAccountId",), ("eventType",), ("requestParameters",), ("responseElements",),
    ("additionalEventData",), ("resources",), ("userIdentity",), ("userIdentity", "type"),
    ("userIdentity", "arn"), ("userIdentity", "accountId"), ("userIdentity", "principalId"),
    ("userIdentity", "userName"), ("userIdentity", "sessionContext"),
    ("userIdentity", "sessionContext", "sessionIssuer", "arn"),
    ("userIdentity", "sessionContext", "attributes", "mfaAuthenticated"),
    ("requestParameters", "name"), ("requestParameters", "streamName"),
    ("requestParameters", "bucketName"), ("responseElements", "ConsoleLogin"),
    ("tlsDetails", "clientProvidedHostHeader"),
]
_OBJECTS = {"requestParameters", "responseElements", "additionalEventData", "userIdentity",
            "sessionContext"}


def _set(record: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        inner = record.get(key)
        if not isinstance(inner, dict):
            inner = record[key] = {}
        record = inner
    record[path[-1]] = value


@st.composite
def hostile_records(draw: st.DrawFn, bases: list[dict[str, Any]], *,
                    readable: bool = False) -> dict[str, Any]:
    """A record that alerts as it is (a rule's own test event), with some known fields
    replaced by hostile values of any type, and an eventTime of any kind. `readable`: of
    the right JSON type, and the eventTime near NOW, so that the record reaches the rules."""
    record = orjson.loads(orjson.dumps(bases[draw(st.integers(0, len(bases) - 1))]))
    record["eventTime"] = draw(_AROUND_NOW if readable else EVENT_TIME)
    for path in draw(st.lists(st.sampled_from(KNOWN_FIELDS), max_size=4)):
        if readable and path[0] in {"eventName", "eventSource", "eventTime"}:
            continue
        right = OBJECT if path[-1] in _OBJECTS else TEXT
        _set(record, path, draw(right if readable else st.one_of(right, right, right, JSON)))
    return record


def log_file(records: list[Any], depth: int) -> bytes:
    """A CloudTrail log file of `records`, values marked deep nested `depth` levels."""
    return _json({"Records": records}, depth)


def _json(value: Any, depth: int) -> bytes:
    """orjson's bytes with each _DEEP replaced by an object nested `depth` levels and each
    _HUGE by a number beyond 64 bits."""
    deep = b'{"a":' * depth + b"1" + b"}" * depth
    huge = b"1" + b"0" * (depth % 400) + b"e" + str(depth).encode()
    try:
        written = orjson.dumps(value)
    except TypeError:  # lists of one list nest without adding leaves, past orjson's 254 levels
        reject()
    return written.replace(orjson.dumps(_DEEP), deep).replace(orjson.dumps(_HUGE), huge)


@st.composite
def payloads(draw: st.DrawFn, bases: list[dict[str, Any]]) -> bytes:
    """One input message: records in any envelope decode reads, or any bytes; maybe gzip."""
    hostile = hostile_records(bases)
    records = draw(st.lists(st.one_of(hostile, hostile, hostile, JSON), min_size=1, max_size=4))
    depth = draw(st.sampled_from([1, 30, 253, 300, 1000, 1100]))
    kind = draw(st.sampled_from(["record", "log_file", "array", "jsonl", "eventbridge",
                                 "jsonl_broken", "bytes"]))
    if kind == "record":
        payload = _json(records[0], depth)
    elif kind == "log_file":
        payload = log_file(records, depth)
    elif kind == "array":
        payload = _json(records, depth)
    elif kind == "eventbridge":
        payload = _json({"detail-type": "AWS API Call via CloudTrail", "source": "aws.s3",
                         "detail": records[0]}, depth)
    elif kind == "bytes":
        payload = draw(st.binary(max_size=200))
    else:
        lines = [_json(record, depth) for record in records]
        if kind == "jsonl_broken":
            lines.insert(draw(st.integers(0, len(lines))), draw(st.binary(max_size=30)))
        payload = b"\n".join(lines)
    return gzip.compress(payload, compresslevel=1) if draw(st.booleans()) else payload
