"""The rules the fuzz suite runs: every shipped pack, and SigmaHQ's CloudTrail rules when
../shared/data holds them; loaded once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import REPO, SHARED_DATA

from detector.engine import load_rules
from detector.engine.rule import RuleSet

SIGMA_DIR = SHARED_DATA / "sigma" / "aws-cloudtrail"
# The lists of SigmaHQ's one rule that needs lists (console logins from known places).
SIGMA_LIST = {"Legitimate_Countries": ["Atlantis"], "Legitimate_IP_Ranges": ["203.0.113.0/24"]}


def _load(paths: list[Path], tmp: Path) -> RuleSet:
    lists = tmp / "lists"
    lists.mkdir(exist_ok=True)
    (lists / "fuzz.yml").write_text("".join(
        f"{name}:\n" + "".join(f"  - {value}\n" for value in values)
        for name, values in SIGMA_LIST.items()))
    result = load_rules(paths, [lists])
    assert result.errors == [], [str(error) for error in result.errors]
    return result.ruleset


@pytest.fixture(scope="session")
def shipped_rules(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    return _load([REPO / "rules"], tmp_path_factory.mktemp("lists"))


@pytest.fixture(scope="session")
def sigma_rules(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    if not SIGMA_DIR.is_dir():
        pytest.skip(f"{SIGMA_DIR} is absent: SigmaHQ's rules are not fuzzed")
    return _load([SIGMA_DIR], tmp_path_factory.mktemp("lists"))
