"""Event time cannot be moved by a record ahead of its neighbours: the watermark follows the
latest eventTime reached by CORROBORATION records, not the latest one."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from engine.stateful_support import engine, event, fired, run
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.engine.stateful.clock import CORROBORATION, Clock, Latest

DAY = 86400.0
NEW_IP = "99999999-0000-4000-8000-000000000001"
RULES = f"""\
title: new source ip
id: {NEW_IP}
detection:
  selection: {{eventSource: kinesisvideo.amazonaws.com}}
  condition: selection
detector:
  first_seen: {{key: [userIdentity.arn], value: [sourceIPAddress], learning: 1h, retention: 30d}}
"""


def test_the_watermark_is_the_second_latest_event_time_minus_the_lateness() -> None:
    assert CORROBORATION == 2
    clock = Clock(lateness=60.0)
    clock.advance(1000.0)
    assert clock.watermark == -math.inf  # one record alone moves nothing
    clock.advance(900.0)
    assert clock.watermark == 840.0
    clock.advance(1100.0)
    assert clock.watermark == 940.0


@pytest.mark.parametrize("ahead", [4 * DAY, 73 * 365 * DAY])  # four days, or 2099
def test_one_record_ahead_of_its_neighbours_does_not_move_the_watermark(ahead: float) -> None:
    clock = Clock(lateness=900.0)
    for when in (0.0, 10.0, 20.0, 20.0 + ahead, 30.0, 40.0):
        clock.advance(when)
    assert clock.watermark == 40.0 - 900.0  # the second latest: the record after the stray
    assert not clock.is_late(35.0)


def test_two_records_reaching_a_time_move_the_watermark_there() -> None:
    clock = Clock(lateness=900.0)
    for when in (0.0, 10.0, 4 * DAY, 4 * DAY + 5):
        clock.advance(when)
    assert clock.watermark == 4 * DAY - 900.0


def test_a_clock_that_needs_one_record_follows_the_latest() -> None:
    clock = Clock(lateness=60.0, corroboration=1)
    clock.advance(1000.0)
    assert clock.watermark == 940.0


@given(st.lists(st.floats(0, 1e9), max_size=50), st.integers(1, 5))
@settings(max_examples=300)
def test_latest_is_the_kth_latest_time_added(times: list[float], count: int) -> None:
    latest = Latest(count)
    for when in times:
        latest.add(when)
    ordered = sorted(times, reverse=True)
    assert latest.value == (ordered[count - 1] if len(ordered) >= count else -math.inf)
    assert Latest(count, latest.times()).value == latest.value


def test_raising_every_time_kept_passes_event_time() -> None:
    latest = Latest(2, [100.0])
    latest.raise_to(500.0)
    assert (latest.value, latest.times()) == (500.0, [500.0, 500.0])


def test_a_clock_comes_back_from_what_it_kept_or_from_its_latest_time_alone() -> None:
    clock = Clock(lateness=60.0)
    clock.load(900.0, [4 * DAY, 900.0])
    assert clock.watermark == 840.0
    clock.advance(1000.0)
    assert clock.watermark == 940.0  # the record four days ahead is still alone
    older = Clock(lateness=60.0)
    older.load(900.0, None)  # a state file written before the times were kept
    assert older.watermark == 840.0


@pytest.mark.parametrize("ahead", [4 * DAY, 100 * DAY])
def test_records_after_one_far_ahead_are_not_late_and_their_decisions_are_taken(
    tmp_path: Path, ahead: float
) -> None:
    target = engine(tmp_path, RULES)
    stray = event(7200 + ahead, "ListStreams", ip="198.51.100.1", event_id="stray")
    news = [event(7200 + 60 * n, "ListStreams", ip=f"192.0.2.{n}", event_id=f"new-{n}")
            for n in range(1, 20)]

    alerts = run(target, [event(0), event(7200, "ListStreams"), stray, *news], flush=False)

    assert target.stats()["late"] == 0
    # each new value is decided as it arrives; the stray record, 30 days (the retention)
    # or more after its key's last use, starts a new learning for itself, not for the others
    assert [alert.event_ids for alert in fired(alerts, NEW_IP)] == [
        *[("stray",)] * (ahead < 30 * DAY), *[(f"new-{n}",) for n in range(1, 20)]]
    assert fired(target.flush(), NEW_IP) == []
