"""The benchmark harness keeps working: `python -m bench --quick` runs every benchmark on tiny
inputs and writes a complete result. This checks the harness, not the speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
ENGINE_BENCHMARKS = {1, 2, 3, 4, 9, 12, 14, 15}  # need no broker: they must produce numbers
ALL_BENCHMARKS = {*range(1, 10), 12, 13, 14, 15, 16}  # quick mode runs 10, 11 only when named


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    out = tmp_path_factory.mktemp("bench")
    docs = out / "BENCHMARKS.md"
    docs.write_text("# Benchmarks\n\nintro\n\n<!-- bench:results:start -->\nold table\n"
                    "<!-- bench:results:end -->\n\nafterword\n", encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--output", str(out), "--docs", str(docs)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads((out / "latest.json").read_text(encoding="utf-8"))
    return result, completed.stdout, docs


def _benchmarks(result: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {benchmark["number"]: benchmark for benchmark in result["benchmarks"]}


def test_the_result_names_the_machine_and_the_command(
    quick_run: tuple[dict[str, Any], str, Path],
) -> None:
    result, _, _ = quick_run
    machine = result["machine"]
    assert machine["cores"] >= 1
    assert machine["cpu_model"]
    assert machine["python"].startswith("3.")
    assert result["quick"] is True
    assert "--quick" in result["command"]


def test_every_benchmark_is_reported(quick_run: tuple[dict[str, Any], str, Path]) -> None:
    result, _, _ = quick_run
    benchmarks = _benchmarks(result)
    assert set(benchmarks) == ALL_BENCHMARKS
    for benchmark in benchmarks.values():
        assert benchmark["status"] in ("ok", "not available", "skipped"), benchmark["reason"]
        assert benchmark["target"]["text"]
        if benchmark["status"] != "ok":
            assert benchmark["reason"], f"benchmark {benchmark['number']} gives no reason"


def test_engine_benchmarks_have_numbers_and_ratios(
    quick_run: tuple[dict[str, Any], str, Path],
) -> None:
    benchmarks = _benchmarks(quick_run[0])
    for number in ENGINE_BENCHMARKS:
        benchmark = benchmarks[number]
        assert benchmark["status"] == "ok", benchmark["reason"]
        assert benchmark["measurements"], f"benchmark {number} measured nothing"
        for measurement in benchmark["measurements"].values():
            assert measurement["median"] > 0
            assert measurement["runs"] and all(run > 0 for run in measurement["runs"])
        assert benchmark["ratios"] and all(ratio > 0 for ratio in benchmark["ratios"].values())
        assert isinstance(benchmark["value"], float)
        assert isinstance(benchmark["met"], bool)


def test_contenders_alternate_over_the_same_repetitions(
    quick_run: tuple[dict[str, Any], str, Path],
) -> None:
    stateless = _benchmarks(quick_run[0])[1]["measurements"]
    runs = {len(measurement["runs"]) for measurement in stateless.values()}
    assert len(runs) == 1 and runs.pop() >= 2


def test_the_table_is_printed_and_replaces_only_the_marked_block(
    quick_run: tuple[dict[str, Any], str, Path],
) -> None:
    _, stdout, docs = quick_run
    assert "| # | Benchmark |" in stdout
    text = docs.read_text(encoding="utf-8")
    assert "old table" not in text
    assert text.startswith("# Benchmarks\n\nintro\n")
    assert text.rstrip().endswith("afterword")
    assert text.count("| # | Benchmark |") == 1
