"""Hostile rule files through the loader: any bytes, YAML-looking text built from the tokens
that break parsers (tags, anchors, aliases, merge keys, flow and block mixed, deep nesting,
directives, documents), and real rules with such tokens put anywhere; list files of such text.
Each file is a set of rules (or lists) or LoadErrors with a location, never an exception and
never the loader's safety net."""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector.engine import load_rules
from detector.engine.loader import find_files

REPO_RULES = Path(__file__).resolve().parents[2] / "rules"
FUZZ = settings(max_examples=250, deadline=timedelta(seconds=3),
                suppress_health_check=[HealthCheck.too_slow])
_TOKENS = [
    "\n", "\n  ", "\n    ", ": ", "- ", "? ", "{", "}", "[", "]", ", ", "&a ", "*a", "&b ", "*b",
    "<<: ", "!!binary ", "!!set ", "!!int ", "!!float ", "!!timestamp ", "!!str ", "!!null ",
    "!!bool ", "!!omap ", "!!pairs ", "!!python/object:os.system ", "!custom ", "%YAML 1.1\n",
    "%TAG ! tag:x,2000:\n", "---\n", "...\n", "|\n", ">-\n", "'", '"', "#", "\t", "\x00",
    "\ufeff", "\u2028", "title", "id", "condition", "detection", "sel", "eventName", "|re",
    "|contains", "|all", "correlation", "group-by", "timespan", "detector", "tests", "events",
    "expect", "0x1F", "yes", "~", "1e400", "9" * 30, "2026-13-45", ".nan", "-.inf", "0o777",
    "aGVsbG8=", "%admins%", "(a+)+$", "*a*a*b", "5m", "[" * 70, "]" * 70,
]
YAMLISH = st.lists(st.sampled_from(_TOKENS) | st.text(max_size=6), max_size=60).map("".join)


def _rule_texts() -> list[str]:
    rules, _lists = find_files([REPO_RULES])
    return [path.read_text() for path in rules[:20]]


@st.composite
def mangled_rules(draw: st.DrawFn) -> str:
    """A shipped rule with hostile tokens put at a few places."""
    text = draw(st.sampled_from(_rule_texts()))
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, len(text)))
        text = text[:where] + draw(YAMLISH) + text[where:]
    return text


def _loads_or_locates(content: bytes, name: str = "rule.yml") -> None:
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / name).parent.mkdir(exist_ok=True)
        (Path(directory) / name).write_bytes(content)
        result = load_rules([Path(directory)])
    for error in result.errors:
        assert error.location.path.endswith(name), error
        assert "please report it" not in error.message, (error, content[:2000])


@FUZZ
@given(st.binary(max_size=400))
def test_any_bytes_are_rules_or_located_errors(content: bytes) -> None:
    _loads_or_locates(content)


@FUZZ
@given(YAMLISH)
def test_yaml_looking_text_is_rules_or_located_errors(text: str) -> None:
    _loads_or_locates(text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(mangled_rules())
def test_shipped_rules_with_hostile_tokens_anywhere_are_rules_or_located_errors(
        text: str) -> None:
    _loads_or_locates(text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(YAMLISH)
def test_yaml_looking_list_files_are_lists_or_located_errors(text: str) -> None:
    _loads_or_locates(text.encode("utf-8", "surrogatepass"), "lists/lists.yml")
