"""The watermark of a state partition follows its slowest input partition."""

from __future__ import annotations

import math

from detector.engine.stateful.clock import CORROBORATION
from detector.stream.watermark import Progress, SourceClock

HOUR = 3600.0


class Wall:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def clock(wall: Wall, lateness: float = 60.0, idle: float = 30.0,
          sources: int = 2, corroboration: int = 1) -> SourceClock:
    return SourceClock(lateness, idle, sources, now=wall, corroboration=corroboration)


def test_a_backlogged_input_partition_holds_the_watermark_back() -> None:
    wall = Wall()
    c = clock(wall)
    c.hear(0, 10 * HOUR)  # partition 0 is live
    c.hear(1, 8 * HOUR)  # partition 1 replays a two-hour backlog
    assert c.watermark == 8 * HOUR - 60
    assert not c.is_late(8 * HOUR + 5)
    assert c.is_late(8 * HOUR - 61)
    c.hear(1, 9 * HOUR)
    assert c.watermark == 9 * HOUR - 60


def test_a_single_input_partition_is_the_plain_latest_minus_lateness() -> None:
    c = clock(Wall(), sources=1)
    for when in (100.0, 400.0, 250.0):
        c.hear(0, when)
        c.advance(when)
    assert c.watermark == 340.0
    assert c.max_seen == 400.0


def test_an_input_partition_not_heard_from_yet_is_waited_for_until_the_idle_time() -> None:
    wall = Wall()
    c = clock(wall, idle=30.0)
    c.hear(0, 10 * HOUR)
    assert not c.is_late(0.0)  # partition 1 may start with older records
    wall.now = 31.0
    c.hear(0, 10 * HOUR)  # partition 1 is empty, or its consumer has not started
    assert c.watermark == 10 * HOUR - 60


def test_a_quiet_input_partition_stops_holding_the_watermark_after_the_idle_time() -> None:
    wall = Wall()
    c = clock(wall, idle=30.0)
    c.hear(0, 1000.0)
    c.hear(1, 500.0)
    wall.now = 29.0
    c.hear(0, 2000.0)
    assert c.watermark == 500.0 - 60  # partition 1 spoke 29 s ago: still waited for
    wall.now = 31.0
    c.hear(0, 3000.0)
    assert c.watermark == 3000.0 - 60
    c.hear(1, 600.0)  # it speaks again, far behind: its records are late now
    assert c.is_late(600.0)
    assert c.watermark == 3000.0 - 60  # and the watermark never moves back


def test_idle_time_passes_event_time_for_every_partition() -> None:
    wall = Wall()
    c = clock(wall)
    c.hear(0, 1000.0)
    c.hear(1, 900.0)
    c.pass_idle(1500.0)
    assert c.watermark == 1440.0
    assert c.max_seen == 1500.0
    c.hear(1, 1200.0)  # partition 1 is not slower than the idle time that passed
    assert c.watermark == 1440.0


def test_the_clock_survives_a_restart_through_plain_json() -> None:
    wall = Wall()
    c = clock(wall)
    c.hear(0, 1000.0)
    c.hear(1, 700.0)
    c.advance(1000.0)
    saved = c.dump()
    assert saved == {"max_event_time": 1000.0, "floor": 700.0,
                     "sources": {"0": 1000.0, "1": 700.0}, "latest_event_times": [1000.0],
                     "source_times": {"0": [1000.0], "1": [700.0]}}
    wall.now = 500.0  # long after: a restarted worker waits for every partition again
    restored = clock(wall, sources=3)
    restored.restore(saved)
    assert (restored.max_seen, restored.floor, restored.watermark) == (1000.0, 700.0, 640.0)
    restored.hear(0, 1100.0)
    restored.hear(2, 1100.0)
    assert restored.watermark == 640.0  # partition 1 is still waited for
    restored.hear(1, 900.0)
    assert restored.watermark == 840.0
    assert clock(wall).dump() == {"max_event_time": None, "floor": None, "sources": {},
                                  "latest_event_times": [], "source_times": {}}


def test_an_input_partition_read_to_its_end_is_not_waited_for_until_it_speaks() -> None:
    wall = Wall()
    c = clock(wall)
    c.hear(0, 1000.0)
    assert c.watermark == -math.inf  # partition 1 may still come with older records
    c.quiet(1)
    assert c.watermark == 940.0
    c.hear(1, 990.0)
    c.hear(0, 2000.0)
    assert c.watermark == 940.0  # waited for again (not 1940), and never moved back


DAY = 24 * HOUR


def test_one_record_ahead_of_its_input_partition_moves_no_watermark() -> None:
    c = clock(Wall(), sources=1, corroboration=CORROBORATION)
    for when in (1000.0, 1010.0, 1020.0 + 4 * DAY, 1030.0):
        c.hear(0, when)
        c.advance(when)
    assert c.watermark == 1030.0 - 60  # the second latest of the partition
    assert c.max_seen == 1030.0
    assert not c.is_late(1000.0)
    c.hear(0, 1020.0 + 4 * DAY + 1)  # a second record that far: the partition got there
    assert c.watermark == 1020.0 + 4 * DAY - 60


def test_a_stray_record_of_one_partition_is_not_corroborated_by_another() -> None:
    c = clock(Wall(), sources=2, corroboration=CORROBORATION)
    for source in (0, 1):
        c.hear(source, 1000.0)
        c.hear(source, 1010.0)
    c.hear(0, 1010.0 + 4 * DAY)
    c.hear(1, 1020.0 + 4 * DAY)
    assert c.watermark == 1010.0 - 60


def test_corroborated_times_survive_a_restart() -> None:
    wall = Wall()
    c = clock(wall, sources=1, corroboration=CORROBORATION)
    for when in (1000.0, 1010.0, 1010.0 + 4 * DAY):
        c.hear(0, when)
        c.advance(when)
    restored = clock(wall, sources=1, corroboration=CORROBORATION)
    restored.restore(c.dump())
    assert (restored.watermark, restored.max_seen) == (c.watermark, c.max_seen)
    restored.hear(0, 1020.0)
    assert restored.watermark == 1020.0 - 60  # the stray is still alone


def test_a_time_not_yet_corroborated_survives_a_restart() -> None:
    wall = Wall()
    c = clock(wall, sources=1, corroboration=CORROBORATION)
    c.hear(0, 1000.0)  # one record of the partition: the clock does not move yet
    assert c.watermark == -math.inf
    restored = clock(wall, sources=1, corroboration=CORROBORATION)
    restored.restore(c.dump())
    restored.hear(0, 1010.0)  # the second record, after a restart, corroborates the first
    assert restored.watermark == 1000.0 - 60


def test_a_saved_clock_without_kept_times_comes_back_as_corroborated() -> None:
    restored = clock(Wall(), sources=1, corroboration=CORROBORATION)
    restored.restore({"max_event_time": 1000.0, "floor": 1000.0, "sources": {"0": 1000.0}})
    assert (restored.max_seen, restored.watermark) == (1000.0, 940.0)
    restored.hear(0, 1100.0)
    assert restored.watermark == 1000.0 - 60  # one record alone does not move it


def test_idle_time_raises_every_corroborated_time() -> None:
    c = clock(Wall(), sources=1, corroboration=CORROBORATION)
    c.hear(0, 1000.0)
    c.hear(0, 1010.0)
    c.pass_idle(2000.0)
    assert (c.watermark, c.max_seen) == (1940.0, 2000.0)
    c.hear(0, 2005.0)
    assert c.watermark == 1940.0


def test_progress_beats_the_second_latest_message_time_of_an_input_partition() -> None:
    progress = Progress(corroboration=CORROBORATION)
    progress.note(0, 10, 1000.0)
    assert progress.to_tell(0, 11) is None  # one message alone tells nothing
    progress.note(0, 11, 1000.0 + 4 * DAY)
    progress.note(0, 12, 1010.0)
    assert progress.to_tell(0, 13) == 1010.0
    plain = Progress()
    plain.note(0, 10, 1000.0)
    assert plain.to_tell(0, 11) == 1000.0
