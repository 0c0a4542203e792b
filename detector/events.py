"""Bytes -> CloudTrail records. Never raises on bad input: errors are values with reasons.

This is the hot path of every worker, so it parses with orjson, validates with plain type checks
(no regexes, no copies) and normalises the parsed dicts in place.

Accepted payloads, and the `Decoded.format` each gives:

- ``record``: one CloudTrail record (a JSON object with eventName/eventSource/eventTime).
- ``log_file``: a CloudTrail log file, ``{"Records": [...]}``.
- ``array``: a JSON array of records.
- ``jsonl``: JSON lines, one record per line. The whole payload is parsed first; it is read line
  by line only when that fails and the lines are a better fit: a line is a record on its own,
  orjson found content after a complete first value and at least one line parses alone, or at
  least two lines parse alone. So a single pretty-printed record is never split, and one bad
  line (the first one included) rejects that line only.
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
- ``too_many_records``: a log file, array or JSON lines holds more than `Limits.max_records`
  items (counted before any is read as a record).
- ``invalid_json``: not JSON, including bytes that are not UTF-8; ``line``/``column`` say where.
- ``unknown_envelope``: a JSON object that is neither a record, a log file nor a CloudTrail
  EventBridge envelope (an EventBridge envelope of another detail-type included).
- ``not_object``: a record (or the top-level JSON value) that is not a JSON object.
- ``missing_field``: eventName, eventSource or eventTime is absent or empty.
- ``wrong_type``: a known field has the wrong JSON type (the message names field and type).
- ``bad_event_time``: eventTime is not ``YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)``.
- ``event_time_out_of_range``: eventTime is before CloudTrail existed (`EARLIEST_EVENT_TIME`,
  November 2013) or later than the wall clock plus `Limits.max_clock_skew`. Such a time can only
  come from a broken forwarder or a forged record, and one would move event time (the
  watermark, every window) past the records around it.

Memory: the caps are sized so that a worker stays under half of its 1 GiB pod limit with the
worst message they let through (see `Limits` and docs/BENCHMARKS.md). An eventID longer than
`MAX_EVENT_ID` characters is shortened with a hash (`detector.bounded`), in the record too,
since the engine keeps event ids in its memory and state.
Invalid IP addresses in sourceIPAddress are not errors: real feeds carry them, and AWS puts
service names there; rules decide what they mean.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final

import orjson

from detector.bounded import bounded_text

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
    "event_time_out_of_range",
    "too_many_records",
)
FORMATS: Final = ("record", "log_file", "array", "jsonl", "eventbridge", "gzip", "unknown")
EVENTBRIDGE_DETAIL_TYPE: Final = "AWS API Call via CloudTrail"

_MIB: Final = 1024 * 1024
EARLIEST_EVENT_TIME: Final = 1383264000.0  # 2013-11-01T00:00:00Z: CloudTrail started that month
MAX_EVENT_ID: Final = 128  # characters; CloudTrail's are 36 (a UUID)
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
_CACHED_TIME_LENGTH: Final = 40  # longer eventTimes (never CloudTrail's) are parsed uncached
_MIN_EPOCH: Final = -62135596800.0  # 0001-01-01T00:00:00Z
_MAX_EPOCH: Final = 253402300800.0  # 10000-01-01T00:00:00Z
_fromisoformat = datetime.fromisoformat
_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps that keep one hostile message from exhausting a worker's memory or moving its clock.

    Parsing JSON costs up to about 30 times its size (a log file of empty objects, 3 bytes
    each), so the byte caps bound a message's memory whatever it holds; `max_records` bounds
    the work and output of its records (a 1 MiB gzip can hold 1.5 million tiny ones). With
    these defaults a worker's peak stays under half of its 1 GiB pod limit (measured in
    docs/BENCHMARKS.md, benchmark 10).
    """

    max_message_bytes: int = 8 * _MIB
    max_decompressed_bytes: int = 8 * _MIB
    max_records: int = 20_000  # items of one log file, array or JSON-lines message
    # Seconds an eventTime may lie ahead of the wall clock. AWS stamps eventTime and the worker
    # runs NTP: real skew is seconds. Records up to here move event time, so a forger can
    # make real records late that were delayed more than the allowed lateness minus this
    # (docs/robustness.md#event-time): 2 minutes leaves 13 of the default 15 to CloudTrail's
    # delivery delay (about 5 minutes), where 15 left none.
    max_clock_skew: float = 120.0


DEFAULT_LIMITS: Final = Limits()


@dataclass(slots=True)
class Record:
    """One CloudTrail record, normalised. `data` is the record as decoded (eventSource stripped).

    Immutable as far as mypy sees (Final fields), not frozen at run time: a frozen dataclass
    sets each field through `object.__setattr__`, which made building a record cost a
    quarter of decoding it (docs/BENCHMARKS.md, benchmark 12).
    """

    data: Final[dict[str, Any]]
    event_source: Final[str]
    event_name: Final[str]
    event_time: Final[float]  # epoch seconds, UTC
    event_id: Final[str | None]


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


def decode(payload: bytes, limits: Limits = DEFAULT_LIMITS, now: float | None = None) -> Decoded:
    """Read every CloudTrail record a message holds; whatever cannot be read becomes an error.

    `now`: the wall clock eventTimes are checked against (`time.time()` when not given).
    """
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
    return decode_content(payload, limits, now, "gzip" if is_gzip else "unknown")


def decode_content(
    content: bytes, limits: Limits = DEFAULT_LIMITS, now: float | None = None,
    whole_format: str = "unknown",
) -> Decoded:
    """`decode` of content already inflated and within its size cap (a file read whole);
    `whole_format` is the format given when the content fails as a whole."""
    latest = (time.time() if now is None else now) + limits.max_clock_skew
    if not content or content.isspace():
        return _failed(whole_format, "empty", "payload is empty")
    try:
        value = _loads(content)
    except _JSONDecodeError as exc:
        lines = _json_lines(content, exc.msg.startswith(_TRAILING_CONTENT), limits, latest)
        if lines is not None:
            return lines
        return Decoded(whole_format, errors=[_json_error(exc, content)])
    return _from_value(value, whole_format, limits, latest)


def decode_record(
    obj: object, index: int | None = None, latest: float | None = None
) -> Record | DecodeError:
    """Validate and normalise one parsed CloudTrail record, mutating it in place (no copy).

    `latest`: the last acceptable eventTime (epoch seconds); by default the wall clock plus the
    default `Limits.max_clock_skew`.
    """
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
    event_id = get("eventID")
    if (
        type(get("userIdentity", _EMPTY_OBJECT)) is not dict
        or type(get("sourceIPAddress", "")) is not str
        or type(event_id if event_id is not None else "") is not str
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
    if latest is None:
        latest = time.time() + DEFAULT_LIMITS.max_clock_skew
    if not EARLIEST_EVENT_TIME <= epoch <= latest:
        return _out_of_range(when, epoch, latest, index)
    if event_id is not None and len(event_id) > MAX_EVENT_ID:
        obj["eventID"] = event_id = bounded_text(event_id, MAX_EVENT_ID)
    return Record(obj, source, name, epoch, event_id)


def decode_line(
    line: bytes, index: int, number: int, latest: float
) -> Record | DecodeError | None:
    """One line of JSON lines (None when blank): `index` counts the non-blank lines before it,
    `number` is its 1-based line number. Used for messages and for files read line by line."""
    if not line or line.isspace():
        return None
    try:
        value = _loads(line)
    except _JSONDecodeError as exc:
        return _json_error(exc, line, index, number)
    result = decode_record(value, index, latest)
    if not isinstance(result, Record):
        result = _as_envelope(value, index, result, latest)
        if not isinstance(result, Record):
            return replace(result, line=number)
    return result


def parse_event_time(value: str) -> float | None:
    """Epoch seconds of an ISO 8601 UTC-or-offset timestamp in CloudTrail's shape, else None.

    Checks the shape first because `datetime.fromisoformat` also takes dates alone, naive times,
    week dates and other forms no CloudTrail writer produces.
    """
    if len(value) <= _CACHED_TIME_LENGTH:
        return _cached_event_time(value)
    return _event_time(value)


@lru_cache(maxsize=4096)
def _cached_event_time(value: str) -> float | None:
    """Cached: records of one second share their eventTime, and the cache stays small."""
    return _event_time(value)


def _event_time(value: str) -> float | None:
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


def _out_of_range(when: str, epoch: float, latest: float, index: int | None) -> DecodeError:
    """The event_time_out_of_range error, saying which bound the time is past."""
    if epoch < EARLIEST_EVENT_TIME:
        bound = f"before CloudTrail existed ({_iso(EARLIEST_EVENT_TIME)})"
    else:
        bound = f"ahead of the wall clock by more than the allowed skew (after {_iso(latest)})"
    return DecodeError("event_time_out_of_range", f"eventTime {_short(when)} is {bound}", index)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(min(epoch, _MAX_EPOCH - 1), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _from_value(value: object, whole_format: str, limits: Limits, latest: float) -> Decoded:
    """Dispatch one parsed top-level JSON value on its shape."""
    if type(value) is list:
        return _from_items("array", value, limits, latest)
    if type(value) is not dict:
        return _failed(whole_format, "not_object", f"payload is {_json_type(value)}, not an object")
    if "Records" in value:
        items = value["Records"]
        if type(items) is not list:
            return Decoded("log_file", errors=[_wrong_type("Records", "an array", items, None)])
        return _from_items("log_file", items, limits, latest)
    if "detail-type" in value:
        detail = _eventbridge_detail(value, None)
        if isinstance(detail, DecodeError):
            return Decoded("eventbridge", errors=[detail])
        return _single("eventbridge", decode_record(detail, None, latest))
    if "eventName" in value or "eventSource" in value or "eventTime" in value:
        return _single("record", decode_record(value, None, latest))
    keys = ", ".join(sorted(map(str, value))[:10])[:120]
    return _failed(
        whole_format,
        "unknown_envelope",
        "object is not a CloudTrail record (no eventName/eventSource/eventTime), log file "
        f"(no Records) or EventBridge envelope (no detail-type); its keys: {keys}",
    )


def _from_items(fmt: str, items: list[Any], limits: Limits, latest: float) -> Decoded:
    """Decode the items of a log file or array, keeping every good one."""
    if len(items) > limits.max_records:
        return _failed(fmt, "too_many_records", _too_many(len(items), limits))
    decoded = Decoded(fmt)
    add_record = decoded.records.append
    add_error = decoded.errors.append
    for index, item in enumerate(items):
        result = decode_record(item, index, latest)
        if not isinstance(result, Record):
            result = _as_envelope(item, index, result, latest)
        if isinstance(result, Record):
            add_record(result)
        else:
            add_error(result)
    return decoded


def _json_lines(payload: bytes, trailing: bool, limits: Limits, latest: float) -> Decoded | None:
    """Read the payload as JSON lines, or None when its lines do not look like JSON lines."""
    if b"\n" not in payload:
        return None
    lines = payload.split(b"\n")
    if len(lines) > limits.max_records:
        count = sum(1 for line in lines if line and not line.isspace())
        if count > limits.max_records:
            return _failed("jsonl", "too_many_records", _too_many(count, limits))
    decoded = Decoded("jsonl")
    add_record = decoded.records.append
    add_error = decoded.errors.append
    unparsed = 0
    index = 0
    for number, line in enumerate(lines, 1):
        result = decode_line(line, index, number, latest)
        if result is None:
            continue
        index += 1
        if isinstance(result, Record):
            add_record(result)
        else:
            add_error(result)
            unparsed += result.reason == "invalid_json"
    parsed = index - unparsed
    if decoded.records or parsed >= (1 if trailing else 2):
        return decoded
    return None


def _too_many(count: int, limits: Limits) -> str:
    return f"{count} items, over the limit of {limits.max_records} records per message"


def _as_envelope(
    value: object, index: int | None, error: DecodeError, latest: float
) -> Record | DecodeError:
    """Retry a collection item that failed as a record as an EventBridge envelope around one."""
    if type(value) is not dict or "detail-type" not in value or "eventName" in value:
        return error
    detail = _eventbridge_detail(value, index)
    if isinstance(detail, DecodeError):
        return detail
    return decode_record(detail, index, latest)


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
    for chunk in inflate((payload,), cap + 1):
        if isinstance(chunk, DecodeError):
            return chunk
        total += len(chunk)
        if total > cap:
            return DecodeError(
                "decompressed_too_large", f"gzip content is over the limit of {cap} bytes"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def inflate(compressed: Iterable[bytes], piece: int = _MIB) -> Iterator[bytes | DecodeError]:
    """Inflate every gzip member of a stream of compressed chunks, at most `piece` bytes at a
    time (the caller stops reading to cap the total); ends with a DecodeError when the data is
    corrupt, truncated or followed by junk. Zero padding after the last member is allowed."""
    inflater: Any = zlib.decompressobj(_GZIP_WBITS)
    rest = b""  # after a member's end: the next member's start, padding, or junk
    try:
        for received in compressed:
            data = received
            while data:
                if inflater is None:
                    rest, data = rest + data, b""
                    if rest == b"\x1f":  # perhaps the first byte of the next member
                        break
                    if rest[:2] != _GZIP_MAGIC:
                        if rest.strip(b"\x00"):
                            yield DecodeError("bad_gzip", f"{len(rest)} bytes of junk after "
                                              "gzip data")
                            return
                        rest = b""
                        break
                    inflater, data, rest = zlib.decompressobj(_GZIP_WBITS), rest, b""
                while True:
                    output = inflater.decompress(data, piece)
                    if output:
                        yield output
                    data = inflater.unconsumed_tail
                    if inflater.eof or (not data and len(output) < piece):
                        break
                if inflater.eof:
                    data, inflater = inflater.unused_data, None
    except zlib.error as exc:
        yield DecodeError("bad_gzip", f"gzip data is corrupt: {exc}")
        return
    if inflater is not None:
        yield DecodeError("bad_gzip", "gzip data is truncated")
    elif rest.strip(b"\x00"):
        yield DecodeError("bad_gzip", f"{len(rest)} bytes of junk after gzip data")


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
