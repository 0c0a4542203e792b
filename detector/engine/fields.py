"""Reading dotted field paths out of CloudTrail records, the way Sigma rules name fields.

A path walks nested objects; a list on the way yields every element, so
`requestParameters.items.group` reaches `{"items": [{"group": "all"}]}`. The result of a
lookup is MISSING, a single value, or a Many (values reached through lists).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Final

import orjson

from detector.bounded import bounded, bounded_text


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
                found = inner.get(second, MISSING)
                return found if found is not MISSING else data.get(path, MISSING)
            return _walk(data, parts, 0)

        return two

    def deep(data: dict[str, Any]) -> Any:
        value: Any = data
        try:  # objects all the way down, the common case; else the general walk
            for part in parts:
                value = value[part]
        except (KeyError, TypeError):  # a key missing, or a list or scalar on the way
            return _walk(data, parts, 0)
        return value

    return deep


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
    """Every scalar inside a value: lists and objects are searched all the way down.

    Iterative, so a record nested a thousand levels deep (JSON allows it) cannot exhaust the
    interpreter's stack."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(reversed(item.values()))
        elif isinstance(item, list):
            stack.extend(reversed(item))
        elif item is not MISSING:
            yield item


def is_null(found: Any) -> bool:
    """Sigma's `null`: the field is missing or null (through a list: any element is null)."""
    if found is MISSING or found is None:
        return True
    return isinstance(found, Many) and any(item is None for item in found)


def exists(found: Any) -> bool:
    """Sigma's `exists`: the field is present and not null (through a list: any element)."""
    if found is MISSING or found is None:
        return False
    return not isinstance(found, Many) or any(item is not None for item in found)


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


def text_of(value: Any) -> str | None:
    """A field's value as one string: scalars as Sigma sees them, lists and objects as JSON,
    within the bounds of `detector.bounded` (group keys, state keys and alert text use it)."""
    if value is MISSING or value is None:
        return None
    text = as_text(value)
    if text is not None:
        return bounded_text(text)
    if isinstance(value, Many):
        value = list(value)
    return bounded_text(orjson.dumps(bounded(value), option=orjson.OPT_SORT_KEYS).decode())
