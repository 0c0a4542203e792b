"""The offset guard: no offset of a partition goes unprocessed, whatever Faust delivers."""

from __future__ import annotations

from detector.stream.continuity import OffsetGuard, Verdict

TP = ("in", 1)
PROCESS = Verdict(process=True)
DROP = Verdict(process=False)


class Wall:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def guard(wall: Wall | None = None) -> OffsetGuard[tuple[str, int]]:
    return OffsetGuard(retry=1.0, now=wall or Wall())


def test_offsets_in_order_are_processed_from_the_committed_one() -> None:
    g = guard()
    assert [g.check(TP, offset, 30) for offset in (30, 31, 32)] == [PROCESS] * 3


def test_offsets_delivered_again_since_the_assignment_are_dropped() -> None:
    """Faust may hand over again what was processed (its seek back after a recovery)."""
    g = guard()
    assert [g.check(TP, offset, 30) for offset in (30, 31, 32)] == [PROCESS] * 3
    assert [g.check(TP, offset, 33) for offset in (31, 32)] == [DROP] * 2
    assert g.check(TP, 33, 33) == PROCESS
    g.reset()  # a new assignment: its partitions are read again from their commits
    assert g.check(TP, 31, 31) == PROCESS


def test_a_hole_is_read_again_and_the_left_overs_before_the_re_read_are_dropped() -> None:
    """What a restarted worker was given (test_worker_scaling, one run in thirty): 36, then
    40 to 46 left over from a fetch made before Faust sought back, then the re-read."""
    g = guard()
    assert [g.check(TP, offset, 29) for offset in range(29, 37)] == [PROCESS] * 8
    assert g.check(TP, 40, 29) == Verdict(process=False, seek=37, probe=37)
    assert [g.check(TP, offset, 37) for offset in range(41, 47)] == [DROP] * 6
    assert [g.check(TP, offset, 37) for offset in range(37, 47)] == [PROCESS] * 10
    assert g.check(TP, 47, 37) == PROCESS


def test_a_hole_right_after_the_committed_offset_is_read_again() -> None:
    g = guard()
    assert g.check(TP, 33, 32) == Verdict(process=False, seek=32, probe=32)  # the first
    assert g.check(TP, 32, 32) == PROCESS


def test_a_re_read_that_skips_the_hole_again_is_sought_again_while_the_records_exist() -> None:
    """Faust may drop the re-read as well while the old fetch is still being delivered."""
    wall = Wall()
    g = guard(wall)
    g.check(TP, 47, 48)
    assert g.check(TP, 49, 48) == Verdict(process=False, seek=48, probe=48)
    g.probed(TP, 48, 48)  # the broker has a record at 48
    assert g.check(TP, 49, 48) == DROP  # the re-read started at 49: not to be trusted
    wall.now = 1.5
    assert g.check(TP, 49, 48) == Verdict(process=False, seek=48)
    assert g.check(TP, 48, 48) == PROCESS
    assert g.check(TP, 49, 48) == PROCESS


def test_offsets_that_do_not_exist_are_accepted_where_the_broker_says_records_resume() -> None:
    g = guard()
    assert g.check(TP, 10, None) == PROCESS
    assert g.check(TP, 12, None) == Verdict(process=False, seek=11, probe=11)  # 11: a marker
    assert g.check(TP, 12, None) == DROP  # the broker has not answered yet
    g.probed(TP, 11, 12)
    assert g.check(TP, 12, None) == PROCESS
    assert g.check(TP, 13, None) == PROCESS


def test_a_re_read_that_does_not_come_is_asked_for_again() -> None:
    wall = Wall()
    g = guard(wall)
    g.check(TP, 5, None)
    assert g.check(TP, 9, None) == Verdict(process=False, seek=6, probe=6)
    assert g.overdue() == []
    wall.now = 1.5
    assert g.overdue() == [(TP, Verdict(process=False, seek=6))]  # the probe is still out
    assert g.overdue() == []  # not again before another `retry`
    g.probed(TP, 6, None)  # it failed
    wall.now = 3.0
    assert g.overdue() == [(TP, Verdict(process=False, seek=6, probe=6))]
    g.probed(TP, 6, 6)
    wall.now = 4.5
    assert g.overdue() == [(TP, Verdict(process=False, seek=6))]
    assert g.hole(TP) == 6
    assert g.check(TP, 6, None) == PROCESS
    assert g.hole(TP) is None
    wall.now = 10.0
    assert g.overdue() == []


def test_an_answer_for_a_closed_or_other_hole_changes_nothing() -> None:
    g = guard()
    g.probed(TP, 3, 4)  # no hole
    g.check(TP, 5, 5)
    g.check(TP, 8, 5)
    g.probed(TP, 2, 8)  # an older hole's answer
    assert g.check(TP, 8, 5) == DROP


def test_partitions_are_independent_and_a_rebalance_starts_from_the_commits() -> None:
    g = guard()
    other = ("in", 2)
    assert g.check(TP, 5, 5) == PROCESS
    assert g.check(other, 100, None) == PROCESS
    g.reset()
    assert g.check(TP, 3, 3) == PROCESS  # the new owner's commit, not what was seen
