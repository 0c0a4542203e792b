"""Two workers give the alerts of one; a worker killed by SIGKILL loses no alert, no baseline."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from kafka_broker import KafkaBroker

from integration.worker_support import (
    NEW_IP_RULE,
    REPO,
    SCENARIO,
    STATEFUL,
    WorkerProcess,
    alert_ids,
    read_topic,
    replay,
    scan_ids,
    unique,
    wait_for_split,
)

pytestmark = pytest.mark.integration



def test_two_workers_raise_the_same_alerts_as_one(
    kafka_broker: KafkaBroker, workers: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    topic = unique("scale-in")
    kafka_broker.create_topic(topic, partitions=4)
    expected = scan_ids([SCENARIO], [SCENARIO.parent / "rules"], tmp_path,
                        "--allowed-lateness", "1m")
    single = workers(kafka_broker, group=unique("one"), input_topic=topic, extra=STATEFUL)
    pair_group = unique("two")
    pair = [workers(kafka_broker, group=pair_group, input_topic=topic, extra=STATEFUL)
            for _ in range(2)]
    for worker in (single, *pair):
        worker.wait_ready()
    wait_for_split(pair, topic)

    replay(kafka_broker, topic, SCENARIO, options=["--key-field", "userIdentity.arn"])

    one = read_topic(kafka_broker, single.alerts_topic, lambda f: alert_ids(f) >= expected)
    two = read_topic(kafka_broker, pair[0].alerts_topic, lambda f: alert_ids(f) >= expected)
    assert alert_ids(one) == expected
    assert alert_ids(two) == expected
    assert {m.partition for m in two} <= {0, 1, 2, 3}
    for worker in (single, *pair):
        assert worker.terminate() == 0


def test_a_killed_worker_loses_no_alert_and_keeps_its_baselines(
    kafka_broker: KafkaBroker, workers: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    lines = SCENARIO.read_bytes().splitlines()
    learning = [line for line in lines if orjson.loads(line)["eventTime"] < "2026-03-02T09:30"]
    rest = lines[len(learning):]
    assert learning and rest and learning + rest == lines
    before, after = tmp_path / "before.jsonl", tmp_path / "after.jsonl"
    before.write_bytes(b"\n".join(learning) + b"\n")
    after.write_bytes(b"\n".join(rest) + b"\n")
    expected = scan_ids([SCENARIO], [SCENARIO.parent / "rules"], tmp_path,
                        "--allowed-lateness", "1m")
    topic = unique("kill-in")
    kafka_broker.create_topic(topic, partitions=2)
    group = unique("kill")
    worker = workers(kafka_broker, group=group, input_topic=topic, extra=STATEFUL)
    worker.wait_ready()

    replay(kafka_broker, topic, before, options=["--key-field", "userIdentity.arn"])
    worker.wait_idle()  # the baselines are learned and committed
    producing = subprocess.Popen(
        [sys.executable, "-m", "detector", "replay", "--topic", topic, "--bootstrap-servers",
         kafka_broker.bootstrap, "--key-field", "userIdentity.arn", "--rate", "20", str(after)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        worker.kill()  # SIGKILL mid-stream
        assert producing.wait(30) == 0
    finally:
        producing.kill()

    restarted = workers(kafka_broker, group=group, input_topic=topic, extra=STATEFUL)
    restarted.wait_ready(timeout=90)
    alerts = read_topic(kafka_broker, restarted.alerts_topic,
                        lambda f: alert_ids(f) >= expected, timeout=90)
    assert alert_ids(alerts) == expected  # none lost; repeats only with identical ids
    new_ip = [orjson.loads(m.value) for m in alerts
              if orjson.loads(m.value)["rule"]["id"] == NEW_IP_RULE]
    assert new_ip, "the first-seen alert needs the baseline learned before the kill"
    assert {alert["details"]["first_seen"]["known_values"] for alert in new_ip} == {1}
    assert restarted.terminate() == 0
