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
    # two later events: the watermark follows the second latest, and reaches 01:00
    run(target, [event(HOUR + 300, "ListStreams"), event(HOUR + 301, "ListStreams")],
        flush=False)
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
    alerts = run(target, [denied(3 * HOUR), denied(3 * HOUR + 1), denied(HOUR)])
    assert len(fired(alerts, RULE_ID)) == 2
    assert alerts[1].details == {"late": True}
    assert target.stats()["late"] == 1


BASE_RULE = RULE.replace("detector:\n  suppress:\n    window: 1h\n    by: [userIdentity.arn]\n",
                         "name: denied\n")  # feeds correlations, does not alert on its own
CORRELATED = BASE_RULE + """---
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


NEW_IP_ID = "44444444-0000-4000-8000-000000000003"
NEW_IP = f"""\
title: new source ip
id: {NEW_IP_ID}
detection:
  selection: {{eventSource: kinesisvideo.amazonaws.com}}
  condition: selection
detector:
  first_seen: {{key: [userIdentity.arn], value: [sourceIPAddress]}}
  suppress: {{window: 2m, by: []}}
"""


def test_a_window_stays_open_while_a_first_seen_event_of_it_is_undecided(
    tmp_path: Path,
) -> None:
    # new IPs at 10 (window [0, 120)), 130 and 200 (both [120, 240)); when the watermark jumps
    # to 260, the events are decided in time order and [120, 240) must wait for 200
    head = [event(10, ip="192.0.2.1"), event(130, ip="192.0.2.2"),
            event(200, arn=ADMIN, ip="192.0.2.1")]
    for clock in ([event(430, source="s3.amazonaws.com"), event(560, source="s3.amazonaws.com")],
                  [event(560, source="s3.amazonaws.com"), event(430, source="s3.amazonaws.com")]):
        target = engine(tmp_path, NEW_IP, lateness="5m")
        alerts = fired(run(target, head + clock), NEW_IP_ID)
        assert [alert.event_ids for alert in alerts] == [(head[0].event_id,), (head[1].event_id,)]
        [summary] = target.closed_suppressions()
        assert (summary.alert_id, summary.count) == (alerts[1].id, 2)


SHORT_ID = "44444444-0000-4000-8000-000000000004"


def short_suppression(condition: str) -> str:
    """A correlation over an hour whose alerts are suppressed by ten-minute windows."""
    return BASE_RULE + f"""---
title: denied within the hour
id: {SHORT_ID}
correlation:
  type: event_count
  rules: [denied]
  group-by: [userIdentity.arn]
  timespan: 1h
  condition: {{{condition}}}
detector:
  suppress: {{window: 10m, by: []}}
"""


def test_a_correlation_is_suppressed_by_the_window_of_its_bucket_start_whatever_the_order(
    tmp_path: Path,
) -> None:
    # both groups fire for the bucket [00:00, 01:00), which starts in the window [00:00, 00:10):
    # that window stays open until the bucket is final, so the second alert is folded into it
    one = [denied(minute * 60) for minute in (30, 31, 32)]
    other = [denied(minute * 60, arn=ADMIN) for minute in (33, 34, 36)]
    outcomes = []
    for records in (one + other, other + one):
        target = engine(tmp_path, short_suppression("gte: 3"))
        alerts = fired(run(target, records), SHORT_ID)
        [summary] = target.closed_suppressions()
        assert len(alerts) == 1
        assert (summary.alert_id, summary.count) == (alerts[0].id, 2)
        assert summary.first_event == summary.last_event == "2026-03-10T00:00:00.000000Z"
        outcomes.append((alerts[0].id, summary.sample_event_ids))
    assert outcomes[0] == outcomes[1]


def test_tumbling_correlation_alerts_of_one_bucket_fold_into_one_suppression_window(
    tmp_path: Path,
) -> None:
    target = engine(tmp_path, short_suppression("gte: 1, lte: 5"))
    alerts = fired(run(target, [denied(300), denied(360, arn=ADMIN)]), SHORT_ID)
    [summary] = target.closed_suppressions()
    assert len(alerts) == 1
    assert (summary.alert_id, summary.count) == (alerts[0].id, 2)
