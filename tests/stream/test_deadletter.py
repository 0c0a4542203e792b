"""Dead letters keep the original bytes, key and headers, plus why and where from."""

from __future__ import annotations

import gzip

import orjson

from detector.events import DecodeError, Limits, decode
from detector.stream.deadletter import (
    MAX_INPUT_HEADERS,
    MAX_INPUT_KEY,
    MAX_RECORD_LETTERS,
    DeadLetter,
    Source,
    dead_letter,
    dead_letters,
    max_output_bytes,
)

SOURCE = Source("cloudtrail-events", 3, 42, b"key", [("trace-id", b"abc"), ("reason", b"x")])
GOOD = {"eventSource": "kinesisvideo.amazonaws.com", "eventName": "ListStreams",
        "eventTime": "2024-03-01T10:00:00Z", "eventID": "good-1"}
BAD = {"eventSource": "kinesisvideo.amazonaws.com", "eventName": "ListStreams",
       "eventTime": "yesterday", "eventID": "bad-1"}


def headers(letter_headers: list[tuple[str, bytes]]) -> dict[str, bytes]:
    return dict(letter_headers)


def test_a_dead_letter_carries_reason_message_and_source() -> None:
    letter = dead_letter(SOURCE, b"junk", DecodeError("invalid_json", "unexpected character"),
                         Limits())
    assert letter.value == b"junk"
    assert letter.key == b"key"
    assert letter.reason == "invalid_json"
    assert headers(letter.headers) == {
        "trace-id": b"abc",
        "reason": b"invalid_json",
        "message": b"unexpected character",
        "source-topic": b"cloudtrail-events",
        "source-partition": b"3",
        "source-offset": b"42",
    }


def test_an_input_header_cannot_spoof_ours() -> None:
    letter = dead_letter(SOURCE, b"junk", DecodeError("empty", "payload is empty"), Limits())
    assert [value for name, value in letter.headers if name == "reason"] == [b"empty"]


def test_a_long_message_is_cut() -> None:
    letter = dead_letter(SOURCE, b"", DecodeError("invalid_json", "x" * 5000), Limits())
    assert len(headers(letter.headers)["message"]) == 1000


def test_a_payload_that_fails_as_a_whole_is_forwarded_once_as_is() -> None:
    payload = b"\x00\x01binary junk"
    decoded = decode(payload)
    letters = dead_letters(SOURCE, payload, decoded.errors, len(decoded.records), Limits())
    assert [(letter.value, letter.reason) for letter in letters] == [(payload, "invalid_json")]


def test_bad_records_of_a_log_file_are_forwarded_one_by_one_as_json() -> None:
    payload = orjson.dumps({"Records": [GOOD, BAD, GOOD | {"eventID": "good-2"}, 7]})
    decoded = decode(payload)
    letters = dead_letters(SOURCE, payload, decoded.errors, len(decoded.records), Limits())
    assert [orjson.loads(letter.value) for letter in letters] == [BAD, 7]
    assert [letter.reason for letter in letters] == ["bad_event_time", "not_object"]
    assert [headers(letter.headers)["record-index"] for letter in letters] == [b"1", b"3"]


def test_a_bad_record_nested_deeper_than_orjson_writes_is_forwarded_cut() -> None:
    """orjson reads 1,024 levels and writes 254: the record is cut (`detector.bounded`)."""
    bad = orjson.dumps(dict(BAD, requestParameters="NESTED")).replace(
        b'"NESTED"', b'{"a":' * 400 + b"1" + b"}" * 400)
    payload = b'{"Records": [%s, %s, %s]}' % (orjson.dumps(GOOD), bad, orjson.dumps(GOOD))
    decoded = decode(payload)
    assert len(decoded.records) == 2
    [letter] = dead_letters(SOURCE, payload, decoded.errors, 2, Limits())
    assert letter.reason == "bad_event_time"
    forwarded = orjson.loads(letter.value)
    assert forwarded["eventID"] == "bad-1"
    assert "truncated: nested deeper than" in letter.value.decode()


def test_bad_lines_of_gzipped_json_lines_are_forwarded_as_their_raw_line() -> None:
    lines = [orjson.dumps(GOOD), b"{not json", orjson.dumps(BAD),
             orjson.dumps(GOOD | {"eventID": "good-2"})]
    payload = gzip.compress(b"\n".join(lines))
    decoded = decode(payload)
    assert decoded.format == "jsonl"
    letters = dead_letters(SOURCE, payload, decoded.errors, len(decoded.records), Limits())
    assert [letter.value for letter in letters] == [b"{not json", lines[2]]
    assert [headers(letter.headers)["record-line"] for letter in letters] == [b"2", b"3"]


def test_more_bad_records_than_good_ones_forward_the_message_once_whole() -> None:
    payload = orjson.dumps({"Records": [GOOD, BAD, BAD | {"eventID": "bad-2"}]})
    decoded = decode(payload)
    letters = dead_letters(SOURCE, payload, decoded.errors, len(decoded.records), Limits())
    assert [(letter.value, letter.reason) for letter in letters] == [
        (payload, "too_many_bad_records")]
    message = headers(letters[0].headers)["message"]
    assert message.startswith(b"2 bad records beside 1 good ones; the first, record 1: "
                              b"bad_event_time")


def test_a_flood_of_bad_records_gives_one_dead_letter_however_many_good_ones() -> None:
    records = [GOOD | {"eventID": f"good-{i}"} for i in range(3 * MAX_RECORD_LETTERS)]
    records += [{}] * (MAX_RECORD_LETTERS + 1)
    payload = orjson.dumps({"Records": records})
    decoded = decode(payload)
    letters = dead_letters(SOURCE, payload, decoded.errors, len(decoded.records), Limits())
    assert [(letter.value, letter.reason) for letter in letters] == [
        (payload, "too_many_bad_records")]


def test_up_to_the_limit_bad_records_are_still_forwarded_one_by_one() -> None:
    records = [GOOD | {"eventID": f"good-{i}"} for i in range(3 * MAX_RECORD_LETTERS)]
    records += [{}] * MAX_RECORD_LETTERS
    payload = orjson.dumps({"Records": records})
    decoded = decode(payload)
    letters = dead_letters(SOURCE, payload, decoded.errors, len(decoded.records), Limits())
    assert [letter.value for letter in letters] == [b"{}"] * MAX_RECORD_LETTERS


def test_a_too_large_message_is_cut_to_the_limit_so_its_dead_letter_fits_the_topic() -> None:
    payload = b'{"padding": "' + b"x" * 100 + b'"}'
    decoded = decode(payload, Limits(max_message_bytes=40))
    [letter] = dead_letters(SOURCE, payload, decoded.errors, 0, Limits(max_message_bytes=40))
    assert letter.reason == "too_large"
    assert letter.value == payload[:40]
    assert headers(letter.headers)["truncated-from"] == str(len(payload)).encode()


def size(letter: DeadLetter) -> int:
    return len(letter.key or b"") + len(letter.value) + sum(
        len(name) + len(value) for name, value in letter.headers)


def test_a_dead_letter_fits_whatever_key_headers_and_record_its_input_had() -> None:
    limits = Limits(max_message_bytes=50_000)
    hostile = Source("in", 0, 1, b"k" * 10_000_000,
                     [("h", b"v" * 1000)] * 1000 + [("empty", None)])  # type: ignore[list-item]
    record = orjson.dumps(BAD | {"userAgent": "a" * 5_000_000})  # inflated from gzip: large
    letter = dead_letter(hostile, record, DecodeError("bad_event_time", "é" * 5000), limits)
    assert size(letter) <= max_output_bytes(limits)
    assert letter.key is None
    assert letter.value == record[:50_000]
    assert headers(letter.headers)["truncated-from"] == str(len(record)).encode()
    assert headers(letter.headers)["dropped"] == b"key of 10000000 bytes, 1001 headers"
    assert "h" not in headers(letter.headers)


def test_a_key_and_headers_within_their_bounds_are_kept() -> None:
    within = Source("in", 0, 1, b"k" * MAX_INPUT_KEY,
                    [("h", b"v" * (MAX_INPUT_HEADERS // 2)), ("null", None)])  # type: ignore[list-item]
    letter = dead_letter(within, b"x", DecodeError("empty", "payload is empty"), Limits())
    assert letter.key == within.key
    assert headers(letter.headers)["h"] == within.headers[0][1]
    assert headers(letter.headers)["null"] == b""  # Kafka allows a header without a value
    assert "dropped" not in headers(letter.headers)
