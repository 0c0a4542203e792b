"""docs/worker.md documents every worker setting, by variable and flag."""

from __future__ import annotations

from pathlib import Path

from detector.stream.config import OPTIONS, PASSWORD_FILE_ENV

DOC = Path(__file__).resolve().parents[2] / "docs" / "worker.md"


def test_every_setting_has_a_row_in_the_configuration_table() -> None:
    rows = [line for line in DOC.read_text().splitlines() if line.startswith("| `DETECTOR_")]
    documented = {row.split("`")[1] for row in rows}
    assert documented == {option.env for option in OPTIONS} | {PASSWORD_FILE_ENV}
    for option in OPTIONS:
        row = next(row for row in rows if row.startswith(f"| `{option.env}` |"))
        assert (f"`{option.flag}`" in row) if option.flag else ("| — |" in row)
