"""The same events in any order within the allowed lateness, duplicates included, give the
same alerts (compared by id) and the same suppression summaries, but where a late earlier
event contradicts a decision taken at once (first seen, rare values), which is counted.

Two arrival orders are drawn from one set of delays: the delays as they fall (any event may
overtake any other within the lateness), and the same places with each key's events put back
in event-time order (keys interleave, correlations by other fields see any order). The second
can contradict nothing, so every example checks identical alerts; the first checks the
documented relation: identical alerts when nothing was counted, and only first-seen-fed
alerts may differ when something was."""

from __future__ import annotations

from pathlib import Path

from engine.stateful_support import ADMIN, OPERATOR, engine, event, run
from hypothesis import HealthCheck, given, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st
from hypothesis import target as hypothesis_target

from detector.alerts import event_key
from detector.engine.factory import StatefulEngine
from detector.events import Record

LATENESS = 900
RULES = """\
title: kinesis video call from a new ip
id: 55555555-0000-4000-8000-000000000001
name: new_ip
detection:
  selection: {eventSource: kinesisvideo.amazonaws.com}
  condition: selection
detector:
  first_seen: {key: [userIdentity.arn], value: [sourceIPAddress], learning: 5m, retention: 30m}
---
title: denied
id: 55555555-0000-4000-8000-000000000002
name: denied
detection:
  selection: {errorCode: AccessDeniedException}
  condition: selection
---
title: read
id: 55555555-0000-4000-8000-000000000003
name: read
detection:
  selection: {eventName|startswith: [Describe, List, Get]}
  condition: selection
---
title: destroy
id: 55555555-0000-4000-8000-000000000004
name: destroy
detection:
  selection: {eventName: [DeleteStream, UpdateDataRetention]}
  condition: selection
---
title: deleted
id: 55555555-0000-4000-8000-000000000005
detection:
  selection: {eventName: DeleteStream}
  condition: selection
---
title: denied, alone
id: 55555555-0000-4000-8000-000000000006
detection:
  selection: {errorCode: AccessDeniedException}
  condition: selection
detector:
  suppress: {window: 30m, by: [userIdentity.arn]}
---
title: new ip, alone
id: 55555555-0000-4000-8000-000000000007
detection:
  selection: {eventSource: kinesisvideo.amazonaws.com}
  condition: selection
detector:
  first_seen: {key: [userIdentity.arn], value: [sourceIPAddress], learning: 5m, retention: 20m}
  suppress: {window: 5m, by: []}
---
title: denied burst
id: 55555555-0000-4000-8000-000000000011
correlation:
  type: event_count
  rules: [denied]
  group-by: [userIdentity.arn]
  timespan: 5m
  condition: {gte: 3}
detector:
  suppress: {window: 20m, by: [userIdentity.arn]}
---
title: read variety
id: 55555555-0000-4000-8000-000000000012
correlation:
  type: value_count
  rules: [read]
  group-by: [userIdentity.arn]
  timespan: 5m
  condition: {gte: 3, field: eventName}
---
title: new ip then destroy
id: 55555555-0000-4000-8000-000000000013
correlation:
  type: temporal_ordered
  rules: [new_ip, destroy]
  group-by: [userIdentity.arn]
  timespan: 10m
---
title: moderate reading
id: 55555555-0000-4000-8000-000000000014
correlation:
  type: event_count
  rules: [read]
  group-by: [sourceIPAddress]
  timespan: 10m
  condition: {gte: 2, lte: 4}
detector:
  suppress: {window: 3m, by: []}
---
title: read and destroy
id: 55555555-0000-4000-8000-000000000015
correlation:
  type: temporal
  rules: [read, destroy]
  group-by: [userIdentity.arn]
  timespan: 5m
---
title: new ips
id: 55555555-0000-4000-8000-000000000016
correlation:
  type: event_count
  rules: [new_ip]
  group-by: [userIdentity.arn]
  timespan: 5m
  condition: {gte: 2}
  generate: true
detector:
  suppress: {window: 2m, by: []}
---
title: rare api
id: 55555555-0000-4000-8000-000000000017
detection:
  selection: {eventSource: kinesisvideo.amazonaws.com}
  condition: selection
detector:
  rare: {key: [userIdentity.arn], value: [eventName], threshold: 2, window: 30m,
         learning: 5m}
"""
NAMES = ("DescribeStream", "ListStreams", "GetDataEndpoint", "UpdateDataRetention", "DeleteStream")

calls = st.lists(
    st.tuples(
        # eventTime, seconds after 2026-03-10T00:00:00Z: on or near whole minutes, so events
        # often share a window boundary or a second
        st.builds(lambda minute, second: minute * 60 + second,
                  st.integers(0, 120), st.sampled_from((0, 0, 0, 30, 59))),
        st.sampled_from((OPERATOR, ADMIN)),
        st.sampled_from(("10.20.30.41", "203.0.113.66", "192.0.2.9")),
        st.sampled_from(NAMES),
        st.booleans(),  # access denied
        # delivery delay: often none or the whole lateness, so the watermark jumps
        st.one_of(st.sampled_from((0, LATENESS)), st.integers(0, LATENESS)),
        st.one_of(st.none(), st.integers(0, LATENESS)),  # delay of a redelivery, if any
    ),
    min_size=20,  # enough events for windows, folds and pending decisions to interact
    max_size=60,
)


Outcome = tuple[set[tuple[str, str]], set[tuple[object, ...]]]
# Rules whose alerts depend on first-seen decisions, which a late earlier event can contradict
FIRST_SEEN_FED = {f"55555555-0000-4000-8000-0000000000{n}"
                  for n in ("01", "07", "13", "16", "17")}


def outcome(target: StatefulEngine, records: list[Record]) -> Outcome:
    """(rule, alert id) pairs and suppression summaries after the records and a flush."""
    alerts = run(target, records)
    summaries = {(s.rule_id, s.alert_id, s.count, s.first_event, s.last_event,
                  s.sample_event_ids) for s in target.closed_suppressions()}
    return {(alert.rule_id, alert.id) for alert in alerts}, summaries


def without_first_seen(result: Outcome) -> Outcome:
    alerts, summaries = result
    return ({item for item in alerts if item[0] not in FIRST_SEEN_FED},
            {item for item in summaries if item[0] not in FIRST_SEEN_FED})


Call = tuple[int, str, str, str, bool, int, int | None]


def deliveries(drawn: list[Call]) -> tuple[list[Record], list[Record]]:
    """(the events in event-time order, the events and redeliveries as they arrive)."""
    arrivals: list[tuple[int, int, Record]] = []
    ordered: list[Record] = []
    for index, (seconds, arn, ip, name, denied, delay, again) in enumerate(drawn):
        fields = {"errorCode": "AccessDeniedException"} if denied else {}
        record = event(seconds, name, event_id=f"e{index}", arn=arn, ip=ip, **fields)
        ordered.append(record)
        arrivals.append((seconds + delay, index, record))
        if again is not None:
            copy = event(seconds, name, event_id=f"e{index}", arn=arn, ip=ip, **fields)
            arrivals.append((seconds + delay + again, index, copy))
    ordered.sort(key=in_time)
    return ordered, [record for _at, _index, record in sorted(arrivals, key=lambda a: a[:2])]


def in_time(record: Record) -> tuple[float, str]:
    """Event-time order, ties by event id: the order first-seen decisions compare events in."""
    return record.event_time, event_key(record)


def key_of(record: Record) -> str:
    """What the first-seen and rare-value rules of RULES are keyed by."""
    return str(record.data["userIdentity"]["arn"])


def each_key_in_order(arrived: list[Record]) -> list[Record]:
    """`arrived` with each key's events put back in event-time order in the places its events
    first arrived at, each redelivery right after its event. Still within the lateness: a
    key's j-th place gets its j-th earliest event, no earlier than one of the key's first j
    events, which arrived at or after that place in `arrived`, when the watermark was no
    lower (a redelivery may have arrived after the watermark passed it: it moves along)."""
    firsts: list[Record] = []
    again: dict[str | None, list[Record]] = {}
    for record in arrived:
        if record.event_id in again:
            again[record.event_id].append(record)
        else:
            again[record.event_id] = []
            firsts.append(record)
    places: dict[str, list[int]] = {}
    for place, record in enumerate(firsts):
        places.setdefault(key_of(record), []).append(place)
    result = list(firsts)
    for spots in places.values():
        for place, record in zip(spots, sorted((firsts[spot] for spot in spots), key=in_time),
                                 strict=True):
            result[place] = record
    return [delivery for record in result for delivery in (record, *again[record.event_id])]


def overtaken(arrived: list[Record]) -> int:
    """Events that arrived after a later event (first deliveries only)."""
    seen: set[str] = set()
    latest = (-1.0, "")
    count = 0
    for record in arrived:
        if record.event_id in seen:
            continue
        seen.add(str(record.event_id))
        count += in_time(record) < latest
        latest = max(latest, in_time(record))
    return count


def replayed(tmp_path: Path, records: list[Record]) -> tuple[Outcome, dict[str, int]]:
    """The outcome of RULES over `records` fed in that order, and the engine's stats."""
    fresh = engine(tmp_path, RULES, lateness=LATENESS)
    return outcome(fresh, records), fresh.stats()


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls)
def test_arrival_order_within_the_lateness_does_not_change_the_alerts(
    tmp_path: Path, drawn: list[Call]
) -> None:
    ordered, arrived = deliveries(drawn)
    reference, in_order = replayed(tmp_path, ordered)
    assert in_order["contradicted"] == 0

    interleaved, stats = replayed(tmp_path, each_key_in_order(arrived))
    hypothesis_target(float(overtaken(each_key_in_order(arrived))),
                      label="events overtaken with each key in order")
    hypothesis_event("keys in order: first-seen-fed alerts compared"
                     if reference != without_first_seen(reference)
                     else "keys in order: no first-seen-fed alert")
    assert interleaved == reference
    assert stats["contradicted"] == 0
    assert stats["late"] == 0
    assert stats["duplicates"] == len(arrived) - len(ordered)

    shuffled, stats = replayed(tmp_path, arrived)
    hypothesis_event("any order: a decision contradicted" if stats["contradicted"]
                     else "any order: nothing contradicted")
    if stats["contradicted"] == 0:
        assert shuffled == reference
    assert without_first_seen(shuffled) == without_first_seen(reference)
    assert stats["late"] == 0
    assert stats["duplicates"] == len(arrived) - len(ordered)


BASELINE = """\
title: reads far above the principal's normal
id: 55555555-0000-4000-8000-000000000021
detection:
  selection: {eventSource: kinesisvideo.amazonaws.com}
  condition: selection
detector:
  baseline: {key: [userIdentity.arn], bucket: 5m, window: 2d, seasonality: hour_of_day,
             deviations: 1, floor: 2, learning: 1d}
  suppress: {window: 10m, by: []}
"""

busy_hours = st.lists(
    st.tuples(
        # three days, the first 15 minutes of the same hour (day 3 busiest): its buckets are
        # compared with the same slot of the days before
        st.builds(lambda day, minute, second: day * 86400 + minute * 60 + second,
                  st.sampled_from((0, 1, 2, 2)), st.integers(0, 14),
                  st.sampled_from((0, 0, 30, 59))),
        st.sampled_from((OPERATOR, ADMIN)),
        st.one_of(st.sampled_from((0, LATENESS)), st.integers(0, LATENESS)),
        st.one_of(st.none(), st.integers(0, LATENESS)),
    ),
    min_size=10,
    max_size=80,
)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(busy_hours)
def test_baseline_alerts_do_not_depend_on_the_arrival_order(
    tmp_path: Path, drawn: list[tuple[int, str, int, int | None]]
) -> None:
    deliveries: list[tuple[int, int, Record]] = []
    ordered: list[Record] = []
    for index, (seconds, arn, delay, again) in enumerate(drawn):
        record = event(seconds, event_id=f"e{index}", arn=arn)
        ordered.append(record)
        deliveries.append((seconds + delay, index, record))
        if again is not None:
            deliveries.append((seconds + delay + again, index,
                               event(seconds, event_id=f"e{index}", arn=arn)))
    ordered.sort(key=lambda record: (record.event_time, record.event_id))
    arrived = [record for _at, _index, record in sorted(deliveries, key=lambda d: d[:2])]

    reference = outcome(engine(tmp_path, BASELINE, lateness=LATENESS), ordered)
    hypothesis_event("alerts" if reference[0] else "no alert")
    shuffled_engine = engine(tmp_path, BASELINE, lateness=LATENESS)
    assert outcome(shuffled_engine, arrived) == reference
    assert shuffled_engine.stats()["late"] == 0
