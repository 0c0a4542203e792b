"""Every state entry fits in a changelog message: a key with huge values or a window with
countless events is cut back to its recent part, counted in `stats()["trimmed"]`."""

from __future__ import annotations

from pathlib import Path

import orjson
from engine.stateful_support import OPERATOR, event, fired, ruleset, run

from detector.engine.factory import StatefulEngine
from detector.engine.state import MemoryState
from detector.engine.stateful import Stateful
from detector.engine.stateful.keys import ENTRY_SLACK
from detector.events import DEFAULT_LIMITS

LIMIT = 400_000  # bytes a changelog message may hold, for these tests
FIRST_SEEN_ID = "cccccccc-0000-4000-8000-000000000001"
BURST_ID = "cccccccc-0000-4000-8000-000000000003"
RULES = f"""\
title: new user agent
id: {FIRST_SEEN_ID}
detection:
  selection: {{eventSource: kinesisvideo.amazonaws.com}}
  condition: selection
detector:
  first_seen: {{key: [userIdentity.arn], value: [userAgent], learning: 0s, retention: 30d}}
---
title: read
id: cccccccc-0000-4000-8000-000000000002
name: read
detection:
  selection: {{eventName: DescribeStream}}
  condition: selection
---
title: many reads
id: {BURST_ID}
correlation:
  type: event_count
  rules: [read]
  group-by: [userIdentity.arn]
  timespan: 1h
  condition: {{gte: 100000}}
"""


def bounded_engine(tmp_path: Path) -> StatefulEngine:
    rules = ruleset(tmp_path, RULES)
    return StatefulEngine(rules, Stateful(rules, MemoryState(), max_entry_bytes=LIMIT))


def sizes(target: StatefulEngine) -> dict[str, int]:
    state = target.stateful.state
    assert isinstance(state, MemoryState)
    return {key[:2]: len(orjson.dumps(value)) for key, value in state.snapshot().items()}


def test_a_key_with_countless_long_values_keeps_its_recent_ones(tmp_path: Path) -> None:
    target = bounded_engine(tmp_path)
    agents = [event(n, "ListStreams", userAgent=f"agent-{n:05d}-" + "x" * 300)
              for n in range(4000)]  # 4000 distinct 310-character values: 1.3 MB of them
    alerts = fired(run(target, agents, flush=False), FIRST_SEEN_ID)
    assert len(alerts) == 4000
    assert sizes(target)["fs"] <= LIMIT
    assert target.stats()["trimmed"] > 2000
    # the latest values are still known, the earliest were forgotten
    again = [event(4000, "ListStreams", userAgent=agents[-1].data["userAgent"]),
             event(4001, "ListStreams", userAgent=agents[0].data["userAgent"])]
    assert [alert.event_ids for alert in fired(run(target, again), FIRST_SEEN_ID)] == [
        (again[1].event_id,)]


def test_a_window_with_countless_events_keeps_its_latest(tmp_path: Path) -> None:
    target = bounded_engine(tmp_path)
    reads = [event(n * 0.1, "DescribeStream", arn=OPERATOR, event_id=f"read-{n}-" + "i" * 200)
             for n in range(6000)]
    run(target, reads, flush=False)
    assert sizes(target)["co"] <= LIMIT
    assert target.stats()["trimmed"] > 0


def test_one_long_value_is_measured_at_once(tmp_path: Path) -> None:
    target = bounded_engine(tmp_path)
    huge = [event(n, "ListStreams", userAgent=f"{n}" + "y" * 4000) for n in range(200)]
    run(target, huge, flush=False)
    assert sizes(target)["fs"] <= LIMIT
    assert target.stats()["trimmed"] > 0


def test_the_slack_between_two_measurements_is_a_small_part_of_a_changelog_message() -> None:
    assert DEFAULT_LIMITS.max_message_bytes // 20 > ENTRY_SLACK
