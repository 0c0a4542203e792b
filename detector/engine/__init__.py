"""The pure detection engine: rules in, records in, alerts out. No Kafka, no Faust."""

from detector.engine.evaluator import Engine, Failure, build_alert
from detector.engine.loader import LoadResult, load_rules
from detector.engine.rule import Correlation, LoadError, Rule, RuleSet

__all__ = [
    "Correlation",
    "Engine",
    "Failure",
    "LoadError",
    "LoadResult",
    "Rule",
    "RuleSet",
    "build_alert",
    "load_rules",
]
