"""Rate baselines: each principal is compared with its own history of the same hour of day.

Fifteen days of synthetic traffic with a daily rhythm: a fleet application reads 12 streams
every five minutes all day; a human reads 20 in each five minutes of 10:00-11:00 and nothing
else. On day 15 the same volumes at other hours tell the two apart.
"""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest
from engine.stateful_support import ADMIN, HEADER, engine, event, fired, ruleset, run

from detector.engine import load_rules
from detector.engine.factory import (
    StateFileError,
    StatefulEngine,
    load_state,
    make_engine,
    save_state,
)
from detector.engine.state import MemoryState
from detector.events import Record

MINUTE, HOUR, DAY = 60, 3600, 86400
RULE_ID = "88888888-0000-4000-8000-000000000001"
FLEET = "arn:aws:sts::111122223333:assumed-role/CameraFleetViewer/viewer-1"
HUMAN = ADMIN
NEWCOMER = "arn:aws:iam::111122223333:user/new-hire"


def rules(**overrides: str) -> str:
    spec = {"key": "[userIdentity.arn]", "bucket": "5m", "window": "14d",
            "seasonality": "hour_of_day", "deviations": "4", "floor": "8", "learning": "7d",
            **overrides}
    body = ", ".join(f"{name}: {value}" for name, value in spec.items())
    return f"""\
title: media reads far above the principal's own normal
id: {RULE_ID}
detection:
  selection: {{eventName: GetMedia}}
  condition: selection
detector:
  output: '{{userIdentity.arn}} read far more media than usual'
  baseline: {{{body}}}
"""


def reads(arn: str, start: float, count: int, spread: float = 5 * MINUTE) -> list[Record]:
    """`count` GetMedia calls of `arn` spread over [start, start + spread)."""
    return [event(start + spread * n / count, "GetMedia", arn=arn,
                  event_id=f"{arn}-{start}-{n}") for n in range(count)]


def history(days: int = 14) -> list[Record]:
    """Fleet: 12 reads per 5 minutes all day; human: 20 per 5 minutes from 10:00 to 11:00."""
    records: list[Record] = []
    for day in range(days):
        for bucket in range(288):
            start = day * DAY + bucket * 5 * MINUTE
            records += reads(FLEET, start, 12)
            if 10 * HOUR <= bucket * 5 * MINUTE < 11 * HOUR:
                records += reads(HUMAN, start, 20)
    return records


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The state after 14 days of history, shared by the tests (copied for each)."""
    target = engine(tmp_path_factory.mktemp("baseline"), rules())
    alerts = run(target, history(), flush=False)
    state = target.stateful.state
    assert isinstance(state, MemoryState)
    return {"alerts": alerts, "entries": orjson.loads(orjson.dumps(state.snapshot())),
            "engine": target.stateful.dump()}


def resumed(tmp_path: Path, trained: dict[str, object]) -> StatefulEngine:
    """A fresh engine holding the trained state."""
    target = engine(tmp_path, rules())
    for key, value in orjson.loads(orjson.dumps(trained["entries"])).items():
        target.stateful.state.put(key, value)
    target.stateful.restore(orjson.loads(orjson.dumps(trained["engine"])))
    return target


DAY_15 = 14 * DAY


def test_fourteen_days_of_normal_traffic_do_not_alert(trained: dict[str, object]) -> None:
    assert fired(trained["alerts"], RULE_ID) == []  # type: ignore[arg-type]


def test_the_human_daily_peak_does_not_alert(tmp_path: Path, trained: dict[str, object]) -> None:
    target = resumed(tmp_path, trained)
    day = reads(HUMAN, DAY_15 + 10 * HOUR, 20) + reads(FLEET, DAY_15 + 10 * HOUR, 12)
    assert fired(run(target, [*day, *reads(FLEET, DAY_15 + 11 * HOUR, 12)]), RULE_ID) == []


def test_the_same_volume_at_night_alerts_at_the_read_that_crosses(
    tmp_path: Path, trained: dict[str, object]
) -> None:
    target = resumed(tmp_path, trained)
    night = reads(HUMAN, DAY_15 + 3 * HOUR, 20)
    alerts = fired(run(target, night, flush=False), RULE_ID)
    [alert] = alerts
    assert alert.kind == "baseline"
    assert alert.event_ids == (night[7].event_id,)  # the 8th read reaches the floor
    assert alert.text == f"{HUMAN} read far more media than usual"
    evidence = alert.details["anomaly"]
    assert evidence["observed"] == 8 and evidence["threshold"] == 8
    assert evidence["expected"] == 0 and evidence["slot"] == "03:00-04:00 UTC"
    # the days of history whose 03:00 came after its first read (10:00 on day 1)
    assert evidence["counts"] == [0] * 13 and evidence["learning"] is False
    assert evidence["method"] == "rate" and evidence["field"] == "events"
    assert evidence["history"] == {"start": "2026-03-11T00:00:00.000000Z",
                                   "end": "2026-03-24T00:00:00.000000Z"}
    assert evidence["score"] == 8.0


def test_the_fleet_normal_is_quiet_where_the_human_alerts(
    tmp_path: Path, trained: dict[str, object]
) -> None:
    target = resumed(tmp_path, trained)
    night = reads(FLEET, DAY_15 + 3 * HOUR, 12) + reads(HUMAN, DAY_15 + 3 * HOUR, 12)
    alerts = fired(run(target, night), RULE_ID)
    assert [alert.group_key for alert in alerts] == [{"userIdentity.arn": HUMAN}]
    # the fleet application alerts only far above its own normal
    flood = reads(FLEET, DAY_15 + 4 * HOUR, 40)
    [alert] = fired(run(target, flood), RULE_ID)
    assert alert.details["anomaly"]["expected"] == 12
    assert alert.details["anomaly"]["threshold"] == 26  # 12 + 4 x sqrt(12), rounded down, + 1


def test_a_principal_still_learning_stays_quiet(
    tmp_path: Path, trained: dict[str, object]
) -> None:
    target = resumed(tmp_path, trained)
    newcomer = reads(NEWCOMER, DAY_15 + 3 * HOUR, 50)
    assert fired(run(target, newcomer), RULE_ID) == []
    later = reads(NEWCOMER, DAY_15 + 7 * DAY + 3 * HOUR, 50)  # learnt a week: compared now
    assert len(fired(run(target, later), RULE_ID)) == 1


def test_late_and_duplicate_events_change_nothing(
    tmp_path: Path, trained: dict[str, object]
) -> None:
    day = sorted([*reads(HUMAN, DAY_15 + 3 * HOUR, 20), *reads(FLEET, DAY_15 + 3 * HOUR, 12),
                  *reads(FLEET, DAY_15 + 4 * HOUR, 40), *reads(HUMAN, DAY_15 + 10 * HOUR, 20)],
                 key=lambda record: record.event_time)
    reference = {alert.id for alert in run(resumed(tmp_path, trained), day)}
    shuffled = [*day, *random.Random(7).sample(day, 30)]  # redeliveries
    # every record delayed by up to 10 minutes (within the 15 minutes of lateness)
    delays = random.Random(3).choices(range(0, 10 * MINUTE), k=len(shuffled))
    arrived = [record for _, record in sorted(zip(
        (record.event_time + delay for record, delay in zip(shuffled, delays, strict=True)),
        shuffled, strict=True), key=lambda pair: pair[0])]
    target = resumed(tmp_path, trained)
    assert {alert.id for alert in run(target, arrived)} == reference
    assert len(reference) == 2  # the human at night, the fleet's flood
    assert target.stats()["duplicates"] == 30 and target.stats()["late"] == 0


def test_a_bucket_at_the_start_of_a_day_waits_until_the_day_before_is_closed(
    tmp_path: Path, trained: dict[str, object]
) -> None:
    target = resumed(tmp_path, trained)
    midnight = reads(HUMAN, DAY_15, 20)  # the watermark is still 15 minutes before it
    assert fired(run(target, midnight, flush=False), RULE_ID) == []
    clock = reads(FLEET, DAY_15 + 20 * MINUTE, 2)
    [alert] = fired(run(target, clock, flush=False), RULE_ID)
    assert alert.details["anomaly"]["observed"] == 20


def test_distinct_values_are_counted_when_asked(tmp_path: Path) -> None:
    target = engine(tmp_path, rules(distinct="requestParameters.streamName", learning="1d",
                                    floor="3", deviations="1"))
    warm = [event(at, "GetMedia", arn=HUMAN, requestParameters={"streamName": "door"})
            for at in (0, DAY + HOUR)]
    same = [event(2 * DAY + 3 * HOUR + n, "GetMedia", arn=HUMAN, event_id=f"same-{n}",
                  requestParameters={"streamName": "door"}) for n in range(5)]
    many = [event(2 * DAY + 4 * HOUR + n, "GetMedia", arn=HUMAN, event_id=f"many-{n}",
                  requestParameters={"streamName": f"camera-{n}"}) for n in range(5)]
    alerts = fired(run(target, [*warm, *same, *many]), RULE_ID)
    assert [alert.details["anomaly"]["observed"] for alert in alerts] == [3]
    assert alerts[0].details["anomaly"]["field"] == "distinct requestParameters.streamName"


def test_an_entry_stays_under_a_kibibyte_for_a_daily_profile(
    trained: dict[str, object]
) -> None:
    entries = trained["entries"]
    assert isinstance(entries, dict)
    human = next(value for key, value in entries.items() if HUMAN in key)
    assert len(orjson.dumps(human)) < 1024


def test_the_state_file_carries_the_profile_and_checks_it(
    tmp_path: Path, trained: dict[str, object]
) -> None:
    target = resumed(tmp_path, trained)
    path = tmp_path / "state.json"
    save_state(target, path)
    again = make_engine(ruleset(tmp_path, rules()))
    load_state(again, path)
    [alert] = fired(run(again, reads(HUMAN, DAY_15 + 3 * HOUR, 20)), RULE_ID)
    assert alert.details["anomaly"]["counts"] == [0] * 13


@pytest.mark.parametrize(("overrides", "problem"), [
    ({"bucket": "7m"}, "must divide the hour_of_day slot (3600 s) into whole buckets"),
    ({"bucket": "2h"}, "must divide the hour_of_day slot"),
    ({"seasonality": "hourly"}, "must be one of none, hour_of_day, day_of_week"),
    ({"window": "12h"}, "must hold at least one 1-day period"),
    ({"window": "400d"}, "at most 4096 cells"),
    ({"seasonality": "day_of_week", "window": "3d"}, "must hold at least one 7-day period"),
    ({"floor": "0"}, "`floor:` a whole number of at least 1"),
    ({"deviations": "-1"}, "`deviations:` a number above 0"),
    ({"deviations": ".inf"}, "`deviations:` a number above 0"),
    ({"retention": "1d"}, "retention` must be no shorter than its window"),
    ({"distinct": "[a, b]"}, "an optional `distinct:` (one field name)"),
    ({"bucke": "5m"}, "unknown key(s) ['bucke']"),
])
def test_the_loader_refuses_a_malformed_baseline(tmp_path: Path, overrides: dict[str, str],
                                                 problem: str) -> None:
    (tmp_path / "rules.yml").write_text(HEADER + rules(**overrides))
    errors = [str(error) for error in load_rules([tmp_path]).errors]
    assert len(errors) == 1 and problem in errors[0], errors


@pytest.mark.parametrize(("entry", "problem"), [
    ([0.0, -1, "\x10", []], "its profile holds characters that are not counts"),
    ([0.0, 1.5, "  ", []], "a baseline entry is [start, latest period, profile, open buckets]"),
    ([0.0, -1, "  ", [[0.0, -3, 0, None]]], "an open bucket is not"),
    ([0.0, -1, "  ", [[0.0, 1, -7, None]]], "an open bucket is not"),
    ([0.0, -1, "  ", [[0.0, 1, 0, None, [1]]]], "an open bucket is not"),
    ([0.0, -1, "  ", {}], "its open buckets are not a list"),
])
def test_a_hostile_baseline_entry_in_a_state_file_is_refused(
    tmp_path: Path, entry: object, problem: str
) -> None:
    path = tmp_path / "state.json"
    key = f'fs|{RULE_ID}|["{HUMAN}"]'
    path.write_bytes(orjson.dumps({
        "format": "detector-state", "version": 2,
        "engine": {"max_event_time": 1000.0, "late": 0, "duplicates": 0,
                   "recent_event_ids": []},
        "entries": {key: entry}}))
    with pytest.raises(StateFileError) as refused:
        load_state(make_engine(ruleset(tmp_path, rules())), path)
    assert problem in str(refused.value)
