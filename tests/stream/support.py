"""Constants and helpers of the stream unit tests."""

from __future__ import annotations

from pathlib import Path

from detector.metrics import Metrics
from detector.stream.app import Detector, create_app
from detector.stream.config import Settings
from detector.stream.rules import RuleSource

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "stream"
DELETE_RULE = "5f0e4d2a-1c3b-4a5e-9f6d-7a8b9c0d1e2f"
NEW_IP_RULE = "8c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else value


def build(settings: Settings, environ: dict[str, str] | None = None) -> Detector:
    """A worker's app over the fixture rules, sinks from `environ` only."""
    rules = RuleSource([str(FIXTURES / "rules")])
    return create_app(settings, rules, rules.load(), environ=environ or {})
