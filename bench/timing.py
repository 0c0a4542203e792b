"""Alternating repetitions, medians and paired ratios, and cProfile summaries.

The machines are shared and noisy, so contenders of one benchmark run interleaved (A B, B A,
A B, ...) and every ratio is the median of per-repetition ratios: a slow minute slows both
sides of a pair.
"""

from __future__ import annotations

import cProfile
import pstats
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Contender = Callable[[], float]  # runs once, returns the seconds its measured part took

REPO = Path(__file__).resolve().parents[1]


def alternate(contenders: dict[str, Contender], repetitions: int,
              *, warmup: bool = True) -> dict[str, list[float]]:
    """Seconds per repetition for each contender, run in alternating order."""
    names = list(contenders)
    if warmup:
        for name in names:
            contenders[name]()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for repetition in range(repetitions):
        for name in names if repetition % 2 == 0 else reversed(names):
            seconds[name].append(contenders[name]())
    return seconds


def timed(body: Callable[[], Any]) -> Contender:
    """A contender that times one call of `body`."""
    def run() -> float:
        started = time.perf_counter()
        body()
        return time.perf_counter() - started
    return run


def median(values: list[float]) -> float:
    return statistics.median(values)


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median of the per-repetition ratios numerator[i] / denominator[i]."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


def _where(key: tuple[str, int, str]) -> str:
    filename, line, name = key
    if filename == "~":
        return name  # a builtin such as {orjson.loads}
    path = Path(filename)
    try:
        shown = str(path.resolve().relative_to(REPO))
    except ValueError:
        parts = path.parts
        shown = "/".join(parts[parts.index("site-packages") + 1:]) if (
            "site-packages" in parts) else path.name
    return f"{shown}:{line}({name})"


def summarise(stats: pstats.Stats, top: int = 12) -> dict[str, Any]:
    """The top functions by own time and by cumulative time, with their share of the total."""
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in table.values()) or 1.0

    def rows(index: int) -> list[dict[str, Any]]:
        ranked = sorted(table.items(), key=lambda item: item[1][index], reverse=True)[:top]
        return [{"function": _where(key), "calls": entry[1],
                 "tottime_s": round(entry[2], 4), "cumtime_s": round(entry[3], 4),
                 "tottime_share": round(entry[2] / total, 3)}
                for key, entry in ranked]

    packages: dict[str, float] = {}
    for key, entry in table.items():
        area = _area(key)
        packages[area] = packages.get(area, 0.0) + entry[2]
    by_package = [{"package": area, "tottime_s": round(seconds, 4),
                   "tottime_share": round(seconds / total, 3)}
                  for area, seconds in sorted(packages.items(), key=lambda item: -item[1])[:top]]
    return {"total_s": round(total, 4), "by_tottime": rows(2), "by_cumtime": rows(3),
            "by_package": by_package}


def _area(key: tuple[str, int, str]) -> str:
    """Where own time goes, coarsely: a project module, a library, the stdlib or a builtin."""
    filename, _, name = key
    if filename == "~":
        return f"builtin {name}" if "socket" in name or "poll" in name else "other builtins"
    path = Path(filename)
    parts = path.parts
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1]
    try:
        return "/".join(path.resolve().relative_to(REPO).parts[:2])  # e.g. detector/engine
    except ValueError:
        return f"stdlib {path.parent.name if path.stem == '__init__' else path.stem}"


def profile_call(function: Callable[[], Any], top: int = 12) -> dict[str, Any]:
    profiler = cProfile.Profile()
    profiler.runcall(function)
    return summarise(pstats.Stats(profiler), top)


def profile_file(path: Path, top: int = 12) -> dict[str, Any]:
    return summarise(pstats.Stats(str(path)), top)
