"""Text tests for Sigma strings and regular expressions: Sigma's meaning exactly, in time
linear in the text whatever the pattern (a hostile pattern must finish, not hang: pytest's
timeout is the only clock here)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sigma.types import SigmaRegularExpressionFlag, SigmaString, SpecialChars

from detector.engine.patterns import PatternError, regex_test, strings_test

HUNDRED_KB = 100_000


def oracle(pattern: SigmaString, text: str, *, cased: bool) -> bool:
    """Sigma's wildcard meaning, spelled with Python's re (short inputs only)."""
    regex = "".join(
        ".*" if part is SpecialChars.WILDCARD_MULTI
        else "." if part is SpecialChars.WILDCARD_SINGLE else re.escape(str(part))
        for part in pattern.s)
    if cased:
        return re.fullmatch(regex, text, re.DOTALL) is not None
    return re.fullmatch(regex.lower(), text.lower(), re.DOTALL) is not None


# İ lower-cases to two characters (i and a combining dot): folding may lengthen a text
ALPHABET = "aAbB*?\\éİ\n"
sigma_strings = st.text(ALPHABET, max_size=8).map(SigmaString)
texts = st.text(ALPHABET, max_size=12)


@settings(max_examples=300)
@given(st.lists(sigma_strings, min_size=1, max_size=40), texts, st.booleans())
def test_any_number_of_values_means_what_each_value_means(
    values: list[SigmaString], text: str, cased: bool
) -> None:
    expected = any(oracle(value, text, cased=cased) for value in values)
    assert strings_test(values, cased=cased)(text) is expected


@settings(max_examples=200)
@given(st.sampled_from(["*{}*", "{}*", "*{}", "{}"]),
       st.lists(st.text("aAbéİ\\", min_size=2, max_size=5), min_size=16, max_size=60),
       texts, st.booleans())
def test_long_lists_of_one_shape_mean_what_each_value_means(
    shape: str, words: list[str], text: str, cased: bool
) -> None:
    values = [SigmaString(shape.format(word)) for word in words]
    expected = any(oracle(value, text, cased=cased) for value in values)
    assert strings_test(values, cased=cased)(text) is expected


def test_many_contains_values_still_match_case_insensitively() -> None:
    values = [SigmaString(f"*agent-{n}*") for n in range(10_000)]
    test = strings_test(values, cased=False)
    assert test("Mozilla AGENT-9999 x")
    assert not test("Mozilla agent-x")


@pytest.mark.parametrize("shape", ["{}*", "*{}", "{}"])
def test_many_prefix_suffix_and_equal_values(shape: str) -> None:
    values = [SigmaString(shape.format(f"v{n:05d}")) for n in range(10_000)]
    test = strings_test(values, cased=True)
    assert test("v09999") and test("V09999") is False
    assert test("v00042-tail") is (shape == "{}*")
    assert test("head-v00042") is (shape == "*{}")


def test_escaped_wildcards_are_literal_among_many_values() -> None:
    values = [SigmaString("*a\\*b*"), *(SigmaString(f"*x{n}*") for n in range(100))]
    test = strings_test(values, cased=False)
    assert test("--a*b--")
    assert not test("--axb--")


def test_question_mark_is_one_character_even_in_long_lists() -> None:
    values = [SigmaString(f"role/adm?n-{n}") for n in range(100)]
    test = strings_test(values, cased=False)
    assert test("role/admin-7") and test("role/ADMYN-7")
    assert not test("role/admn-7") and not test("role/adm--n-7")


def test_many_star_wildcard_is_linear_on_long_fields() -> None:
    test = strings_test([SigmaString("*a*a*a*a*a*b")], cased=False)
    assert not test("a" * 200)
    assert not test("a" * HUNDRED_KB)
    assert test("a" * HUNDRED_KB + "b")


def test_nested_quantifier_regex_is_linear() -> None:
    test = regex_test("(a+)+$", ())
    assert not test("a" * 30 + "!")
    assert test("a" * HUNDRED_KB)
    assert not test("a" * HUNDRED_KB + "!")


@pytest.mark.parametrize(
    ("flags", "text", "expected"),
    [
        ((), "DeleteStream", False),
        ((SigmaRegularExpressionFlag.IGNORECASE,), "DeleteStream", True),
        ((), "x\ndelete", False),
        ((SigmaRegularExpressionFlag.MULTILINE,), "x\ndelete", True),
    ],
)
def test_regex_flags_keep_their_meaning(
    flags: tuple[SigmaRegularExpressionFlag, ...], text: str, expected: bool
) -> None:
    assert regex_test("^delete", flags)(text) is expected


def test_dotall_flag_lets_dot_match_newlines() -> None:
    assert not regex_test("a.b", ())("a\nb")
    assert regex_test("a.b", (SigmaRegularExpressionFlag.DOTALL,))("a\nb")


@pytest.mark.parametrize("pattern", [r"(a)\1", r"(?=a)", r"(?<!a)b", r"a*+", r"(?>a)", r"a\Z"])
def test_patterns_re2_cannot_run_are_refused(pattern: str) -> None:
    with pytest.raises(PatternError, match="RE2 cannot run"):
        regex_test(pattern, ())


def test_text_with_a_lone_surrogate_is_matched_not_raised() -> None:
    assert regex_test("evil", ())("evil\ud800")
    assert strings_test([SigmaString("e?il*")], cased=False)("evil\ud800")


def test_more_wildcards_than_one_re2_expression_holds_are_refused_not_dropped(
        capfd: pytest.CaptureFixture[str]) -> None:
    values = [SigmaString(f"host-{n}.ex?mple.*") for n in range(100_000)]
    with pytest.raises(PatternError, match=r"100,000 wildcard value\(s\).*pattern too large"):
        strings_test(values, cased=False)
    assert capfd.readouterr().err == ""  # one error, none of RE2's own lines on stderr


def test_a_text_that_lengthens_when_folded_still_equals_its_value() -> None:
    dotted = "İ".lower()  # two characters
    assert strings_test([SigmaString(dotted)], cased=False)("İ")
    assert strings_test([SigmaString("x" + dotted)], cased=False)("Xİ")
    assert not strings_test([SigmaString("x")], cased=False)("İ")
