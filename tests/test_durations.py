"""Durations in rules and settings: the units operators write, and clear refusals."""

from __future__ import annotations

import pytest

from detector.durations import parse_duration


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
