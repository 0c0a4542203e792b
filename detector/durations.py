"""Durations as operators and rule authors write them: `500ms`, `30s`, `15m`, `2h`, `7d`, `1w`."""

from __future__ import annotations

import math

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_HOW = "write e.g. 500ms, 30s, 15m, 2h, 7d or plain seconds"


def parse_duration(value: str | float) -> float:
    """Seconds in a duration; a bare number is seconds. Raises ValueError with the fix."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        unit = next((unit for unit in ("ms", "s", "m", "h", "d", "w") if text.endswith(unit)), "")
        try:
            seconds = float(text[: len(text) - len(unit)]) * _UNITS.get(unit, 1.0)
        except ValueError:
            raise ValueError(f"{value!r} is not a duration; {_HOW}") from None
    else:
        raise ValueError(f"{value!r} is not a duration; {_HOW}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{value!r}: a duration is a finite number of seconds, not negative")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest way to write `seconds` that `parse_duration` reads back exactly: 900 -> 15m."""
    if seconds == 0:
        return "0"
    for unit in ("w", "d", "h", "m", "s"):
        count = seconds / _UNITS[unit]
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    milliseconds = seconds * 1000
    if milliseconds == int(milliseconds):
        return f"{int(milliseconds)}ms"
    return f"{seconds}s"
