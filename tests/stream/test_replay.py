"""How `detector replay` cuts files into messages (the producing is tested with a broker)."""

from __future__ import annotations

import gzip

import orjson
import pytest

from detector.cli import main
from detector.events import DecodeError, Limits
from detector.stream.replay import Summary, compress, messages, split_records

SMALL = Limits(max_decompressed_bytes=64 * 1024)
BOMB = gzip.compress(b"[" + b" " * (8 * 1024 * 1024) + b"]")  # 8 MiB of blanks, ~8 KiB gzip
A = {"eventName": "ListStreams", "userIdentity": {"arn": "arn:a"}}
B = {"eventName": "DeleteStream", "userIdentity": {"arn": "arn:b"}}


@pytest.mark.parametrize("payload", [
    orjson.dumps({"Records": [A, B]}),
    orjson.dumps([A, B]),
    orjson.dumps(A) + b"\n" + orjson.dumps(B) + b"\n",
    gzip.compress(orjson.dumps({"Records": [A, B]})),
])
def test_every_file_shape_is_cut_into_its_records(payload: bytes) -> None:
    assert list(split_records(payload)) == [A, B]


def test_unreadable_lines_are_kept_as_they_are_for_the_dead_letter_topic() -> None:
    payload = orjson.dumps(A) + b"\n{broken\n" + orjson.dumps(B)
    assert list(split_records(payload)) == [A, b"{broken", B]


def test_records_are_keyed_by_a_dotted_field() -> None:
    sent = list(messages(orjson.dumps([A, B]), batch=False, key_field="userIdentity.arn"))
    assert [(m.key, orjson.loads(m.value)) for m in sent] == [(b"arn:a", A), (b"arn:b", B)]


def test_a_record_nested_deeper_than_orjson_writes_is_sent_cut_not_a_crash() -> None:
    """orjson reads 1,024 levels and writes 254 (`detector.bounded` cuts it)."""
    deep = orjson.dumps(dict(A, requestParameters="NESTED")).replace(
        b'"NESTED"', b'{"a":' * 300 + b"1" + b"}" * 300)
    sent = list(messages(orjson.dumps(B) + b"\n" + deep, batch=False))
    assert [orjson.loads(m.value)["eventName"] for m in sent] == ["DeleteStream", "ListStreams"]
    assert b"truncated: nested deeper than" in sent[1].value


def test_an_eventbridge_envelope_is_keyed_by_its_detail() -> None:
    envelope = {"detail-type": "AWS API Call via CloudTrail", "detail": A}
    [message] = messages(orjson.dumps(envelope), batch=False, key_field="userIdentity.arn")
    assert message.key == b"arn:a"


def test_batch_mode_sends_the_file_as_is() -> None:
    payload = gzip.compress(orjson.dumps({"Records": [A, B]}))
    [message] = messages(payload, batch=True)
    assert (message.key, message.value, message.records) == (None, payload, 2)


def test_the_summary_names_every_count() -> None:
    text = str(Summary(messages=4, records=10, bytes=2048, seconds=2.0))
    assert text == ("replayed 4 message(s), 10 record(s), 2048 byte(s) in 2.00s "
                    "(2 messages/s)")


@pytest.mark.parametrize("option", [["--key-field", "x"], ["--sort"]])
def test_record_options_make_no_sense_with_batch(
    option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", "--topic", "t", "--batch", *option, "file.json"]) == 2
    assert "drop --batch" in capsys.readouterr().err


@pytest.mark.parametrize("batch", [True, False])
def test_gzip_inflating_beyond_the_limit_is_sent_as_is_and_reported(batch: bool) -> None:
    reported: list[DecodeError] = []
    [message] = messages(BOMB, batch=batch, limits=SMALL, on_error=reported.append)
    assert (message.key, message.value, message.records) == (None, BOMB, 0 if batch else 1)
    assert [error.reason for error in reported] == ["decompressed_too_large"]


def test_corrupt_gzip_is_sent_as_is_and_reported() -> None:
    corrupt = gzip.compress(orjson.dumps([A]))[:-12] + b"garbage12345"
    reported: list[DecodeError] = []
    assert list(split_records(corrupt, on_error=reported.append)) == [corrupt]
    assert [error.reason for error in reported] == ["bad_gzip"]


def test_gzip_within_the_limit_is_split_as_usual() -> None:
    payload = gzip.compress(orjson.dumps({"Records": [A, B]}))
    reported: list[DecodeError] = []
    assert list(split_records(payload, SMALL, reported.append)) == [A, B]
    assert reported == []


def test_gzip_compresses_plain_messages() -> None:
    value = orjson.dumps({"Records": [A]})
    compressed = compress(value)
    assert compressed[:2] == b"\x1f\x8b"
    assert gzip.decompress(compressed) == value


def test_gzip_leaves_already_gzipped_messages_alone() -> None:
    log_file = gzip.compress(orjson.dumps({"Records": [A, B]}))  # a CloudTrail .json.gz
    assert compress(log_file) == log_file


def test_the_summary_counts_files_with_unreadable_gzip() -> None:
    text = str(Summary(messages=1, records=0, bytes=10, seconds=1.0, bad_gzip=1))
    assert text.endswith("; 1 file(s) with unreadable gzip sent as they are")
