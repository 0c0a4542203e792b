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


def values(target: StatefulEngine) -> dict[str, Any]:
    """The operator's values and their last use (whole minutes)."""
    entry = target.stateful.state.get(ENTRY)
    return {} if entry is None else dict(entry[1])


def minute(record: Record) -> int:
    """The whole minute (rounded up) a first-seen entry keeps as a value's last use."""
    return math.ceil(record.event_time / MINUTE)


def test_a_known_value_refreshes_its_last_use(tmp_path: Path) -> None:
    target = engine(tmp_path, RULES)
    again = event(3 * HOUR)
    assert run(target, [event(0), event(2 * HOUR), again], flush=False) == []
    assert values(target) == {"10.20.30.41": minute(again)}


def test_a_new_value_alerts_when_it_arrives_and_its_repeats_do_not(tmp_path: Path) -> None:
    target = engine(tmp_path, RULES)
    first, repeat = event(2 * HOUR, ip=NEW_IP), event(2 * HOUR + 5 * MINUTE, ip=NEW_IP)
    [alert] = fired(run(target, [event(0), first], flush=False), FIRST_SEEN_ID)
    assert alert.event_ids == (first.event_id,)
    assert fired(run(target, [repeat], flush=False), FIRST_SEEN_ID) == []
    assert values(target)[NEW_IP] == minute(repeat)


def test_an_earlier_use_arriving_late_is_counted_as_a_contradiction(tmp_path: Path) -> None:
    # the earlier use is itself in the learning period: in event-time order nothing alerts
    target = engine(tmp_path, RULES, lateness="2h")
    later, earlier = event(70 * MINUTE, ip=NEW_IP), event(50 * MINUTE, ip=NEW_IP)
    [alert] = fired(run(target, [event(0), later, earlier]), FIRST_SEEN_ID)
    assert alert.event_ids == (later.event_id,)
    assert target.stats()["contradicted"] == 1
    in_order = engine(tmp_path, RULES, lateness="2h")
    assert fired(run(in_order, [event(0), earlier, later]), FIRST_SEEN_ID) == []
    assert in_order.stats()["contradicted"] == 0


def test_a_late_first_event_that_ends_the_learning_earlier_is_counted(tmp_path: Path) -> None:
    # the key seemed to start 61 minutes later: its new value was taken for a learning event
    target = engine(tmp_path, RULES, lateness="2h")
    assert fired(run(target, [event(61 * MINUTE, ip=NEW_IP), event(0)]), FIRST_SEEN_ID) == []
    assert target.stats()["contradicted"] == 1


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
