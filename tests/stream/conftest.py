"""Shared pieces of the stream unit tests: the test rules, scenario records, fresh metrics."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from detector.engine import RuleSet, load_rules
from detector.metrics import Metrics
from stream.support import FIXTURES


@pytest.fixture
def ruleset() -> RuleSet:
    result = load_rules([FIXTURES / "rules"])
    assert not result.errors
    return result.ruleset


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


@pytest.fixture
def scenario() -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in (FIXTURES / "kvs-intruder.jsonl").read_bytes()
            .splitlines()]
