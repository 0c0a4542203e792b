"""Reading dotted field paths out of CloudTrail records, the way Sigma rules name fields.

A path walks nested objects; a list on the way yields every element, so
`requestParameters.items.group` reaches `{"items": [{"group": "all"}]}`. The result of a
lookup is MISSING, a single value, or a Many (values reached through lists).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Final


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


class Many(list[Any]):
    """Values reached through a list on the path; a matcher succeeds when any of them does."""

    __slots__ = ()


Getter = Callable[[dict[str, Any]], Any]


def getter(path: str) -> Getter:
    """Compile a dotted path into a function from a record to the value(s) it names."""
    parts = tuple(path.split("."))
    if len(parts) == 1:
        key = parts[0]
        return lambda data: data.get(key, MISSING)
    if len(parts) == 2:
        first, second = parts

        def two(data: dict[str, Any]) -> Any:
            inner = data.get(first, MISSING)
            if type(inner) is dict:
                return inner.get(second, MISSING)
            return _walk(inner, parts, 1) if inner is not MISSING else MISSING

        return two
    return lambda data: _walk(data, parts, 0)


def _walk(value: Any, parts: tuple[str, ...], start: int) -> Any:
    for position in range(start, len(parts)):
        part = parts[position]
        if isinstance(value, dict):
            found = value.get(part, MISSING)
            if found is MISSING:
                # A key that itself holds dots (rare, but AWS has some) is tried whole.
                return value.get(".".join(parts[position:]), MISSING)
            value = found
        elif isinstance(value, list):
            collected = Many()
            for element in value:
                reached = _walk(element, parts, position)
                if isinstance(reached, Many):
                    collected.extend(reached)
                elif reached is not MISSING:
                    collected.append(reached)
            return collected if collected else MISSING
        else:
            return MISSING
    return value


def scalars(value: Any) -> Iterator[Any]:
    """Every scalar inside a value: lists and objects are searched all the way down."""
    if isinstance(value, dict):
        for inner in value.values():
            yield from scalars(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from scalars(inner)
    elif value is not MISSING:
        yield value


def as_text(value: Any) -> str | None:
    """The text a string matcher sees: numbers and booleans as JSON writes them."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if kind is bool:
        return "true" if value else "false"
    if kind is int or kind is float:
        return str(value)
    return None
