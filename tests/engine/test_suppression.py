"""Suppression: the first alert of a window goes out at once, repeats are folded into it and
summarised when the window closes, and the next window alerts again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.stateful_support import ADMIN, engine, event, fired, run

from detector.events import Record

HOUR = 3600
RULE_ID = "44444444-0000-4000-8000-000000000001"
RULE = f"""\
title: denied
id: {RULE_ID}
detection:
  selection: {{eventSource: kinesisvideo.amazonaws.com, errorCode: AccessDeniedException}}
  condition: selection
detector:
  suppress:
    window: 1h
    by: [userIdentity.arn]
"""


def denied(seconds: float, **fields: Any) -> Record:
    return event(seconds, errorCode="AccessDeniedException", **fields)


def test_the_first_alert_goes_out_at_once_and_repeats_are_folded(tmp_path: Path) -> None:
    target = engine(tmp_path, RULE)
    first = run(target, [denied(60)], flush=False)
    assert [alert.rule_id for alert in first] == [RULE_ID]
    assert first[0].details["suppression"]["window_start"] == "2026-03-10T00:00:00.000000Z"
    assert first[0].details["suppression"]["window_end"] == "2026-03-10T01:00:00.000000Z"
    repeats = [denied(seconds) for seconds in (120, 600, 3000, 3599)]
    assert run(target, repeats, flush=False) == []
    assert target.closed_suppressions() == []


def test_the_folded_summary_is_handed_out_when_the_window_closes(tmp_path: Path) -> None:
    target = engine(tmp_path, RULE, lateness="5m")
    [alert] = run(target, [denied(60), denied(120), denied(3599)], flush=False)
    run(target, [event(HOUR + 300, "ListStreams")], flush=False)  # watermark reaches 01:00
    [summary] = target.closed_suppressions()
    assert summary.alert_id == alert.id
    assert summary.count == 3
    assert (summary.first_event, summary.last_event) == (
        "2026-03-10T00:01:00.000000Z", "2026-03-10T00:59:59.000000Z")
    assert summary.sample_event_ids == tuple(
        denied(seconds).event_id for seconds in (60, 120, 3599))
    assert summary.group_key == {"userIdentity.arn": "arn:aws:iam::111122223333:user/kvs-operator"}


def test_a_window_without_repeats_has_no_summary(tmp_path: Path) -> None:
    target = engine(tmp_path, RULE)
    run(target, [denied(60)])
    assert target.closed_suppressions() == []


def test_the_next_window_alerts_again(tmp_path: Path) -> None:
    alerts = run(engine(tmp_path, RULE), [denied(60), denied(3000), denied(HOUR + 60)])
    assert len(fired(alerts, RULE_ID)) == 2
    assert len({alert.id for alert in alerts}) == 2


def test_other_group_keys_are_not_folded(tmp_path: Path) -> None:
    alerts = run(engine(tmp_path, RULE), [denied(60), denied(120, arn=ADMIN)])
    assert len(fired(alerts, RULE_ID)) == 2


def test_the_alert_id_does_not_depend_on_which_repeat_came_first(tmp_path: Path) -> None:
    one = run(engine(tmp_path, RULE), [denied(600), denied(60)])
    other = run(engine(tmp_path, RULE), [denied(60), denied(600)])
    assert [alert.id for alert in one] == [alert.id for alert in other]
    assert one[0].event_ids != other[0].event_ids  # the content is the first arrival's


def test_a_late_event_alerts_on_its_own(tmp_path: Path) -> None:
    target = engine(tmp_path, RULE, lateness="5m")
    alerts = run(target, [denied(3 * HOUR), denied(HOUR)])
    assert len(fired(alerts, RULE_ID)) == 2
    assert alerts[1].details == {"late": True}
    assert target.stats()["late"] == 1


CORRELATED = RULE.replace("detector:\n  suppress:\n    window: 1h\n    by: [userIdentity.arn]\n",
                          "name: denied\n") + """---
title: burst
id: 44444444-0000-4000-8000-000000000002
correlation:
  type: event_count
  rules: [denied]
  group-by: [userIdentity.arn]
  timespan: 5m
  condition: {gte: 2}
detector:
  suppress:
    window: 1h
    by: [userIdentity.arn]
"""


def test_correlation_alerts_are_suppressed_too(tmp_path: Path) -> None:
    target = engine(tmp_path, CORRELATED)
    records = [denied(seconds) for seconds in (0, 60, 600, 660, 1200, 1260)]
    alerts = run(target, records)
    assert [alert.rule_id for alert in alerts] == ["44444444-0000-4000-8000-000000000002"]
    [summary] = target.closed_suppressions()
    assert summary.count == 3
