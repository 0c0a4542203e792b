"""Hot reload on a running worker: a changed list applies to the next event, a broken rule
file leaves the running rules in place (and says so), SIGHUP reloads at once."""

from __future__ import annotations

import os
import shutil
import signal
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from kafka_broker import KafkaBroker

from integration.worker_support import WorkerProcess, produce, read_topic, unique

pytestmark = pytest.mark.integration

RULE_ID = "3a9e7c51-2b4d-4e8f-9a1c-6d5e4f3a2b10"
RULE = textwrap.dedent(f"""\
    title: Stream deleted by a principal outside the admins list (reload test)
    id: {RULE_ID}
    logsource: {{product: aws, service: cloudtrail}}
    detection:
      selection:
        eventSource: kinesisvideo.amazonaws.com
        eventName: DeleteStream
      admins:
        userIdentity.arn|expand: '%stream_admins%'
      condition: selection and not admins
    level: high
    """)
OPERATOR = "arn:aws:iam::111122223333:user/operator"


def deletion(event_id: str, arn: str = OPERATOR) -> bytes:
    return orjson.dumps({
        "eventVersion": "1.08", "eventSource": "kinesisvideo.amazonaws.com",
        "eventName": "DeleteStream", "eventTime": "2026-03-10T12:00:00Z", "eventID": event_id,
        "awsRegion": "us-east-1", "sourceIPAddress": "10.0.0.8",
        "userIdentity": {"type": "IAMUser", "arn": arn, "accountId": "111122223333"},
        "requestParameters": {"streamARN": "arn:aws:kinesisvideo:us-east-1:111122223333:"
                                           "stream/front-door/1588432191234"},
    })


def write_lists(rules: Path, admins: list[str]) -> None:
    """Replace the list file the way an editor or a ConfigMap update does: a new file renamed in."""
    staged = rules / "lists" / ".admins.yml.new"
    staged.write_text("stream_admins:\n" + "".join(f"  - '{arn}'\n" for arn in admins))
    os.replace(staged, rules / "lists" / "admins.yml")


def alerted(broker: KafkaBroker, worker: WorkerProcess, event_id: str) -> bool:
    """Whether the alert for `event_id` arrives (waits a few seconds when it does not)."""
    found = read_topic(broker, worker.alerts_topic,
                       lambda messages: any(event_id in orjson.loads(m.value)["event_ids"]
                                            for m in messages), timeout=8.0)
    return any(event_id in orjson.loads(m.value)["event_ids"] for m in found)


def wait_until(what: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    directory = tmp_path / "rules"
    (directory / "lists").mkdir(parents=True)
    (directory / "delete.yml").write_text(RULE)
    write_lists(directory, [OPERATOR])
    return directory


def start(broker: KafkaBroker, workers: Callable[..., WorkerProcess], rules: Path,
          interval: str) -> tuple[WorkerProcess, str]:
    topic = unique("reload-in")
    broker.create_topic(topic)
    worker = workers(broker, group=unique("reload"), input_topic=topic, rules=(rules,),
                     extra=["--reload-interval", interval])
    worker.wait_ready()
    return worker, topic


def test_a_changed_list_applies_to_the_next_event_and_a_broken_rule_changes_nothing(
    kafka_broker: KafkaBroker, workers: Callable[..., WorkerProcess], rules: Path
) -> None:
    worker, topic = start(kafka_broker, workers, rules, "500ms")
    produce(kafka_broker, topic, [deletion("before-change")])
    assert not alerted(kafka_broker, worker, "before-change")  # the operator is an admin

    write_lists(rules, ["arn:aws:iam::111122223333:role/VideoAdmin"])
    wait_until("the reload", lambda: worker.metric("detector_rules_reloads_total",
                                                   result="success") == 1)
    produce(kafka_broker, topic, [deletion("after-change")])
    assert alerted(kafka_broker, worker, "after-change")

    (rules / "delete.yml").write_text(RULE.replace("condition: selection and not admins",
                                                   "condition: selection and not nobody"))
    wait_until("the failed reload", lambda: worker.metric("detector_rules_reloads_total",
                                                          result="failure") == 1)
    assert worker.metric("detector_rules_last_reload_success") == 0
    last = worker.status()["rules"]["last_reload"]
    assert last["ok"] is False
    assert any("delete.yml" in error and "nobody" in error for error in last["errors"])
    produce(kafka_broker, topic, [deletion("after-breakage")])
    assert alerted(kafka_broker, worker, "after-breakage")  # the old rule still runs
    worker.assert_running()


def test_sighup_reloads_at_once(
    kafka_broker: KafkaBroker, workers: Callable[..., WorkerProcess], rules: Path
) -> None:
    worker, topic = start(kafka_broker, workers, rules, "0")  # no polling: only the signal
    shutil.rmtree(rules / "lists")
    (rules / "lists").mkdir()
    write_lists(rules, [])
    assert worker.process is not None
    worker.process.send_signal(signal.SIGHUP)
    wait_until("the SIGHUP reload", lambda: worker.metric("detector_rules_reloads_total",
                                                          result="success") == 1)
    produce(kafka_broker, topic, [deletion("after-sighup")])
    assert alerted(kafka_broker, worker, "after-sighup")
