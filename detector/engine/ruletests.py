"""Run the examples embedded in rules (`detector.tests`): given events, expect N alerts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from detector.alerts import Alert
from detector.engine.evaluator import Engine
from detector.engine.rule import Correlation, Meta, Rule, RuleSet, RuleTest
from detector.events import Record, decode_record

_BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)

EngineFactory = Callable[[RuleSet], Engine]
_Item = TypeVar("_Item", Rule, Correlation)


@dataclass(frozen=True, slots=True)
class TestOutcome:
    rule: Meta
    test: RuleTest
    alerts: int
    fired: list[list[str]] = field(default_factory=list)  # per event: ids of rules that fired
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and self.alerts == self.test.expect


def run_tests(ruleset: RuleSet, make_engine: EngineFactory) -> Iterator[TestOutcome]:
    """Each test runs on a fresh engine (so with fresh state) holding the rule under test and,
    for a correlation, the rules it counts, all turned on.

    A rule's alerts depend on nothing else in the set, and an engine over those few rules
    costs what they cost: a run is linear in rules + tests, not rules times tests."""
    by_id = {rule.id: rule for rule in ruleset.rules}
    items: list[Rule | Correlation] = [*ruleset.rules, *ruleset.correlations]
    for item in items:
        if not item.meta.tests:
            continue
        own = _own_rules(item, by_id, ruleset.lists)
        for position, test in enumerate(item.meta.tests):
            yield _run(item.meta, test, position, make_engine(own))


def _own_rules(item: Rule | Correlation, by_id: dict[str, Rule],
               lists: dict[str, tuple[str, ...]]) -> RuleSet:
    """The rule set a test of `item` needs: `item` and the base rules it correlates, on."""
    if isinstance(item, Rule):
        return RuleSet((_on(item),), (), lists)
    return RuleSet(tuple(_on(by_id[rule_id]) for rule_id in item.rules), (_on(item),), lists)


def _on(item: _Item) -> _Item:
    return replace(item, meta=replace(item.meta, enabled=True))


def _run(meta: Meta, test: RuleTest, position: int, engine: Engine) -> TestOutcome:
    fired: list[list[str]] = []
    count = 0
    for index, event in enumerate(test.events):
        record = decode_record(_with_defaults(event, meta.id, position, index), index)
        if not isinstance(record, Record):
            return TestOutcome(meta, test, count, fired,
                               f"event #{index + 1} is not a valid record: {record.message}")
        alerts: list[Alert] = engine.process(record)
        fired.append([alert.rule_id for alert in alerts])
        count += sum(1 for alert in alerts if alert.rule_id == meta.id)
    return TestOutcome(meta, test, count, fired)


def _with_defaults(event: dict[str, Any], rule_id: str, test: int, index: int) -> dict[str, Any]:
    filled: dict[str, Any] = _plain(event)
    filled.setdefault(
        "eventTime", (_BASE_TIME + timedelta(seconds=index)).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    filled.setdefault("eventID", f"{rule_id}-{test}-{index}")
    filled.setdefault("eventVersion", "1.08")
    return filled


def _plain(value: Any) -> Any:
    """YAML reads unquoted timestamps as datetimes; CloudTrail has them as strings."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, dict):
        return {key: _plain(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_plain(inner) for inner in value]
    return value
