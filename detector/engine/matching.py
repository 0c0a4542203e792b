"""Compile pySigma's condition tree into plain Python predicates over a record dict.

pySigma parses the rule and applies the modifiers; what reaches us is a tree of AND/OR/NOT
over (field, typed value) leaves. Each leaf becomes a closure; OR-ed plain equalities on one
field become one set lookup. Anything we cannot evaluate faithfully raises Unsupported, which
the loader reports against the rule: a rule is never silently mis-evaluated.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.types import (
    CompareOperators,
    Placeholder,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SigmaTimestampPart,
    SpecialChars,
)

from detector.engine.fields import MISSING, Many, as_text, exists, getter, is_null, scalars

Predicate = Callable[[dict[str, Any]], bool]
TextTest = Callable[[str], bool]
ValueTest = Callable[[Any], bool]

_REGEX_FLAGS = {
    SigmaRegularExpressionFlag.IGNORECASE: re.IGNORECASE,
    SigmaRegularExpressionFlag.MULTILINE: re.MULTILINE,
    SigmaRegularExpressionFlag.DOTALL: re.DOTALL,
}


class Unsupported(Exception):
    """A rule uses something this engine cannot evaluate faithfully."""


def compile_condition(node: Any, lists: Mapping[str, Sequence[str]]) -> Predicate:
    """Turn a postprocessed pySigma condition tree into one predicate."""
    return _Compiler(lists).node(node)


class _Compiler:
    def __init__(self, lists: Mapping[str, Sequence[str]]) -> None:
        self.lists = lists

    def node(self, node: Any) -> Predicate:
        if isinstance(node, ConditionAND):
            return _all_of([self.node(arg) for arg in node.args])
        if isinstance(node, ConditionOR):
            return _any_of(self._or_children(node.args))
        if isinstance(node, ConditionNOT):
            inner = self.node(node.args[0])
            return lambda data: not inner(data)
        if isinstance(node, ConditionFieldEqualsValueExpression):
            return self.field_leaf(node.field, node.value)
        if isinstance(node, ConditionValueExpression):
            return self.keyword_leaf(node.value)
        raise Unsupported(f"condition element {type(node).__name__} is not supported")

    def _or_children(self, args: Sequence[Any]) -> list[Predicate]:
        """OR-ed plain equalities on one field collapse into a single set lookup."""
        by_field: dict[str, set[str]] = {}
        rest: list[Any] = []
        for arg in args:
            literal = _plain_literal(arg)
            if literal is None:
                rest.append(arg)
            else:
                by_field.setdefault(arg.field, set()).add(literal)
        predicates = [self.node(arg) for arg in rest]
        for field, literals in by_field.items():
            predicates.append(_field_predicate(field, _in_set(frozenset(literals))))
        return predicates

    def field_leaf(self, field: str, value: Any) -> Predicate:
        if isinstance(value, SigmaNull):
            read = getter(field)
            return lambda data: is_null(read(data))
        if isinstance(value, SigmaExists):
            read = getter(field)
            if value.exists:
                return lambda data: exists(read(data))
            return lambda data: not exists(read(data))
        if isinstance(value, SigmaFieldReference):
            return _field_reference(field, value)
        return _field_predicate(field, self.value_test(value))

    def keyword_leaf(self, value: Any) -> Predicate:
        """A value without a field (Sigma keywords) is searched in every scalar of the record:
        a plain keyword matches as a substring, as full-text search does in SIEM backends."""
        if type(value) is SigmaString and not value.contains_placeholder():
            star = SpecialChars.WILDCARD_MULTI
            anywhere = value if value.startswith(star) else star + value
            anywhere = anywhere if anywhere.endswith(star) else anywhere + star
            test: ValueTest = _text_value(_string_test(anywhere, cased=False))
        else:
            test = self.value_test(value)
        return lambda data: any(test(scalar) for scalar in scalars(data))

    def value_test(self, value: Any) -> ValueTest:
        if isinstance(value, SigmaExpansion):
            tests = [self.value_test(inner) for inner in value.values]
            return lambda candidate: any(test(candidate) for test in tests)
        if isinstance(value, SigmaString) and value.contains_placeholder():
            return self.placeholder_test(value, cased=isinstance(value, SigmaCasedString))
        if isinstance(value, SigmaCasedString):
            return _text_value(_string_test(value, cased=True))
        if isinstance(value, SigmaString):
            return _text_value(_string_test(value, cased=False))
        if isinstance(value, SigmaTimestampPart):
            raise Unsupported("timestamp-part modifiers (minute, hour, day, ...) are not supported")
        if isinstance(value, SigmaBool):
            return _bool_test(value.boolean)
        if isinstance(value, SigmaNumber):
            return _number_equals(value.number)
        if isinstance(value, SigmaCompareExpression):
            return _compare_test(value)
        if isinstance(value, SigmaRegularExpression):
            flags = 0
            for flag in value.flags:
                flags |= _REGEX_FLAGS[flag]
            pattern = re.compile(value.regexp.to_plain(), flags)
            return _text_value(lambda text: pattern.search(text) is not None)
        if isinstance(value, SigmaCIDRExpression):
            return _text_value(_cidr_test([value.network]))
        raise Unsupported(
            f"values of type {type(value).__name__} (from a modifier such as a timestamp part "
            "or a backend query expression) are not supported"
        )

    def placeholder_test(self, value: SigmaString, *, cased: bool) -> ValueTest:
        parts = list(value.s)
        if len(parts) != 1 or not isinstance(parts[0], Placeholder):
            raise Unsupported(
                f"placeholder value {value.original!r} must be exactly one %name% with nothing "
                "around it"
            )
        name = parts[0].name
        if name not in self.lists:
            known = ", ".join(sorted(self.lists)) or "none"
            raise Unsupported(
                f"list %{name}% is not defined (add it to a file in the lists directory; "
                f"known lists: {known})"
            )
        networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        literals: set[str] = set()
        patterns: list[TextTest] = []
        for entry in self.lists[name]:
            network = _as_network(entry)
            if network is not None:
                networks.append(network)
                continue
            pattern = SigmaString(entry)
            if pattern.contains_special():
                patterns.append(_string_test(pattern, cased=cased))
            else:
                literal = literal_text(pattern)
                literals.add(literal if cased else literal.lower())
        tests: list[TextTest] = []
        if literals:
            frozen = frozenset(literals)
            if cased:
                tests.append(lambda text: text in frozen)
            else:
                tests.append(lambda text: text.lower() in frozen)
        if networks:
            tests.append(_cidr_test(networks))
        tests.extend(patterns)
        return _text_value(lambda text: any(test(text) for test in tests))


def _plain_literal(node: Any) -> str | None:
    """The lower-cased literal of a case-insensitive, wildcard-free equality leaf, else None."""
    if not isinstance(node, ConditionFieldEqualsValueExpression):
        return None
    value = node.value
    if type(value) is not SigmaString or value.contains_special() or value.contains_placeholder():
        return None
    return literal_text(value).lower()


def literal_text(value: SigmaString) -> str:
    """The text of a wildcard-free Sigma string, escapes removed (to_plain keeps them)."""
    return "".join(part for part in value.s if isinstance(part, str))


def _field_predicate(field: str, test: ValueTest) -> Predicate:
    read = getter(field)

    def predicate(data: dict[str, Any]) -> bool:
        found = read(data)
        if type(found) is str:
            return test(found)
        if found is MISSING or found is None:
            return False
        if isinstance(found, Many | list | dict):
            return any(test(scalar) for scalar in scalars(found))
        return test(found)

    return predicate


def _in_set(literals: frozenset[str]) -> ValueTest:
    def test(value: Any) -> bool:
        text = value if type(value) is str else as_text(value)
        return text is not None and text.lower() in literals

    return test


def _text_value(test: TextTest) -> ValueTest:
    def on_value(value: Any) -> bool:
        if type(value) is str:
            return test(value)
        text = as_text(value)
        return text is not None and test(text)

    return on_value


def _string_test(value: SigmaString, *, cased: bool) -> TextTest:
    """Equality with Sigma wildcards; prefix/suffix/infix forms avoid regexes."""
    parts = list(value.s)
    star = SpecialChars.WILDCARD_MULTI
    plain_inside = all(isinstance(part, str) for part in parts[1:-1]) if len(parts) > 2 else True
    texts = [part for part in parts if isinstance(part, str)]
    fold: Callable[[str], str] = (lambda text: text) if cased else str.lower
    if not value.contains_special():
        literal = fold(literal_text(value))
        return lambda text: fold(text) == literal
    if len(texts) == 1 and plain_inside and SpecialChars.WILDCARD_SINGLE not in parts:
        literal = fold(texts[0])
        starts, ends = parts[0] == star, parts[-1] == star
        if starts and ends and len(parts) == 3:
            return lambda text: literal in fold(text)
        if starts and len(parts) == 2:
            return lambda text: fold(text).endswith(literal)
        if ends and len(parts) == 2:
            return lambda text: fold(text).startswith(literal)
    if all(part == star for part in parts):
        return lambda text: True
    regex = re.compile(
        "".join(
            ".*" if part == star else "." if part == SpecialChars.WILDCARD_SINGLE
            else re.escape(part) if isinstance(part, str) else ""
            for part in parts
        ),
        re.DOTALL | (0 if cased else re.IGNORECASE),
    )
    return lambda text: regex.fullmatch(text) is not None


def _bool_test(expected: bool) -> ValueTest:
    word = "true" if expected else "false"

    def test(value: Any) -> bool:
        if type(value) is bool:
            return value is expected
        return type(value) is str and value.lower() == word

    return test


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")


def _number(value: Any) -> float | None:
    """A number, or text that is exactly a decimal number (not `inf`, `nan`, `1_000`)."""
    if type(value) is int or type(value) is float:
        return float(value)
    if type(value) is str and _NUMBER.fullmatch(value):
        return float(value)
    return None


def _number_equals(expected: float) -> ValueTest:
    return lambda value: _number(value) == expected


_COMPARATORS: dict[CompareOperators, Callable[[float, float], bool]] = {
    CompareOperators.LT: lambda a, b: a < b,
    CompareOperators.LTE: lambda a, b: a <= b,
    CompareOperators.GT: lambda a, b: a > b,
    CompareOperators.GTE: lambda a, b: a >= b,
}


def _compare_test(expression: SigmaCompareExpression) -> ValueTest:
    compare = _COMPARATORS.get(expression.op)
    if compare is None:
        raise Unsupported(f"comparison {expression.op.name} is not supported")
    bound = float(expression.number.number)

    def test(value: Any) -> bool:
        number = _number(value)
        return number is not None and compare(number, bound)

    return test


def _as_network(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    if "/" not in entry:
        return None
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None


def _cidr_test(networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> TextTest:
    """Invalid addresses (real feeds carry them) simply do not match."""

    def test(text: str) -> bool:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return False
        return any(address in network for network in networks)

    return test


def _field_reference(field: str, reference: SigmaFieldReference) -> Predicate:
    read, read_other = getter(field), getter(reference.field)
    # pySigma marks `fieldref|contains` as both starts_with and ends_with.
    compare: Callable[[str, str], bool]
    if reference.starts_with and reference.ends_with:
        compare = str.__contains__
    elif reference.starts_with:
        compare = str.startswith
    elif reference.ends_with:
        compare = str.endswith
    else:
        compare = str.__eq__

    def predicate(data: dict[str, Any]) -> bool:
        other = as_text(read_other(data))
        if other is None:
            return False
        target = other.lower()
        for candidate in scalars(read(data)):
            text = as_text(candidate)
            if text is None:
                continue
            if compare(text.lower(), target):
                return True
        return False

    return predicate


def _all_of(predicates: list[Predicate]) -> Predicate:
    if len(predicates) == 1:
        return predicates[0]
    if len(predicates) == 2:
        first, second = predicates
        return lambda data: first(data) and second(data)
    return lambda data: all(predicate(data) for predicate in predicates)


def _any_of(predicates: list[Predicate]) -> Predicate:
    if len(predicates) == 1:
        return predicates[0]
    if len(predicates) == 2:
        first, second = predicates
        return lambda data: first(data) or second(data)
    return lambda data: any(predicate(data) for predicate in predicates)
