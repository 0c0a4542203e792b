"""Compile pySigma's condition tree into plain Python predicates over a record dict.

pySigma parses the rule and applies the modifiers; what reaches us is a tree of AND/OR/NOT
over (field, typed value) leaves. Each leaf becomes a closure; the Sigma strings OR-ed on one
field (or as keywords) become one text test (patterns.py), however many there are. Anything
we cannot evaluate faithfully raises Unsupported, which the loader reports against the rule:
a rule is never silently mis-evaluated.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeGuard

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
    SigmaString,
    SigmaTimestampPart,
    SpecialChars,
)

from detector.engine.fields import MISSING, Many, as_text, exists, getter, is_null, scalars
from detector.engine.lists import Network, network
from detector.engine.patterns import PatternError, TextTest, regex_test, strings_test

Predicate = Callable[[dict[str, Any]], bool]
ValueTest = Callable[[Any], bool]


class Unsupported(Exception):
    """A rule uses something this engine cannot evaluate faithfully."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field  # the detection field it is about, when there is one


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
        """The Sigma strings OR-ed on one field, and OR-ed keywords, become one text test."""
        by_field: dict[tuple[str, bool], list[SigmaString]] = {}
        keywords: list[SigmaString] = []
        rest: list[Any] = []
        for arg in args:
            if isinstance(arg, ConditionFieldEqualsValueExpression) and _is_pattern(arg.value):
                cased = isinstance(arg.value, SigmaCasedString)
                by_field.setdefault((arg.field, cased), []).append(arg.value)
            elif isinstance(arg, ConditionValueExpression) and _is_keyword(arg.value):
                keywords.append(_anywhere(arg.value))
            else:
                rest.append(arg)
        predicates = [self.node(arg) for arg in rest]
        for (field, cased), values in by_field.items():
            predicates.append(_field_text(field, self.strings(values, cased, field)))
        if keywords:
            predicates.append(_in_any_scalar(_text_value(self.strings(keywords, False, None))))
        return predicates

    def strings(self, values: Iterable[SigmaString], cased: bool, field: str | None
                ) -> TextTest:
        try:
            return strings_test(values, cased=cased)
        except PatternError as error:
            raise Unsupported(str(error), field) from None

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
        try:
            text = self.text_test(value)
            if text is not None:
                return _field_text(field, text)
            return _field_predicate(field, self.value_test(value))
        except Unsupported as error:
            raise Unsupported(str(error), error.field or field) from None

    def keyword_leaf(self, value: Any) -> Predicate:
        """A value without a field (Sigma keywords) is searched in every scalar of the record:
        a plain keyword matches as a substring, as full-text search does in SIEM backends."""
        if _is_keyword(value):
            return _in_any_scalar(_text_value(self.strings([_anywhere(value)], False, None)))
        return _in_any_scalar(self.value_test(value))

    def text_test(self, value: Any) -> TextTest | None:
        """The test of a value that is matched as text (strings, regexes, networks), else None."""
        if _is_pattern(value):
            return self.strings([value], isinstance(value, SigmaCasedString), None)
        if isinstance(value, SigmaRegularExpression):
            try:
                return regex_test(value.regexp.to_plain(), value.flags)
            except PatternError as error:
                raise Unsupported(f"{error}; see docs/rules.md#regular-expressions") from None
        if isinstance(value, SigmaCIDRExpression):
            return _cidr_test([value.network])
        return None

    def value_test(self, value: Any) -> ValueTest:
        if isinstance(value, SigmaExpansion):
            patterns: list[SigmaString] = [inner for inner in value.values
                                           if _is_pattern(inner)]
            tests = [self.value_test(inner) for inner in value.values if not _is_pattern(inner)]
            for cased in (False, True):
                group = [inner for inner in patterns
                         if isinstance(inner, SigmaCasedString) is cased]
                if group:
                    tests.append(_text_value(self.strings(group, cased, None)))
            return lambda candidate: any(test(candidate) for test in tests)
        if isinstance(value, SigmaString) and value.contains_placeholder():
            return self.placeholder_test(value, cased=isinstance(value, SigmaCasedString))
        text = self.text_test(value)
        if text is not None:
            return _text_value(text)
        if isinstance(value, SigmaTimestampPart):
            raise Unsupported("timestamp-part modifiers (minute, hour, day, ...) are not supported")
        if isinstance(value, SigmaBool):
            return _bool_test(value.boolean)
        if isinstance(value, SigmaNumber):
            return _number_equals(value.number)
        if isinstance(value, SigmaCompareExpression):
            return _compare_test(value)
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
        networks: list[Network] = []
        strings: list[SigmaString] = []
        for entry in self.lists[name]:
            address_range = network(entry)  # entries were validated when the list loaded
            if address_range is None:
                strings.append(SigmaString(entry))
            else:
                networks.append(address_range)
        tests: list[ValueTest] = []
        if strings:
            tests.append(_text_value(self.strings(strings, cased, None)))
        if networks:
            tests.append(_text_value(_cidr_test(networks)))
        return lambda candidate: any(test(candidate) for test in tests)


def _is_pattern(value: Any) -> TypeGuard[SigmaString]:
    """A Sigma string (cased or not) that patterns.py can test: no list placeholder."""
    return isinstance(value, SigmaString) and not value.contains_placeholder()


def _is_keyword(value: Any) -> TypeGuard[SigmaString]:
    return type(value) is SigmaString and not value.contains_placeholder()


def _anywhere(value: SigmaString) -> SigmaString:
    star = SpecialChars.WILDCARD_MULTI
    anywhere = value if value.startswith(star) else star + value
    return anywhere if anywhere.endswith(star) else anywhere + star


def _in_any_scalar(test: ValueTest) -> Predicate:
    return lambda data: any(test(scalar) for scalar in scalars(data))


def _field_predicate(field: str, test: ValueTest) -> Predicate:
    read = getter(field)
    return lambda data: _any_value(read(data), test)


def _any_value(found: Any, test: ValueTest) -> bool:
    """Whether the value(s) a field holds pass: any scalar inside lists and objects."""
    if found is MISSING or found is None:
        return False
    if isinstance(found, Many | list | dict):
        return any(test(scalar) for scalar in scalars(found))
    return test(found)


def _field_text(field: str, test: TextTest) -> Predicate:
    """A field matched as text; a string value, the common case, costs one call of `test`
    (and, for a top-level field, no lookup function)."""
    on_value = _text_value(test)
    if "." not in field:
        def top(data: dict[str, Any]) -> bool:
            found = data.get(field, MISSING)
            return test(found) if type(found) is str else _any_value(found, on_value)

        return top
    read = getter(field)

    def nested(data: dict[str, Any]) -> bool:
        found = read(data)
        return test(found) if type(found) is str else _any_value(found, on_value)

    return nested


def _text_value(test: TextTest) -> ValueTest:
    def on_value(value: Any) -> bool:
        if type(value) is str:
            return test(value)
        text = as_text(value)
        return text is not None and test(text)

    return on_value


def _bool_test(expected: bool) -> ValueTest:
    word = "true" if expected else "false"

    def test(value: Any) -> bool:
        if type(value) is bool:
            return value is expected
        return type(value) is str and value.lower() == word

    return test


def _number(value: Any) -> float | None:
    """A number, or text that is exactly a decimal number (not `inf`, `nan`, `1_000`)."""
    if type(value) is int or type(value) is float:
        return float(value)
    if type(value) is str and _is_decimal(value):
        return float(value)
    return None


def _is_decimal(text: str) -> bool:
    """`-?D+(.D+)?([eE][+-]?D+)?` with D a decimal digit, checked without a regex."""
    mantissa, marker, exponent = text.removeprefix("-").replace("E", "e").partition("e")
    if marker and not exponent[exponent[:1] in ("+", "-"):].isdecimal():
        return False
    whole, dot, fraction = mantissa.partition(".")
    return whole.isdecimal() and (not dot or fraction.isdecimal())


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


def _cidr_test(networks: Sequence[Network]) -> TextTest:
    """One set lookup per distinct prefix length, however many networks a list holds.
    Invalid addresses (real feeds carry them) simply do not match."""
    prefixes: dict[tuple[int, int], set[int]] = {}
    for item in networks:
        shift = item.max_prefixlen - item.prefixlen
        prefixes.setdefault((item.version, shift), set()).add(
            int(item.network_address) >> shift)
    groups = tuple((version, shift, frozenset(numbers))
                   for (version, shift), numbers in prefixes.items())

    def test(text: str) -> bool:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return False
        number, version = int(address), address.version
        return any(version == kind and number >> shift in known
                   for kind, shift, known in groups)

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
