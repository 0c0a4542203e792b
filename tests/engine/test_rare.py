"""Rare values: a value the key used fewer than N times within the history window alerts, at
once, once per value and window; first seen is the same machinery with N = 1."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine.stateful_support import ADMIN, HEADER, OPERATOR, engine, event, fired, run

from detector.engine import load_rules

HOUR, DAY = 3600, 86400
RULE_ID = "99999999-0000-4000-8000-000000000001"


def rare(threshold: int = 2, window: str = "14d", learning: str = "1d",
         extra: str = "") -> str:
    return f"""\
title: API rare for the principal
id: {RULE_ID}
detection:
  selection: {{eventSource: kinesisvideo.amazonaws.com}}
  condition: selection
detector:
  output: '{{userIdentity.arn}} called {{eventName}}'
  rare: {{key: [userIdentity.arn], value: [eventName], threshold: {threshold},
          window: {window}, learning: {learning}{extra}}}
"""


def calls(*pairs: tuple[float, str]) -> list:  # type: ignore[type-arg]
    return [event(at, name, event_id=f"{name}-{at}") for at, name in pairs]


def test_a_value_used_fewer_than_threshold_times_alerts_once(tmp_path: Path) -> None:
    # DescribeStream is used three times in learning; DeleteStream three times after it:
    # rare (fewer than 3 uses before) each time, one alert
    records = calls((0, "DescribeStream"), (HOUR, "DescribeStream"), (2 * HOUR, "DescribeStream"),
                    (2 * DAY, "DeleteStream"), (2 * DAY + 60, "DeleteStream"),
                    (2 * DAY + 120, "DeleteStream"), (2 * DAY + 180, "DescribeStream"))
    [alert] = fired(run(engine(tmp_path, rare(threshold=3)), records), RULE_ID)
    assert alert.kind == "rare"
    assert alert.event_ids == (records[3].event_id,)
    assert alert.details["rare"]["value"] == {"eventName": "DeleteStream"}
    assert alert.details["anomaly"] == {
        "method": "rare", "field": "eventName", "observed": 0, "threshold": 3,
        "history": {"start": "2026-02-26T00:00:00.000000Z", "end": "2026-03-12T00:00:00.000000Z"},
        "learning": False, "learning_ended": "2026-03-11T00:00:00.000000Z"}


def test_a_value_used_often_enough_in_the_window_is_not_rare(tmp_path: Path) -> None:
    learnt = calls((0, "DescribeStream"), (HOUR, "GetClip"), (2 * HOUR, "GetClip"))
    assert fired(run(engine(tmp_path, rare()), [*learnt, *calls((2 * DAY, "GetClip"))]),
                 RULE_ID) == []
    # used once only in the window: still rare (below 2)
    once = calls((0, "DescribeStream"), (HOUR, "GetClip"), (2 * DAY, "GetClip"))
    [alert] = fired(run(engine(tmp_path, rare()), once), RULE_ID)
    assert alert.details["anomaly"]["observed"] == 1


def test_uses_older_than_the_window_do_not_count(tmp_path: Path) -> None:
    records = calls((0, "DescribeStream"), (HOUR, "GetClip"), (2 * HOUR, "GetClip"),
                    (9 * DAY, "DescribeStream"), (9 * DAY + 60, "DescribeStream"),
                    (10 * DAY, "GetClip"))
    [alert] = fired(run(engine(tmp_path, rare(window="7d")), records), RULE_ID)
    assert alert.event_ids == (records[-1].event_id,)


def test_the_same_value_alerts_again_only_in_a_later_window_once_forgotten(
    tmp_path: Path,
) -> None:
    records = calls((0, "DescribeStream"), (2 * DAY, "GetClip"), (3 * DAY, "DescribeStream"),
                    (6 * DAY, "DescribeStream"), (9 * DAY, "DescribeStream"),
                    (10 * DAY, "GetClip"))
    alerts = fired(run(engine(tmp_path, rare(threshold=1, window="7d")), records), RULE_ID)
    assert [alert.event_ids for alert in alerts] == [(records[1].event_id,),
                                                     (records[-1].event_id,)]
    assert alerts[0].id != alerts[1].id
    assert alerts[0].kind == "first_seen"  # N = 1


def test_rare_values_are_per_key(tmp_path: Path) -> None:
    records = [event(0, "DescribeStream", arn=OPERATOR), event(0, "GetClip", arn=ADMIN),
               event(2 * DAY, "GetClip", arn=OPERATOR), event(2 * DAY, "GetClip", arn=ADMIN,
                                                               event_id="admin-again")]
    alerts = fired(run(engine(tmp_path, rare(threshold=1)), records), RULE_ID)
    assert [alert.group_key for alert in alerts] == [{"userIdentity.arn": OPERATOR}]


def test_the_alert_id_is_the_rules_key_value_and_window(tmp_path: Path) -> None:
    first = calls((0, "DescribeStream"), (2 * DAY, "DeleteStream"))
    second = calls((0, "DescribeStream"), (2 * DAY + 600, "DeleteStream"))
    [one] = fired(run(engine(tmp_path, rare()), first), RULE_ID)
    [other] = fired(run(engine(tmp_path, rare()), second), RULE_ID)
    assert one.id == other.id and one.event_ids != other.event_ids


@pytest.mark.parametrize(("spec", "problem"), [
    ("threshold: 0", "threshold` must be a whole number from 1 to 100"),
    ("threshold: 2.5", "threshold` must be a whole number"),
    ("threshold: true", "threshold` must be a whole number"),
    ("window: 0s", "a window longer than 0s"),
    ("window: 14d, retention: 1d", "retention no shorter than it"),
    ("windo: 14d", "unknown key(s) ['windo']"),
])
def test_the_loader_refuses_a_malformed_rare_block(tmp_path: Path, spec: str,
                                                    problem: str) -> None:
    text = HEADER + f"""\
title: rare
id: {RULE_ID}
detection: {{selection: {{eventName: GetClip}}, condition: selection}}
detector:
  rare: {{key: userIdentity.arn, value: eventName, {spec}}}
"""
    (tmp_path / "rule.yml").write_text(text)
    errors = [str(error) for error in load_rules([tmp_path]).errors]
    assert len(errors) == 1 and problem in errors[0], errors


def test_a_rule_keeps_one_memory_per_key(tmp_path: Path) -> None:
    text = HEADER + f"""\
title: both
id: {RULE_ID}
detection: {{selection: {{eventName: GetClip}}, condition: selection}}
detector:
  first_seen: {{key: userIdentity.arn, value: sourceIPAddress}}
  rare: {{key: userIdentity.arn, value: eventName}}
"""
    (tmp_path / "rule.yml").write_text(text)
    [error] = load_rules([tmp_path]).errors
    assert "first_seen and rare cannot be combined" in str(error)


def test_an_established_value_seen_again_counts_only_its_uses_within_the_window(
    tmp_path: Path,
) -> None:
    # GetClip and DescribeStream are used twice at the start (established), GetClip again
    # on day 3: its uses are then the second start use and day 3. On day 7, ten minutes past
    # the window of the start uses, only day 3 counts: rare (1 below 2). Day 7 comes before
    # any sweep could forget the old uses, so the decision itself must leave them out.
    records = calls((0, "GetClip"), (60, "GetClip"), (120, "DescribeStream"),
                    (180, "DescribeStream"), (3 * DAY, "GetClip"),
                    (7 * DAY - 30 * 60, "DescribeStream"), (7 * DAY + 10 * 60, "GetClip"))
    [alert] = fired(run(engine(tmp_path, rare(window="7d")), records), RULE_ID)
    assert alert.event_ids == (records[-1].event_id,)
    assert alert.details["anomaly"]["observed"] == 1
    # used on day 3 only once more before: not a third use in the window, still established
    steady = calls((0, "GetClip"), (60, "GetClip"), (3 * DAY, "GetClip"),
                   (3 * DAY + 60, "GetClip"), (7 * DAY + 10 * 60, "GetClip"))
    assert fired(run(engine(tmp_path, rare(window="7d")), steady), RULE_ID) == []


def test_a_late_use_between_the_kept_uses_alerts_and_counts_the_possible_contradiction(
    tmp_path: Path
) -> None:
    # DescribeStream twice at 0, then at 6 min; the use at 5 min arrives last. Only the latest
    # two uses are kept (0 and 6 min), so the late one sees one earlier use where, in
    # event-time order, there were two: it alerts, and the stats say the order may matter
    records = [event(0, "DescribeStream", event_id="a"), event(0, "DescribeStream", event_id="b"),
               event(360, "DescribeStream", event_id="d"),
               event(300, "DescribeStream", event_id="c")]
    target = engine(tmp_path, rare(window="30m", learning="5m"))
    [alert] = fired(run(target, records), RULE_ID)
    assert alert.event_ids == ("c",)
    assert target.stats()["contradicted"] == 1
    in_order = engine(tmp_path, rare(window="30m", learning="5m"))
    assert fired(run(in_order, sorted(records, key=lambda r: r.event_time)), RULE_ID) == []
    assert in_order.stats()["contradicted"] == 0
