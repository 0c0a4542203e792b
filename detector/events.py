"""Bytes -> CloudTrail records. Never raises on bad input: errors are values with reasons.

This is the hot path of every worker, so it parses with orjson, validates with plain type checks
(no regexes, no copies) and normalises the parsed dicts in place.

Accepted payloads, and the `Decoded.format` each gives:

- ``record``: one CloudTrail record (a JSON object with eventName/eventSource/eventTime).
- ``log_file``: a CloudTrail log file, ``{"Records": [...]}``.
- ``array``: a JSON array of records.
- ``jsonl``: JSON lines, one record per line. The whole payload is parsed first; it is read line
  by line only when that fails and the lines are a better fit: orjson found content after a
  complete first value and at least one line parses alone, or at least two lines parse alone.
  So a single pretty-printed record is never split. One bad line rejects that line only.
- ``eventbridge``: the EventBridge envelope (``"detail-type": "AWS API Call via CloudTrail"``,
  record in ``detail``). Items of a log file or array, and JSON lines, may be such envelopes too.

Any of these may be gzip-compressed (magic bytes 1f 8b); the format then names the content.
When the payload fails as a whole, the format is the best known: ``gzip`` when the payload was
gzip (whatever failed after), ``log_file``/``eventbridge`` when the envelope was recognised but
unusable, else ``unknown``. Collections keep every good record: a bad one becomes an error with
its ``index`` (0-based position among the items, or among the non-blank lines for JSON lines,
where ``line`` is also the 1-based line of the payload).

Reasons (`REASONS`), stable tokens meant for metric labels:

- ``empty``: the payload (or what the gzip held) is empty or whitespace.
- ``too_large``: the payload is over `Limits.max_message_bytes` (for gzip, the compressed size).
- ``bad_gzip``: the gzip stream is truncated, corrupt or followed by junk.
- ``decompressed_too_large``: the gzip content exceeds `Limits.max_decompressed_bytes`.
- ``invalid_json``: not JSON, including bytes that are not UTF-8; ``line``/``column`` say where.
- ``unknown_envelope``: a JSON object that is neither a record, a log file nor a CloudTrail
  EventBridge envelope (an EventBridge envelope of another detail-type included).
- ``not_object``: a record (or the top-level JSON value) that is not a JSON object.
- ``missing_field``: eventName, eventSource or eventTime is absent or empty.
- ``wrong_type``: a known field has the wrong JSON type (the message names field and type).
- ``bad_event_time``: eventTime is not ``YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)``.

Invalid IP addresses in sourceIPAddress are not errors: real feeds carry them, and AWS puts
service names there; rules decide what they mean.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final

import orjson

REASONS: Final = (
    "empty",
    "too_large",
    "bad_gzip",
    "decompressed_too_large",
    "invalid_json",
    "unknown_envelope",
    "not_object",
    "missing_field",
    "wrong_type",
    "bad_event_time",
)
FORMATS: Final = ("record", "log_file", "array", "jsonl", "eventbridge", "gzip", "unknown")
EVENTBRIDGE_DETAIL_TYPE: Final = "AWS API Call via CloudTrail"

_MIB: Final = 1024 * 1024
_GZIP_MAGIC: Final = b"\x1f\x8b"
_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS  # gzip header and trailer required
_DIGITS: Final = "0123456789"
_TRAILING_CONTENT: Final = "unexpected content after document"  # orjson's message
_REQUIRED: Final = ("eventName", "eventSource", "eventTime")
_OPTIONAL_FIELDS: Final = (  # checked only when present; the hot path checks them unrolled
    ("userIdentity", (dict,), "an object"),
    ("sourceIPAddress", (str,), "a string"),
    ("eventID", (str,), "a string"),
    ("awsRegion", (str,), "a string"),
    ("userAgent", (str,), "a string"),
    ("requestParameters", (dict, type(None)), "an object or null"),
    ("responseElements", (dict, type(None)), "an object or null"),
)
_OBJECT_OR_NULL: Final = frozenset((dict, type(None)))
_EMPTY_OBJECT: Final[dict[str, Any]] = {}
_MISSING: Final = object()
_JSON_TYPES: Final[dict[type, str]] = {
    dict: "object",
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}
_MIN_EPOCH: Final = -62135596800.0  # 0001-01-01T00:00:00Z
_MAX_EPOCH: Final = 253402300800.0  # 10000-01-01T00:00:00Z
_fromisoformat = datetime.fromisoformat
_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


@dataclass(frozen=True, slots=True)
class Limits:
    """Size caps that keep one hostile message from exhausting a worker's memory."""

    max_message_bytes: int = 16 * _MIB
    max_decompressed_bytes: int = 256 * _MIB


DEFAULT_LIMITS: Final = Limits()


@dataclass(frozen=True, slots=True)
class Record:
    """One CloudTrail record, normalised. `data` is the record as decoded (eventSource stripped)."""

    data: dict[str, Any]
    event_source: str
    event_name: str
    event_time: float  # epoch seconds, UTC
    event_id: str | None


@dataclass(frozen=True, slots=True)
class DecodeError:
    """Why (part of) a payload could not be read. `reason` is a short stable token for metrics."""

    reason: str
    message: str
    index: int | None = None  # position of the record inside its envelope, when one was bad
    line: int | None = None
    column: int | None = None


@dataclass(slots=True)
class Decoded:
    """What one payload held: records that could be read and errors for the rest."""

    format: str
    records: list[Record] = field(default_factory=list)
    errors: list[DecodeError] = field(default_factory=list)


def decode(payload: bytes, limits: Limits = DEFAULT_LIMITS) -> Decoded:
    """Read every CloudTrail record a message holds; whatever cannot be read becomes an error."""
    is_gzip = payload[:2] == _GZIP_MAGIC
    if len(payload) > limits.max_message_bytes:
        return _failed(
            "gzip" if is_gzip else "unknown",
            "too_large",
            f"payload is {len(payload)} bytes, over the limit of {limits.max_message_bytes}",
        )
    if is_gzip:
        inflated = gunzip(payload, limits.max_decompressed_bytes)
        if isinstance(inflated, DecodeError):
            return Decoded("gzip", errors=[inflated])
        payload = inflated
    whole_format = "gzip" if is_gzip else "unknown"
    if not payload or payload.isspace():
        return _failed(whole_format, "empty", "payload is empty")
    try:
        value = _loads(payload)
    except _JSONDecodeError as exc:
        lines = _json_lines(payload, exc.msg.startswith(_TRAILING_CONTENT))
        if lines is not None:
            return lines
        return Decoded(whole_format, errors=[_json_error(exc, payload)])
    return _from_value(value, whole_format)


def decode_record(obj: object, index: int | None = None) -> Record | DecodeError:
    """Validate and normalise one parsed CloudTrail record, mutating it in place (no copy)."""
    if type(obj) is not dict:
        return DecodeError("not_object", f"record is {_json_type(obj)}, expected an object", index)
    get = obj.get
    name = get("eventName")
    source = get("eventSource")
    when = get("eventTime")
    if type(name) is not str or type(source) is not str or type(when) is not str:
        return _required_field_error(obj, index)
    # strip() returns the very same object when there is nothing to strip (the common case)
    stripped = name.strip()
    if stripped is not name:
        obj["eventName"] = name = stripped
    stripped = source.strip()
    if stripped is not source:
        obj["eventSource"] = source = stripped
    if not name or not source or not when:
        empty = "eventName" if not name else "eventSource" if not source else "eventTime"
        return DecodeError("missing_field", f"{empty} is empty", index)
    if (
        type(get("userIdentity", _EMPTY_OBJECT)) is not dict
        or type(get("sourceIPAddress", "")) is not str
        or type(get("eventID", "")) is not str
        or type(get("awsRegion", "")) is not str
        or type(get("userAgent", "")) is not str
        or type(get("requestParameters")) not in _OBJECT_OR_NULL
        or type(get("responseElements")) not in _OBJECT_OR_NULL
    ):
        return _optional_field_error(obj, index)
    epoch = parse_event_time(when)
    if epoch is None:
        return DecodeError(
            "bad_event_time",
            f"eventTime {_short(when)} is not YYYY-MM-DDTHH:MM:SS[.fraction] with Z or +HH:MM",
            index,
        )
    return Record(obj, source, name, epoch, get("eventID"))


def parse_event_time(value: str) -> float | None:
    """Epoch seconds of an ISO 8601 UTC-or-offset timestamp in CloudTrail's shape, else None.

    Checks the shape first because `datetime.fromisoformat` also takes dates alone, naive times,
    week dates and other forms no CloudTrail writer produces.
    """
    if (
        len(value) < 20
        or value[4] != "-"
        or value[7] != "-"
        or value[10] != "T"
        or value[13] != ":"
        or value[16] != ":"
        or ((len(value) != 20 or value[19] != "Z") and not _valid_time_tail(value[19:]))
    ):
        return None
    try:
        epoch = _fromisoformat(value).timestamp()
    except (ValueError, OverflowError):
        return None
    # An offset can push the UTC time out of datetime's range (year 0 or 10000): refuse it here
    # rather than fail later when an alert renders the time.
    return epoch if _MIN_EPOCH <= epoch < _MAX_EPOCH else None


def _valid_time_tail(tail: str) -> bool:
    """Whether what follows the seconds is an optional .fraction then Z or a +HH:MM offset."""
    if tail[:1] == ".":
        zone = tail[1:].lstrip(_DIGITS)
        if len(zone) == len(tail) - 1:
            return False
    else:
        zone = tail
    if zone == "Z":
        return True
    return (
        len(zone) == 6
        and zone[0] in "+-"
        and zone[3] == ":"
        and not (zone[1:3] + zone[4:6]).lstrip(_DIGITS)
    )


def _from_value(value: object, whole_format: str) -> Decoded:
    """Dispatch one parsed top-level JSON value on its shape."""
    if type(value) is list:
        return _from_items("array", value)
    if type(value) is not dict:
        return _failed(whole_format, "not_object", f"payload is {_json_type(value)}, not an object")
    if "Records" in value:
        items = value["Records"]
        if type(items) is not list:
            return Decoded("log_file", errors=[_wrong_type("Records", "an array", items, None)])
        return _from_items("log_file", items)
    if "detail-type" in value:
        detail = _eventbridge_detail(value, None)
        if isinstance(detail, DecodeError):
            return Decoded("eventbridge", errors=[detail])
        return _single("eventbridge", decode_record(detail))
    if "eventName" in value or "eventSource" in value or "eventTime" in value:
        return _single("record", decode_record(value))
    keys = ", ".join(sorted(map(str, value))[:10])[:120]
    return _failed(
        whole_format,
        "unknown_envelope",
        "object is not a CloudTrail record (no eventName/eventSource/eventTime), log file "
        f"(no Records) or EventBridge envelope (no detail-type); its keys: {keys}",
    )


def _from_items(fmt: str, items: list[Any]) -> Decoded:
    """Decode the items of a log file or array, keeping every good one."""
    decoded = Decoded(fmt)
    add_record = decoded.records.append
    add_error = decoded.errors.append
    for index, item in enumerate(items):
        result = decode_record(item, index)
        if not isinstance(result, Record):
            result = _as_envelope(item, index, result)
        if isinstance(result, Record):
            add_record(result)
        else:
            add_error(result)
    return decoded


def _json_lines(payload: bytes, trailing: bool) -> Decoded | None:
    """Read the payload as JSON lines, or None when its lines do not look like JSON lines."""
    if b"\n" not in payload:
        return None
    decoded = Decoded("jsonl")
    parsed = 0
    index = 0
    for number, line in enumerate(payload.split(b"\n"), 1):
        if not line or line.isspace():
            continue
        try:
            value = _loads(line)
        except _JSONDecodeError as exc:
            decoded.errors.append(_json_error(exc, line, index, number))
        else:
            parsed += 1
            result = decode_record(value, index)
            if not isinstance(result, Record):
                result = _as_envelope(value, index, result)
            if isinstance(result, Record):
                decoded.records.append(result)
            else:
                decoded.errors.append(replace(result, line=number))
        index += 1
    if parsed >= (1 if trailing else 2):
        return decoded
    return None


def _as_envelope(value: object, index: int, error: DecodeError) -> Record | DecodeError:
    """Retry a collection item that failed as a record as an EventBridge envelope around one."""
    if type(value) is not dict or "detail-type" not in value or "eventName" in value:
        return error
    detail = _eventbridge_detail(value, index)
    if isinstance(detail, DecodeError):
        return detail
    return decode_record(detail, index)


def _eventbridge_detail(envelope: dict[str, Any], index: int | None) -> object:
    """The CloudTrail record inside an EventBridge envelope, or why there is none."""
    detail_type = envelope.get("detail-type")
    if detail_type != EVENTBRIDGE_DETAIL_TYPE:
        return DecodeError(
            "unknown_envelope",
            f"EventBridge detail-type {_short(detail_type)} is not {EVENTBRIDGE_DETAIL_TYPE!r}",
            index,
        )
    detail = envelope.get("detail", _MISSING)
    if type(detail) is not dict:
        found = "missing" if detail is _MISSING else _json_type(detail)
        return DecodeError("not_object", f"EventBridge detail is {found}, not an object", index)
    return detail


def _single(fmt: str, result: Record | DecodeError) -> Decoded:
    """A Decoded holding one record or its error."""
    if isinstance(result, Record):
        return Decoded(fmt, records=[result])
    return Decoded(fmt, errors=[result])


def _failed(fmt: str, reason: str, message: str) -> Decoded:
    """A Decoded for a payload that failed as a whole."""
    return Decoded(fmt, errors=[DecodeError(reason, message)])


def gunzip(payload: bytes, cap: int) -> bytes | DecodeError:
    """Inflate every gzip member, stopping as soon as the output would exceed `cap` bytes."""
    chunks: list[bytes] = []
    total = 0
    inflater = zlib.decompressobj(_GZIP_WBITS)
    pending = payload
    try:
        while True:
            chunk = inflater.decompress(pending, cap - total + 1)
            total += len(chunk)
            if total > cap:
                return DecodeError(
                    "decompressed_too_large", f"gzip content is over the limit of {cap} bytes"
                )
            chunks.append(chunk)
            if inflater.eof:
                rest = inflater.unused_data
                if rest[:2] == _GZIP_MAGIC:
                    inflater = zlib.decompressobj(_GZIP_WBITS)
                    pending = rest
                    continue
                if rest.strip(b"\x00"):
                    return DecodeError("bad_gzip", f"{len(rest)} bytes of junk after gzip data")
                return b"".join(chunks)
            pending = inflater.unconsumed_tail
            if not pending:
                return DecodeError("bad_gzip", "gzip data is truncated")
    except zlib.error as exc:
        return DecodeError("bad_gzip", f"gzip data is corrupt: {exc}")


def _json_error(
    exc: orjson.JSONDecodeError, doc: bytes, index: int | None = None, line: int | None = None
) -> DecodeError:
    """An invalid_json error saying where `doc` went wrong; `line` overrides a JSON line's own 1."""
    try:
        doc.decode("utf-8")
    except UnicodeDecodeError as bad:
        line_start = doc.rfind(b"\n", 0, bad.start) + 1
        column = len(doc[line_start : bad.start].decode("utf-8")) + 1
        line = line or doc.count(b"\n", 0, bad.start) + 1
        what = f"not UTF-8: byte 0x{doc[bad.start]:02x}"
    else:
        column = exc.colno
        line = line or exc.lineno
        what = exc.msg
    return DecodeError(
        "invalid_json", f"{what} at line {line} column {column}", index, line, column
    )


def _required_field_error(obj: dict[str, Any], index: int | None) -> DecodeError:
    """The error for the first of eventName/eventSource/eventTime that is absent or no string."""
    for key in _REQUIRED:
        value = obj.get(key, _MISSING)
        if value is _MISSING:
            return DecodeError("missing_field", f"{key} is missing", index)
        if type(value) is not str:
            return _wrong_type(key, "a string", value, index)
    raise AssertionError("called for a record whose required fields are all strings")


def _optional_field_error(obj: dict[str, Any], index: int | None) -> DecodeError:
    """The error for the first optional field present with the wrong type."""
    for key, types, expected in _OPTIONAL_FIELDS:
        value = obj.get(key, _MISSING)
        if value is not _MISSING and type(value) not in types:
            return _wrong_type(key, expected, value, index)
    raise AssertionError("called for a record whose optional fields all have valid types")


def _wrong_type(key: str, expected: str, value: object, index: int | None) -> DecodeError:
    """A wrong_type error naming the field, what it should be and what was found."""
    return DecodeError("wrong_type", f"{key} must be {expected}, found {_json_type(value)}", index)


def _json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for messages."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _short(value: object) -> str:
    """A repr bounded in length, so hostile input cannot bloat error messages."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
