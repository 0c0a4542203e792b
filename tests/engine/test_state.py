"""The state interface and its in-memory store, and the state file of `detector scan --state`:
plain JSON entries, one per rule and group key, saved and loaded without losing a baseline."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from engine.stateful_support import ADMIN, engine, event, fired, ruleset, run

from detector.cli import main
from detector.engine.factory import (
    StateFileError,
    hold_state,
    load_state,
    make_engine,
    save_state,
)
from detector.engine.fields import text_of
from detector.engine.state import MemoryState
from detector.engine.stateful.clock import RecentIds
from detector.engine.stateful.keys import bucket_start
from detector.events import Record

DAY = 86400
RULES = """\
title: new source ip
id: 66666666-0000-4000-8000-000000000001
name: new_ip
detection:
  selection: {eventSource: kinesisvideo.amazonaws.com}
  condition: selection
detector:
  first_seen: {key: [userIdentity.arn], value: [sourceIPAddress], learning: 1d, retention: 30d}
---
title: new source ip, alerting
id: 66666666-0000-4000-8000-000000000002
detection:
  selection: {eventSource: kinesisvideo.amazonaws.com}
  condition: selection
detector:
  first_seen: {key: [userIdentity.arn], value: [sourceIPAddress], learning: 1d, retention: 30d}
  suppress: {window: 1h, by: [sourceIPAddress]}
---
title: deleted
id: 66666666-0000-4000-8000-000000000003
name: deleted
detection:
  selection: {eventName: DeleteStream}
  condition: selection
---
title: new ip then delete
id: 66666666-0000-4000-8000-000000000004
correlation:
  type: temporal_ordered
  rules: [new_ip, deleted]
  group-by: [userIdentity.arn]
  timespan: 1h
"""


def rules_dir(tmp_path: Path, text: str = RULES) -> Path:
    """A rules directory holding `text`, for `detector scan --rules`."""
    rules = tmp_path / "rules"
    rules.mkdir()
    engine(rules, text)  # writes rules/rules.yml
    return rules


def history() -> list[Record]:
    return [event(0), event(60, arn=ADMIN), event(2 * DAY, "ListStreams"),
            event(2 * DAY + 60, ip="203.0.113.66"), event(2 * DAY + 120, "DeleteStream",
                                                          ip="203.0.113.66")]


def test_memory_state_is_a_bounded_keyed_store() -> None:
    state = MemoryState(max_entries=2)
    state.put("a", {"n": 1})
    state.put("b", [1, "x"])
    state.put("a", {"n": 2})
    assert (state.get("a"), state.get("b"), state.get("c")) == ({"n": 2}, [1, "x"], None)
    state.put("c", 3)
    assert sorted(state.all_keys()) == ["b", "c"]  # the oldest entry went
    assert state.evicted == 1
    for key in state.all_keys():
        state.delete(key)
    assert len(state) == 0


def test_entries_are_plain_json_one_per_rule_and_group_key(tmp_path: Path) -> None:
    target = engine(tmp_path, RULES)
    later = [event(2 * DAY + 1200, "ListStreams"), event(2 * DAY + 1260, "ListStreams")]
    run(target, [*history(), *later], flush=False)
    state = target.stateful.state
    assert isinstance(state, MemoryState)
    entries = state.snapshot()
    assert orjson.loads(orjson.dumps(entries)) == entries
    kinds = sorted(key.split("|")[0] for key in entries)
    assert kinds == ["co", "fs", "fs", "fs", "fs", "su"]
    assert f'fs|66666666-0000-4000-8000-000000000001|["{ADMIN}"]' in entries


def test_each_stateful_rule_names_the_fields_to_partition_by(tmp_path: Path) -> None:
    assert engine(tmp_path, RULES).stateful.group_fields() == {
        "fs|66666666-0000-4000-8000-000000000001": ("userIdentity.arn",),
        "fs|66666666-0000-4000-8000-000000000002": ("userIdentity.arn",),
        "su|66666666-0000-4000-8000-000000000002": ("sourceIPAddress",),
        "co|66666666-0000-4000-8000-000000000004": ("userIdentity.arn",),
    }


def test_a_saved_state_continues_where_the_first_run_stopped(tmp_path: Path) -> None:
    records = history()
    whole = {alert.id for alert in run(engine(tmp_path, RULES), records)}
    assert len(whole) == 2  # the new IP, then the sequence

    first = engine(tmp_path, RULES)
    before = run(first, records[:3])
    path = tmp_path / "state.json"
    save_state(first, path)
    second = engine(tmp_path, RULES)
    assert load_state(second, path) is True
    after = run(second, records[3:])
    assert {alert.id for alert in before + after} == whole
    assert second.stats()["duplicates"] == 0
    assert run(second, records[3:4]) == []  # a redelivery across runs is still a duplicate


def test_a_state_file_of_the_previous_version_still_loads(tmp_path: Path) -> None:
    """Version 2 only added optional fields to entries, so version 1 files are read as they
    are; a detector that reads version 1 only refuses a version 2 file."""
    records = history()
    first = engine(tmp_path, RULES)
    run(first, records[:3])
    path = tmp_path / "state.json"
    save_state(first, path)
    document = orjson.loads(path.read_bytes())
    assert document["version"] == 2
    path.write_bytes(orjson.dumps(dict(document, version=1)))
    second = engine(tmp_path, RULES)
    assert load_state(second, path) is True
    assert len(second.stateful.state) == len(first.stateful.state)


def test_a_missing_state_file_means_a_first_run(tmp_path: Path) -> None:
    assert load_state(engine(tmp_path, RULES), tmp_path / "absent.json") is False


@pytest.mark.parametrize(("content", "message"), [
    (b"{not json", "invalid JSON"),
    (b'{"format": "something-else"}', "not a detector state file"),
    (b'{"format": "detector-state", "version": 99, "entries": {}, "engine": {}}', "version 99"),
    (b'{"format": "detector-state", "version": 1, "entries": [], "engine": {}}', "malformed"),
    (b'{"format": "detector-state", "version": 1, "entries": {}, "engine": {}}',
     "engine: its late and duplicate counts are not counts"),
])
def test_an_unusable_state_file_is_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(StateFileError, match=message):
        load_state(engine(tmp_path, RULES), path)


def test_state_is_only_loaded_into_a_fresh_engine(tmp_path: Path) -> None:
    target = engine(tmp_path, RULES)
    run(target, history())
    save_state(target, tmp_path / "state.json")
    with pytest.raises(StateFileError, match="fresh engine"):
        load_state(target, tmp_path / "state.json")


def _write_jsonl(path: Path, records: list[Record]) -> str:
    path.write_bytes(b"".join(orjson.dumps(record.data) + b"\n" for record in records))
    return str(path)


def test_scan_carries_baselines_between_runs_in_the_state_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = rules_dir(tmp_path)
    records = history()
    earlier = _write_jsonl(tmp_path / "earlier.jsonl", records[:3])
    later = _write_jsonl(tmp_path / "later.jsonl", records[3:])
    state = tmp_path / "state.json"
    scan = ["scan", "--rules", str(rules), "--no-progress", "--state", str(state)]
    assert main([*scan, "-o", str(tmp_path / "a.jsonl"), earlier]) == 0
    assert orjson.loads(state.read_bytes())["format"] == "detector-state"
    assert main([*scan, "-o", str(tmp_path / "b.jsonl"), later]) == 0
    fired = [orjson.loads(line)["rule"]["id"]
             for line in (tmp_path / "b.jsonl").read_bytes().splitlines()]
    assert sorted(fired) == ["66666666-0000-4000-8000-000000000002",
                             "66666666-0000-4000-8000-000000000004"]
    without_state = ["scan", "--rules", str(rules), "--no-progress", "-o",
                     str(tmp_path / "c.jsonl"), later]
    assert main(without_state) == 0
    assert (tmp_path / "c.jsonl").read_bytes() == b""  # the key would still be learning


def test_scan_refuses_a_corrupt_state_file_and_leaves_it_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = rules_dir(tmp_path)
    state = tmp_path / "state.json"
    state.write_bytes(b'{"format": "detector-state", "version": 1, "entr')
    logs = _write_jsonl(tmp_path / "logs.jsonl", history())
    code = main(["scan", "--rules", str(rules), "--no-progress", "--state", str(state), logs])
    assert code == 2
    assert "refusing to scan" in capsys.readouterr().err
    assert state.read_bytes() == b'{"format": "detector-state", "version": 1, "entr'


GOOD_ENGINE = {"max_event_time": 1000.0, "late": 0, "duplicates": 0, "recent_event_ids": []}
FS = 'fs|66666666-0000-4000-8000-000000000001|["arn:aws:iam::111122223333:user/op"]'
CO = 'co|66666666-0000-4000-8000-000000000004|["arn:aws:iam::111122223333:user/op"]'
SU = 'su|66666666-0000-4000-8000-000000000002|["203.0.113.66"]'


@pytest.mark.parametrize(("key", "entry", "problem"), [
    (FS, [0, {"10.0.0.1": "soon"}], "its values do not map to whole minutes"),
    (FS, [0, {}, [[1.0, "e-1", "10.0.0.1"]]], "a held event is not"),
    (FS, {"not": "a list"}, "a first-seen entry is"),
    (CO, {"e": [[2.0, "b", 1, None, None], [1.0, "a", 1, None, None]], "f": [], "o": []},
     "not in (time, event id) order"),
    (CO, {"e": [[1.0, "a", 0, None, None]], "f": [], "o": []}, "rule mask"),
    (CO, {"e": [], "f": ["x"], "o": []}, '"f" is not a list of window starts'),
    (SU, {"w": [[0, 1, 0, 0, [[0, 7]]]]}, "a window is not"),
    (SU, {"w": [], "extra": 1}, "a suppression entry is"),
    ("xx|rule|[]", [], "unknown kind 'xx'"),
    ("fs|rule|not json", [0, {}], "a state key is"),
    ("fs|rule|[1]", [0, {}], "a list of strings or nulls"),
])
def test_every_entry_of_a_state_file_is_checked_when_it_is_loaded(
    tmp_path: Path, key: str, entry: object, problem: str
) -> None:
    path = tmp_path / "state.json"
    good = {FS: [0, {"10.0.0.1": 10}], SU: {"w": [[0, 1, 0, 0, [[0, "e-1"]]]]}}
    path.write_bytes(orjson.dumps({"format": "detector-state", "version": 2,
                                   "engine": GOOD_ENGINE, "entries": {**good, key: entry}}))

    with pytest.raises(StateFileError) as refused:
        load_state(engine(tmp_path, RULES), path)

    message = str(refused.value)
    assert message.startswith(f"{path}: entry {key!r}: ")
    assert problem in message


@pytest.mark.parametrize(("saved", "problem"), [
    ({**GOOD_ENGINE, "max_event_time": 4_000_000_000.0}, "lies ahead of the wall clock"),
    ({**GOOD_ENGINE, "latest_event_times": [4_000_000_000.0, 1000.0]}, "lies ahead"),
    ({**GOOD_ENGINE, "recent_event_ids": [["e-1"]]}, "recent event ids"),
    ({**GOOD_ENGINE, "max_event_time": "today"}, "event times are not numbers"),
])
def test_the_engine_part_of_a_state_file_is_checked_and_its_clock_may_not_lie_ahead(
    tmp_path: Path, saved: dict[str, object], problem: str
) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(orjson.dumps({"format": "detector-state", "version": 2, "engine": saved,
                                   "entries": {}}))

    with pytest.raises(StateFileError, match=f"{path}: engine: .*{problem}"):
        load_state(engine(tmp_path, RULES), path, latest=2_000_000_000.0)


def test_scan_refuses_a_malformed_entry_naming_file_and_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = rules_dir(tmp_path)
    state = tmp_path / "state.json"
    content = orjson.dumps({"format": "detector-state", "version": 2, "engine": GOOD_ENGINE,
                            "entries": {FS: [0, {"10.0.0.1": "yesterday"}]}})
    state.write_bytes(content)
    logs = _write_jsonl(tmp_path / "logs.jsonl", history())

    code = main(["scan", "--rules", str(rules), "--state", str(state), logs])

    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert f"{state}: entry {FS!r}: its values do not map to whole minutes" in err
    assert state.read_bytes() == content


def test_a_second_scan_on_a_state_file_in_use_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = rules_dir(tmp_path)
    state = tmp_path / "state.json"
    logs = _write_jsonl(tmp_path / "logs.jsonl", history())
    scan = ["scan", "--rules", str(rules), "--state", str(state), "-o",
            str(tmp_path / "out.jsonl"), logs]

    with hold_state(state):  # the first run
        assert main(scan) == 2
        assert f"{state}: in use by another run" in capsys.readouterr().err
        assert not state.exists()
    assert main(scan) == 0  # once it has ended
    assert state.exists()


def test_an_unwritable_state_location_is_found_before_scanning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = rules_dir(tmp_path)
    logs = _write_jsonl(tmp_path / "logs.jsonl", history())
    state = tmp_path / "missing-dir" / "state.json"

    code = main(["scan", "--rules", str(rules), "--state", str(state), logs])

    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert "location is not writable" in err
    assert "scanned" not in err


def test_a_saved_state_is_fsynced_and_renamed_over_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    fsync = os.fsync

    def noting(descriptor: int) -> None:
        synced.append(descriptor)
        fsync(descriptor)

    monkeypatch.setattr(os, "fsync", noting)
    target = engine(tmp_path, RULES)
    run(target, history(), flush=False)
    path = tmp_path / "state.json"
    path.write_bytes(b"the previous state")

    save_state(target, path)

    assert len(synced) == 2  # the file, then its directory
    assert orjson.loads(path.read_bytes())["format"] == "detector-state"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_record_far_ahead_does_not_wipe_the_saved_baselines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = rules_dir(tmp_path)
    state = tmp_path / "state.json"
    scan = ["scan", "--rules", str(rules), "--state", str(state)]
    records = history()
    assert main([*scan, "-o", str(tmp_path / "a.out"),
                 _write_jsonl(tmp_path / "a.jsonl", records[:3])]) == 0
    baselines = {key: value[:2] for key, value in orjson.loads(state.read_bytes())[
        "entries"].items() if key.startswith("fs|")}
    assert baselines
    # 40 days ahead: past the 30-day retention, so the sweep would forget every value
    stray = event(42 * DAY, "ListStreams", ip="198.51.100.1", event_id="stray")
    later = _write_jsonl(tmp_path / "b.jsonl", [stray, records[3], records[4]])

    assert main([*scan, "-o", str(tmp_path / "b.out"), later]) == 0

    saved = orjson.loads(state.read_bytes())
    kept = {key: value[:2] for key, value in saved["entries"].items() if key.startswith("fs|")}
    assert {key: kept[key][1] for key in baselines} == {
        key: {**value[1], **kept[key][1]} for key, value in baselines.items()}
    assert saved["engine"]["late"] == 0
    fired_ids = [orjson.loads(line)["rule"]["id"]
                 for line in (tmp_path / "b.out").read_bytes().splitlines()]
    assert "66666666-0000-4000-8000-000000000002" in fired_ids  # the new IP, not blind


def test_a_record_dated_2099_is_an_input_error_and_leaves_the_state_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = rules_dir(tmp_path)
    state = tmp_path / "state.json"
    scan = ["scan", "--rules", str(rules), "--state", str(state), "-o", str(tmp_path / "o")]
    assert main([*scan, _write_jsonl(tmp_path / "a.jsonl", history()[:3])]) == 0
    before = orjson.loads(state.read_bytes())
    stray = {**history()[2].data, "eventTime": "2099-01-01T00:00:00Z", "eventID": "stray"}
    (tmp_path / "b.jsonl").write_bytes(orjson.dumps(stray) + b"\n")

    assert main([*scan, str(tmp_path / "b.jsonl")]) == 3

    assert "event_time_out_of_range: 1" in capsys.readouterr().err
    assert orjson.loads(state.read_bytes())["entries"] == before["entries"]


def test_scan_reports_late_and_duplicate_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = rules_dir(tmp_path)
    records = history()
    logs = _write_jsonl(tmp_path / "logs.jsonl", [*records, records[1]])
    assert main(["scan", "--rules", str(rules), "--no-progress", "-o",
                 str(tmp_path / "out.jsonl"), logs]) == 0
    assert "late events: 0, duplicate events: 1" in capsys.readouterr().err


def test_a_restarted_worker_resumes_from_the_shared_state(tmp_path: Path) -> None:
    shared = MemoryState()
    rules = ruleset(tmp_path, RULES)
    before = make_engine(rules, state=shared)
    records = history()
    [alert] = fired(run(before, records, flush=False), "66666666-0000-4000-8000-000000000002")
    assert alert.event_ids == (records[3].event_id,)  # decided at once
    after = make_engine(rules, state=shared)  # the process died; the table survived
    after.stateful.resume()
    again = [event(2 * DAY + 600, ip="203.0.113.66"), event(2 * DAY + 660, ip="198.51.100.7")]
    [alert] = fired(run(after, again), "66666666-0000-4000-8000-000000000002")
    assert alert.event_ids == (again[1].event_id,)  # the known value stays known


def test_the_memory_of_event_ids_is_bounded_in_time_and_size() -> None:
    recent = RecentIds(horizon=3600, capacity=3)
    assert not recent.seen("a", 1000.0, watermark=0.0)
    assert recent.seen("a", 1000.0, watermark=0.0)
    assert not recent.seen("b", 5000.0, watermark=4700.0)  # "a" is now older than the horizon
    assert not recent.seen("a", 1000.0, watermark=4700.0)  # forgotten: new (and late) again
    for ident in "cdef":
        recent.seen(ident, 5000.0, watermark=4700.0)
    assert len(recent) == 3
    assert sorted(recent.ids) == ["d", "e", "f"]


TUMBLING_ID = "66666666-0000-4000-8000-000000000012"
TUMBLING = """\
title: denied
id: 66666666-0000-4000-8000-000000000011
name: denied
detection:
  selection: {errorCode: AccessDeniedException}
  condition: selection
---
title: three to five denials in an hour
id: 66666666-0000-4000-8000-000000000012
correlation:
  type: event_count
  rules: [denied]
  group-by: [userIdentity.arn]
  timespan: 1h
  condition: {gte: 3, lte: 5}
"""


def denials(*minutes: int) -> list[Record]:
    return [event(minute * 60, errorCode="AccessDeniedException") for minute in minutes]


def test_an_open_tumbling_window_carries_over_to_the_next_run(tmp_path: Path) -> None:
    # [00:00, 01:00) gets two denials in the first run and a third in the second
    [whole] = fired(run(engine(tmp_path, TUMBLING), denials(1, 2, 3, 70)), TUMBLING_ID)
    first = engine(tmp_path, TUMBLING)
    assert run(first, denials(1, 2), flush=False) + first.flush(final=False) == []
    save_state(first, tmp_path / "state.json")
    second = engine(tmp_path, TUMBLING)
    load_state(second, tmp_path / "state.json")
    [alert] = fired(run(second, denials(3, 70)), TUMBLING_ID)
    assert (alert.id, alert.details["correlation"]["count"]) == (whole.id, 3)


def test_scan_with_a_state_file_keeps_windows_the_watermark_has_not_passed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = rules_dir(tmp_path, TUMBLING)
    state = tmp_path / "state.json"
    scan = ["scan", "--rules", str(rules), "--no-progress", "--state", str(state)]
    earlier = _write_jsonl(tmp_path / "earlier.jsonl", denials(1, 2))
    later = _write_jsonl(tmp_path / "later.jsonl", denials(3, 80, 81))  # the watermark: 01:05
    assert main([*scan, "-o", str(tmp_path / "a.jsonl"), earlier]) == 0
    assert main([*scan, "-o", str(tmp_path / "b.jsonl"), later]) == 0
    assert (tmp_path / "a.jsonl").read_bytes() == b""
    [line] = (tmp_path / "b.jsonl").read_bytes().splitlines()
    assert orjson.loads(line)["details"]["correlation"]["count"] == 3


def test_a_group_value_too_deep_for_json_is_still_a_stable_key() -> None:
    nested: list[object] = []
    for _ in range(300):
        nested = [nested]
    text = text_of(nested)
    assert text is not None and text.startswith("[[[") and "truncated: nested deeper" in text
    assert text_of(nested) == text
    assert text_of({"n": 2**70}) == '{"n":"1180591620717411303424"}'


def test_a_zero_length_window_makes_every_instant_a_window_of_its_own() -> None:
    assert bucket_start(1234.5, 0) == 1234.5
    assert bucket_start(1234.5, 600) == 1200
