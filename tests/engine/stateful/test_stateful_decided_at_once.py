"""Shortcuts of the stateful evaluator: what it decides at once instead of waiting for the
watermark, and the window measurements it skips. Each gives the alerts the full procedure
gives; these tests pin down that they are taken, and that they stay correct at the edges."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from engine.stateful_support import OPERATOR, engine, event, fired, run

from detector.engine.factory import StatefulEngine
from detector.engine.stateful.clock import RecentIds
from detector.engine.stateful.first_seen import SETTLE
from detector.events import Record

MINUTE, HOUR = 60, 3600
LATENESS = 15 * MINUTE
FIRST_SEEN_ID = "77777777-0000-4000-8000-000000000001"
VARIETY_ID = "77777777-0000-4000-8000-000000000002"
RULES = f"""\
title: new source ip
id: {FIRST_SEEN_ID}
detection:
  selection: {{eventSource: kinesisvideo.amazonaws.com}}
  condition: selection
detector:
  first_seen: {{key: [userIdentity.arn], value: [sourceIPAddress], learning: 1h,
                retention: 7d}}
---
title: read
id: 77777777-0000-4000-8000-000000000003
name: read
detection:
  selection: {{eventName|startswith: [Describe, List, Get]}}
  condition: selection
---
title: read variety
id: {VARIETY_ID}
correlation:
  type: value_count
  rules: [read]
  group-by: [userIdentity.arn]
  timespan: 5m
  condition: {{gte: 3, field: eventName}}
"""
ENTRY = f'fs|{FIRST_SEEN_ID}|["{OPERATOR}"]'
NEW_IP = "203.0.113.66"


def held(target: StatefulEngine) -> list[list[Any]]:
    """The first-seen events the operator's entry holds (time, id, value, record, ...)."""
    entry = target.stateful.state.get(ENTRY)
    return entry[2] if entry is not None and len(entry) > 2 else []


def minute(record: Record) -> int:
    """The whole minute (rounded up) a first-seen entry keeps as a value's last use."""
    return math.ceil(record.event_time / MINUTE)


def test_a_known_value_is_decided_at_once_and_refreshes_its_last_use(tmp_path: Path) -> None:
    target = engine(tmp_path, RULES)
    run(target, [event(0), event(2 * HOUR)], flush=False)  # decided: 10.20.30.41 is known
    again = event(3 * HOUR)
    run(target, [again], flush=False)
    assert held(target) == []
    assert target.stateful.state.get(ENTRY)[1] == {"10.20.30.41": minute(again)}


def test_repeats_of_a_new_value_wait_on_its_first_event_without_their_record(
    tmp_path: Path,
) -> None:
    target = engine(tmp_path, RULES)
    first, repeat, earlier = (event(2 * HOUR, ip=NEW_IP), event(2 * HOUR + 5 * MINUTE, ip=NEW_IP),
                              event(2 * HOUR - 5 * MINUTE, ip=NEW_IP))
    run(target, [event(0), event(HOUR + 30 * MINUTE), first, repeat], flush=False)
    [item] = held(target)  # the repeat only noted its use on the first event
    assert item[1] == first.event_id and item[4] == minute(repeat)
    # an earlier use arriving late (within the lateness) is still the one that alerts
    alerts = run(target, [earlier])
    assert [alert.event_ids for alert in fired(alerts, FIRST_SEEN_ID)] == [(earlier.event_id,)]
    assert target.stateful.state.get(ENTRY)[1][NEW_IP] == minute(repeat)


def test_new_values_in_the_learning_period_are_held_without_their_record(
    tmp_path: Path,
) -> None:
    target = engine(tmp_path, RULES)
    learnt = event(25 * MINUTE, ip=NEW_IP)
    run(target, [event(0), event(20 * MINUTE), learnt, event(40 * MINUTE)], flush=False)
    assert [(item[2], item[3]) for item in held(target)] == [(NEW_IP, None)]
    # it enters the values in event-time order once SETTLE has passed, and counts as known
    later = learnt.event_time - event(0).event_time + SETTLE + LATENESS + MINUTE
    alerts = run(target, [event(later), event(later + MINUTE, ip=NEW_IP)], flush=False)
    assert held(target) == []
    assert set(target.stateful.state.get(ENTRY)[1]) == {"10.20.30.41", NEW_IP}
    assert fired(alerts + target.flush(), FIRST_SEEN_ID) == []


def test_learning_is_decided_at_once_only_when_no_earlier_start_is_possible(
    tmp_path: Path,
) -> None:
    # The key's first event arrives after a later one (within the lateness): the later one,
    # 61 minutes after it, must not be taken for a learning event although the key seemed
    # to start with it.
    target = engine(tmp_path, RULES, lateness="2h")
    alerts = run(target, [event(61 * MINUTE, ip=NEW_IP), event(0)])
    assert [alert.event_ids for alert in fired(alerts, FIRST_SEEN_ID)] == [
        (event(61 * MINUTE, ip=NEW_IP).event_id,)]


def test_an_event_arriving_late_completes_a_window_the_bound_had_ruled_out(
    tmp_path: Path,
) -> None:
    # In order, the window ending at the third read holds two names (its bound says so);
    # a third name arriving late, inside that window, makes it hold.
    reads = [event(0, "DescribeStream"), event(60, "DescribeStream"), event(120, "ListStreams")]
    target = engine(tmp_path, RULES)
    assert fired(run(target, reads, flush=False), VARIETY_ID) == []
    [alert] = fired(run(target, [event(30, "GetDataEndpoint")]), VARIETY_ID)
    assert alert.details["correlation"]["count"] == 3


def test_remembered_event_ids_keep_their_order_through_a_save_and_restore() -> None:
    recent = RecentIds(horizon=HOUR, capacity=3)
    for ident in "abcd":
        recent.seen(ident, 1000.0, watermark=0.0)
    restored = RecentIds(horizon=HOUR, capacity=3)
    restored.restore([[ident, when] for ident, when in recent.ids.items()])
    restored.seen("e", 1000.0, watermark=0.0)
    assert list(restored.ids) == ["c", "d", "e"]  # the first remembered went first
