"""Routing: a minimum level and include/exclude tag patterns per sink."""

from __future__ import annotations

import pytest

from detector.sinks.routing import Route, parse_patterns
from sinks.builders import make_alert


def test_the_default_route_takes_every_known_level() -> None:
    route = Route()
    for level in ("informational", "low", "medium", "high", "critical"):
        assert route.accepts(make_alert(level=level))


def test_minimum_level() -> None:
    route = Route(min_level="high")
    assert not route.accepts(make_alert(level="medium"))
    assert route.accepts(make_alert(level="high"))
    assert route.accepts(make_alert(level="critical"))


def test_an_unknown_alert_level_never_passes_a_minimum() -> None:
    assert not Route().accepts(make_alert(level="bogus"))


def test_include_patterns_need_one_matching_tag() -> None:
    route = Route(include_tags=("attack.impact",))
    assert route.accepts(make_alert(tags=("attack.t1485", "attack.impact")))
    assert not route.accepts(make_alert(tags=("attack.discovery",)))
    assert not route.accepts(make_alert(tags=()))


def test_patterns_are_shell_style_and_case_insensitive() -> None:
    route = Route(include_tags=("ATTACK.T14*",))
    assert route.accepts(make_alert(tags=("attack.t1485",)))
    assert not route.accepts(make_alert(tags=("attack.t1078",)))


def test_exclude_patterns_win_over_includes() -> None:
    route = Route(include_tags=("attack.*",), exclude_tags=("attack.discovery",))
    assert route.accepts(make_alert(tags=("attack.impact",)))
    assert not route.accepts(make_alert(tags=("attack.impact", "attack.discovery")))


def test_level_and_tags_combine() -> None:
    route = Route(min_level="critical", include_tags=("attack.impact",))
    assert not route.accepts(make_alert(level="high", tags=("attack.impact",)))
    assert route.accepts(make_alert(level="critical", tags=("attack.impact",)))


def test_unknown_minimum_level_is_rejected_with_the_choices() -> None:
    with pytest.raises(ValueError, match="use one of informational, low"):
        Route(min_level="urgent")


def test_patterns_parse_from_comma_lists_and_yaml_lists() -> None:
    assert parse_patterns(" attack.impact, ,attack.t1485 ") == ("attack.impact", "attack.t1485")
    assert parse_patterns(["a", " b "]) == ("a", "b")
    assert parse_patterns(None) == ()
