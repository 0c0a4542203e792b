"""The settings tables of docs/worker.md and docs/sinks.md are the ones the settings classes
make (`python -m detector.settings.docs` rewrites them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from detector.settings.docs import DOCS, TABLES, rendered, stale
from detector.settings.model import namings
from detector.settings.worker import WorkerSettings


def test_every_table_is_up_to_date() -> None:
    assert stale() == []


def test_every_worker_setting_has_a_row_naming_its_variable_and_flag() -> None:
    rows = [line for line in (DOCS / "worker.md").read_text().splitlines()
            if line.startswith("| `DETECTOR_")]
    documented = {row.split("`")[1] for row in rows}
    expected = {name for option in namings(WorkerSettings)
                for name in ((option.env, option.file_env) if option.secret else (option.env,))}
    assert documented == expected
    for option in namings(WorkerSettings):
        row = next(row for row in rows if row.startswith(f"| `{option.env}` |"))
        assert (f"`{option.flag}`" in row) if option.flag else ("| — |" in row)


def test_a_changed_setting_makes_the_check_fail(tmp_path: Path) -> None:
    for page in {page for page, _make in TABLES.values()}:
        (tmp_path / page).write_text((DOCS / page).read_text().replace("`15m`", "`16m`"))
    assert "worker" in stale(tmp_path)
    with pytest.raises(ValueError, match="no <!-- settings: worker -->"):
        rendered("no table here", "worker", "| x |")


def test_the_module_checks_from_the_command_line() -> None:
    result = subprocess.run([sys.executable, "-m", "detector.settings.docs", "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
