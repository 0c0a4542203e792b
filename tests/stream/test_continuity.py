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


def test_offsets_in_order_are_processed_from_the_committed_one() -> None:
    guard: OffsetGuard[tuple[str, int]] = OffsetGuard()
    assert [guard.check(TP, offset, 30) for offset in (30, 31, 32)] == [PROCESS] * 3


def test_offsets_read_again_are_processed_again() -> None:
    guard: OffsetGuard[tuple[str, int]] = OffsetGuard()
    for offset in (30, 31, 32, 30, 31, 32, 33):
        assert guard.check(TP, offset, 30) == PROCESS


def test_a_hole_is_read_again_and_the_left_overs_before_the_re_read_are_dropped() -> None:
    """What a restarted worker was given (test_worker_scaling, one run in thirty): 36, then
    40 to 46 left over from a fetch made before Faust sought back, then the re-read."""
    guard: OffsetGuard[tuple[str, int]] = OffsetGuard()
    assert [guard.check(TP, offset, 29) for offset in range(29, 37)] == [PROCESS] * 8
    assert guard.check(TP, 40, 29) == Verdict(process=False, seek=37)
    assert [guard.check(TP, offset, 37) for offset in range(41, 47)] == [DROP] * 6
    assert [guard.check(TP, offset, 37) for offset in range(37, 47)] == [PROCESS] * 10
    assert guard.check(TP, 47, 37) == PROCESS


def test_a_hole_right_after_the_committed_offset_is_read_again() -> None:
    guard: OffsetGuard[tuple[str, int]] = OffsetGuard()
    assert guard.check(TP, 33, 32) == Verdict(process=False, seek=32)  # the first message
    assert guard.check(TP, 32, 32) == PROCESS


def test_offsets_that_do_not_exist_are_accepted_once_the_re_read_skips_them() -> None:
    guard: OffsetGuard[tuple[str, int]] = OffsetGuard()
    assert guard.check(TP, 10, None) == PROCESS
    assert guard.check(TP, 12, None) == Verdict(process=False, seek=11)  # 11: a marker
    assert guard.check(TP, 12, None) == PROCESS  # the re-read starts at 12
    assert guard.check(TP, 13, None) == PROCESS


def test_a_re_read_that_does_not_come_is_asked_for_again() -> None:
    wall = Wall()
    guard: OffsetGuard[tuple[str, int]] = OffsetGuard(retry=2.0, now=wall)
    guard.check(TP, 5, None)
    guard.check(TP, 9, None)
    assert guard.overdue() == []
    wall.now = 2.5
    assert guard.overdue() == [(TP, 6)]
    assert guard.overdue() == []  # not again before another `retry`
    assert guard.check(TP, 6, None) == PROCESS
    wall.now = 10.0
    assert guard.overdue() == []


def test_partitions_are_independent_and_a_rebalance_starts_from_the_commits() -> None:
    guard: OffsetGuard[tuple[str, int]] = OffsetGuard()
    other = ("in", 2)
    assert guard.check(TP, 5, 5) == PROCESS
    assert guard.check(other, 100, None) == PROCESS
    guard.reset()
    assert guard.check(TP, 3, 3) == PROCESS  # the new owner's commit, not what was seen
