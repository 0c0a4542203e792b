"""`detector replay` produces files into a real topic: per record, per file, gzip, rate."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from kafka_broker import KafkaBroker

from integration.test_worker import SCENARIO, read_topic, replay, scenario_events, unique
from integration.worker_support import REPO

pytestmark = pytest.mark.integration
LOG_FILE = Path(__file__).resolve().parents[1] / "fixtures" / "events" / "kvs-log-file.json.gz"


def test_one_message_per_record_keyed_by_a_field(kafka_broker: KafkaBroker) -> None:
    topic = unique("replay-records")
    kafka_broker.create_topic(topic, partitions=3)
    result = replay(kafka_broker, topic, SCENARIO, options=["--key-field", "userIdentity.arn"])
    events = scenario_events()
    found = read_topic(kafka_broker, topic, lambda f: len(f) >= len(events))
    assert sorted(orjson.loads(m.value)["eventID"] for m in found) == sorted(
        e["eventID"] for e in events)
    assert all(m.key == orjson.loads(m.value)["userIdentity"]["arn"].encode() for m in found)
    by_key = {m.key: {m.partition} for m in found}
    assert all(len(partitions) == 1 for partitions in by_key.values())
    assert f"replayed {len(events)} message(s), {len(events)} record(s)" in result.stderr


def test_batch_sends_each_file_whole_and_gzip_compresses_what_is_not_gzip_yet(
    kafka_broker: KafkaBroker,
) -> None:
    topic = unique("replay-batch")
    kafka_broker.create_topic(topic)
    result = replay(kafka_broker, topic, SCENARIO, LOG_FILE, options=["--batch", "--gzip"])
    found = read_topic(kafka_broker, topic, lambda f: len(f) >= 2)
    assert len(found) == 2
    assert LOG_FILE.read_bytes() in [m.value for m in found]  # a .json.gz is not gzipped again
    contents = sorted(gzip.decompress(m.value) for m in found)
    assert contents == sorted([SCENARIO.read_bytes(), gzip.decompress(LOG_FILE.read_bytes())])
    assert "replayed 2 message(s)" in result.stderr


def test_a_gzip_bomb_is_reported_and_sent_as_is_for_the_dead_letter_topic(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    bomb = tmp_path / "bomb.json.gz"
    bomb.write_bytes(gzip.compress(b"[" + b" " * (4 * 1024 * 1024) + b"]"))
    topic = unique("replay-bomb")
    kafka_broker.create_topic(topic)
    env = {key: value for key, value in os.environ.items() if not key.startswith("DETECTOR_")}
    env["DETECTOR_MAX_DECOMPRESSED_BYTES"] = str(64 * 1024)
    result = subprocess.run(
        [sys.executable, "-m", "detector", "replay", "--topic", topic, "--bootstrap-servers",
         kafka_broker.bootstrap, "--batch", "--gzip", str(bomb)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"{bomb}: gzip content is over the limit of 65536 bytes; sent as is" in result.stderr
    assert "replayed 1 message(s), 0 record(s)" in result.stderr
    [message] = read_topic(kafka_broker, topic, lambda f: len(f) >= 1)
    assert message.value == bomb.read_bytes()


def test_the_rate_limit_holds(kafka_broker: KafkaBroker) -> None:
    topic = unique("replay-rate")
    kafka_broker.create_topic(topic)
    started = time.monotonic()
    replay(kafka_broker, topic, SCENARIO, options=["--rate", "100"])
    elapsed = time.monotonic() - started
    assert elapsed >= (len(scenario_events()) - 1) / 100


def test_sort_sends_the_records_of_all_files_in_event_time_order(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    events = scenario_events()
    shuffled = tmp_path / "shuffled.jsonl"
    shuffled.write_bytes(b"\n".join(orjson.dumps(e) for e in reversed(events[10:])))
    first = tmp_path / "first.json"
    first.write_bytes(orjson.dumps({"Records": events[:10][::-1]}))
    topic = unique("replay-sorted")
    kafka_broker.create_topic(topic)
    replay(kafka_broker, topic, shuffled, first, options=["--sort"])
    found = read_topic(kafka_broker, topic, lambda f: len(f) >= len(events))
    times = [orjson.loads(m.value)["eventTime"] for m in found]
    assert times == sorted(e["eventTime"] for e in events)
