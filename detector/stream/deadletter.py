"""Dead letters: whatever the worker cannot read, kept with its original bytes and the reason.

A message that fails as a whole is forwarded byte for byte with its key and headers. When a
collection (log file, array, JSON lines) holds a few bad records among good ones, each bad
record is forwarded alone, as its JSON (or its raw line), so an operator can fix and replay it
without the good records being processed twice. A collection with more bad records than
`MAX_RECORD_LETTERS`, or more bad than good ones, is forwarded once whole instead
(`too_many_bad_records`): one message of a million bad records must not become a million
dead letters (and as much memory), and is then better fixed as a whole.

A dead letter holds at most `max_message_bytes` of the original: the value of a `too_large`
message is cut there (header `truncated-from` gives its size), so every dead letter fits the
dead-letter topic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from detector.events import DecodeError, Limits, gunzip

Headers = list[tuple[str, bytes]]
MAX_MESSAGE_HEADER = 1000  # characters of the error message kept in the `message` header
MAX_RECORD_LETTERS = 100  # bad records of one message dead-lettered one by one, at most
TOO_MANY_BAD_RECORDS = "too_many_bad_records"
OUR_HEADERS = ("reason", "message", "source-topic", "source-partition", "source-offset",
               "record-index", "record-line", "truncated-from")


@dataclass(frozen=True, slots=True)
class Source:
    """Where an input message came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: Headers


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message for the dead-letter topic."""

    key: bytes | None
    value: bytes
    headers: Headers
    reason: str


def dead_letter(source: Source, value: bytes, error: DecodeError) -> DeadLetter:
    """The dead letter for `value` (the whole message or one record of it)."""
    headers = [(name, data) for name, data in source.headers if name not in OUR_HEADERS]
    headers += [
        ("reason", error.reason.encode()),
        ("message", error.message[:MAX_MESSAGE_HEADER].encode()),
        ("source-topic", source.topic.encode()),
        ("source-partition", str(source.partition).encode()),
        ("source-offset", str(source.offset).encode()),
    ]
    if error.index is not None:
        headers.append(("record-index", str(error.index).encode()))
    if error.line is not None:
        headers.append(("record-line", str(error.line).encode()))
    return DeadLetter(source.key, value, headers, error.reason)


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
        return [_whole(source, payload, errors[0], limits)]
    if len(errors) > MAX_RECORD_LETTERS or len(errors) > good_records:
        first = errors[0]
        summary = DecodeError(TOO_MANY_BAD_RECORDS, (
            f"{len(errors)} bad records beside {good_records} good ones; the first, record "
            f"{first.index}: {first.reason}: {first.message}"))
        return [_whole(source, payload, summary, limits)]
    items = _items(payload, limits)
    return [dead_letter(source, _item_bytes(items, error, payload), error) for error in errors]


def _whole(source: Source, payload: bytes, error: DecodeError, limits: Limits) -> DeadLetter:
    """The dead letter of a whole payload, cut to `max_message_bytes`."""
    letter = dead_letter(source, payload[:limits.max_message_bytes], error)
    if len(payload) > limits.max_message_bytes:
        letter.headers.append(("truncated-from", str(len(payload)).encode()))
    return letter


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
                payload: bytes) -> bytes:
    """The bytes of the record an error is about; the whole payload when it cannot be found."""
    if items is None or error.index is None or not 0 <= error.index < len(items):
        return payload
    item = items[error.index]
    if isinstance(item, bytes):
        return item
    return orjson.dumps(item)
