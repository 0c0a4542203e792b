"""The stream worker against a real broker: a real `python -m detector worker` subprocess.

The helpers here (WorkerProcess, read_topic, produce) are shared with the scaling and
recovery tests in test_worker_scaling.py.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from kafka_broker import KafkaBroker
from sinks.ocsf_schema import ocsf_errors

from integration.worker_support import (
    DELETE_RULE,
    NEW_IP_RULE,
    REPO,
    RULES,
    SCENARIO,
    WorkerProcess,
    alert_ids,
    by_id,
    produce,
    read_topic,
    replay,
    scan_alerts,
    scenario_events,
    unique,
)

pytestmark = pytest.mark.integration


def test_the_intruder_scenario_raises_exactly_the_expected_alerts(
    kafka_broker: KafkaBroker, workers: Callable[..., WorkerProcess]
) -> None:
    events = scenario_events()
    intruder = [e for e in events if e["sourceIPAddress"] == "203.0.113.66"]
    first_new_ip = min(intruder, key=lambda e: e["eventTime"])
    deletion = next(e for e in events if e["eventName"] == "DeleteStream")
    topic = unique("kvs-in")
    kafka_broker.create_topic(topic, partitions=2)
    worker = workers(kafka_broker, group=unique("scenario"), input_topic=topic,
                     extra=["--allowed-lateness", "1m", "--state-partitions", "2"],
                     env={"DETECTOR_STDOUT_SINK": "true"})
    worker.wait_ready()

    replay(kafka_broker, topic, SCENARIO, options=["--key-field", "userIdentity.arn"])
    alerts = read_topic(kafka_broker, worker.alerts_topic, lambda found: len(found) >= 2,
                        settle=3.0)  # and nothing more comes

    got = sorted((orjson.loads(m.value)["rule"]["id"], tuple(orjson.loads(m.value)["event_ids"]))
                 for m in alerts)
    assert got == sorted([(DELETE_RULE, (deletion["eventID"],)),
                          (NEW_IP_RULE, (first_new_ip["eventID"],))])
    first_seen = next(orjson.loads(m.value) for m in alerts
                      if orjson.loads(m.value)["rule"]["id"] == NEW_IP_RULE)
    assert first_seen["group_key"] == {"userIdentity.arn": first_new_ip["userIdentity"]["arn"]}
    assert all(m.headers["alert-id"].decode() == orjson.loads(m.value)["id"] for m in alerts)
    assert worker.terminate() == 0
    # the internal topics existed before the group formed, so none was left unassigned
    assert "Ignoring missing topic" not in worker.log.read_text()
    # the sinks got the same alerts: the stdout sink prints them as JSON lines
    printed = [orjson.loads(line) for line in worker.stdout.read_bytes().splitlines()]
    assert {alert["id"] for alert in printed} == alert_ids(alerts)


def test_scan_and_stream_give_the_same_alert_ids(
    kafka_broker: KafkaBroker, workers: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    inputs = [SCENARIO, *sorted((REPO / "tests" / "fixtures" / "events").glob("*.json*"))]
    stratus = REPO / ".." / "shared" / "data" / "cloudtrail" / "stratus-red-team"
    if stratus.is_dir():
        inputs += sorted(stratus.glob("*.json"))
    # one record per message, in event-time order, through one input partition: the order
    # scan evaluates in, so the two agree on every stateful decision
    records = [r for path in inputs for r in _records(path)]
    records.sort(key=lambda r: str(r.get("eventTime")))
    ordered = tmp_path / "ordered.jsonl"
    ordered.write_bytes(b"\n".join(orjson.dumps(r) for r in records) + b"\n")
    rules = [RULES, REPO / "rules"]
    expected = scan_alerts([ordered], rules, tmp_path, "--allowed-lateness", "5s")
    assert len(expected) >= 3

    topic = unique("agree-in")
    kafka_broker.create_topic(topic, partitions=1)
    worker = workers(kafka_broker, group=unique("agree"), input_topic=topic, rules=rules,
                     extra=["--allowed-lateness", "5s", "--idle-timeout", "1s",
                            "--state-partitions", "2"])
    worker.wait_ready()
    replay(kafka_broker, topic, ordered)
    alerts = read_topic(kafka_broker, worker.alerts_topic,
                        lambda found: alert_ids(found) >= set(expected), timeout=90)
    assert by_id(orjson.loads(m.value) for m in alerts) == expected


def _records(path: Path) -> list[dict[str, Any]]:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return [orjson.loads(line) for line in raw.splitlines() if line.strip()]
    if isinstance(value, dict) and "Records" in value:
        return list(value["Records"])
    if isinstance(value, dict) and "detail" in value:
        return [value["detail"]]
    return list(value) if isinstance(value, list) else [value]


def test_bad_input_goes_to_the_dead_letter_topic_and_the_worker_carries_on(
    kafka_broker: KafkaBroker, workers: Callable[..., WorkerProcess]
) -> None:
    events = scenario_events()
    deletion = next(e for e in events if e["eventName"] == "DeleteStream")
    bad_time = dict(deletion, eventTime="2026-03-02 10:07", eventID="bad-time")
    log_file = orjson.dumps({"Records": [deletion, bad_time, events[0]]})
    bomb = gzip.compress(b"\0" * 20_000_000)
    oversized = b'{"padding": "' + b"x" * 300_000 + b'"}'
    messages: list[bytes | tuple[bytes | None, bytes]] = [
        orjson.dumps(events[0]),
        b'{"eventName": "DeleteStream", oops',
        (b"junk-key", os.urandom(64) + b"\xff\xfe"),
        bomb,
        oversized,
        orjson.dumps(bad_time),
        log_file,
        orjson.dumps(dict(deletion, eventID="after-the-bad-ones")),
    ]
    topic = unique("bad-in")
    kafka_broker.create_topic(topic, partitions=1)
    worker = workers(kafka_broker, group=unique("bad"), input_topic=topic,
                     extra=["--max-message-bytes", "200000",
                            "--max-decompressed-bytes", "1000000"])
    worker.wait_ready()
    produce(kafka_broker, topic, messages, headers=[("trace-id", b"t-1")])

    letters = read_topic(kafka_broker, worker.dead_letter_topic, lambda f: len(f) >= 6)
    reasons = sorted(m.headers["reason"].decode() for m in letters)
    assert reasons == sorted(["invalid_json", "invalid_json", "decompressed_too_large",
                              "too_large", "bad_event_time", "bad_event_time"])
    by_reason = {m.headers["reason"]: m for m in letters}
    # cut to --max-message-bytes, so that every dead letter fits the dead-letter topic
    assert by_reason[b"too_large"].value == oversized[:200_000]
    assert by_reason[b"too_large"].headers["truncated-from"] == str(len(oversized)).encode()
    assert by_reason[b"decompressed_too_large"].value == bomb
    junk = next(m for m in letters if m.key == b"junk-key")
    assert junk.value == messages[2][1]  # type: ignore[index]
    assert junk.headers["source-topic"] == topic.encode()
    assert junk.headers["source-partition"] == b"0"
    assert junk.headers["source-offset"] == b"2"
    assert junk.headers["trace-id"] == b"t-1"  # the original headers are kept
    from_log_file = [m for m in letters if m.headers.get("record-index") == b"1"]
    assert [orjson.loads(m.value) for m in from_log_file] == [bad_time]

    def deletions(found: list[Any]) -> list[tuple[str, ...]]:
        """(the first-seen rule alerts on the deletion too: a new address, decided at once)"""
        return sorted(tuple(orjson.loads(m.value)["event_ids"]) for m in found
                      if orjson.loads(m.value)["rule"]["id"] == DELETE_RULE)

    alerts = read_topic(kafka_broker, worker.alerts_topic, lambda f: len(deletions(f)) >= 2)
    assert deletions(alerts) == sorted([("after-the-bad-ones",), (deletion["eventID"],)])
    assert worker.get("/healthz")[0] == 200
    worker.wait_idle()
    assert worker.get("/readyz")[0] == 200
    assert worker.metric("detector_dead_letter_messages_total", reason="invalid_json") == 2
    assert worker.metric("detector_decode_errors_total", reason="bad_event_time") == 2
    assert worker.metric("detector_messages_total", outcome="rejected") == 5
    assert worker.metric("detector_messages_total", outcome="partial") == 1
    assert worker.metric("detector_messages_total", outcome="ok") == 2
    assert worker.metric("detector_records_evaluated_total") == 4
    assert worker.metric("detector_alerts_total", rule_id=DELETE_RULE, level="high") == 2
    assert worker.terminate() == 0


def test_a_dead_letter_above_the_brokers_default_message_size_is_not_lost(
    kafka_broker: KafkaBroker, workers: Callable[..., WorkerProcess]
) -> None:
    topic = unique("big-in")
    _create_topic(kafka_broker, topic, {"max.message.bytes": str(8 * 1024 * 1024)})
    junk = b"x" * (2 * 1024 * 1024)  # over the 1 MiB a topic takes by default
    deletion = next(e for e in scenario_events() if e["eventName"] == "DeleteStream")
    worker = workers(kafka_broker, group=unique("big"), input_topic=topic)
    worker.wait_ready()
    produce(kafka_broker, topic, [junk, orjson.dumps(deletion)])

    # the worker created its output topics large enough for any message it produces
    letters = read_topic(kafka_broker, worker.dead_letter_topic, lambda f: len(f) >= 1)
    assert [(m.value, m.headers["reason"]) for m in letters] == [(junk, b"invalid_json")]
    alerts = read_topic(kafka_broker, worker.alerts_topic, lambda f: len(f) >= 1)
    assert [orjson.loads(m.value)["event_ids"] for m in alerts] == [[deletion["eventID"]]]
    worker.wait_idle()
    assert worker.terminate() == 0


def _create_topic(broker: KafkaBroker, name: str, config: dict[str, str]) -> None:
    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, 1, 1, topic_configs=config)])
        finally:
            await admin.close()

    asyncio.run(create())


def test_metrics_and_probes_answer_during_a_run(
    kafka_broker: KafkaBroker, workers: Callable[..., WorkerProcess]
) -> None:
    topic = unique("probe-in")
    kafka_broker.create_topic(topic, partitions=3)
    worker = workers(kafka_broker, group=unique("probe"), input_topic=topic,
                     extra=["--state-partitions", "3"])
    worker.wait_ready()
    status = worker.status()
    assert status["rules"]["loaded"] == 2
    assert {(p["topic"], p["partition"]) for p in status["assigned_partitions"]} >= {
        (topic, 0), (topic, 1), (topic, 2)}

    replay(kafka_broker, topic, SCENARIO, options=["--rate", "200"])
    assert worker.get("/readyz")[0] == 200
    worker.wait_idle()
    assert worker.metric("detector_messages_total", outcome="ok") == len(scenario_events())
    assert worker.metric("detector_records_total", format="record") == len(scenario_events())
    assert worker.metric("detector_rules_loaded") == 2
    assert worker.metric("detector_consumer_lag_messages", topic=topic, partition="0") == 0
    code, body = worker.get("/metrics")
    assert code == 200
    promtool = shutil.which("promtool")
    if promtool:
        checked = subprocess.run([promtool, "check", "metrics"], input=body,
                                 capture_output=True, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    assert worker.terminate() == 0


def test_sigterm_commits_what_was_processed_and_leaves_the_group(
    kafka_broker: KafkaBroker, workers: Callable[..., WorkerProcess]
) -> None:
    topic = unique("term-in")
    # One input partition: with the commit interval this long, Faust publishes the records
    # sent on to the stateful rules only at shutdown, partition after partition, and events of
    # two input partitions would then meet their state partition's clock out of order.
    kafka_broker.create_topic(topic, partitions=1)
    group = unique("term")
    options = ["--state-partitions", "2", "--allowed-lateness", "1m"]
    worker = workers(kafka_broker, group=group, input_topic=topic,
                     extra=[*options, "--commit-interval", "10m"])  # only shutdown commits
    worker.wait_ready()
    replay(kafka_broker, topic, SCENARIO, options=["--key-field", "userIdentity.arn"])
    deadline = time.monotonic() + 30
    while worker.metric("detector_records_evaluated_total") < len(scenario_events()):
        assert time.monotonic() < deadline, worker.tail()
        time.sleep(0.2)
    assert worker.terminate() == 0

    successor = workers(kafka_broker, group=group, input_topic=topic, extra=options)
    successor.wait_ready()
    successor.wait_idle()
    assert successor.metric("detector_records_evaluated_total") == 0
    alerts = read_topic(kafka_broker, worker.alerts_topic, lambda f: len(f) >= 2, settle=2.0)
    assert len(alerts) == len(alert_ids(alerts)) == 2
    assert successor.terminate() == 0


def test_an_alert_the_broker_refuses_stops_the_worker_before_its_offset_is_committed(
    kafka_broker: KafkaBroker, workers: Callable[..., WorkerProcess]
) -> None:
    topic = unique("refused-in")
    kafka_broker.create_topic(topic)
    group = unique("refused")
    alerts_topic = f"{group}-alerts"
    kafka_broker.create_topic(alerts_topic, config={"max.message.bytes": "200"})  # too small
    worker = workers(kafka_broker, group=group, input_topic=topic)
    worker.wait_ready()
    deletion = next(e for e in scenario_events() if e["eventName"] == "DeleteStream")
    produce(kafka_broker, topic, [orjson.dumps(deletion)])
    assert worker.process is not None
    assert worker.process.wait(60) == 75, worker.tail()
    assert "could not be sent" in worker.tail()

    kafka_broker.set_topic_config(alerts_topic, {"max.message.bytes": "1048576"})
    successor = workers(kafka_broker, group=group, input_topic=topic)
    successor.wait_ready()
    alerts = read_topic(kafka_broker, alerts_topic, lambda found: len(found) >= 1)
    # the record's copy for the state partition that raises the alert is read again
    assert [orjson.loads(m.value)["rule"]["id"] for m in alerts] == [DELETE_RULE]
    assert successor.terminate() == 0


def test_a_worker_with_broken_rules_refuses_to_start(tmp_path: Path) -> None:
    broken = tmp_path / "rules"
    broken.mkdir()
    (broken / "bad.yml").write_text("title: no detection\nlogsource: {product: aws}\n")
    result = subprocess.run(
        [sys.executable, "-m", "detector", "worker", "--rules", str(broken),
         "--bootstrap-servers", "127.0.0.1:9"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    assert "bad.yml" in result.stderr
    assert "refusing to start" in result.stderr


KVS_SCENARIO = REPO / "examples" / "scenarios" / "kinesisvideo-intruder.jsonl"


@pytest.mark.skipif(not KVS_SCENARIO.exists(), reason="examples/scenarios not written yet")
def test_the_kinesis_video_intruder_scenario_gives_the_alerts_of_scan(
    kafka_broker: KafkaBroker, workers: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    rules = [REPO / "rules"]
    expected = scan_alerts([KVS_SCENARIO], rules, tmp_path)
    assert {alert["kind"] for alert in expected.values()} >= {"match", "first_seen"}
    # the file is not in delivery order; scan evaluates it in event-time order (a file this
    # small exactly), the stream gets it sorted, as CloudTrail delivers (a few minutes late at
    # most, well within the allowed lateness)
    topic = unique("intruder-in")
    kafka_broker.create_topic(topic, partitions=1)
    worker = workers(kafka_broker, group=unique("intruder"), input_topic=topic, rules=rules,
                     extra=["--state-partitions", "4", "--idle-timeout", "1s"])
    worker.wait_ready()
    replay(kafka_broker, topic, KVS_SCENARIO, options=["--sort"])
    alerts = read_topic(kafka_broker, worker.alerts_topic,
                        lambda found: alert_ids(found) >= set(expected), timeout=60)
    assert by_id(orjson.loads(m.value) for m in alerts) == expected


def _shifted(event: dict[str, Any], seconds: float) -> dict[str, Any]:
    when = datetime.fromisoformat(event["eventTime"]) + timedelta(seconds=seconds)
    return dict(event, eventTime=when.strftime("%Y-%m-%dT%H:%M:%SZ"))


def test_one_record_ahead_of_its_neighbours_makes_no_later_record_late(
    kafka_broker: KafkaBroker, workers: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    """One input partition: a record dated 2099 is refused at decode, and one four days ahead
    of the records around it (still before the wall clock) moves no clock, so the first-seen
    rule still decides the intrusion after it (issue 13, point 3)."""
    events = scenario_events()
    last = datetime.fromisoformat(events[-1]["eventTime"]).timestamp()
    shift = time.time() - 5 * 86400 - last  # the scenario ends five days ago
    intrusion = next(i for i, e in enumerate(events) if e["sourceIPAddress"] == "203.0.113.66")
    before = events[intrusion - 2]  # the operator's last call from its usual address
    ahead = dict(_shifted(before, shift + 4 * 86400), eventID="four-days-ahead")
    far = dict(_shifted(before, 0), eventTime="2099-01-01T00:00:00Z", eventID="in-2099")
    stream = [_shifted(e, shift) for e in events]
    stream[intrusion:intrusion] = [far, ahead]
    topic = unique("ahead-in")
    kafka_broker.create_topic(topic, partitions=1)
    worker = workers(kafka_broker, group=unique("ahead"), input_topic=topic,
                     extra=["--allowed-lateness", "1m", "--state-partitions", "2"])
    worker.wait_ready()
    produce(kafka_broker, topic, [orjson.dumps(event) for event in stream])

    # a first-seen alert's id holds the epoch-aligned window of its event: scan the same
    # (shifted) events, without the two strays
    shifted = tmp_path / "shifted.jsonl"
    shifted.write_bytes(b"\n".join(orjson.dumps(_shifted(e, shift)) for e in events))
    expected = scan_alerts([shifted], [RULES], tmp_path, "--allowed-lateness", "1m")
    assert {alert["rule"]["id"] for alert in expected.values()} == {DELETE_RULE, NEW_IP_RULE}
    alerts = read_topic(kafka_broker, worker.alerts_topic,
                        lambda found: alert_ids(found) >= set(expected), settle=2.0)
    assert alert_ids(alerts) == set(expected)
    [letter] = read_topic(kafka_broker, worker.dead_letter_topic, lambda f: len(f) >= 1)
    assert (letter.headers["reason"], orjson.loads(letter.value)["eventID"]) == (
        b"event_time_out_of_range", "in-2099")
    worker.wait_idle()
    assert worker.metric("detector_late_events_total") == 0
    assert worker.metric("detector_decode_errors_total", reason="event_time_out_of_range") == 1
    assert worker.terminate() == 0


def test_a_worker_writes_ocsf_detection_findings_to_the_alerts_topic(
    kafka_broker: KafkaBroker, workers: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    expected = scan_alerts([SCENARIO], [RULES], tmp_path, "--allowed-lateness", "1m")
    topic = unique("ocsf-in")
    kafka_broker.create_topic(topic, partitions=1)
    worker = workers(kafka_broker, group=unique("ocsf"), input_topic=topic,
                     extra=["--allowed-lateness", "1m", "--state-partitions", "2"],
                     env={"DETECTOR_ALERT_FORMAT": "ocsf"})
    worker.wait_ready()
    replay(kafka_broker, topic, SCENARIO)
    alerts = read_topic(kafka_broker, worker.alerts_topic,
                        lambda found: len(found) >= len(expected), settle=2.0)
    findings = [orjson.loads(message.value) for message in alerts]
    assert [ocsf_errors(finding) for finding in findings] == [[]] * len(expected)
    assert {finding["metadata"]["uid"] for finding in findings} == set(expected)
    assert {(f["class_uid"], f["finding_info"]["analytic"]["uid"]) for f in findings} == {
        (2004, alert["rule"]["id"]) for alert in expected.values()}
    assert all(message.headers["alert-id"].decode() == finding["metadata"]["uid"]
               for message, finding in zip(alerts, findings, strict=True))
    assert worker.terminate() == 0
