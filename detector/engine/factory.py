"""Building a ready engine for a rule set: the one place scan, rule tests and the worker
agree on how single-event and stateful evaluation are wired together."""

from __future__ import annotations

from detector.engine.evaluator import Engine
from detector.engine.rule import RuleSet


def make_engine(ruleset: RuleSet, *, lateness: str | float = "15m") -> Engine:
    """An engine for `ruleset` with in-memory state for its stateful rules."""
    return Engine(ruleset)
