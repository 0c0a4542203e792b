"""Tests embedded in rules: each runs on its own engine with fresh state, the rule under test
turned on; a run costs rules + tests, never rules times tests."""

from __future__ import annotations

from pathlib import Path

from helpers import load, rule

from detector.engine import Engine, RuleSet, ruletests
from detector.engine.factory import make_engine
from detector.engine.ruletests import run_tests

BASE_ID = "0b1c2d3e-0000-4000-8000-0000000000b1"
COUNT_ID = "0b1c2d3e-0000-4000-8000-0000000000c1"
OTHER_ID = "0b1c2d3e-0000-4000-8000-0000000000d1"

DELETE = "{eventSource: kinesisvideo.amazonaws.com, eventName: DeleteStream}"
ONE_DELETE = f"      - name: one delete\n        events: [{DELETE}]\n        expect: 1\n"

BASE = rule("sel:\n  eventName: DeleteStream\ncondition: sel", rule_id=BASE_ID).replace(
    "title: test rule", "title: base\nname: deletes")
TWO_DELETES = f"""title: two deletes
id: {COUNT_ID}
level: high
correlation:
  type: event_count
  rules: [deletes]
  timespan: 10m
  condition: {{gte: 2}}
detector:
  tests:
    - name: first of two
      events: [{DELETE}]
      expect: 0
    - name: second of two, in another test
      events: [{DELETE}]
      expect: 0
    - name: both
      events: [{DELETE}, {DELETE}]
      expect: 1
"""


def outcomes(tmp_path: Path, *documents: str) -> list[ruletests.TestOutcome]:
    result = load(tmp_path, *documents)
    assert result.errors == [], [str(error) for error in result.errors]
    return list(run_tests(result.ruleset, make_engine))


def test_each_test_starts_from_fresh_state(tmp_path: Path) -> None:
    results = outcomes(tmp_path, BASE + "---\n" + TWO_DELETES)
    assert [(outcome.test.name, outcome.alerts, outcome.passed) for outcome in results] == [
        ("first of two", 0, True), ("second of two, in another test", 0, True),
        ("both", 1, True)]


def test_a_disabled_rule_is_on_for_its_own_tests(tmp_path: Path) -> None:
    disabled = rule("sel:\n  eventName: DeleteStream\ncondition: sel", extra=(
        "detector:\n  enabled: false\n  tests:\n" + ONE_DELETE))
    (outcome,) = outcomes(tmp_path, disabled)
    assert outcome.passed and outcome.fired == [["0b1c2d3e-0000-4000-8000-000000000001"]]


def test_a_correlation_turns_on_its_disabled_base_rules(tmp_path: Path) -> None:
    disabled_base = BASE + "detector:\n  enabled: false\n"
    results = outcomes(tmp_path, disabled_base + "---\n" + TWO_DELETES)
    assert all(outcome.passed for outcome in results)


def test_each_engine_holds_only_the_rule_under_test_and_its_base_rules(tmp_path: Path) -> None:
    """What makes 5,000 rule files take seconds: no engine is built over the whole set."""
    other = rule("sel:\n  eventName: DeleteStream\ncondition: sel", rule_id=OTHER_ID,
                 extra="detector:\n  tests:\n" + ONE_DELETE)
    result = load(tmp_path, BASE + "---\n" + TWO_DELETES, other)
    assert result.errors == []
    held: list[tuple[list[str], list[str]]] = []

    def recording(ruleset: RuleSet) -> Engine:
        held.append(([r.id for r in ruleset.rules], [c.id for c in ruleset.correlations]))
        return make_engine(ruleset)

    results = list(run_tests(result.ruleset, recording))
    assert all(outcome.passed for outcome in results)
    assert held == [([OTHER_ID], []), *[([BASE_ID], [COUNT_ID])] * 3]
    other_outcome = results[0]
    assert other_outcome.fired == [[OTHER_ID]]  # the correlation's base rule is not in its engine
