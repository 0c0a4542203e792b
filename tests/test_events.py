"""Specifications of detector.events: given payload bytes, which records and errors come out."""

from __future__ import annotations

import gzip
import math
import re
import tempfile
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import load, rule
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.engine.factory import make_engine
from detector.events import (
    DEFAULT_LIMITS,
    EARLIEST_EVENT_TIME,
    EVENTBRIDGE_DETAIL_TYPE,
    FORMATS,
    REASONS,
    Decoded,
    DecodeError,
    Limits,
    Record,
    decode,
    decode_line,
    decode_record,
    gunzip,
    inflate,
    parse_event_time,
)
from detector.settings.common import RuleSettings

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "events"
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
AWS_DOCS_EXAMPLE = SHARED_DATA / "cloudtrail" / "aws-docs-kvs-example" / "monitoring-cloudtrail.md"
KVS = "kinesisvideo.amazonaws.com"
STREAM_ARN = "arn:aws:kinesisvideo:us-east-1:111122223333:stream/front-door/1588432191234"


def utc(text: str) -> float:
    """Epoch seconds of "YYYY-MM-DD HH:MM:SS[.ffffff]" UTC, by strptime (not the code tested)."""
    layout = "%Y-%m-%d %H:%M:%S.%f" if "." in text else "%Y-%m-%d %H:%M:%S"
    return datetime.strptime(text, layout).replace(tzinfo=UTC).timestamp()


ABSENT: Any = object()  # marks a field to leave out of `record()`


def record(**fields: Any) -> dict[str, Any]:
    """A minimal valid record, with `fields` overriding or adding (ABSENT ones are left out)."""
    base: dict[str, Any] = {
        "eventVersion": "1.08",
        "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/video-admin"},
        "eventTime": "2024-03-01T10:15:42Z",
        "eventSource": KVS,
        "eventName": "DescribeStream",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.23",
        "userAgent": "aws-cli/2.15.30",
        "requestParameters": {"streamName": "front-door"},
        "responseElements": None,
        "eventID": "9b2c6f0e-1d3a-4b5c-8e7f-0a1b2c3d4e5f",
    }
    base.update(fields)
    return {key: value for key, value in base.items() if value is not ABSENT}


dumps = orjson.dumps


def only_error(decoded: Decoded) -> DecodeError:
    """The one error of a payload that gave no record."""
    assert decoded.records == []
    assert len(decoded.errors) == 1, decoded.errors
    return decoded.errors[0]


# --- formats -------------------------------------------------------------------------------


def test_a_single_record_is_format_record_with_epoch_time_and_event_id() -> None:
    decoded = decode(dumps(record()))

    assert decoded.format == "record"
    assert decoded.errors == []
    [rec] = decoded.records
    assert rec.event_source == KVS
    assert rec.event_name == "DescribeStream"
    assert rec.event_time == utc("2024-03-01 10:15:42")
    assert rec.event_id == "9b2c6f0e-1d3a-4b5c-8e7f-0a1b2c3d4e5f"
    assert rec.data["requestParameters"] == {"streamName": "front-door"}


def test_a_record_without_event_id_has_none() -> None:
    [rec] = decode(dumps(record(eventID=ABSENT))).records
    assert rec.event_id is None


def test_cloudtrail_log_file_fixture_gives_every_record_in_order() -> None:
    decoded = decode((FIXTURES / "kvs-log-file.json").read_bytes())

    assert decoded.format == "log_file"
    assert decoded.errors == []
    assert [r.event_name for r in decoded.records] == [
        "CreateStream",
        "GetDataEndpoint",
        "UpdateDataRetention",
        "DeleteStream",
    ]
    assert {r.event_source for r in decoded.records} == {KVS}
    assert [r.event_time for r in decoded.records] == [
        utc("2024-03-01 10:15:42"),
        utc("2024-03-01 10:16:05.318"),
        utc("2024-03-01 11:02:17"),
        utc("2024-03-01 11:04:51"),
    ]
    create, endpoint, retention, delete = decoded.records
    assert create.data["responseElements"]["streamARN"] == STREAM_ARN
    assert endpoint.data["eventSource"] == KVS  # " kinesisvideo..." in the file
    assert endpoint.data["requestParameters"]["aPIName"] == "PUT_MEDIA"
    assert retention.data["requestParameters"]["operation"] == "DECREASE_DATA_RETENTION"
    assert retention.data["requestParameters"]["dataRetentionChangeInHours"] == 167
    assert delete.event_id == "5f6e7d8c-9b0a-4c1d-8e2f-3a4b5c6d7e8f"


def test_gzip_log_file_fixture_decodes_like_the_plain_one() -> None:
    compressed = (FIXTURES / "kvs-log-file.json.gz").read_bytes()
    assert compressed[:2] == b"\x1f\x8b"

    decoded = decode(compressed)
    plain = decode((FIXTURES / "kvs-log-file.json").read_bytes())

    assert decoded.format == "log_file"
    assert decoded.errors == []
    assert decoded.records == plain.records


def test_json_lines_fixture_gives_one_record_per_line() -> None:
    decoded = decode((FIXTURES / "kvs-stream.jsonl").read_bytes())

    assert decoded.format == "jsonl"
    assert decoded.errors == []
    assert [r.event_name for r in decoded.records] == [
        "CreateStream",
        "GetDataEndpoint",
        "ListStreams",
        "UpdateDataRetention",
        "DeleteStream",
    ]
    endpoint = decoded.records[1]
    assert endpoint.event_source == KVS  # "kinesisvideo.amazonaws.com " in the file
    assert endpoint.event_time == utc("2024-03-02 08:03:44.107")
    assert decoded.records[3].event_time == utc("2024-03-02 08:06:30.5")
    # AWS services put their own name where an IP address would be: not a decode error.
    assert decoded.records[0].data["sourceIPAddress"] == "lambda.amazonaws.com"


def test_eventbridge_fixture_gives_the_cloudtrail_record_in_detail() -> None:
    decoded = decode((FIXTURES / "kvs-eventbridge.json").read_bytes())

    assert decoded.format == "eventbridge"
    assert decoded.errors == []
    [rec] = decoded.records
    assert rec.event_name == "DeleteStream"
    assert rec.data["requestParameters"]["streamARN"] == STREAM_ARN
    assert "detail-type" not in rec.data
    assert rec.event_time == utc("2024-03-01 11:04:51")


def test_array_fixture_gives_every_record() -> None:
    decoded = decode((FIXTURES / "kvs-array.json").read_bytes())

    assert decoded.format == "array"
    assert decoded.errors == []
    assert [r.data["requestParameters"]["aPIName"] for r in decoded.records] == [
        "PUT_MEDIA",
        "GET_HLS_STREAMING_SESSION_URL",
    ]
    assert decoded.records[1].event_time == utc("2024-03-01 10:20:33")  # "+00:00"


def test_a_pretty_printed_record_is_one_record_not_json_lines() -> None:
    decoded = decode(orjson.dumps(record(), option=orjson.OPT_INDENT_2))

    assert decoded.format == "record"
    assert len(decoded.records) == 1
    assert decoded.errors == []


def test_gzip_may_hold_json_lines_too() -> None:
    decoded = decode(gzip.compress((FIXTURES / "kvs-stream.jsonl").read_bytes()))

    assert decoded.format == "jsonl"
    assert len(decoded.records) == 5


def test_gzip_with_several_members_and_zero_padding_gives_all_content() -> None:
    lines = (FIXTURES / "kvs-stream.jsonl").read_bytes().splitlines(keepends=True)
    payload = gzip.compress(b"".join(lines[:2])) + gzip.compress(b"".join(lines[2:]))

    assert len(decode(payload).records) == 5
    assert len(decode(payload + b"\x00" * 512).records) == 5


def test_json_lines_items_may_be_eventbridge_envelopes() -> None:
    envelope = {"detail-type": EVENTBRIDGE_DETAIL_TYPE, "detail": record(eventName="TagStream")}
    payload = dumps(envelope) + b"\n" + dumps(record())

    decoded = decode(payload)

    assert decoded.format == "jsonl"
    assert [r.event_name for r in decoded.records] == ["TagStream", "DescribeStream"]


def test_array_items_may_be_eventbridge_envelopes() -> None:
    envelope = {"detail-type": EVENTBRIDGE_DETAIL_TYPE, "detail": record(eventName="UntagStream")}
    other = {"detail-type": "Scheduled Event", "detail": {}}

    decoded = decode(dumps([record(), envelope, other]))

    assert decoded.format == "array"
    assert [r.event_name for r in decoded.records] == ["DescribeStream", "UntagStream"]
    assert [(e.reason, e.index) for e in decoded.errors] == [("unknown_envelope", 2)]


# --- bad records inside collections ---------------------------------------------------------


def test_one_bad_record_in_a_log_file_rejects_that_record_only() -> None:
    payload = dumps({"Records": [record(), record(eventTime="yesterday"), 7, record()]})

    decoded = decode(payload)

    assert decoded.format == "log_file"
    assert len(decoded.records) == 2
    assert [(e.reason, e.index) for e in decoded.errors] == [
        ("bad_event_time", 1),
        ("not_object", 2),
    ]
    assert all(e.line is None for e in decoded.errors)


def test_one_bad_record_in_an_array_rejects_that_record_only() -> None:
    decoded = decode(dumps([record(eventName=""), record()]))

    assert decoded.format == "array"
    assert len(decoded.records) == 1
    assert [(e.reason, e.index) for e in decoded.errors] == [("missing_field", 0)]


def test_one_bad_json_line_rejects_that_line_with_its_payload_line_number() -> None:
    good = dumps(record())
    payload = b"\n".join([good, b"", b'{"eventName": "DeleteStream", oops}', good, b"  ", b"[1]"])

    decoded = decode(payload)

    assert decoded.format == "jsonl"
    assert len(decoded.records) == 2
    bad_json, not_object = decoded.errors
    assert (bad_json.reason, bad_json.index, bad_json.line, bad_json.column) == (
        "invalid_json",
        1,  # second non-blank line
        3,  # third line of the payload
        31,
    )
    assert "line 3 column 31" in bad_json.message
    assert (not_object.reason, not_object.index, not_object.line) == ("not_object", 3, 6)


def test_json_lines_whose_first_line_is_bad_still_give_the_other_lines() -> None:
    good = dumps(record())
    payload = b"\n".join([b'{"eventName": "CreateStream",', good, good])

    decoded = decode(payload)

    assert decoded.format == "jsonl"
    assert len(decoded.records) == 2
    assert [(e.reason, e.line) for e in decoded.errors] == [("invalid_json", 1)]


def test_a_broken_first_line_costs_that_line_only_even_with_a_single_good_line() -> None:
    stop_logging = dumps(record(eventSource="cloudtrail.amazonaws.com", eventName="StopLogging"))
    payload = b'{"eventName": broken\n' + stop_logging + b"\n"

    decoded = decode(payload)

    assert decoded.format == "jsonl"
    assert [r.event_name for r in decoded.records] == ["StopLogging"]
    assert [(e.reason, e.line) for e in decoded.errors] == [("invalid_json", 1)]


def test_two_json_lines_with_a_bad_second_line_keep_the_first() -> None:
    payload = dumps(record()) + b"\n" + b'{"eventName": "DeleteStream"'

    decoded = decode(payload)

    assert decoded.format == "jsonl"
    assert len(decoded.records) == 1
    assert [(e.reason, e.index, e.line) for e in decoded.errors] == [("invalid_json", 1, 2)]


def test_a_broken_pretty_printed_record_is_one_invalid_json_error_not_json_lines() -> None:
    payload = (
        b"{\n"
        b'  "eventName": "CreateStream"\n'  # missing comma
        b'  "requestParameters":\n'
        b'{"streamName": "front-door"}\n'  # the one line that would parse alone
        b"}\n"
    )

    decoded = decode(payload)

    assert decoded.format == "unknown"
    error = only_error(decoded)
    assert (error.reason, error.line, error.column) == ("invalid_json", 3, 3)


def test_json_lines_record_errors_carry_the_line_number() -> None:
    payload = b"\n".join([dumps(record()), dumps(record(eventSource=ABSENT))])

    [error] = decode(payload).errors

    assert (error.reason, error.index, error.line) == ("missing_field", 1, 2)
    assert "eventSource" in error.message


def test_junk_after_a_record_on_the_same_line_is_invalid_json() -> None:
    error = only_error(decode(dumps(record()) + b" trailing"))

    assert (error.reason, error.line, error.column) == ("invalid_json", 1, len(dumps(record())) + 2)


# --- every reason ---------------------------------------------------------------------------

REASON_EXAMPLES: dict[str, tuple[bytes, Limits]] = {
    "empty": (b" \n\t ", DEFAULT_LIMITS),
    "too_large": (b"[1, 2, 3]", Limits(max_message_bytes=8)),
    "bad_gzip": (gzip.compress(dumps(record()))[:-10], DEFAULT_LIMITS),
    "decompressed_too_large": (gzip.compress(b"[1, 2, 3]"), Limits(max_decompressed_bytes=8)),
    "invalid_json": (b'{"eventName": }', DEFAULT_LIMITS),
    "unknown_envelope": (b'{"hello": "world"}', DEFAULT_LIMITS),
    "not_object": (b'"a string"', DEFAULT_LIMITS),
    "missing_field": (dumps(record(eventTime=ABSENT)), DEFAULT_LIMITS),
    "wrong_type": (dumps(record(userIdentity="alice")), DEFAULT_LIMITS),
    "bad_event_time": (dumps(record(eventTime="2018-05-25:17:06Z")), DEFAULT_LIMITS),
    "event_time_out_of_range": (dumps(record(eventTime="9999-12-31T23:59:59Z")), DEFAULT_LIMITS),
    "too_many_records": (dumps({"Records": [record(), record()]}), Limits(max_records=1)),
}


def test_reasons_are_exactly_the_documented_tokens() -> None:
    assert set(REASON_EXAMPLES) == set(REASONS)
    assert len(set(REASONS)) == len(REASONS)


@pytest.mark.parametrize("reason", REASONS)
def test_every_reason_has_a_payload_that_produces_it(reason: str) -> None:
    decoded = decode(*REASON_EXAMPLES[reason])

    assert [e.reason for e in decoded.errors] == [reason]
    assert decoded.format in FORMATS


@pytest.mark.parametrize("payload", [b"", b"   ", b"\r\n\t \n"])
def test_empty_or_blank_payload_is_empty(payload: bytes) -> None:
    error = only_error(decode(payload))
    assert error.reason == "empty"
    assert decode(payload).format == "unknown"


def test_empty_gzip_content_is_empty_with_format_gzip() -> None:
    decoded = decode(gzip.compress(b"\n"))
    assert (decoded.format, only_error(decoded).reason) == ("gzip", "empty")


def test_size_limit_is_checked_on_the_raw_payload_before_parsing() -> None:
    payload = dumps(record())
    limits = Limits(max_message_bytes=len(payload))

    assert len(decode(payload, limits).records) == 1
    error = only_error(decode(payload + b" ", limits))
    assert error.reason == "too_large"
    assert str(len(payload) + 1) in error.message


def test_gzip_compressed_size_counts_against_the_message_limit() -> None:
    compressed = gzip.compress(dumps({"Records": [record()] * 50}))
    limits = Limits(max_message_bytes=len(compressed) - 1)

    decoded = decode(compressed, limits)

    assert (decoded.format, only_error(decoded).reason) == ("gzip", "too_large")


def test_gzip_content_over_the_decompressed_limit_is_rejected() -> None:
    content = dumps({"Records": [record()] * 50})
    compressed = gzip.compress(content)

    assert len(decode(compressed, Limits(max_decompressed_bytes=len(content))).records) == 50
    decoded = decode(compressed, Limits(max_decompressed_bytes=len(content) - 1))
    assert (decoded.format, only_error(decoded).reason) == ("gzip", "decompressed_too_large")


def test_gzip_bomb_is_stopped_at_the_cap() -> None:
    bomb = gzip.compress(b"\n" * (32 * 1024 * 1024))  # 32 MiB of newlines in ~32 KiB
    assert len(bomb) < 50_000

    decoded = decode(bomb, Limits(max_decompressed_bytes=1024 * 1024))

    assert only_error(decoded).reason == "decompressed_too_large"


@pytest.mark.parametrize(
    ("payload", "what"),
    [
        (gzip.compress(dumps(record()))[:-10], "truncated"),
        (gzip.compress(dumps(record()))[:5], "truncated"),
        (b"\x1f\x8b" + b"\x00" * 40, "corrupt"),
        (b"\x1f\x8b\x08\x00" + bytes(range(200)), "corrupt"),
        (gzip.compress(dumps(record())) + b"junk", "junk"),
    ],
)
def test_truncated_or_corrupt_gzip_is_bad_gzip(payload: bytes, what: str) -> None:
    decoded = decode(payload)

    assert decoded.format == "gzip"
    error = only_error(decoded)
    assert error.reason == "bad_gzip"
    assert what in error.message


def test_invalid_json_inside_gzip_keeps_format_gzip() -> None:
    decoded = decode(gzip.compress(b'{"Records": [}'))
    assert (decoded.format, only_error(decoded).reason) == ("gzip", "invalid_json")


def test_invalid_json_reports_line_and_column() -> None:
    payload = b'{\n  "eventName": "CreateStream",\n  "eventSource": kinesisvideo\n}'

    decoded = decode(payload)

    assert decoded.format == "unknown"
    error = only_error(decoded)
    assert (error.reason, error.line, error.column) == ("invalid_json", 3, 18)
    assert "line 3 column 18" in error.message


def test_bytes_that_are_not_utf8_are_invalid_json_located_at_the_bad_byte() -> None:
    payload = b'{"eventName":\n  "Cr\xe9ateStream"}'

    error = only_error(decode(payload))

    assert (error.reason, error.line, error.column) == ("invalid_json", 2, 6)
    assert "UTF-8" in error.message
    assert "0xe9" in error.message


def test_binary_junk_is_invalid_json() -> None:
    assert only_error(decode(bytes(range(256)))).reason == "invalid_json"


def test_an_object_that_is_no_known_shape_is_unknown_envelope_naming_its_keys() -> None:
    decoded = decode(b'{"message": "hello", "level": "info"}')

    assert decoded.format == "unknown"
    error = only_error(decoded)
    assert error.reason == "unknown_envelope"
    assert "level, message" in error.message


def test_an_eventbridge_envelope_of_another_detail_type_is_unknown_envelope() -> None:
    envelope = {"detail-type": "EC2 Instance State-change Notification", "detail": {"a": 1}}

    decoded = decode(dumps(envelope))

    assert decoded.format == "eventbridge"
    error = only_error(decoded)
    assert error.reason == "unknown_envelope"
    assert "EC2 Instance State-change Notification" in error.message


@pytest.mark.parametrize("detail", [ABSENT, None, [1], "text"])
def test_an_eventbridge_envelope_without_an_object_detail_is_not_object(detail: object) -> None:
    envelope: dict[str, object] = {"detail-type": EVENTBRIDGE_DETAIL_TYPE}
    if detail is not ABSENT:
        envelope["detail"] = detail

    error = only_error(decode(dumps(envelope)))

    assert error.reason == "not_object"
    assert "detail" in error.message


@pytest.mark.parametrize("value", [b"42", b"null", b"true", b'"x"', b"1.5"])
def test_a_top_level_json_scalar_is_not_object(value: bytes) -> None:
    decoded = decode(value)
    assert (decoded.format, only_error(decoded).reason) == ("unknown", "not_object")


def test_records_that_is_not_an_array_is_wrong_type() -> None:
    decoded = decode(b'{"Records": {"eventName": "x"}}')

    assert decoded.format == "log_file"
    error = only_error(decoded)
    assert error.reason == "wrong_type"
    assert "Records" in error.message
    assert "object" in error.message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("eventName", ABSENT),
        ("eventName", ""),
        ("eventName", " \t"),
        ("eventSource", ABSENT),
        ("eventSource", ""),
        ("eventSource", "  "),
        ("eventTime", ABSENT),
        ("eventTime", ""),
    ],
)
def test_a_missing_or_empty_required_field_is_missing_field_naming_it(
    name: str, value: object
) -> None:
    error = only_error(decode(dumps(record(**{name: value}))))

    assert error.reason == "missing_field"
    assert name in error.message


@pytest.mark.parametrize(
    ("name", "value", "found"),
    [
        ("eventName", 12, "number"),
        ("eventSource", ["kinesisvideo.amazonaws.com"], "array"),
        ("eventTime", 1527207391, "number"),
        ("eventName", None, "null"),
        ("userIdentity", "arn:aws:iam::111122223333:user/video-admin", "string"),
        ("userIdentity", None, "null"),
        ("sourceIPAddress", 3232235777, "number"),
        ("eventID", {"id": "x"}, "object"),
        ("awsRegion", True, "boolean"),
        ("userAgent", None, "null"),
        ("requestParameters", "streamName=front-door", "string"),
        ("responseElements", [], "array"),
    ],
)
def test_a_field_of_the_wrong_type_is_wrong_type_naming_field_and_type(
    name: str, value: object, found: str
) -> None:
    error = only_error(decode(dumps(record(**{name: value}))))

    assert error.reason == "wrong_type"
    assert name in error.message
    assert f"found {found}" in error.message


@pytest.mark.parametrize("name", ["requestParameters", "responseElements"])
def test_request_parameters_and_response_elements_may_be_null_or_absent(name: str) -> None:
    assert len(decode(dumps(record(**{name: None}))).records) == 1
    assert len(decode(dumps(record(**{name: ABSENT}))).records) == 1


@pytest.mark.parametrize(
    "name", ["userIdentity", "sourceIPAddress", "eventID", "awsRegion", "userAgent"]
)
def test_optional_fields_may_be_absent(name: str) -> None:
    assert len(decode(dumps(record(**{name: ABSENT}))).records) == 1


@pytest.mark.parametrize(
    "address", ["253.252.51.07", "kinesisvideo.amazonaws.com", "AWS Internal", "::1", ""]
)
def test_any_source_ip_string_is_accepted_and_left_to_rules(address: str) -> None:
    [rec] = decode(dumps(record(sourceIPAddress=address))).records
    assert rec.data["sourceIPAddress"] == address


# --- normalisation --------------------------------------------------------------------------


def test_whitespace_around_event_source_and_name_is_stripped_in_data_and_record() -> None:
    [rec] = decode(
        dumps(record(eventSource=" kinesisvideo.amazonaws.com\t", eventName=" X "))
    ).records

    assert (rec.event_source, rec.event_name) == (KVS, "X")
    assert (rec.data["eventSource"], rec.data["eventName"]) == (KVS, "X")


def test_decode_record_normalises_the_given_dict_in_place() -> None:
    obj = record(eventSource=" kinesisvideo.amazonaws.com")

    rec = decode_record(obj, index=3)

    assert isinstance(rec, Record)
    assert rec.data is obj
    assert obj["eventSource"] == KVS


def test_decode_record_reports_the_index_it_was_given() -> None:
    error = decode_record(["not", "a", "record"], index=7)

    assert isinstance(error, DecodeError)
    assert (error.reason, error.index) == ("not_object", 7)
    assert "array" in error.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2018-05-25T00:16:31Z", utc("2018-05-25 00:16:31")),
        ("2018-05-25T00:16:31.5Z", utc("2018-05-25 00:16:31.5")),
        ("2018-05-25T00:16:31.123456Z", utc("2018-05-25 00:16:31.123456")),
        ("2018-05-25T00:16:31+00:00", utc("2018-05-25 00:16:31")),
        ("2018-05-25T00:16:31.250+00:00", utc("2018-05-25 00:16:31.25")),
        ("2018-05-25T02:16:31+02:00", utc("2018-05-25 00:16:31")),
        ("2018-05-24T22:16:31-02:00", utc("2018-05-25 00:16:31")),
        # longer than the times parse_event_time caches: parsed each time, the same way
        ("2018-05-25T00:16:31.250000000000000000000000000+00:00", utc("2018-05-25 00:16:31.25")),
    ],
)
def test_event_time_forms_that_are_accepted(text: str, expected: float) -> None:
    assert parse_event_time(text) == expected
    [rec] = decode(dumps(record(eventTime=text))).records
    assert rec.event_time == expected


@pytest.mark.parametrize(
    "text",
    [
        "2018-05-25:17:06Z",  # the AWS docs example; fromisoformat would read 17:06
        "2018-05-25T00:16:31",  # no zone: ambiguous
        "2018-05-25 00:16:31Z",
        "2018-05-25",
        "2018-05-25T00:16Z",
        "2018-05-25T00:16:31.Z",
        "2018-05-25T00:16:31,5Z",
        "2018-05-25T00:16:31z",
        "2018-05-25T00:16:31+0000",
        "2018-05-25T00:16:31+00",
        "20180525T001631Z",
        "2018-W21-5T00:16:31Z",
        "2018-02-30T00:16:31Z",
        "2018-05-25T24:00:00Z",
        "2018-05-25T00:16:31Z ",
        "\uff12018-05-25T00:16:31Z"  # fullwidth digit,
        "1527207391",
        "   ",  # eventTime is not stripped: blank is a bad time, not a missing one
    ],
)
def test_event_time_forms_that_are_bad_event_time(text: str) -> None:
    assert parse_event_time(text) is None
    error = only_error(decode(dumps(record(eventTime=text))))
    assert error.reason == "bad_event_time"
    assert text[:20].strip() in error.message


STRICT_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})", re.ASCII
)


@given(st.from_regex(STRICT_TIME, fullmatch=True) | st.text(max_size=40))
@settings(max_examples=400)
def test_event_time_is_accepted_only_in_the_strict_shape(text: str) -> None:
    if STRICT_TIME.fullmatch(text) is None:
        assert parse_event_time(text) is None
        return
    try:
        reference: float | None = datetime.fromisoformat(text).timestamp()
    except (ValueError, OverflowError):
        reference = None
    assert parse_event_time(text) == reference


# --- the AWS documentation example ----------------------------------------------------------


def aws_docs_example() -> bytes:
    """The `{"Records": [...]}` code block of the AWS KVS CloudTrail page, as published."""
    if not AWS_DOCS_EXAMPLE.is_file():
        pytest.skip(f"shared data absent: {AWS_DOCS_EXAMPLE}")
    text = AWS_DOCS_EXAMPLE.read_text(encoding="utf-8")
    start = text.index('```\n{\n    "Records"') + len("```\n")
    end = text.index("\n```", start)
    return text[start:end].encode()


def repair_aws_docs_example(published: bytes) -> bytes:
    """Fix only the JSON syntax defects of the published example, nothing else."""
    fixes = [
        # missing opening quote of responseElements.streamARN's value
        (b'"streamARN":arn:aws:kinesisvideo:', b'"streamARN":"arn:aws:kinesisvideo:'),
        # stray quote alone on the line after "LIST_FRAGMENTS"
        (b'"aPIName": "LIST_FRAGMENTS"\n"\n', b'"aPIName": "LIST_FRAGMENTS"\n'),
        # missing comma and opening quote between two members, and one closing brace too many
        (
            b'"MyVideoStream" comparisonOperator":"BEGINS_WITH"}}',
            b'"MyVideoStream", "comparisonOperator":"BEGINS_WITH"}',
        ),
    ]
    for defect, repair in fixes:
        assert published.count(defect) == 1, defect
        published = published.replace(defect, repair)
    return published


def test_aws_docs_example_as_published_is_invalid_json_at_the_missing_quote() -> None:
    published = aws_docs_example()

    decoded = decode(published)

    error = only_error(decoded)
    assert (error.reason, error.line, error.column) == ("invalid_json", 27, 15)
    bad_line = published.decode().splitlines()[27 - 1]
    assert bad_line[15 - 1 :].startswith("arn:aws:kinesisvideo:")  # its opening quote is missing
    assert bad_line[: 15 - 1].endswith('"streamARN":')


def test_aws_docs_example_repaired_gives_four_records_and_one_bad_event_time() -> None:
    decoded = decode(repair_aws_docs_example(aws_docs_example()))

    assert decoded.format == "log_file"
    assert [r.event_name for r in decoded.records] == [
        "CreateStream",
        "DescribeStream",
        "GetDataEndpoint",
        "ListStreams",
    ]
    assert [(e.reason, e.index) for e in decoded.errors] == [("bad_event_time", 1)]
    assert "2018-05-25:17:06Z" in decoded.errors[0].message
    assert {r.event_source for r in decoded.records} == {KVS}
    assert {r.data["eventSource"] for r in decoded.records} == {KVS}
    assert decoded.records[0].event_time == utc("2018-05-25 00:16:31")
    assert decoded.records[2].data["requestParameters"]["aPIName"] == "LIST_FRAGMENTS"


def test_every_stratus_red_team_record_decodes_including_odd_source_ips() -> None:
    folder = SHARED_DATA / "cloudtrail" / "stratus-red-team"
    files = sorted(folder.glob("*.json"))
    if not files:
        pytest.skip(f"shared data absent: {folder}")

    results = [decode(path.read_bytes()) for path in files]

    assert {d.format for d in results} == {"array"}
    assert [e for d in results for e in d.errors] == []
    records = [r for d in results for r in d.records]
    assert len(records) == 310
    assert "253.252.51.07" in {r.data.get("sourceIPAddress") for r in records}


# --- never raises ---------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)
FIELD_NAMES = st.sampled_from(
    [
        "eventName",
        "eventSource",
        "eventTime",
        "userIdentity",
        "sourceIPAddress",
        "eventID",
        "awsRegion",
        "userAgent",
        "requestParameters",
        "responseElements",
        "Records",
        "detail-type",
        "detail",
    ]
)
FIELD_VALUES = JSON_VALUES | st.sampled_from(
    ["2018-05-25T00:16:31Z", " kinesisvideo.amazonaws.com", EVENTBRIDGE_DETAIL_TYPE]
)
RECORD_LIKE = st.dictionaries(FIELD_NAMES, FIELD_VALUES, max_size=13)


def assert_well_formed(decoded: Decoded) -> None:
    """What every Decoded must be, whatever the input."""
    assert isinstance(decoded, Decoded)
    assert decoded.format in FORMATS
    assert all(isinstance(r, Record) for r in decoded.records)
    assert all(e.reason in REASONS for e in decoded.errors)


@given(st.binary(max_size=2000))
@settings(max_examples=500)
def test_arbitrary_bytes_never_raise(payload: bytes) -> None:
    assert_well_formed(decode(payload))


@given(st.binary(max_size=500))
@settings(max_examples=200)
def test_arbitrary_bytes_behind_gzip_magic_or_inside_gzip_never_raise(payload: bytes) -> None:
    assert_well_formed(decode(b"\x1f\x8b" + payload))
    assert_well_formed(decode(gzip.compress(payload)))
    assert_well_formed(decode(zlib.compress(payload)))


@given(JSON_VALUES | RECORD_LIKE)
@settings(max_examples=500)
def test_arbitrary_json_values_never_raise(value: object) -> None:
    assert_well_formed(decode(orjson.dumps(value)))


@given(st.lists(RECORD_LIKE | JSON_VALUES, min_size=2, max_size=8))
@settings(max_examples=300)
def test_every_collection_item_is_either_a_record_or_an_error(items: list[object]) -> None:
    for fmt, payload in (
        ("log_file", orjson.dumps({"Records": items})),
        ("array", orjson.dumps(items)),
        ("jsonl", b"\n".join(orjson.dumps(item) for item in items)),
    ):
        decoded = decode(payload)
        assert_well_formed(decoded)
        assert decoded.format == fmt
        assert len(decoded.records) + len(decoded.errors) == len(items)
        assert sorted(e.index for e in decoded.errors if e.index is not None) == sorted(
            {e.index for e in decoded.errors if e.index is not None}
        )


def test_limits_default_to_8_mib_messages_and_contents_20000_records_2_minutes_skew() -> None:
    assert Limits(8 * 1024 * 1024, 8 * 1024 * 1024, 20_000, 120.0) == DEFAULT_LIMITS
    with pytest.raises(AttributeError):
        DEFAULT_LIMITS.max_message_bytes = 1  # type: ignore[misc]


def test_event_times_that_leave_the_calendar_in_utc_are_refused() -> None:
    from detector.events import decode_record as _decode_record

    for when in ("9999-12-31T23:00:00-14:00", "0001-01-01T00:00:00+14:00"):
        result = _decode_record({"eventSource": "s3.amazonaws.com", "eventName": "GetObject",
                                 "eventTime": when})
        assert isinstance(result, DecodeError) and result.reason == "bad_event_time", when


# --- event time bounds ----------------------------------------------------------------------

NOW = utc("2026-03-10 12:00:00")


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


SKEW = DEFAULT_LIMITS.max_clock_skew


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59Z", "2099-01-01T00:00:00Z",
                                  iso(NOW + SKEW + 1), "2013-10-31T23:59:59Z",
                                  "1970-01-01T00:00:00Z"])
def test_an_event_time_before_cloudtrail_or_beyond_the_clock_skew_is_out_of_range(
    when: str,
) -> None:
    error = only_error(decode(dumps(record(eventTime=when)), DEFAULT_LIMITS, now=NOW))

    assert error.reason == "event_time_out_of_range"
    assert when in error.message


@pytest.mark.parametrize("when", [iso(NOW + SKEW), "2013-11-01T00:00:00Z",
                                  "2014-05-01T00:00:00Z"])
def test_an_event_time_within_cloudtrail_s_life_and_the_clock_skew_is_accepted(when: str) -> None:
    [rec] = decode(dumps(record(eventTime=when)), DEFAULT_LIMITS, now=NOW).records

    assert rec.event_time == parse_event_time(when)


def test_the_clock_skew_is_a_limit() -> None:
    payload = dumps(record(eventTime="2026-03-10T12:01:00Z"))

    assert only_error(decode(payload, Limits(max_clock_skew=30.0), now=NOW)).reason == (
        "event_time_out_of_range")
    assert len(decode(payload, Limits(max_clock_skew=60.0), now=NOW).records) == 1


def late_after_two_forged(real_delay: float) -> int:
    """Records late in an engine with the default lateness fed in arrival order, as the worker
    reads: two records forged at the wall clock plus the default skew (decode accepts them),
    then a real one `real_delay` seconds old, as CloudTrail delivers it."""
    forged = [record(eventTime=iso(NOW + SKEW), eventID=f"forged-{n}") for n in (1, 2)]
    real = record(eventTime=iso(NOW - real_delay), eventID="real")
    payload = b"\n".join(dumps(item) for item in [*forged, real])
    decoded = decode(payload, DEFAULT_LIMITS, now=NOW)
    assert len(decoded.records) == 3
    first_seen = rule("sel:\n  eventSource: kinesisvideo.amazonaws.com\ncondition: sel", extra=(
        "detector:\n  first_seen:\n    key: userIdentity.arn\n    value: sourceIPAddress\n"))
    with tempfile.TemporaryDirectory() as directory:
        ruleset = load(Path(directory), first_seen).ruleset
    engine = make_engine(ruleset, lateness=LATENESS)
    for item in decoded.records:
        engine.process(item)
    return engine.stats()["late"]


LATENESS = RuleSettings.model_fields["allowed_lateness"].default


def test_two_records_forged_at_the_clock_skew_do_not_make_an_on_time_record_late() -> None:
    """CloudTrail delivers in about five minutes: such a record still counts under attack."""
    assert late_after_two_forged(real_delay=5 * 60) == 0


def test_forged_records_leave_real_ones_the_lateness_minus_the_skew() -> None:
    margin = LATENESS - SKEW
    assert margin >= 10 * 60  # of the 15 minutes CloudTrail's delivery may take
    assert late_after_two_forged(real_delay=margin) == 0
    assert late_after_two_forged(real_delay=margin + 1) == 1


def test_an_out_of_range_record_in_a_log_file_costs_that_record_only() -> None:
    payload = dumps({"Records": [record(), record(eventTime="2099-01-01T00:00:00Z"), record()]})

    decoded = decode(payload, DEFAULT_LIMITS, now=NOW)

    assert len(decoded.records) == 2
    assert [(e.reason, e.index) for e in decoded.errors] == [("event_time_out_of_range", 1)]


def test_decode_record_checks_against_the_wall_clock_by_default() -> None:
    assert isinstance(decode_record(record(eventTime="2099-01-01T00:00:00Z")), DecodeError)
    assert isinstance(decode_record(record()), Record)
    assert decode_record(record(), latest=EARLIEST_EVENT_TIME) == decode_record(
        record(eventTime="2024-03-01T10:15:42Z"), latest=EARLIEST_EVENT_TIME)


# --- records per message --------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["log_file", "array", "jsonl"])
def test_more_items_than_max_records_fail_the_message_before_any_is_read(shape: str) -> None:
    items = [record(eventID=f"e-{n}") for n in range(4)]
    payload = {
        "log_file": dumps({"Records": items}),
        "array": dumps(items),
        "jsonl": b"\n".join(dumps(item) for item in items),
    }[shape]

    decoded = decode(payload, Limits(max_records=3))

    assert decoded.format == shape
    error = only_error(decoded)
    assert error.reason == "too_many_records"
    assert "4 items" in error.message and "3 records" in error.message
    assert len(decode(payload, Limits(max_records=4)).records) == 4


def test_blank_json_lines_do_not_count_as_records() -> None:
    payload = b"\n\n\n".join(dumps(record(eventID=f"e-{n}")) for n in range(3))

    assert len(decode(payload, Limits(max_records=3)).records) == 3


def test_a_gzip_of_a_million_tiny_records_is_refused_without_reading_them() -> None:
    tiny = b'{"eventName":"a","eventSource":"b","eventTime":"2026-01-01T00:00:00Z"}\n'
    payload = gzip.compress(tiny * 1_000_000, compresslevel=9)
    assert len(payload) < 1024 * 1024

    error = only_error(decode(payload))

    assert error.reason == "decompressed_too_large"


# --- event ids ------------------------------------------------------------------------------


def test_a_huge_event_id_is_shortened_with_a_hash_in_record_and_data() -> None:
    first, second = "a" * 100_000 + "1", "a" * 100_000 + "2"

    one = decode_record(record(eventID=first))
    two = decode_record(record(eventID=second))

    assert isinstance(one, Record) and isinstance(two, Record)
    assert one.event_id is not None and len(one.event_id) < 250
    assert one.event_id.startswith("a" * 128) and "truncated: 100001 characters" in one.event_id
    assert one.event_id != two.event_id
    assert one.data["eventID"] == one.event_id
    assert decode_record(record(eventID=first)) == one  # deterministic


# --- lines and streamed gzip ----------------------------------------------------------------


def test_decode_line_reads_one_line_with_its_position() -> None:
    assert decode_line(b"  ", 0, 1, math.inf) is None
    good = decode_line(dumps(record()), 4, 9, math.inf)
    assert isinstance(good, Record)
    bad = decode_line(b"{oops", 4, 9, math.inf)
    assert isinstance(bad, DecodeError)
    assert (bad.reason, bad.index, bad.line) == ("invalid_json", 4, 9)
    late = decode_line(dumps(record()), 0, 2, EARLIEST_EVENT_TIME)
    assert isinstance(late, DecodeError)
    assert (late.reason, late.line) == ("event_time_out_of_range", 2)


@given(st.binary(min_size=0, max_size=3000), st.integers(1, 200), st.integers(1, 3),
       st.sampled_from([b"", b"\x00\x00", b"junk"]))
@settings(max_examples=200)
def test_inflating_in_chunks_gives_what_inflating_whole_gives(
    content: bytes, size: int, members: int, tail: bytes,
) -> None:
    payload = b"".join(gzip.compress(content[n::members]) for n in range(members)) + tail
    chunks = [payload[at:at + size] for at in range(0, len(payload), size)]

    pieces = list(inflate(chunks, piece=max(1, size // 2)))

    whole = gunzip(payload, 10**9)
    if isinstance(whole, DecodeError):
        error = pieces[-1]
        assert isinstance(error, DecodeError) and error.reason == whole.reason == "bad_gzip"
    else:
        assert b"".join(p for p in pieces if isinstance(p, bytes)) == whole
        assert not any(isinstance(p, DecodeError) for p in pieces)
    if tail == b"junk":
        assert isinstance(whole, DecodeError)


def test_inflating_a_truncated_stream_ends_with_bad_gzip() -> None:
    payload = gzip.compress(b"x" * 10_000)[:-5]

    *_, last = inflate([payload[:10], payload[10:]])

    assert isinstance(last, DecodeError) and last.reason == "bad_gzip"


def test_nesting_past_what_orjson_reads_is_invalid_json_for_that_line_only() -> None:
    deep = b'{"a":' * 1100 + b"1" + b"}" * 1100
    payload = dumps(record(eventID="before")) + b"\n" + dumps(record(
        requestParameters={"x": 1})).replace(b'{"x":1}', deep) + b"\n" + dumps(record(
            eventID="after"))

    decoded = decode(payload, DEFAULT_LIMITS, now=utc("2024-03-01 10:20:00"))

    assert [item.event_id for item in decoded.records] == ["before", "after"]
    [error] = decoded.errors
    assert (error.reason, error.line) == ("invalid_json", 2)
    assert "depth" in error.message
