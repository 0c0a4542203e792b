"""Durations in rules and settings: the units operators write, and clear refusals."""

from __future__ import annotations

import pytest

from detector.durations import format_duration, parse_duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90), ("1.5", 1.5), ("500ms", 0.5), ("30s", 30), ("15m", 900), ("2h", 7200),
    ("7d", 604800), ("1w", 604800), (" 0s ", 0), (45, 45),
])
def test_units(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5 minutes", "-1s", "nan", "inf", "1M", True])
def test_refusals_say_how_to_write_one(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)  # type: ignore[arg-type]


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0"), (0.1, "100ms"), (1, "1s"), (90, "90s"), (900, "15m"), (3600, "1h"),
    (86400, "1d"), (604800, "1w"), (1.25, "1250ms"),
])
def test_written_back_the_shortest_way_and_read_the_same(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds
