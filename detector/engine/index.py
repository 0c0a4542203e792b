"""Which rules can an event possibly match? Rules are indexed by the eventName or eventSource
values their condition requires, so an event is only checked against those rules.

Beyond equality, whatever part of a condition depends on eventSource and eventName alone
(`eventName|startswith: Describe`, `not eventSource: s3.amazonaws.com`) is a *prefilter*: it is
evaluated once per distinct (eventSource, eventName) pair when the candidates of that pair
are first computed and cached, never per event."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
)
from sigma.types import SigmaString

from detector.engine.matching import Predicate, compile_condition
from detector.engine.patterns import literal_text

T = TypeVar("T")

_MAX_CACHED_PAIRS = 65536
_STATIC_FIELDS = frozenset(("eventSource", "eventName"))


def required_values(node: Any, field: str) -> frozenset[str] | None:
    """The lower-cased values `field` must equal for the condition to hold, or None (any)."""
    if isinstance(node, ConditionFieldEqualsValueExpression):
        value = node.value
        if (
            node.field == field
            and type(value) is SigmaString
            and not value.contains_special()
            and not value.contains_placeholder()
        ):
            return frozenset((literal_text(value).strip().lower(),))
        return None
    if isinstance(node, ConditionAND):
        narrowest: frozenset[str] | None = None
        for arg in node.args:
            values = required_values(arg, field)
            if values is not None and (narrowest is None or len(values) < len(narrowest)):
                narrowest = values
        return narrowest
    if isinstance(node, ConditionOR):
        union: set[str] = set()
        for arg in node.args:
            values = required_values(arg, field)
            if values is None:
                return None
            union |= values
        return frozenset(union)
    return None


def _is_static(node: Any) -> bool:
    """Whether the whole sub-condition reads eventSource/eventName only."""
    if isinstance(node, ConditionFieldEqualsValueExpression):
        return node.field in _STATIC_FIELDS
    if isinstance(node, ConditionAND | ConditionOR | ConditionNOT):
        return all(_is_static(arg) for arg in node.args)
    return False


def static_part(node: Any) -> Any:
    """The conjuncts of a condition that read eventSource/eventName only, or None."""
    if _is_static(node):
        return node
    if isinstance(node, ConditionAND):
        parts = [part for part in map(static_part, node.args) if part is not None]
        if parts:
            return parts[0] if len(parts) == 1 else ConditionAND(parts)
    return None


@dataclass(frozen=True, slots=True)
class IndexKey:
    """Where a rule sits in the index: by event names, else by event sources, else everywhere;
    and the prefilter its (eventSource, eventName) pair must pass."""

    event_names: frozenset[str] | None
    event_sources: frozenset[str] | None
    prefilter: Predicate | None = None

    @classmethod
    def of(cls, condition: Any, lists: Mapping[str, Sequence[str]]) -> IndexKey:
        static = static_part(condition)
        return cls(
            required_values(condition, "eventName"),
            required_values(condition, "eventSource"),
            compile_condition(static, lists) if static is not None else None,
        )


class RuleIndex(Generic[T]):
    """Candidate rules for an (eventSource, eventName) pair, in load order, cached per pair."""

    def __init__(self, entries: Iterable[tuple[IndexKey, T]]) -> None:
        self._by_name: dict[str, list[tuple[int, T]]] = {}
        self._by_source: dict[str, list[tuple[int, T]]] = {}
        self._everywhere: list[tuple[int, T]] = []
        self._prefilters: dict[int, Predicate] = {}
        self._cache: dict[str, dict[str, tuple[T, ...]]] = {}  # by source, then name
        self._cached = 0  # pairs in the cache
        self.size = 0
        for position, (key, item) in enumerate(entries):
            self.size += 1
            if key.prefilter is not None:
                self._prefilters[position] = key.prefilter
            if key.event_names is not None:
                for name in key.event_names:
                    self._by_name.setdefault(name, []).append((position, item))
            elif key.event_sources is not None:
                for source in key.event_sources:
                    self._by_source.setdefault(source, []).append((position, item))
            else:
                self._everywhere.append((position, item))

    def candidates(self, event_source: str, event_name: str) -> tuple[T, ...]:
        try:
            return self._cache[event_source][event_name]
        except KeyError:
            pass
        found = self._lookup(event_source, event_name)
        if self._cached >= _MAX_CACHED_PAIRS:
            self._cache.clear()
            self._cached = 0
        self._cache.setdefault(event_source, {})[event_name] = found
        self._cached += 1
        return found

    def _lookup(self, source: str, name: str) -> tuple[T, ...]:
        merged = (
            self._by_name.get(name.lower(), [])
            + self._by_source.get(source.lower(), [])
            + self._everywhere
        )
        merged.sort(key=lambda entry: entry[0])
        pair = {"eventSource": source, "eventName": name}
        return tuple(
            item for position, item in merged
            if position not in self._prefilters or self._prefilters[position](pair)
        )
