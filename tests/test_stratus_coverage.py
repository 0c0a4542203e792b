"""docs/stratus-coverage.md stays true: each Stratus Red Team technique it maps to a rule is
caught by that rule when the technique's CloudTrail file is scanned with the shipped packs."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from helpers import REPO, SHARED_DATA

from detector.engine import RuleSet, load_rules
from detector.engine.factory import make_engine
from detector.events import decode

STRATUS = SHARED_DATA / "cloudtrail" / "stratus-red-team"
TABLE = REPO / "docs" / "stratus-coverage.md"
pytestmark = pytest.mark.skipif(not STRATUS.is_dir(), reason=f"{STRATUS} is absent")


def table() -> dict[str, tuple[str, str]]:
    """technique -> (rule id or '-', note)"""
    rows: dict[str, tuple[str, str]] = {}
    for line in TABLE.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("aws."):
            rows[cells[0]] = (cells[1], cells[3])
    return rows


@functools.cache
def shipped() -> RuleSet:
    result = load_rules([REPO / "rules"])
    assert result.errors == []
    return result.ruleset


def rules_fired(path: Path) -> set[str]:
    engine = make_engine(shipped())
    decoded = decode(path.read_bytes())
    assert decoded.errors == []
    records = sorted(decoded.records, key=lambda record: record.event_time)
    return {alert.rule_id for record in records for alert in engine.process(record)}


def test_every_technique_is_in_the_table() -> None:
    assert sorted(table()) == sorted(path.stem for path in STRATUS.glob("*.json"))


@pytest.mark.parametrize("technique", sorted(table()))
def test_mapped_rule_catches_the_technique(technique: str) -> None:
    rule_id, note = table()[technique]
    if rule_id == "-":
        assert note, f"{technique} is not covered and the table does not say why"
        return
    assert rule_id in rules_fired(STRATUS / f"{technique}.json")
