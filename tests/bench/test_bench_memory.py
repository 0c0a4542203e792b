"""The memory benchmarks keep working: `python -m bench --quick --only 10,11` measures every
message case with both contenders and both scans, and writes them into the result. This
checks the harness, not the numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_memory_benchmarks_report_every_case(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "10,11", "--output", str(tmp_path),
         "--no-docs"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads((tmp_path / "latest.json").read_text(encoding="utf-8"))
    benchmarks = {item["number"]: item for item in result["benchmarks"]}
    assert set(benchmarks) == {10, 11}
    messages, scans = benchmarks[10], benchmarks[11]
    assert messages["status"] == scans["status"] == "ok"
    assert len(messages["measurements"]) == 12  # six messages, two contenders
    assert all(m["unit"] == "MiB peak RSS" and m["median"] > 10
               for m in messages["measurements"].values())
    assert any("decompressed_too_large" in note for note in messages["notes"])
    assert any("too_many_records" in note for note in messages["notes"])
    assert len(scans["measurements"]) == 2
    assert scans["value"] is not None and scans["value"] > 0
