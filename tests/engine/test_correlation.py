"""Sigma correlations over event time: thresholds, sliding windows, once per aligned bucket,
tumbling windows for upper bounds, group keys, duplicates and late events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from engine.stateful_support import ADMIN, HEADER, OPERATOR, engine, event, fired, run

from detector.engine import load_rules
from detector.engine.stateful import correlation
from detector.events import Record

DENIED = """\
title: denied
id: 11111111-0000-4000-8000-000000000001
name: denied
detection:
  selection: {eventSource: kinesisvideo.amazonaws.com, errorCode: AccessDeniedException}
  condition: selection
"""
BURST_ID = "11111111-0000-4000-8000-000000000002"


def burst(condition: str = "gte: 3", timespan: str = "5m") -> str:
    return DENIED + f"""---
title: burst
id: {BURST_ID}
correlation:
  type: event_count
  rules: [denied]
  group-by: [userIdentity.arn]
  timespan: {timespan}
  condition: {{{condition}}}
"""


def denied(seconds: float, **fields: Any) -> Record:
    return event(seconds, errorCode="AccessDeniedException", **fields)


def test_event_count_fires_when_the_threshold_is_reached_and_not_before(tmp_path: Path) -> None:
    target = engine(tmp_path, burst())
    assert run(target, [denied(0), denied(60)], flush=False) == []
    alerts = run(target, [denied(120)], flush=False)
    assert [alert.rule_id for alert in alerts] == [BURST_ID]
    assert alerts[0].kind == "event_count"
    assert alerts[0].group_key == {"userIdentity.arn": OPERATOR}
    assert alerts[0].details["correlation"]["count"] == 3
    assert len(alerts[0].event_ids) == 3


def test_the_window_includes_both_ends_of_the_timespan(tmp_path: Path) -> None:
    alerts = run(engine(tmp_path, burst()), [denied(0), denied(150), denied(300)])
    assert len(fired(alerts, BURST_ID)) == 1


def test_an_event_one_second_outside_the_timespan_does_not_count(tmp_path: Path) -> None:
    alerts = run(engine(tmp_path, burst()), [denied(0), denied(150), denied(301)])
    assert fired(alerts, BURST_ID) == []


def test_the_window_slides_with_the_events(tmp_path: Path) -> None:
    # 0 and 200 are too far from 400 and 500; 200, 400 and 500 are within five minutes
    alerts = run(engine(tmp_path, burst()), [denied(0), denied(200), denied(400), denied(500)])
    [alert] = fired(alerts, BURST_ID)
    assert alert.details["correlation"]["count"] == 3
    assert alert.event_ids == (denied(200).event_id, denied(400).event_id, denied(500).event_id)


def test_a_burst_straddling_two_aligned_buckets_alerts_once(tmp_path: Path) -> None:
    # buckets are [0, 300) and [300, 600): the burst 240..360 crosses the boundary
    alerts = run(engine(tmp_path, burst()), [denied(240), denied(280), denied(320), denied(360)])
    assert len(fired(alerts, BURST_ID)) == 1


def test_a_continuing_burst_alerts_once_per_bucket(tmp_path: Path) -> None:
    records = [denied(seconds) for seconds in range(0, 900, 30)]  # 30 events over 15 minutes
    alerts = fired(run(engine(tmp_path, burst()), records), BURST_ID)
    assert len(alerts) == 3
    assert len({alert.id for alert in alerts}) == 3


def test_only_the_latest_events_of_a_group_key_keep_their_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(correlation, "KEPT_RECORDS", 3)
    target = engine(tmp_path, burst("gte: 100"))

    def kept() -> list[tuple[float, bool]]:
        state = target.stateful.state
        [entry] = [state.get(key) for key in state.all_keys() if key.startswith("co|")]
        start = entry["e"][0][correlation.TIME]
        return [(item[correlation.TIME] - start, item[correlation.RECORD] is not None)
                for item in entry["e"]]

    run(target, [denied(seconds) for seconds in range(0, 60, 10)], flush=False)
    assert kept() == [(0, False), (10, False), (20, False), (30, True), (40, True), (50, True)]
    # late: one among the older events comes without its record; one among the latest keeps
    # it and pushes the oldest of them out
    run(target, [denied(5), denied(45)], flush=False)
    assert kept() == [(0, False), (5, False), (10, False), (20, False), (30, False),
                      (40, True), (45, True), (50, True)]


def test_an_alert_counts_every_event_and_lists_those_with_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(correlation, "KEPT_RECORDS", 3)
    events = [denied(seconds) for seconds in range(0, 50, 10)]
    [alert] = fired(run(engine(tmp_path, burst("gte: 5")), events), BURST_ID)
    assert alert.details["correlation"]["count"] == 5
    assert alert.details["correlation"]["events"] == 5
    assert list(alert.event_ids) == [record.event_id for record in events[-3:]]


def test_a_window_behind_the_kept_records_alerts_with_its_latest_event_and_group_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(correlation, "KEPT_RECORDS", 1)
    target = engine(tmp_path, burst("gte: 3") + """detector:
  suppress: {window: 1h, by: [userIdentity.arn]}
""", lateness="1h")
    assert run(target, [denied(0), denied(10), denied(1000)], flush=False) == []
    late = denied(20)  # completes the window ending at it, behind a newer event's record
    [alert] = fired(run(target, [late], flush=False), BURST_ID)
    assert alert.details["correlation"]["count"] == 3
    assert list(alert.event_ids) == [late.event_id]
    assert [event.principal_arn for event in alert.events] == [OPERATOR]
    assert alert.group_key == {"userIdentity.arn": OPERATOR}
    state = target.stateful.state
    assert [key for key in state.all_keys() if key.startswith("su|")] == [
        f'su|{BURST_ID}|["{OPERATOR}"]']


def test_group_keys_count_separately(tmp_path: Path) -> None:
    records = [denied(0), denied(10, arn=ADMIN), denied(20), denied(30, arn=ADMIN)]
    assert fired(run(engine(tmp_path, burst()), records), BURST_ID) == []
    alerts = fired(run(engine(tmp_path, burst()), [*records, denied(40, arn=ADMIN)]), BURST_ID)
    assert [alert.group_key for alert in alerts] == [{"userIdentity.arn": ADMIN}]


def test_a_duplicate_event_id_never_counts_twice(tmp_path: Path) -> None:
    target = engine(tmp_path, burst())
    alerts = run(target, [denied(0), denied(0), denied(60), denied(60)])
    assert fired(alerts, BURST_ID) == []
    assert target.stats()["duplicates"] == 2


def test_late_events_are_counted_and_left_out_of_windows(tmp_path: Path) -> None:
    target = engine(tmp_path, burst(), lateness="5m")
    alerts = run(target, [denied(1000), denied(1010), denied(600), denied(610)])
    assert fired(alerts, BURST_ID) == []
    assert target.stats()["late"] == 2


def test_events_within_the_lateness_count_whatever_their_order(tmp_path: Path) -> None:
    shuffled = run(engine(tmp_path, burst()), [denied(900), denied(700), denied(800)])
    in_order = run(engine(tmp_path, burst()), [denied(700), denied(800), denied(900)])
    assert len(fired(in_order, BURST_ID)) == 1
    assert [alert.id for alert in fired(shuffled, BURST_ID)] == [
        alert.id for alert in fired(in_order, BURST_ID)]


def test_an_upper_bound_is_tested_on_tumbling_windows_once_they_close(tmp_path: Path) -> None:
    target = engine(tmp_path, burst("gte: 2, lte: 3", "10m"), lateness="1m")
    assert run(target, [denied(0), denied(60), denied(300)], flush=False) == []
    # the watermark (the second latest event minus the lateness) passes 600: [0, 600) closes
    # with three events
    assert len(fired(run(target, [denied(700), denied(701)], flush=False), BURST_ID)) == 1
    # [600, 1200) ends with five events: over the upper bound
    records = [denied(710), denied(720), denied(730), denied(1300)]
    assert fired(run(target, records, flush=False), BURST_ID) == []
    assert fired(target.flush(), BURST_ID) == []  # [1200, 1800) holds one


DESCRIBED = DENIED.replace("errorCode: AccessDeniedException", "eventName|startswith: Describe")
VALUES = DESCRIBED + """---
title: many streams
id: 11111111-0000-4000-8000-000000000003
correlation:
  type: value_count
  rules: [denied]
  group-by: [userIdentity.arn]
  timespan: 5m
  condition: {gte: 3, field: requestParameters.streamName}
"""


def test_value_count_counts_distinct_values(tmp_path: Path) -> None:
    def described(seconds: float, stream: str | None) -> Record:
        params = {"streamName": stream} if stream else {}
        return event(seconds, requestParameters=params)

    same = [described(0, "a"), described(10, "a"), described(20, "b"), described(30, None)]
    assert fired(run(engine(tmp_path, VALUES), same), "11111111-0000-4000-8000-000000000003") == []
    alerts = run(engine(tmp_path, VALUES), [*same, described(40, "c")])
    [alert] = fired(alerts, "11111111-0000-4000-8000-000000000003")
    assert alert.details["correlation"]["count"] == 3


TEMPORAL = """\
title: media read
id: 22222222-0000-4000-8000-000000000001
name: media_read
detection:
  selection: {eventName: GetDataEndpoint}
  condition: selection
---
title: retention cut
id: 22222222-0000-4000-8000-000000000002
name: retention_cut
detection:
  selection: {eventName: UpdateDataRetention}
  condition: selection
---
title: sequence
id: 22222222-0000-4000-8000-000000000003
correlation:
  type: TYPE
  rules: [media_read, retention_cut]
  group-by: [userIdentity.arn]
  timespan: 1h
"""
SEQUENCE_ID = "22222222-0000-4000-8000-000000000003"


def test_temporal_needs_every_rule_within_the_timespan_in_any_order(tmp_path: Path) -> None:
    rules = TEMPORAL.replace("TYPE", "temporal")
    cut_then_read = [event(0, "UpdateDataRetention"), event(600, "GetDataEndpoint")]
    assert len(fired(run(engine(tmp_path, rules), cut_then_read), SEQUENCE_ID)) == 1
    too_far = [event(0, "UpdateDataRetention"), event(3601, "GetDataEndpoint")]
    assert fired(run(engine(tmp_path, rules), too_far), SEQUENCE_ID) == []


def test_one_event_matching_several_base_rules_covers_them_all(tmp_path: Path) -> None:
    """A media read of Kinesis Video matches both "media read" and "any Kinesis Video call"."""
    rules = TEMPORAL.replace("TYPE", "temporal").replace(
        "selection: {eventName: UpdateDataRetention}",
        "selection: {eventSource: kinesisvideo.amazonaws.com}")
    [alert] = fired(run(engine(tmp_path, rules), [event(0, "GetDataEndpoint")]), SEQUENCE_ID)
    assert len(alert.event_ids) == 1
    with_threshold = rules.replace("  timespan: 1h", "  timespan: 1h\n  condition: {gte: 2}")
    assert len(fired(run(engine(tmp_path, with_threshold), [event(0, "GetDataEndpoint")]),
                     SEQUENCE_ID)) == 1


def test_temporal_ordered_needs_the_rules_in_their_order(tmp_path: Path) -> None:
    rules = TEMPORAL.replace("TYPE", "temporal_ordered")
    cut_then_read = [event(0, "UpdateDataRetention"), event(600, "GetDataEndpoint")]
    assert fired(run(engine(tmp_path, rules), cut_then_read), SEQUENCE_ID) == []
    read_then_cut = [event(0, "GetDataEndpoint"), event(600, "UpdateDataRetention")]
    [alert] = fired(run(engine(tmp_path, rules), read_then_cut), SEQUENCE_ID)
    assert alert.kind == "temporal_ordered"
    assert alert.event_ids == tuple(record.event_id for record in read_then_cut)


def test_base_rules_of_a_correlation_do_not_alert_on_their_own(tmp_path: Path) -> None:
    rules = TEMPORAL.replace("TYPE", "temporal_ordered")
    alerts = run(engine(tmp_path, rules), [event(0, "GetDataEndpoint")])
    assert alerts == []


FIRST_SEEN_BASE = """\
title: new source ip
id: 11111111-0000-4000-8000-000000000011
name: new_ip
detection:
  selection: {eventSource: kinesisvideo.amazonaws.com}
  condition: selection
detector:
  first_seen: {key: [userIdentity.arn], value: [sourceIPAddress]}
"""
NEW_IPS_ID = "11111111-0000-4000-8000-000000000012"
NEW_IPS = FIRST_SEEN_BASE + f"""---
title: two new ips within five minutes
id: {NEW_IPS_ID}
correlation:
  type: event_count
  rules: [new_ip]
  group-by: [userIdentity.arn]
  timespan: 5m
  condition: {{gte: 2}}
"""


def test_first_seen_events_decided_long_after_they_happened_still_correlate(
    tmp_path: Path,
) -> None:
    # new IPs at 10:00 and 12:00 (minutes); the next event is far later, so both are decided
    # when the watermark (40:00 - 15m) has long passed the five minutes that link them
    records = [event(600, ip="10.0.0.1"), event(720, ip="10.0.0.2"),
               event(2400, source="s3.amazonaws.com")]
    [alert] = fired(run(engine(tmp_path, NEW_IPS), records), NEW_IPS_ID)
    assert alert.event_ids == (records[0].event_id, records[1].event_id)


EXACTLY_ONE_ID = "11111111-0000-4000-8000-000000000013"
EXACTLY_ONE = FIRST_SEEN_BASE.replace(
    "eventSource: kinesisvideo.amazonaws.com", "eventName: GetClip") + f"""---
title: deleted
id: 11111111-0000-4000-8000-000000000014
name: deleted
detection:
  selection: {{eventName: DeleteStream}}
  condition: selection
---
title: exactly one per two minutes
id: {EXACTLY_ONE_ID}
correlation:
  type: event_count
  rules: [deleted, new_ip]
  group-by: [userIdentity.arn]
  timespan: 2m
  condition: {{gte: 1, lte: 1}}
"""


def test_a_tumbling_window_waits_for_the_first_seen_events_it_holds(tmp_path: Path) -> None:
    # [0, 120) holds one deletion; [120, 240) a deletion and a new IP at 200, which is decided
    # only when the watermark passes 200: the window must not be tested before
    head = [event(10, "DeleteStream"), event(130, "DeleteStream"), event(200, "GetClip")]
    for clock in ([event(430, "ListStreams"), event(560, "ListStreams")],
                  [event(560, "ListStreams"), event(430, "ListStreams")]):
        alerts = fired(run(engine(tmp_path, EXACTLY_ONE, lateness="5m"), head + clock),
                       EXACTLY_ONE_ID)
        assert [alert.event_ids for alert in alerts] == [(head[0].event_id,)]


def aggregate(kind: str, condition: str) -> str:
    return DENIED.replace("errorCode: AccessDeniedException", "eventName: GetClip") + f"""---
title: {kind}
id: {BURST_ID}
correlation:
  type: {kind}
  rules: [denied]
  group-by: [userIdentity.arn]
  timespan: 10m
  condition: {{field: requestParameters.maxBytes, {condition}}}
"""


def clip(seconds: float, size: object) -> Record:
    return event(seconds, "GetClip", requestParameters={"maxBytes": size})


@pytest.mark.parametrize(("kind", "condition", "expected"), [
    ("value_sum", "gte: 1000", 1150.0),
    ("value_avg", "gt: 200", 287.5),
    ("value_median", "lt: 300", 225.0),
    ("value_percentile", "percentile: 90, gte: 400", 500.0),  # nearest rank: 4th of 4
])
def test_value_aggregates_are_tested_on_whole_windows_once_they_close(
    tmp_path: Path, kind: str, condition: str, expected: float
) -> None:
    target = engine(tmp_path, aggregate(kind, condition))
    sizes = [500, 200, "250", 200, "not a number", None]  # only the four numbers count
    clips = [clip(60 * n, size) for n, size in enumerate(sizes)]
    assert fired(run(target, clips, flush=False), BURST_ID) == []  # the window is open
    [alert] = fired(target.flush(), BURST_ID)
    assert alert.kind == kind
    assert alert.details["correlation"]["count"] == expected


def test_a_value_aggregate_that_does_not_hold_or_has_no_numbers_is_quiet(
    tmp_path: Path,
) -> None:
    assert fired(run(engine(tmp_path, aggregate("value_sum", "gte: 1000")),
                     [clip(0, 400), clip(60, 500)]), BURST_ID) == []
    assert fired(run(engine(tmp_path, aggregate("value_avg", "lt: 10")),
                     [clip(0, "nan"), clip(60, "1e999")]), BURST_ID) == []


def test_value_percentile_needs_its_percentile(tmp_path: Path) -> None:
    text = aggregate("value_percentile", "gte: 400")
    documents = text.split("---\n")
    (tmp_path / "rules.yml").write_text(HEADER + documents[0] + "---\n" + documents[1])
    [error] = load_rules([tmp_path]).errors
    assert "value_percentile (and only it) needs" in str(error)
