"""No message stops the worker for good, on the project's own broker: a record our code raises
on, a message that kills the worker, a message over the size limit; and settings or topics
that cannot work stop the worker at start, not at its first message."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.produce import ProduceRequest
from kafka_broker import KafkaBroker

from detector.engine import load_rules
from detector.events import REASONS
from detector.settings.worker import WorkerSettings as Settings
from detector.stream.app import create_app
from detector.stream.groups import plan_groups
from detector.stream.rules import RuleSource
from detector.stream.topics import table_name
from integration.worker_support import (
    DELETE_RULE,
    NEW_IP_RULE,
    REPO,
    RULES,
    SCENARIO,
    WorkerProcess,
    alert_ids,
    produce,
    read_topic,
    replay,
    scan_ids,
    scenario_events,
    unique,
)

pytestmark = pytest.mark.integration

FAULTY = (str(REPO / "tests" / "integration" / "faulty_worker.py"),)
MIB = 1024 * 1024


def deletion(event_id: str) -> dict[str, object]:
    event = next(e for e in scenario_events() if e["eventName"] == "DeleteStream")
    return dict(event, eventID=event_id)


def alerted(broker: KafkaBroker, worker: WorkerProcess, count: int) -> list[list[str]]:
    alerts = read_topic(broker, worker.alerts_topic, lambda found: len(found) >= count)
    return sorted(orjson.loads(message.value)["event_ids"] for message in alerts)


def test_a_record_our_code_raises_on_is_dead_lettered_and_the_others_alert(
    kafka_broker: KafkaBroker, workers: Callable[..., WorkerProcess]
) -> None:
    raising = dict(deletion("raises-alone"), eventName="DetectorTestRaise")
    in_a_file = dict(deletion("raises-in-a-file"), eventName="DetectorTestRaise")
    topic = unique("raise-in")
    kafka_broker.create_topic(topic)
    worker = workers(kafka_broker, group=unique("raise"), input_topic=topic, program=FAULTY)
    worker.wait_ready()
    exported = worker.get("/metrics")[1].decode().splitlines()  # before any message
    assert 'detector_messages_total{outcome="ok"} 0.0' in exported
    assert all(f'detector_decode_errors_total{{reason="{reason}"}} 0.0' in exported
               for reason in REASONS)
    produce(kafka_broker, topic, [
        orjson.dumps(raising),
        orjson.dumps({"Records": [in_a_file, deletion("beside-it")]}),
        orjson.dumps(deletion("after-them")),
    ])

    letters = read_topic(kafka_broker, worker.dead_letter_topic, lambda f: len(f) >= 2)
    assert sorted((m.headers["reason"], orjson.loads(m.value)["eventID"]) for m in letters) == [
        (b"internal_error", "raises-alone"), (b"internal_error", "raises-in-a-file")]
    assert all(m.headers["message"] == b"RuntimeError: a fault injected by the test"
               for m in letters)
    assert alerted(kafka_broker, worker, 2) == [["after-them"], ["beside-it"]]
    worker.wait_idle()  # the offsets moved on
    assert worker.metric("detector_processing_failures_total", reason="internal_error",
                         rule_id="") == 2
    assert worker.metric("detector_dead_letter_messages_total", reason="internal_error") == 2
    assert worker.log.read_text().count("raises-alone") == 1  # logged once
    assert worker.terminate() == 0


def test_a_message_that_kills_the_worker_is_dead_lettered_after_its_attempts(
    kafka_broker: KafkaBroker, workers: Callable[..., WorkerProcess]
) -> None:
    killer = orjson.dumps(dict(deletion("kills"), eventName="DetectorTestKill"))
    topic = unique("kill-in")
    kafka_broker.create_topic(topic)
    worker = workers(kafka_broker, group=unique("killed"), input_topic=topic, program=FAULTY,
                     extra=["--max-attempts", "2"])
    worker.wait_ready()
    produce(kafka_broker, topic, [killer, orjson.dumps(deletion("after-it"))])

    for _attempt in range(2):  # killed on each attempt, restarted like a container in its pod
        assert worker.process is not None
        assert worker.process.wait(90) == -9, worker.tail()
        worker.restart()
    worker.wait_ready(timeout=90)
    [letter] = read_topic(kafka_broker, worker.dead_letter_topic, lambda f: len(f) >= 1)
    assert (letter.value, letter.headers["reason"]) == (killer, b"attempts_exhausted")
    assert letter.headers["source-offset"] == b"0"
    assert alerted(kafka_broker, worker, 1) == [["after-it"]]
    worker.wait_idle()
    assert worker.metric("detector_processing_failures_total", reason="attempts_exhausted",
                         rule_id="") == 1
    assert "died while processing" in worker.log.read_text()
    assert worker.terminate() == 0


def test_records_that_fail_or_kill_on_the_state_side_are_dead_lettered_and_state_goes_on(
    kafka_broker: KafkaBroker, workers: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    early = dict(scenario_events()[0], eventTime="2026-03-02T07:59:00Z")  # before the scenario
    raising, killing = (orjson.dumps(dict(early, eventID=marker))
                        for marker in ("detector-test-raise", "detector-test-kill"))
    topic = unique("state-in")
    kafka_broker.create_topic(topic)
    worker = workers(kafka_broker, group=unique("state"), input_topic=topic, program=FAULTY,
                     extra=["--max-attempts", "2", "--state-partitions", "1",
                            "--allowed-lateness", "1m"])
    worker.wait_ready()
    # the one worker holds the state partitions: its input agent evaluates their records in
    # the input event, so the dead letters name the input message

    produce(kafka_broker, topic, [raising])
    [failed] = read_topic(kafka_broker, worker.dead_letter_topic, lambda f: len(f) >= 1)
    assert failed.headers["reason"] == b"internal_error"
    assert failed.headers["source-topic"].decode() == topic
    assert orjson.loads(failed.value)["record"]["eventID"] == "detector-test-raise"

    produce(kafka_broker, topic, [killing])
    for _attempt in range(2):
        assert worker.process is not None
        assert worker.process.wait(90) == -9, worker.tail()
        worker.restart()
    worker.wait_ready(timeout=90)
    # (the record that raised may be dead-lettered again: killed before its offset was
    # committed, the worker reads it again)
    letters = read_topic(kafka_broker, worker.dead_letter_topic, lambda f: any(
        m.headers["reason"] == b"attempts_exhausted" for m in f))
    [abandoned] = [m for m in letters if m.headers["reason"] == b"attempts_exhausted"]
    assert {m.headers["reason"] for m in letters} == {b"internal_error", b"attempts_exhausted"}
    assert abandoned.headers["source-topic"].decode() == topic
    assert abandoned.value == killing

    expected = scan_ids([SCENARIO], [RULES], tmp_path, "--allowed-lateness", "1m")
    replay(kafka_broker, topic, SCENARIO)
    alerts = read_topic(kafka_broker, worker.alerts_topic, lambda f: alert_ids(f) >= expected)
    assert alert_ids(alerts) == expected  # the first-seen rule learned and alerted after them
    assert worker.terminate() == 0


def test_a_message_over_the_limit_is_dead_lettered_cut_and_the_worker_carries_on(
    kafka_broker: KafkaBroker, workers: Callable[..., WorkerProcess]
) -> None:
    """scripts/kafka's broker keeps 16 MiB segments: a limit of 16 MiB makes dead letters as
    large as them."""
    topic = unique("huge-in")
    kafka_broker.create_topic(topic, config={"max.message.bytes": str(24 * MIB),
                                             "segment.bytes": str(64 * MIB)})
    huge = b'{"padding": "' + b"x" * (20 * 1000 * 1000) + b'"}'
    worker = workers(kafka_broker, group=unique("huge"), input_topic=topic,
                     extra=["--max-message-bytes", str(16 * MIB)])
    worker.wait_ready()
    produce(kafka_broker, topic, [huge, orjson.dumps(deletion("after-it"))],
            max_request_size=24 * MIB)

    [letter] = read_topic(kafka_broker, worker.dead_letter_topic, lambda f: len(f) >= 1,
                          fetch_bytes=24 * MIB)
    assert letter.headers["reason"] == b"too_large"
    assert letter.value == huge[:16 * MIB]
    assert letter.headers["truncated-from"] == str(len(huge)).encode()
    assert alerted(kafka_broker, worker, 1) == [["after-it"]]
    worker.assert_running()
    assert worker.terminate() == 0


def test_a_dead_letter_topic_too_small_for_the_worker_stops_it_at_start(
    kafka_broker: KafkaBroker, workers: Callable[..., WorkerProcess]
) -> None:
    group = unique("small")
    kafka_broker.create_topic(f"{group}-dead-letter")  # the broker's defaults: 1 MiB messages
    worker = workers(kafka_broker, group=group, input_topic=unique("small-in"))
    assert worker.process is not None
    assert worker.process.wait(60) == 2, worker.tail()
    assert f"topic {group}-dead-letter takes messages of at most" in worker.tail()
    assert "max.message.bytes" in worker.tail()


def test_settings_that_cannot_work_stop_the_worker_before_it_creates_anything(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    group = unique("unusable")
    base = [sys.executable, "-m", "detector", "worker", "--bootstrap-servers",
            kafka_broker.bootstrap, "--group-id", group, "--input-topic", f"{group}-in"]
    (tmp_path / "empty").mkdir()
    rules = ["--rules", str(RULES)]
    cases = [
        ([*rules, "--data-dir", str(tmp_path / "missing" / "data")], "does not exist"),
        ([*rules, "--security-protocol", "SSL", "--ssl-ca-file", str(tmp_path)], "cannot load"),
        (["--rules", str(tmp_path / "empty")], f"no rules found under {tmp_path / 'empty'}"),
        (["--rules", str(tmp_path / "missing")], f"no such rules path: {tmp_path / 'missing'}"),
    ]
    for extra, message in cases:
        result = subprocess.run([*base, *extra], cwd=tmp_path, capture_output=True, text=True,
                                timeout=60, check=False)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr
        assert "Traceback" not in result.stderr
    assert [name for name in _topics(kafka_broker) if group in name] == []


def _topics(broker: KafkaBroker) -> list[str]:
    async def listed() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            return list(await admin.list_topics())
        finally:
            await admin.close()

    return asyncio.run(listed())


async def test_what_the_worker_produces_waits_for_every_in_sync_replica(
    kafka_broker: KafkaBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The produce requests of the worker's own producer ask for acks=all (-1). (A broker caps
    min.insync.replicas at the replication factor, so one broker cannot refuse them.)"""
    topic = unique("acks")
    kafka_broker.create_topic(topic)
    acks: list[int] = []
    send = AIOKafkaClient.send

    async def recording(client: AIOKafkaClient, node_id: int, request: Any,
                        **kwargs: Any) -> Any:
        if isinstance(request, ProduceRequest):
            acks.append(request.required_acks)
        return await send(client, node_id, request, **kwargs)

    monkeypatch.setattr(AIOKafkaClient, "send", recording)
    rules = RuleSource([str(RULES)])
    detector = create_app(Settings(bootstrap_servers=(kafka_broker.bootstrap,),
                                   data_dir=str(tmp_path)), rules, rules.load(), environ={})
    producer = detector.app.producer
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, None, b"sent", partition=0, timestamp=None,
                                            headers=None)
    finally:
        await producer.stop()
    assert acks == [-1]
    assert (sent.topic, sent.offset) == (topic, 0)


def test_a_state_entry_growing_past_what_its_changelog_takes_never_stops_the_worker(
    kafka_broker: KafkaBroker, workers: Callable[..., WorkerProcess]
) -> None:
    """The changelog refused such an entry, the worker stopped (exit 75) and its restart met
    the same entry again: a crash loop. The engine now keeps entries under the worker's
    largest message (and the changelog drops one still over it, `state_too_large`)."""
    first = scenario_events()[0]
    # one principal from 300 source "addresses" of 4,000 characters: its first-seen entry
    # (1.2 MB) would pass what a changelog message may have with 1 MB messages (1.06 MB)
    records = [dict(first, eventID=f"wide-{n}", sourceIPAddress=f"{n:04d}" + "x" * 4000)
               for n in range(300)]
    topic = unique("wide-in")
    kafka_broker.create_topic(topic)
    worker = workers(kafka_broker, group=unique("wide"), input_topic=topic,
                     extra=["--state-partitions", "1", "--max-message-bytes", "1000000"])
    worker.wait_ready()
    produce(kafka_broker, topic, [orjson.dumps({"Records": records[n:n + 100]})
                                  for n in range(0, 300, 100)])
    produce(kafka_broker, topic, [orjson.dumps(deletion("after-the-wide-entry"))])
    alerts = read_topic(kafka_broker, worker.alerts_topic, lambda found: any(
        orjson.loads(m.value)["rule"]["id"] == DELETE_RULE for m in found))
    assert ["after-the-wide-entry"] in [orjson.loads(m.value)["event_ids"] for m in alerts]
    worker.wait_idle()
    worker.assert_running()
    groups = plan_groups(load_rules([RULES]).ruleset)
    changelogs = [f"{worker.group}-{table_name(group.name)}-changelog" for group in groups]
    written = [message for name in changelogs
               for message in read_topic(kafka_broker, name, lambda found: False, timeout=3)]
    assert max(len(m.key or b"") + len(m.value or b"") for m in written) > 500_000  # grown
    assert all(len(m.key or b"") + len(m.value or b"") <= 1_000_000 + 64 * 1024
               for m in written)  # and kept under what the changelog takes
    assert worker.metric("detector_processing_failures_total", reason="state_too_large",
                         rule_id=NEW_IP_RULE) == 0
    assert worker.terminate() == 0
