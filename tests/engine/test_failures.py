"""No record stops the engine: what raises while evaluating one record is caught at the record
boundary, per rule where it can be, and handed out as a Failure; the other rules, the other
records and the windows of other entries go on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from engine.stateful_support import ADMIN, engine, event, fired, ruleset, run

from detector.engine import Engine, Failure, RuleSet
from detector.engine.factory import make_engine
from detector.engine.stateful.correlation import CorrelationUnit
from detector.engine.stateful.first_seen import FirstSeenUnit

DELETED, DESCRIBED, NEW_IP, BURST, CALLED = (f"88888888-0000-4000-8000-00000000000{n}"
                                             for n in range(1, 6))
RULES = f"""\
title: any kinesis video call, alerting
id: {CALLED}
detection:
  selection: {{eventSource: kinesisvideo.amazonaws.com}}
  condition: selection
---
title: deleted
id: {DELETED}
detection:
  selection: {{eventName: DeleteStream}}
  condition: selection
---
title: any kinesis video call
id: {DESCRIBED}
name: kvs
detection:
  selection: {{eventSource: kinesisvideo.amazonaws.com}}
  condition: selection
---
title: new source ip
id: {NEW_IP}
detection:
  selection: {{eventSource: kinesisvideo.amazonaws.com}}
  condition: selection
detector:
  first_seen: {{key: [userIdentity.arn], value: [sourceIPAddress], learning: 1s}}
---
title: at most two calls in ten minutes
id: {BURST}
correlation:
  type: event_count
  rules: [kvs]
  group-by: [userIdentity.arn]
  timespan: 10m
  condition: {{lte: 2}}
"""


class Boom(RuntimeError):
    pass


def fail_when(monkeypatch: pytest.MonkeyPatch, owner: type, method: str,
              fails: Callable[..., bool], message: str) -> None:
    """Make `owner.method` raise Boom(message) on the calls `fails` picks, work otherwise."""
    original = getattr(owner, method)

    def patched(self: object, *args: Any) -> Any:
        if fails(*args):
            raise Boom(message)
        return original(self, *args)

    monkeypatch.setattr(owner, method, patched)


def raise_on(name: str) -> Any:
    def predicate(data: dict[str, Any]) -> bool:
        if data.get("eventName") == name:
            raise Boom(f"cannot evaluate {name}")
        return True
    return predicate


def with_predicate(rules: RuleSet, rule_id: str, predicate: Any) -> RuleSet:
    return replace(rules, rules=tuple(
        replace(rule, predicate=predicate) if rule.id == rule_id else rule
        for rule in rules.rules))


def test_a_rule_that_raises_costs_the_record_that_rule_only(tmp_path: Path) -> None:
    rules = with_predicate(ruleset(tmp_path, RULES), CALLED, raise_on("DeleteStream"))
    target = Engine(rules)

    alerts = target.process(event(0, "DeleteStream", event_id="e-1"))

    assert [alert.rule_id for alert in alerts] == [DELETED]
    assert target.take_failures() == [
        Failure(CALLED, "e-1", "Boom: cannot evaluate DeleteStream")]
    assert target.take_failures() == []
    later = target.process(event(60, "DescribeStream", event_id="e-2"))
    assert [alert.rule_id for alert in later] == [CALLED]


def test_a_stateful_rule_that_raises_costs_the_record_that_rule_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = engine(tmp_path, RULES, lateness="1m")
    fail_when(monkeypatch, FirstSeenUnit, "offer", lambda record, _: record.event_id == "e-2",
              "no memory left")
    alerts = run(target, [event(0, event_id="e-1"), event(10, "DeleteStream", event_id="e-2",
                                                          ip="192.0.2.9"),
                          event(20, event_id="e-3", ip="192.0.2.10")])

    assert fired(alerts, DELETED) != []
    assert [alert.event_ids for alert in fired(alerts, NEW_IP)] == [("e-3",)]
    assert target.take_failures() == [Failure(NEW_IP, "e-2", "Boom: no memory left")]


def test_an_entry_that_raises_when_the_watermark_reaches_it_costs_that_entry_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = engine(tmp_path, RULES, lateness="1m")
    fail_when(monkeypatch, CorrelationUnit, "close", lambda skey, _: ADMIN in skey,
              "corrupt window")
    alerts = run(target, [event(0, event_id="e-1"), event(5, event_id="e-2", arn=ADMIN),
                          event(900, event_id="e-3"), event(901, event_id="e-4")])

    operator = {"userIdentity.arn": event(0).data["userIdentity"]["arn"]}
    assert [alert.group_key for alert in fired(alerts, BURST)] == [operator, operator]
    assert target.take_failures() == [Failure(BURST, None, "Boom: corrupt window")]


def test_a_failure_keeps_a_bounded_text_of_the_error(tmp_path: Path) -> None:
    def predicate(data: dict[str, Any]) -> bool:
        return bool({}["k" * 100_000])

    target = Engine(with_predicate(ruleset(tmp_path, RULES), DELETED, predicate))

    target.process(event(0, "DeleteStream", event_id="e-1"))

    [failure] = target.take_failures()
    assert (failure.rule_id, failure.event_id) == (DELETED, "e-1")
    assert failure.error.startswith("KeyError: 'kkk")
    assert len(failure.error) < 600 and "truncated: 100012 characters" in failure.error


def test_a_stateful_engine_hands_out_the_failures_of_both_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = with_predicate(ruleset(tmp_path, RULES), CALLED, raise_on("DeleteStream"))
    target = make_engine(rules)
    monkeypatch.setattr(FirstSeenUnit, "offer", lambda *_: 1 / 0)

    target.process(event(0, "DeleteStream", event_id="e-1"))

    assert target.take_failures() == [
        Failure(CALLED, "e-1", "Boom: cannot evaluate DeleteStream"),
        Failure(NEW_IP, "e-1", "ZeroDivisionError: division by zero")]
