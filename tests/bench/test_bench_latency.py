"""Benchmark 16's markers: each decides exactly one alert of its kind, at its last event; and the
quick run through a real broker and worker times an alert for every marker."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench import latency
from bench.rules import STATEFUL_DIR, load
from detector.engine.factory import make_engine
from detector.events import Record, decode_record

REPO = Path(__file__).resolve().parents[2]
NOON = datetime(2026, 6, 1, 12, 0, tzinfo=UTC).timestamp()  # far from a period's first lateness


def _decoded(event: dict[str, object]) -> Record:
    record = decode_record(event)
    assert isinstance(record, Record), record
    return record


def test_each_marker_alerts_once_of_its_kind_at_its_deciding_event() -> None:
    rules = latency.marker_rules()
    engine = make_engine(load([STATEFUL_DIR]))
    markers = [latency.marker(kind, "spec", NOON, rules) for kind in latency.RULE_FILES]
    history = sorted((event for item in markers for event in item.history),
                     key=lambda event: str(event["eventTime"]))
    assert all(not engine.process(_decoded(event)) for event in history)
    for item in markers:
        raised = [(event["eventID"], alert.rule_id, alert.kind, alert.group_key)
                  for event in item.live for alert in engine.process(_decoded(event))]
        assert raised == [(item.decider, rules[item.kind].id, item.kind,
                           {"userIdentity.arn": item.arn})]


def test_the_counting_markers_reach_their_rules_thresholds() -> None:
    rules = latency.marker_rules()
    assert rules["event_count"].events == 5  # access_denied_burst.yml: gte 5
    assert rules["baseline"].events == 5  # kinesisvideo_clip_baseline.yml: floor 5
    assert rules["first_seen"].events == rules["rare"].events == 1


def test_the_plan_keeps_the_background_rate_and_each_markers_events_together() -> None:
    sizes = latency.Sizes(live_seconds=3.0, rate=1_000, reference_rate=500, warmup=1.0,
                          interval=0.5, drain_timeout=1.0)
    plan = latency.plan(sizes, sizes.rate, "run", NOON, latency.marker_rules())
    background = [record for record, group in plan.events if group is None]
    assert len(background) == 3_000
    assert len(plan.markers) == 4 * len(latency.RULE_FILES)
    first = next(n for n, (_, group) in enumerate(plan.events) if group is not None)
    assert first >= 1_000  # after the warm-up's second of the mix
    produce = plan.stamper()
    stamped = [produce(n) for n in range(len(plan.events))]
    for number, item in enumerate(plan.markers):
        places = [n for n, (_, group) in enumerate(plan.events) if group == number]
        assert places == list(range(places[0], places[0] + len(item.live)))
        assert len({stamped[n]["eventTime"] for n in places}) == 1
        assert plan.events[places[-1]][0]["eventID"] == item.decider


def test_a_live_part_in_the_first_lateness_of_a_utc_day_is_told() -> None:
    midnight = datetime(2026, 6, 2, tzinfo=UTC).timestamp()
    assert latency.near_day_start(midnight - 10, midnight + 20)  # across midnight
    assert latency.near_day_start(midnight + 600, midnight + 630)  # 00:10, lateness 15 min
    assert not latency.near_day_start(midnight + 960, midnight + 990)  # 00:16
    assert not latency.near_day_start(NOON, NOON + 30)


def test_the_quick_run_times_an_alert_for_every_marker(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--with-broker", "--only", "16",
         "--output", str(tmp_path), "--no-docs"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    document = json.loads((tmp_path / "latest.json").read_text(encoding="utf-8"))
    [result] = document["benchmarks"]
    if result["status"] == "not available" and "broker" in result["reason"]:
        pytest.skip(result["reason"])
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert result["status"] == "ok", result["reason"]
    for suffix in ("", f" at {latency.QUICK.reference_rate:,}/s"):
        for kind in latency.RULE_FILES:
            assert result["ratios"][f"{kind}{suffix} markers alerted / produced"] == 1.0
            assert result["measurements"][f"{kind}{suffix} p99"]["median"] > 0
        repeated = result["ratios"][f"marker principals alerted more than once / markers{suffix}"]
        assert repeated == 0
