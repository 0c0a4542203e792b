"""Which alerts a sink receives: a minimum level and include/exclude tag patterns.

Patterns are shell-style (`attack.*`, `attack.t1485`), matched case-insensitively against the
rule's tags. An empty include list means every tag (and an untagged rule) passes; an alert
whose tags match any exclude pattern never passes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from detector.alerts import LEVELS, Alert, level_rank


@dataclass(frozen=True, slots=True)
class Route:
    """A sink's filter; the default lets every alert through."""

    min_level: str = LEVELS[0]
    include_tags: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.min_level not in LEVELS:
            raise ValueError(
                f"unknown minimum level {self.min_level!r}; use one of {', '.join(LEVELS)}"
            )
        object.__setattr__(self, "include_tags", _normalise(self.include_tags))
        object.__setattr__(self, "exclude_tags", _normalise(self.exclude_tags))

    def accepts(self, alert: Alert) -> bool:
        if level_rank(alert.level) < level_rank(self.min_level):
            return False
        tags = [tag.lower() for tag in alert.tags]
        if self.include_tags and not _any_match(tags, self.include_tags):
            return False
        return not _any_match(tags, self.exclude_tags)


def parse_patterns(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """Tag patterns from a comma-separated string (env vars) or a list (YAML)."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    return tuple(item.strip() for item in items if item.strip())


def _normalise(patterns: Iterable[str]) -> tuple[str, ...]:
    return tuple(pattern.strip().lower() for pattern in patterns if pattern.strip())


def _any_match(tags: list[str], patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(tag, pattern) for tag in tags for pattern in patterns)
