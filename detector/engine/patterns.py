"""Sigma strings and regular expressions as text tests that run in time linear in the text.

The people we watch write the text (userAgent, request parameters), so no test here may
backtrack. A Sigma string takes one of a few shapes, each with its own linear algorithm:

- equal, prefix, suffix: compared on the (lower-cased) text; many values of one shape cost
  one set lookup per distinct value length, not one comparison per value;
- contains (`*text*`): a few values are plain substring searches; from `_MANY` values on,
  one Aho-Corasick automaton (pyahocorasick) finds any of them in one pass;
- anything else (`?`, two or more literal segments): one RE2 expression per OR-ed group,
  as are `|re` values. RE2 runs automata, never backtracks, and refuses what it cannot run in
  linear time (backreferences, lookaround, possessive and atomic groups).

Why Aho-Corasick rather than RE2 for literal values: measured on this machine with 10,000
`contains` values, both cost 2-4 µs on a CloudTrail userAgent, but on 100 kB of text made of
the values' letters RE2's lazy DFA thrashes (900 ms) where the automaton takes 4 ms. RE2::Set
is not used at all: when its DFA runs out of memory it reports no match, and the Python binding
drops the error, so hostile text could switch a detection off.

Case-insensitive matching lower-cases pattern and text the same way (str.lower), so every
shape agrees with plain equality; RE2 then runs case-sensitively on the folded text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import ahocorasick
import re2
from sigma.policy.regex_engine import RegexEngine, RegexPattern
from sigma.types import Placeholder, SigmaRegularExpressionFlag, SigmaString, SpecialChars

TextTest = Callable[[str], bool]

_STAR = SpecialChars.WILDCARD_MULTI
_ONE = SpecialChars.WILDCARD_SINGLE
_MANY = 16  # values of one shape from which one pass beats one test per value
_FLAG_LETTERS = {
    SigmaRegularExpressionFlag.IGNORECASE: "i",
    SigmaRegularExpressionFlag.MULTILINE: "m",
    SigmaRegularExpressionFlag.DOTALL: "s",
}


class PatternError(ValueError):
    """A pattern this engine refuses to run, with RE2's reason."""


def _re2_options() -> re2.Options:
    """RE2 as the engine runs it: refusals become load errors, not lines on stderr; groups
    never capture, since only "does it match" is asked (capturing costs an NFA pass)."""
    options = re2.Options()
    options.log_errors = False
    options.never_capture = True
    return options


_OPTIONS = _re2_options()


def compile_regex(pattern: str) -> re2._Regexp:
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as error:
        reason = error.args[0] if error.args else "invalid"
        text = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
        raise PatternError(f"RE2 cannot run {_shown(pattern)}: {text}") from None
    except UnicodeEncodeError:
        raise PatternError(f"{_shown(pattern)} holds a lone surrogate, which no text can "
                           "match") from None


def _shown(pattern: str) -> str:
    """A pattern for an error message: one OR-ed group of values can be megabytes."""
    return repr(pattern) if len(pattern) <= 200 else f"{pattern[:200]!r}..."


def _utf8(text: str) -> bytes:
    """RE2 reads UTF-8; a lone surrogate (valid in a Python str) must not raise mid-record."""
    return text.encode("utf-8", "surrogatepass")


def regex_test(pattern: str, flags: Iterable[SigmaRegularExpressionFlag]) -> TextTest:
    """Sigma `|re`: searched anywhere in the text; flags i, m, s as RE2's inline flags."""
    letters = "".join(sorted(_FLAG_LETTERS[flag] for flag in flags))
    search = compile_regex(f"(?{letters}){pattern}" if letters else pattern).search
    return lambda text: search(_utf8(text)) is not None


def literal_text(value: SigmaString) -> str:
    """The text of a wildcard-free Sigma string, escapes removed (to_plain keeps them)."""
    return "".join(part for part in value.s if isinstance(part, str))


def strings_test(values: Iterable[SigmaString], *, cased: bool) -> TextTest:
    """Whether a text matches any of the Sigma strings: `*` any run, `?` one character,
    case-insensitive unless `cased`."""
    shapes = _Shapes(cased)
    for value in values:
        shapes.add(value)
    return shapes.test() if cased else shapes.folding_test()


class _Shapes:
    """Sigma strings sorted by shape, each shape tested with its own linear algorithm."""

    def __init__(self, cased: bool) -> None:
        self.fold: Callable[[str], str] = (lambda text: text) if cased else str.lower
        self.equal: set[str] = set()
        self.prefixes: set[str] = set()
        self.suffixes: set[str] = set()
        self.infixes: set[str] = set()
        self.wildcards: list[str] = []
        self.anything = False

    def add(self, value: SigmaString) -> None:
        parts = _collapse_stars(value.s)
        if any(isinstance(part, Placeholder) for part in parts):
            raise PatternError(f"placeholder in {value.original!r} was not expanded")
        if not parts:
            self.equal.add("")
            return
        if all(part is _STAR for part in parts):
            self.anything = True
            return
        starts, ends = parts[0] is _STAR, parts[-1] is _STAR
        inner = parts[int(starts):len(parts) - int(ends)]
        if len(inner) == 1 and isinstance(inner[0], str):
            literal = self.fold(inner[0])
            target = (self.infixes if starts and ends else self.suffixes if starts
                      else self.prefixes if ends else self.equal)
            target.add(literal)
        else:
            self.wildcards.append("".join(
                re2.escape(self.fold(part)) if isinstance(part, str)
                else ".*" if part is _STAR else "." for part in parts))

    def test(self) -> TextTest:
        """Over folded text."""
        if self.anything:
            return lambda text: True
        tests: list[TextTest] = []
        if self.equal:
            tests.append(frozenset(self.equal).__contains__)
        if self.prefixes:
            tests.append(_prefix_test(self.prefixes))
        if self.suffixes:
            tests.append(_suffix_test(self.suffixes))
        if self.infixes:
            tests.append(_infix_test(self.infixes))
        if self.wildcards:
            tests.append(_wildcard_test(self.wildcards))
        if not tests:
            return lambda text: False
        if len(tests) == 1:
            return tests[0]
        return lambda text: any(test(text) for test in tests)

    def folding_test(self) -> TextTest:
        """Over text as it is, lower-cased first: the commonest values (equal values, one
        `contains`) fold and test in one step."""
        others = self.anything or self.prefixes or self.suffixes or self.wildcards
        if not (others or self.infixes):
            known = frozenset(self.equal)
            longest = max(map(len, known), default=-1)
            # str.lower never shortens a text: one longer than every value cannot match
            return lambda text: len(text) <= longest and text.lower() in known
        if not (others or self.equal) and len(self.infixes) == 1:
            (infix,) = self.infixes
            return lambda text: infix in text.lower()
        test = self.test()
        return lambda text: test(text.lower())


def _collapse_stars(parts: Sequence[str | SpecialChars | Placeholder]
                    ) -> list[str | SpecialChars | Placeholder]:
    """`a**b` means `a*b`: runs of stars are one star."""
    collapsed: list[str | SpecialChars | Placeholder] = []
    for part in parts:
        if not (part is _STAR and collapsed and collapsed[-1] is _STAR):
            collapsed.append(part)
    return collapsed


def _by_length(literals: set[str]) -> tuple[frozenset[str], tuple[int, ...]]:
    return frozenset(literals), tuple(sorted({len(literal) for literal in literals}))


def _prefix_test(prefixes: set[str]) -> TextTest:
    """A few prefixes: str.startswith over a tuple; many: one set lookup per distinct length."""
    if len(prefixes) < _MANY:
        candidates = tuple(prefixes)
        return lambda text: text.startswith(candidates)
    known, lengths = _by_length(prefixes)
    return lambda text: any(text[:length] in known for length in lengths)


def _suffix_test(suffixes: set[str]) -> TextTest:
    if len(suffixes) < _MANY:
        candidates = tuple(suffixes)
        return lambda text: text.endswith(candidates)
    known, lengths = _by_length(suffixes)
    return lambda text: any(text[-length:] in known for length in lengths
                            if length <= len(text))


def _infix_test(infixes: set[str]) -> TextTest:
    if len(infixes) == 1:
        (infix,) = infixes
        return lambda text: infix in text
    if len(infixes) < _MANY:
        candidates = tuple(infixes)
        return lambda text: any(infix in text for infix in candidates)
    automaton = ahocorasick.Automaton(ahocorasick.STORE_LENGTH)
    for infix in infixes:
        automaton.add_word(infix)
    automaton.make_automaton()
    find = automaton.iter
    return lambda text: next(find(text), None) is not None


def _wildcard_test(wildcards: list[str]) -> TextTest:
    """One RE2 expression for every OR-ed wildcard: the whole text must match one of them.
    RE2 bounds the expression's size (8 MiB): tens of thousands of such values are refused."""
    try:
        regex = compile_regex("(?s)" + "|".join(f"(?:{regex})" for regex in wildcards))
    except PatternError as error:
        raise PatternError(f"{len(wildcards):,} wildcard value(s) with `?` or an inner `*` in "
                           f"one list: {error}; use prefix, suffix or contains forms, or "
                           "split the list") from None
    fullmatch = regex.fullmatch
    return lambda text: fullmatch(_utf8(text)) is not None


class SigmaRegexValidator(RegexEngine):
    """How pySigma checks `|re` values while parsing: with RE2 as this module runs it, and
    quietly (RE2's own refusals would go to stderr, past the worker's structured log)."""

    def compile(self, pattern: str, flags: int = 0) -> RegexPattern:
        regex: RegexPattern = compile_regex(pattern)  # flags (i, m, s) never make it invalid
        return regex

    @property
    def error(self) -> type[Exception]:
        return PatternError
