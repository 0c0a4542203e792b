"""Dead letters: whatever the worker cannot read, kept with its original bytes and the reason.

A message that fails as a whole is forwarded byte for byte with its key and headers. When a
collection (log file, array, JSON lines) holds a few bad records among good ones, each bad
record is forwarded alone, as its JSON (or its raw line), so an operator can fix and replay it
without the good records being processed twice. A collection with more bad records than
`MAX_RECORD_LETTERS`, or more bad than good ones, is forwarded once whole instead
(`too_many_bad_records`): one message of a million bad records must not become a million
dead letters (and as much memory), and is then better fixed as a whole.

Every dead letter fits the dead-letter topic, whatever the input: its value holds at most
`max_message_bytes` of the original (a `too_large` message, or a record inflated from a gzip
message, is cut there; header `truncated-from` gives its size), and its key and headers at
most `HEADROOM` bytes (an input key or input headers too large for that are left out, header
`dropped` names them). So `max_output_bytes` bounds the whole message, and the worker's topics
and producer are sized from it (`detector.stream.topics`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from detector.events import REASONS, DecodeError, Limits, gunzip
from detector.stream.messages import json_bounded

Headers = list[tuple[str, bytes]]
MAX_MESSAGE_HEADER = 1000  # characters of the error message kept in the `message` header
MAX_RECORD_LETTERS = 100  # bad records of one message dead-lettered one by one, at most
HEADROOM = 64 * 1024  # bytes of key and headers a dead letter carries beside its value
MAX_INPUT_KEY = 16 * 1024  # an input key longer than this is left out of its dead letter
MAX_INPUT_HEADERS = 32 * 1024  # and so are input headers longer than this in all
HEADER_OVERHEAD = 10  # bytes a header costs in a Kafka record besides its name and value
TOO_MANY_BAD_RECORDS = "too_many_bad_records"
INTERNAL_ERROR = "internal_error"  # our code raised on the record or message
TOO_LARGE = "too_large"  # also: an alert or forwarded record over `max_output_bytes`
ATTEMPTS_EXHAUSTED = "attempts_exhausted"  # the worker died processing it, too many times
DEAD_LETTER_REASONS = (*REASONS, TOO_MANY_BAD_RECORDS, INTERNAL_ERROR, ATTEMPTS_EXHAUSTED)
OUR_HEADERS = ("reason", "message", "source-topic", "source-partition", "source-offset",
               "record-index", "record-line", "truncated-from", "dropped")


@dataclass(frozen=True, slots=True)
class Source:
    """Where an input message came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: Headers
    timestamp: float | None = None  # Kafka's, in epoch seconds


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message for the dead-letter topic."""

    key: bytes | None
    value: bytes
    headers: Headers
    reason: str


def max_output_bytes(limits: Limits) -> int:
    """The most bytes of key, value and headers of a message the worker produces: a dead
    letter holds up to a whole input message; an alert or a record for the stateful rules
    beyond it is refused (`too_large`) rather than sent."""
    return limits.max_message_bytes + HEADROOM


def dead_letter(source: Source, value: bytes, error: DecodeError, limits: Limits) -> DeadLetter:
    """The dead letter for `value` (the whole message or one record of it), within
    `max_output_bytes`."""
    key, headers, dropped = source.key, _input_headers(source.headers), []
    if key is not None and len(key) > MAX_INPUT_KEY:
        key = None
        dropped.append(f"key of {len(source.key or b'')} bytes")
    if sum(len(name) + len(data) + HEADER_OVERHEAD for name, data in headers) > MAX_INPUT_HEADERS:
        dropped.append(f"{len(headers)} headers")
        headers = []
    headers += [
        ("reason", error.reason.encode()),
        ("message", error.message[:MAX_MESSAGE_HEADER].encode(errors="replace")),
        ("source-topic", source.topic.encode()),
        ("source-partition", str(source.partition).encode()),
        ("source-offset", str(source.offset).encode()),
    ]
    if error.index is not None:
        headers.append(("record-index", str(error.index).encode()))
    if error.line is not None:
        headers.append(("record-line", str(error.line).encode()))
    if len(value) > limits.max_message_bytes:
        headers.append(("truncated-from", str(len(value)).encode()))
        value = value[:limits.max_message_bytes]
    if dropped:
        headers.append(("dropped", ", ".join(dropped).encode()))
    return DeadLetter(key, value, headers, error.reason)


def _input_headers(headers: Headers) -> Headers:
    """The input message's headers to keep (a header of ours is never taken from the input;
    a header without a value, which Kafka allows, is kept empty)."""
    return [(name, data or b"") for name, data in headers if name not in OUR_HEADERS]


def dead_letters(
    source: Source, payload: bytes, errors: Sequence[DecodeError], good_records: int,
    limits: Limits,
) -> list[DeadLetter]:
    """Dead letters for the errors of one decoded payload with `good_records` beside them.

    Errors of the whole payload (no index, or no good record beside them) forward the
    original bytes once, and so do too many bad records (`too_many_bad_records`); a few
    record errors in a mostly good collection forward each record.
    """
    if not errors:
        return []
    if not good_records or any(error.index is None for error in errors):
        return [dead_letter(source, payload, errors[0], limits)]
    if len(errors) > MAX_RECORD_LETTERS or len(errors) > good_records:
        first = errors[0]
        summary = DecodeError(TOO_MANY_BAD_RECORDS, (
            f"{len(errors)} bad records beside {good_records} good ones; the first, record "
            f"{first.index}: {first.reason}: {first.message}"))
        return [dead_letter(source, payload, summary, limits)]
    items = _items(payload, limits)
    return [dead_letter(source, _item_bytes(items, error, payload, limits), error, limits)
            for error in errors]


def _items(payload: bytes, limits: Limits) -> list[object] | list[bytes] | None:
    """The items of a collection payload (parsed records, or raw lines for JSON lines)."""
    if payload[:2] == b"\x1f\x8b":
        inflated = gunzip(payload, limits.max_decompressed_bytes)
        if not isinstance(inflated, bytes):
            return None
        payload = inflated
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return [line for line in payload.split(b"\n") if line and not line.isspace()]
    if isinstance(value, dict):
        value = value.get("Records")
    return value if isinstance(value, list) else None


def _item_bytes(items: list[object] | list[bytes] | None, error: DecodeError,
                payload: bytes, limits: Limits) -> bytes:
    """The bytes of the record an error is about (as JSON, cut to the bounds of
    `detector.bounded` when too deep to write whole); the whole payload when it cannot be
    found."""
    if items is None or error.index is None or not 0 <= error.index < len(items):
        return payload
    item = items[error.index]
    if isinstance(item, bytes):
        return item
    return json_bounded(item, limits.max_message_bytes)
