"""A day of Kinesis Video activity with an intruder, through every shipped rule.

examples/scenarios/README.md tells the story. A camera fleet, an operator and an admin go
about their work (with a week of history before it, so first-seen baselines are learned);
at 02:00 someone uses the operator's leaked access key from 203.0.113.66, enumerates the
streams, reads media endpoints, cuts retention and deletes streams. Exactly the alerts
below must fire, all about the intruder; nothing fires on the normal activity.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest

from detector.alerts import Alert
from detector.cli import main
from detector.engine import load_rules
from detector.engine.factory import make_engine
from detector.engine.stateful import SuppressionSummary
from detector.events import DEFAULT_LIMITS
from detector.scan import scan

REPO = Path(__file__).resolve().parents[1]
SCENARIO = REPO / "examples" / "scenarios" / "kinesisvideo-intruder.jsonl"
STRATUS = REPO.parent / "shared" / "data" / "cloudtrail" / "stratus-red-team"
INTRUDER_IP = "203.0.113.66"
OPERATOR = "arn:aws:iam::111122223333:user/kvs-operator"

EXPECTED = {
    # single-event rules (kinesisvideo pack)
    "41235be1-9ce5-4eb1-8e19-67ec4855b12f": 1,  # API call denied (6 repeats suppressed)
    "59a57c98-88d2-432e-9a68-cd2c92ffde81": 1,  # media endpoint from outside trusted networks
    "76b3a275-fc1b-401f-8f90-b01995fde35c": 2,  # retention decreased by a day or more
    "b60f4e1d-0d20-4462-a8c1-5313d61acecf": 4,  # stream deleted by a non-admin
    # stateful rules (kinesisvideo/stateful.yml)
    "91029787-f63b-4471-b051-dfde38322349": 1,  # Kinesis Video call from a new source IP
    "87bbf83f-ef22-4c3b-aa0d-45bac7d892f0": 1,  # recon: many distinct read APIs
    "e5e5d216-c539-49cf-903b-d52e9fdf505a": 1,  # recon: many streams read
    "6f4754de-bd3c-4125-abdc-3baf1dfb6b5f": 1,  # repeated access denied
    "4fc2abe0-9bc1-4ac0-88be-8641b95298f5": 1,  # mass deletion (second bucket suppressed)
    "49b080fe-f637-4360-b5ee-af6c0183a3ac": 1,  # media read from new IP, then retention cut
    # baselines and rare values (kinesisvideo/baselines.yml): a week of history is learnt
    "8aa3c787-4fa4-47bc-ba60-9956e9d95f5c": 1,  # streams read far above the operator's normal
    "9dd24719-3c97-4c80-91f6-80e8cfb1fba5": 1,  # API rare for the operator (repeats folded)
    # stateful rules (aws-core/stateful.yml)
    "069bd6e1-ed83-4c23-b82e-bcaa3d82a7f5": 1,  # long-term access key from a new source IP
    "a613ee5d-ee9a-462c-9278-685479712fce": 1,  # discovery burst from the AWS CLI
}


def _scan_scenario() -> tuple[list[Alert], dict[str, int], list[SuppressionSummary]]:
    result = load_rules([REPO / "rules"])
    assert not result.errors, [str(error) for error in result.errors]
    engine = make_engine(result.ruleset)
    alerts: list[Alert] = []
    scan([str(SCENARIO)], engine, DEFAULT_LIMITS, alerts.append)
    alerts += engine.flush()
    return alerts, engine.stats(), engine.closed_suppressions()


def test_exactly_the_expected_alerts_fire() -> None:
    alerts, _stats, _folded = _scan_scenario()
    assert Counter(alert.rule_id for alert in alerts) == Counter(EXPECTED)


def test_every_alert_is_about_the_intruder() -> None:
    alerts, _stats, _folded = _scan_scenario()
    for alert in alerts:
        trigger = alert.events[-1]
        assert (trigger.principal_arn, trigger.source_ip) == (OPERATOR, INTRUDER_IP), alert.text


def test_the_sequence_alert_names_the_media_read_and_the_retention_cut() -> None:
    alerts, _stats, _folded = _scan_scenario()
    [sequence] = [alert for alert in alerts
                  if alert.rule_id == "49b080fe-f637-4360-b5ee-af6c0183a3ac"]
    assert [(event.event_name, event.event_time) for event in sequence.events] == [
        ("GetDataEndpoint", "2026-03-10T02:20:10.000000Z"),
        ("UpdateDataRetention", "2026-03-10T02:40:30.000000Z"),
    ]
    assert sequence.level == "critical"


def test_redelivered_events_are_dropped_and_repeats_are_folded() -> None:
    _alerts, stats, folded = _scan_scenario()
    assert (stats["duplicates"], stats["late"]) == (2, 0)
    repeats = {summary.rule_id: summary.count - 1 for summary in folded}
    assert repeats == {
        "41235be1-9ce5-4eb1-8e19-67ec4855b12f": 6,
        "59a57c98-88d2-432e-9a68-cd2c92ffde81": 2,
        "a613ee5d-ee9a-462c-9278-685479712fce": 1,
        "4fc2abe0-9bc1-4ac0-88be-8641b95298f5": 1,
        "9dd24719-3c97-4c80-91f6-80e8cfb1fba5": 2,  # the intruder's next rare APIs that hour
    }


def test_alert_ids_are_stable_across_runs() -> None:
    first, _stats, _folded = _scan_scenario()
    second, _stats, _folded = _scan_scenario()
    assert sorted(alert.id for alert in first) == sorted(alert.id for alert in second)
    assert len({alert.id for alert in first}) == len(first)


def _cli_alert_ids(tmp_path: Path, name: str, files: list[str]) -> list[str]:
    output = tmp_path / name
    code = main(["scan", "--rules", str(REPO / "rules"), "--no-progress", "-o", str(output),
                 *files])
    assert code == 0
    return sorted(orjson.loads(line)["id"] for line in output.read_bytes().splitlines())


@pytest.mark.skipif(not STRATUS.is_dir(), reason=f"shared test data not found at {STRATUS}")
def test_scan_gives_the_same_alerts_whatever_the_order_of_the_files(tmp_path: Path) -> None:
    files = sorted(str(path) for path in STRATUS.glob("*.json"))
    forward = _cli_alert_ids(tmp_path, "forward.jsonl", files)
    backward = _cli_alert_ids(tmp_path, "backward.jsonl", files[::-1])
    interleaved = _cli_alert_ids(tmp_path, "interleaved.jsonl", files[1::2] + files[::2])
    assert forward
    assert forward == backward == interleaved
