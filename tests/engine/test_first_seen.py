"""First seen: learning per key, retention of values, decisions behind the watermark."""

from __future__ import annotations

from pathlib import Path

from engine.stateful_support import ADMIN, OPERATOR, engine, event, fired, run

HOUR, DAY = 3600, 86400
RULE_ID = "33333333-0000-4000-8000-000000000001"


def new_ip(learning: str = "1d", retention: str = "7d", value: str = "[sourceIPAddress]") -> str:
    return f"""\
title: new source ip
id: {RULE_ID}
detection:
  selection: {{eventSource: kinesisvideo.amazonaws.com}}
  condition: selection
detector:
  output: '{{userIdentity.arn}} from {{sourceIPAddress}}'
  first_seen:
    key: [userIdentity.arn]
    value: {value}
    learning: {learning}
    retention: {retention}
"""


def test_a_new_value_after_learning_alerts_once(tmp_path: Path) -> None:
    records = [event(0), event(2 * DAY, ip="203.0.113.66"), event(2 * DAY + 60, ip="203.0.113.66")]
    [alert] = fired(run(engine(tmp_path, new_ip()), records), RULE_ID)
    assert alert.kind == "first_seen"
    assert alert.text == f"{OPERATOR} from 203.0.113.66"
    assert alert.group_key == {"userIdentity.arn": OPERATOR}
    assert alert.event_ids == (records[1].event_id,)
    assert alert.details["first_seen"]["value"] == {"sourceIPAddress": "203.0.113.66"}
    assert alert.details["first_seen"]["known_values"] == 1


def test_values_seen_during_learning_are_recorded_silently(tmp_path: Path) -> None:
    records = [event(0), event(HOUR, ip="203.0.113.66"), event(2 * DAY, ip="203.0.113.66")]
    assert fired(run(engine(tmp_path, new_ip()), records), RULE_ID) == []


def test_learning_ends_exactly_after_the_learning_period(tmp_path: Path) -> None:
    before = [event(0), event(DAY - 1, ip="203.0.113.66")]
    assert fired(run(engine(tmp_path, new_ip()), before), RULE_ID) == []
    at_end = [event(0), event(DAY, ip="203.0.113.66")]
    assert len(fired(run(engine(tmp_path, new_ip()), at_end), RULE_ID)) == 1


def test_learning_is_per_key(tmp_path: Path) -> None:
    records = [event(0), event(2 * DAY, arn=ADMIN), event(2 * DAY + 60, arn=ADMIN, ip="192.0.2.9")]
    assert fired(run(engine(tmp_path, new_ip()), records), RULE_ID) == []


def test_a_value_unused_for_the_retention_period_is_forgotten(tmp_path: Path) -> None:
    # the admin keeps the key alive from the office while the operator's home IP goes unused
    rules = new_ip(learning="1m", retention="7d")
    home = "192.0.2.9"
    kept = [event(0), event(60, ip=home), event(7 * DAY, ip=home)]
    assert len(fired(run(engine(tmp_path, rules), kept), RULE_ID)) == 1  # first time only
    forgotten = [event(0), event(60, ip=home), event(6 * DAY), event(7 * DAY + 2 * HOUR, ip=home)]
    alerts = fired(run(engine(tmp_path, rules), forgotten), RULE_ID)
    assert [alert.event_ids for alert in alerts] == [(forgotten[1].event_id,),
                                                     (forgotten[3].event_id,)]


def test_a_key_whose_values_are_all_forgotten_learns_again(tmp_path: Path) -> None:
    # retention 7d, learning 1d; the admin's events move the clock 20 days on
    clock = [event(20 * DAY, arn=ADMIN), event(20 * DAY + 60, arn=ADMIN)]
    records = [event(0), *clock, event(20 * DAY + 1200, ip="203.0.113.66")]
    assert fired(run(engine(tmp_path, new_ip()), records), RULE_ID) == []


def test_a_tuple_of_fields_is_one_value(tmp_path: Path) -> None:
    rules = new_ip(learning="1s", value="[sourceIPAddress, userAgent]")
    records = [event(0), event(60, userAgent="aws-cli/2.17.43"), event(120, userAgent="curl/8.5")]
    [alert] = fired(run(engine(tmp_path, rules), records), RULE_ID)
    assert alert.event_ids == (records[2].event_id,)
    assert alert.details["first_seen"]["value"] == {
        "sourceIPAddress": "10.20.30.41", "userAgent": "curl/8.5"}


def test_events_without_the_key_or_value_are_ignored(tmp_path: Path) -> None:
    no_ip = event(60)
    del no_ip.data["sourceIPAddress"]
    no_arn = event(120, ip="192.0.2.9")
    del no_arn.data["userIdentity"]["arn"]
    target = engine(tmp_path, new_ip(learning="1s"))
    assert fired(run(target, [event(0), no_ip, no_arn]), RULE_ID) == []
    assert target.stats()["state_entries"] == 1


def test_the_decision_is_taken_when_the_event_arrives(tmp_path: Path) -> None:
    target = engine(tmp_path, new_ip(learning="1s"), lateness="15m")
    [alert] = run(target, [event(0), event(10, ip="192.0.2.9")], flush=False)
    assert alert.event_ids == (event(10, ip="192.0.2.9").event_id,)
    assert run(target, [event(20, ip="192.0.2.9")], flush=False) == []


def test_the_alert_id_does_not_depend_on_which_event_arrives_first(tmp_path: Path) -> None:
    first, second = event(600, ip="192.0.2.9"), event(300, ip="192.0.2.9")
    rules = new_ip(learning="1s")
    shuffled = fired(run(engine(tmp_path, rules), [event(0), first, second]), RULE_ID)
    in_order = fired(run(engine(tmp_path, rules), [event(0), second, first]), RULE_ID)
    assert [alert.id for alert in shuffled] == [alert.id for alert in in_order]
    assert [alert.event_ids for alert in in_order] == [(second.event_id,)]
    assert [alert.event_ids for alert in shuffled] == [(first.event_id,)]
