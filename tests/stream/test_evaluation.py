"""Stateful rules per partition over a table: same alerts as the engine, replay-safe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry
from sinks.ocsf_schema import ocsf_errors

from detector.alerts import EventSummary
from detector.engine import Failure, RuleSet, load_rules
from detector.engine.factory import make_engine
from detector.engine.stateful.first_seen import FirstSeenUnit
from detector.events import Limits, Record, decode
from detector.metrics import Metrics
from detector.sinks.formats import AlertFormat
from detector.stream import repartition
from detector.stream.deadletter import Source
from detector.stream.evaluation import GroupEvaluator
from detector.stream.groups import EVENT_ID, plan_groups, project
from detector.stream.messages import AlertMessage
from detector.stream.processor import Processor
from detector.stream.repartition import TICK, Forward, Outbox, batched
from detector.stream.tables import group_key, own_key, partition_for
from stream.support import DELETE_RULE, FIXTURES, NEW_IP_RULE, ChangelogDict, Pipeline, sample

PARTITIONS = 3
SOURCE = Source("in", 0, 0, None, [])


def run(ruleset: RuleSet, metrics: Metrics, table: ChangelogDict,
        events: list[dict[str, Any]], *, idle_timeout: float = 3600.0,
        commit: bool = True, alert_format: AlertFormat = "native") -> list[AlertMessage]:
    """The scenario through the input processor and the groups' evaluators, as the worker
    does, then (`commit`) what the worker does before committing the offsets. `table` is the
    stateful group's; the group by eventID keeps its own."""
    processor = Processor(ruleset, metrics, Limits(), PARTITIONS, alert_format)
    runners = {group.name: GroupEvaluator(
        group, ChangelogDict() if group.fields == EVENT_ID else table, metrics,
        partitions=PARTITIONS, lateness=60.0, idle_timeout=idle_timeout,
        input_partitions=lambda: 1, alert_format=alert_format) for group in processor.groups}
    sent: list[AlertMessage] = []
    for offset, event in enumerate(events):
        for forward in batched(processor.on_message(orjson.dumps(event), SOURCE).forwards):
            sent += runners[forward.group].process(forward.partition, offset, forward.value)
    if commit:
        for runner in runners.values():
            runner.publish()
    return sent


def stateful_runner(ruleset: RuleSet, metrics: Metrics, table: ChangelogDict, **options: Any
                    ) -> GroupEvaluator:
    """The evaluator of the one stateful group of `ruleset`."""
    [group] = [group for group in plan_groups(ruleset) if group.fields != EVENT_ID]
    return GroupEvaluator(group, table, metrics, partitions=PARTITIONS, **{
        "lateness": 60.0, "idle_timeout": 3600.0, "input_partitions": lambda: 1, **options})


def feed(runner: GroupEvaluator, forwards: list[Forward], offset: int) -> list[AlertMessage]:
    """What `runner` raises on the messages of its group among `forwards`: record items
    (keyed) are batched as the outbox batches them, beats go as they are."""
    messages = batched([forward for forward in forwards if forward.key is not None])
    messages += [forward for forward in forwards if forward.key is None]
    return [sent for forward in messages if forward.group == runner.group.name
            for sent in runner.process(forward.partition, offset, forward.value)]


def engine_ids(ruleset: RuleSet, events: list[dict[str, Any]], rule_id: str | None = None
               ) -> list[str]:
    """The ids of the alerts `detector scan`'s engine raises (of `rule_id`, or all)."""
    engine = make_engine(ruleset, lateness=60.0)
    records = [r for e in events for r in decode(orjson.dumps(e)).records]
    alerts = [a for r in records for a in engine.process(r)] + engine.flush()
    return [alert.id for alert in alerts if rule_id in (None, alert.rule_id)]


def ids(sent: list[AlertMessage]) -> list[str]:
    return [dict(item.headers)["alert-id"].decode() for item in sent]


def test_partitioned_evaluation_raises_what_the_engine_raises(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]]
) -> None:
    sent = run(ruleset, metrics, ChangelogDict(), scenario)
    assert sorted(ids(sent)) == sorted(engine_ids(ruleset, scenario))
    [first_seen] = [item for item in sent if item.rule_id == NEW_IP_RULE]
    alert = orjson.loads(first_seen.value)
    assert first_seen.key == orjson.dumps(alert["group_key"], option=orjson.OPT_SORT_KEYS)
    assert first_seen.alert is not None and first_seen.alert.id == alert["id"]


def test_alerts_of_the_stateful_rules_go_out_and_into_the_ledger_as_ocsf(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]]
) -> None:
    table = ChangelogDict()
    [sent] = [item for item in run(ruleset, metrics, table, scenario, alert_format="ocsf")
              if item.rule_id == NEW_IP_RULE]
    finding = orjson.loads(sent.value)
    assert ocsf_errors(finding) == []
    assert finding["metadata"]["uid"] == engine_ids(ruleset, scenario, NEW_IP_RULE)[0]
    [ledger] = [value for key, value in table.items() if key.startswith("@sent|")
                and sent.value.decode() in [item[1] for item in value.get("a", [])]]
    assert [bytes.fromhex(key) + value.encode() for key, value, _headers in ledger["a"]] == [
        sent.key + sent.value]


def test_baselines_live_in_the_table_and_survive_a_restart(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]]
) -> None:
    table = ChangelogDict()
    half = next(i for i, e in enumerate(scenario) if e["eventTime"] >= "2026-03-02T09:30")
    assert run(ruleset, metrics, table, scenario[:half]) == []
    # a new runner (a restarted or rebalanced worker) has only the changelog to go on
    sent = run(ruleset, metrics, table.recover(), scenario[half:])
    assert sorted(ids(sent)) == sorted(engine_ids(ruleset, scenario))


def test_a_batch_holds_a_partitions_records_in_order_within_its_size(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    processor = Processor(ruleset, metrics, Limits(), partitions=4)
    single = [forward for event in scenario
              for forward in processor.on_message(orjson.dumps(event), SOURCE).forwards]
    targets = sorted({(forward.group, forward.partition) for forward in single})
    assert len(single) > len(targets)
    batches = batched(single)
    assert sorted((batch.group, batch.partition) for batch in batches) == targets
    for batch in batches:
        message = orjson.loads(batch.value)
        assert message["v"] == 1 and message["type"] == "records"
        assert message["items"] == [
            orjson.loads(item.value) for item in single
            if (item.group, item.partition) == (batch.group, batch.partition)]
    monkeypatch.setattr(repartition, "BATCH_BYTES", max(len(f.value) for f in single) * 2)
    smaller = batched(single)
    assert len(smaller) > len(batches)
    assert all(len(batch.value) <= repartition.BATCH_BYTES + 20 for batch in smaller)
    assert sum(len(orjson.loads(batch.value)["items"]) for batch in smaller) == len(single)


def sent_at_one_commit(ruleset: RuleSet, metrics: Metrics, events: list[dict[str, Any]]
                       ) -> tuple[GroupEvaluator, list[Forward]]:
    """A runner, and the repartition messages the outbox sends when every event came between
    two commits."""
    processor = Processor(ruleset, metrics, Limits(), PARTITIONS)
    runner = stateful_runner(ruleset, metrics, ChangelogDict())
    outbox = Outbox()
    for event in events:
        outbox.add(processor.on_message(orjson.dumps(event), SOURCE).forwards)
    forwards = [forward for forward in outbox.take() if forward.group == runner.group.name]
    assert outbox.take() == []
    return runner, forwards


def test_records_sent_together_at_a_commit_raise_what_the_engine_raises(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]]
) -> None:
    runner, forwards = sent_at_one_commit(ruleset, metrics, scenario)
    assert len(forwards) <= PARTITIONS
    sent = [item for offset, forward in enumerate(forwards)
            for item in runner.process(forward.partition, offset, forward.value)]
    assert sorted(ids(sent)) == sorted(engine_ids(ruleset, scenario))


def test_a_record_that_fails_costs_the_others_of_its_batch_nothing(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]]
) -> None:
    runner, forwards = sent_at_one_commit(ruleset, metrics, scenario)
    sent: list[AlertMessage] = []
    broken_items = []
    for offset, forward in enumerate(forwards):
        batch = orjson.loads(forward.value)
        broken = dict(batch["items"][0], origin="no origin")  # raises in the runner
        broken["record"] = dict(broken["record"], eventID=f"broken-{offset}")
        batch["items"].insert(0, broken)
        broken_items.append(broken)
        sent += runner.process(forward.partition, offset, orjson.dumps(batch))
    assert sorted(ids(sent)) == sorted(engine_ids(ruleset, scenario))
    failures = runner.take_failures()
    assert [(f.index, orjson.loads(f.value), [(x.rule_id, x.event_id) for x in f.failures])
            for f in failures] == [(0, item, [(None, item["record"]["eventID"])])
                                   for item in broken_items]
    assert all(isinstance(f.exception, ValueError) for f in failures)
    assert {f.reason for f in failures} == {"internal_error"}
    assert runner.take_failures() == []  # taken once


def test_a_repartitioned_record_that_does_not_decode_is_a_failure_of_its_item(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]]
) -> None:
    runner, forwards = sent_at_one_commit(ruleset, metrics, scenario)
    forward = forwards[0]
    batch = orjson.loads(forward.value)
    batch["items"].insert(1, {"record": {"eventName": "x"}, "rules": [NEW_IP_RULE],
                              "alerts": [], "origin": [0, 0, 1], "counted": True})
    runner.process(forward.partition, 0, orjson.dumps(batch))
    [failed] = runner.take_failures()
    assert failed.index == 1
    [why] = failed.failures
    assert why.error.startswith("ValueError: unreadable repartitioned record")


@pytest.mark.parametrize("alert_format", ["native", "ocsf"])
def test_a_record_nested_deeper_than_orjson_writes_alerts_on_both_sides(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]],
    alert_format: AlertFormat,
) -> None:
    """orjson reads 1,024 levels and writes 254: the record goes to its group cut to the
    bounds of `detector.bounded`, and gives the engine's alerts, in either format."""
    deep = next(i for i, e in enumerate(scenario) if e["eventName"] == "DeleteStream")
    events = [*scenario[:deep], dict(scenario[deep], sourceIPAddress="198.18.0.7",
                                     requestParameters="NESTED"), *scenario[deep + 1:]]
    payloads = [orjson.dumps(event) for event in events]
    nested = b'{"streamName":' * 400 + b'"x"' + b"}" * 400
    payloads[deep] = payloads[deep].replace(b'"NESTED"', nested)
    processor = Processor(ruleset, metrics, Limits(), PARTITIONS, alert_format)
    runner = stateful_runner(ruleset, metrics, ChangelogDict(), alert_format=alert_format)
    single: list[AlertMessage] = []
    stateful: list[AlertMessage] = []
    for offset, payload in enumerate(payloads):
        output = processor.on_message(payload, SOURCE)
        assert output.dead_letters == []
        single += output.alerts
        stateful += feed(runner, output.forwards, offset)
    assert runner.take_failures() == []
    assert single == []  # the record has an eventID: its alerts wait for it to be admitted
    assert DELETE_RULE in [item.rule_id for item in stateful]
    if alert_format == "ocsf":
        assert all(ocsf_errors(orjson.loads(item.value)) == [] for item in single + stateful)
    engine = make_engine(ruleset, lateness=60.0)
    records = [record for payload in payloads for record in decode(payload).records]
    expected = [alert for record in records for alert in engine.process(record)]
    expected += engine.flush()
    assert sorted(ids(stateful)) == sorted(alert.id for alert in expected)
    assert [alert.event_ids for alert in expected if alert.rule_id == NEW_IP_RULE][-1] == (
        events[deep]["eventID"],)  # the deep record is new from its address


def test_a_rule_that_raises_on_a_record_fails_its_item_and_the_rule_goes_on(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    intruder = next(e for e in scenario if e["sourceIPAddress"] == "203.0.113.66")
    offer = FirstSeenUnit.offer

    def failing(unit: FirstSeenUnit, record: Record, watermark: float) -> Any:
        if record.event_id == intruder["eventID"]:
            raise MemoryError("no memory left")
        return offer(unit, record, watermark)

    monkeypatch.setattr(FirstSeenUnit, "offer", failing)
    runner, forwards = sent_at_one_commit(ruleset, metrics, scenario)
    sent = [item for offset, forward in enumerate(forwards)
            for item in runner.process(forward.partition, offset, forward.value)]
    [failed] = runner.take_failures()
    assert failed.reason == "internal_error" and failed.exception is None
    assert orjson.loads(failed.value)["record"]["eventID"] == intruder["eventID"]
    assert failed.failures == [Failure(NEW_IP_RULE, intruder["eventID"],
                                       "MemoryError: no memory left")]
    # the intruder's next records from that address are new to its baseline: they alert
    assert [s.alert.event_ids for s in sent if s.alert is not None
            and s.rule_id == NEW_IP_RULE] == [
        (next(e["eventID"] for e in scenario if e["sourceIPAddress"] == "203.0.113.66"
              and e["eventID"] != intruder["eventID"]),)]


def test_a_rule_that_raises_on_a_decision_is_counted_and_logged_without_a_record(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    def failing(unit: FirstSeenUnit, skey: str, entry: Any, watermark: float) -> Any:
        raise RuntimeError("corrupt entry")

    monkeypatch.setattr(FirstSeenUnit, "sweep", failing)  # runs as the watermark moves
    runner, forwards = sent_at_one_commit(ruleset, metrics, scenario)
    for offset, forward in enumerate(forwards):
        runner.process(forward.partition, offset, forward.value)
    assert runner.take_failures() == []  # no record of theirs to dead-letter
    decisions = sample(metrics, "detector_processing_failures_total", reason="internal_error",
                       rule_id=NEW_IP_RULE)
    assert decisions > 0
    logged = [r.getMessage() for r in caplog.records if "corrupt entry" in r.getMessage()]
    assert len(logged) == decisions
    assert all(f"rule {NEW_IP_RULE} failed on a decision" in line for line in logged)


def test_an_alert_larger_than_the_worker_sends_is_a_failure_of_its_record_not_sent(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]]
) -> None:
    processor = Processor(ruleset, metrics, Limits(), PARTITIONS)
    table = ChangelogDict()
    runner = stateful_runner(ruleset, metrics, table, max_bytes=1000)
    sent: list[AlertMessage] = []
    for offset, event in enumerate(scenario):
        sent += feed(runner, processor.on_message(orjson.dumps(event), SOURCE).forwards, offset)
    assert sent == []
    failures = runner.take_failures()
    assert len(failures) == len(engine_ids(ruleset, scenario)) == 2
    assert all(f.reason == "too_large" for f in failures)
    assert sorted((why.rule_id, why.error.startswith("its alert is")) for f in failures
                  for why in f.failures) == sorted([(NEW_IP_RULE, True), (DELETE_RULE, True)])
    # no ledger entry holds them either
    assert all(table[key].get("a", []) == [] for key in table if key.startswith("@sent"))


def test_a_runner_reset_by_a_rebalance_drops_the_changes_it_did_not_send(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]]
) -> None:
    table = ChangelogDict()
    run(ruleset, metrics, table, scenario[:5], commit=False)
    assert len(table) > 0 and table.messages == []
    processor = Processor(ruleset, metrics, Limits(), PARTITIONS)
    runner = stateful_runner(ruleset, metrics, table)
    for offset, event in enumerate(scenario[5:8]):
        feed(runner, processor.on_message(orjson.dumps(event), SOURCE).forwards, offset)
    assert len(runner.changelog) > 0
    runner.reset()  # told only on the new assignment: the partitions may be another's now
    assert runner.changelog.publish() == [] and table.messages == []


def test_each_changed_entry_reaches_the_changelog_once_per_commit(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]]
) -> None:
    table = ChangelogDict()
    sent = run(ruleset, metrics, table, scenario)
    assert [item.rule_id for item in sent].count(NEW_IP_RULE) == 1
    state_keys = [key for _partition, key, _value in table.messages if key[0] != "@"]
    # once at the commit, and once more for an entry of an event that raised an alert
    assert len(set(state_keys)) < len(state_keys) <= len(set(state_keys)) + len(sent)
    assert table.recover() == table


def test_a_crash_between_commits_loses_no_alert(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]]
) -> None:
    table = ChangelogDict()
    half = next(i for i, e in enumerate(scenario) if e["eventTime"] >= "2026-03-02T09:30")
    run(ruleset, metrics, table, scenario[:half])
    crashed = run(ruleset, metrics, table, scenario[half:], commit=False)
    assert sorted(ids(crashed)) == sorted(engine_ids(ruleset, scenario))
    recovered = table.recover()
    assert recovered != table  # the changes after the commit were not all sent
    # the offsets after the commit come again, onto the changelog
    assert ids(run(ruleset, metrics, recovered, scenario[half:])) == ids(crashed)


def test_an_event_replayed_after_a_crash_raises_its_alerts_again(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]]
) -> None:
    table = ChangelogDict()
    sent: list[AlertMessage] = []
    for event in scenario:  # up to the event whose processing raised the alert
        sent = run(ruleset, metrics, table, [event], commit=False)
        if sent:
            break
    assert set(ids(sent)) <= set(engine_ids(ruleset, scenario))
    recovered = table.recover()  # no commit yet: what that event sent at once
    assert [key for key in recovered if key.startswith("@sent|")] == [
        key for key in table if key.startswith("@sent|") and key.endswith(event["eventID"])]
    # the worker died after the changelog learned, before the alert left: the event comes again
    again = run(ruleset, metrics, recovered, [event])
    assert [(s.key, s.value, s.headers) for s in again] == [
        (s.key, s.value, s.headers) for s in sent]


def test_a_replayed_event_that_raised_nothing_raises_nothing(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]]
) -> None:
    table = ChangelogDict()
    run(ruleset, metrics, table, scenario)
    assert run(ruleset, metrics, table.recover(), scenario[-3:]) == []


class Wall:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_idle_partition_moves_its_event_time_on_a_tick(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]]
) -> None:
    """Once as much wall time has passed as its last record is ahead of the partition's
    event time (one record alone does not move it): windows the watermark closes are decided
    then."""
    intrusion = next(i for i, e in enumerate(scenario) if e["sourceIPAddress"] == "203.0.113.66")
    table = ChangelogDict()
    # a first-seen alert is decided as its record arrives
    assert ids(run(ruleset, metrics, table, scenario[: intrusion + 1])) == engine_ids(
        ruleset, scenario[: intrusion + 1], NEW_IP_RULE)
    wall = Wall()
    runner = stateful_runner(ruleset, metrics, table, lateness=0.0, idle_timeout=0.0, now=wall)

    def tick() -> list[AlertMessage]:
        return [s for p in range(PARTITIONS) for s in runner.process(p, 1000 + p, TICK)]

    arn = scenario[intrusion]["userIdentity"]["arn"]
    clock = table[own_key("clock", partition_for(group_key([arn]), PARTITIONS))]
    [when] = decode(orjson.dumps(scenario[intrusion])).records
    ahead = when.event_time - clock["max_event_time"]
    assert ahead > 0 and clock["latest_event_times"][0] == when.event_time
    assert tick() == []
    wall.now = ahead  # event time has now reached the intrusion, not passed it
    assert tick() == []
    wall.now = ahead + 1  # a second later: event time has passed it
    assert tick() == []  # nothing waited for it
    moved = table[own_key("clock", partition_for(group_key([arn]), PARTITIONS))]
    assert moved["max_event_time"] >= when.event_time


def test_the_clock_of_each_partition_is_kept_in_the_table(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]]
) -> None:
    """With the two latest times of its input partition: its event time is the second."""
    table = ChangelogDict()
    run(ruleset, metrics, table, scenario)
    clocks = {key: value for key, value in table.items() if key.startswith("@clock|")}
    assert len(clocks) > 1
    assert all(key == own_key("clock", int(key.split("|")[1])) for key in clocks)
    times: dict[int, list[float]] = {}
    for event in scenario:
        [record] = decode(orjson.dumps(event)).records
        key = group_key([event["userIdentity"]["arn"]])
        times.setdefault(partition_for(key, PARTITIONS), []).append(record.event_time)
    for partition, seen in times.items():
        saved = table[own_key("clock", partition)]
        latest = sorted(seen, reverse=True)[:2]
        assert saved["latest_event_times"] == saved["source_times"]["0"] == latest
        assert saved["max_event_time"] == saved["floor"] == latest[1]


SUPPRESSED = """title: Suppressed per {name}
id: {id}
status: test
description: suppression grouped by {by}
logsource: {{product: aws, service: cloudtrail}}
detection:
  selection: {{eventSource: kinesisvideo.amazonaws.com, eventName: GetDataEndpoint}}
  condition: selection
level: low
detector:
  suppress: {{window: 1h, by: {by}}}
"""


def test_rules_grouped_by_a_superset_of_a_partitioning_field_share_its_group(
    tmp_path: Path, ruleset: RuleSet
) -> None:
    (tmp_path / "a.yml").write_text(SUPPRESSED.format(
        name="principal and IP", id="00000000-0000-4000-8000-00000000000a",
        by="[userIdentity.arn, sourceIPAddress]"))
    (tmp_path / "b.yml").write_text(SUPPRESSED.format(
        name="region", id="00000000-0000-4000-8000-00000000000b", by="[awsRegion]"))
    loaded = load_rules([FIXTURES / "rules", tmp_path])
    assert not loaded.errors
    groups = {group.fields: group for group in plan_groups(loaded.ruleset)}
    assert set(groups) == {("awsRegion",), ("userIdentity.arn",), EVENT_ID}
    by_principal = groups[("userIdentity.arn",)]
    assert by_principal.rule_ids == {NEW_IP_RULE, "00000000-0000-4000-8000-00000000000a"}
    key = 'su|00000000-0000-4000-8000-00000000000a|["arn:x","192.0.2.1"]'
    assert by_principal.partition_of(key, 8) == partition_for(group_key(["arn:x"]), 8)
    assert groups[("awsRegion",)].partition_of(key, 8) is None


def test_a_projected_record_gives_the_alert_of_the_whole_record(
    ruleset: RuleSet, scenario: list[dict[str, Any]]
) -> None:
    [group] = [group for group in plan_groups(ruleset) if group.fields != EVENT_ID]
    assert "responseElements" not in group.top_level
    for event in scenario:
        [record] = decode(orjson.dumps(event)).records
        [cut] = decode(orjson.dumps(project(record.data, group.top_level))).records
        assert EventSummary.of(cut) == EventSummary.of(record)
        for rule in group.ruleset.rules:
            if rule.meta.output is not None:
                assert rule.meta.output.render(cut.data) == rule.meta.output.render(record.data)


BY_IP_RULE = """\
title: Kinesis Video API used by a new principal from an IP (test rule)
id: 0b7f2c1e-5d4a-4e3b-8c2d-1f0e9d8c7b6a
status: test
logsource: {product: aws, service: cloudtrail}
detection:
  selection: {eventSource: kinesisvideo.amazonaws.com}
  condition: selection
level: low
detector:
  first_seen: {key: [sourceIPAddress], value: [userIdentity.arn], learning: 1h}
"""


def test_a_record_sent_to_two_groups_is_counted_late_or_duplicate_once(
    metrics: Metrics, scenario: list[dict[str, Any]], tmp_path: Path
) -> None:
    (tmp_path / "by_ip.yml").write_text(BY_IP_RULE)
    loaded = load_rules([FIXTURES / "rules", tmp_path])
    assert not loaded.errors
    processor = Processor(loaded.ruleset, metrics, Limits(), PARTITIONS)
    runners = {group.name: GroupEvaluator(group, ChangelogDict(), metrics, partitions=PARTITIONS,
                                       lateness=60.0, idle_timeout=3600.0,
                                       input_partitions=lambda: 1)
               for group in processor.groups}
    assert len(runners) == 3  # and the group by eventID
    late = dict(scenario[-1], eventTime="2026-03-02T07:00:00Z", eventID="late-1")
    for offset, event in enumerate([*scenario, scenario[-1], late]):
        source = Source("in", 0, offset, None, [])  # the repeat is a redelivery: a new offset
        forwards = processor.on_message(orjson.dumps(event), source).forwards
        assert len(forwards) == 2  # every kinesisvideo record goes to both groups
        for forward in batched(forwards):
            runners[forward.group].process(forward.partition, offset, forward.value)
    assert metrics.registry.get_sample_value("detector_duplicate_events_total") == 1
    assert metrics.registry.get_sample_value("detector_late_events_total") == 1


def test_input_partitions_consumed_at_uneven_speeds_make_nothing_late(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]]
) -> None:
    """One input partition per principal; the second is read only after the first is done
    (a backlog after a restart): the alerts are those of the interleaved stream."""
    def partition(event: dict[str, Any]) -> int:
        return 0 if event["userIdentity"]["arn"].endswith("video-operator") else 1

    def through_runner(events: list[dict[str, Any]]) -> list[AlertMessage]:
        processor = Processor(ruleset, metrics, Limits(), PARTITIONS)
        runner = stateful_runner(ruleset, metrics, ChangelogDict(), input_partitions=lambda: 2)
        sent: list[AlertMessage] = []
        for offset, event in enumerate(events):
            source = Source("in", partition(event), offset, None, [])
            forwards = processor.on_message(orjson.dumps(event), source).forwards
            forwards += processor.beats(source.partition, offset + 1, None)  # committed, told
            sent += feed(runner, forwards, offset)
        return sent

    backlog = sorted(scenario, key=partition)
    assert {partition(e) for e in scenario} == {0, 1} and backlog != scenario
    late = "detector_late_events_total"
    assert sorted(ids(through_runner(backlog))) == sorted(engine_ids(ruleset, scenario))
    assert metrics.registry.get_sample_value(late) == 0
    assert sorted(ids(through_runner(scenario))) == sorted(engine_ids(ruleset, scenario))
    assert metrics.registry.get_sample_value(late) == 0


def test_a_reloaded_rule_with_another_stateful_definition_starts_afresh(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]], tmp_path: Path
) -> None:
    table = ChangelogDict()
    half = next(i for i, e in enumerate(scenario) if e["eventTime"] >= "2026-03-02T09:30")
    run(ruleset, metrics, table, scenario[:half])
    learned = {key: value for key, value in table.items() if key.startswith("fs|")}
    assert learned

    run(ruleset, metrics, table, scenario[half:half + 1])  # same rules: the baseline holds
    assert all(key in table for key in learned)

    for path in (FIXTURES / "rules").glob("*.yml"):
        text = path.read_text().replace("value: [sourceIPAddress]", "value: [userAgent]")
        (tmp_path / path.name).write_text(text)
    reloaded = load_rules([tmp_path])
    assert not reloaded.errors
    later = scenario[half + 1:half + 3]  # one event of each principal
    fresh = ChangelogDict()  # nothing learned, event time as far as the table's
    fresh.update((key, value) for key, value in table.items() if key.startswith("@clock|"))
    run(reloaded.ruleset, metrics, table, later)
    run(reloaded.ruleset, metrics, fresh, later)

    def first_seen(entries: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in entries.items() if key.startswith("fs|")}

    assert first_seen(table) == first_seen(fresh)  # as if nothing had been learned
    assert first_seen(table) != learned


USER_AGENT_RULE = "5f0e9a57-3b0c-4d9e-9a43-0d3c1f6b2a11"
USER_AGENT = """title: Kinesis Video API called with a new user agent (stream test rule)
id: 5f0e9a57-3b0c-4d9e-9a43-0d3c1f6b2a11
status: test
logsource:
  product: aws
  service: cloudtrail
detection:
  selection:
    eventSource: kinesisvideo.amazonaws.com
  condition: selection
level: low
detector:
  enabled: {enabled}
  first_seen:
    key: [userIdentity.arn]
    value: [userAgent]
    learning: 1h
    retention: 30d
"""


def test_a_deleted_rule_loses_its_entries_and_a_disabled_one_keeps_them(
    metrics: Metrics, scenario: list[dict[str, Any]], tmp_path: Path
) -> None:
    def rules(name: str, extra: str | None) -> RuleSet:
        directory = tmp_path / name
        directory.mkdir()
        if extra is not None:
            (directory / "user_agent.yml").write_text(extra)
        loaded = load_rules([FIXTURES / "rules", directory])
        assert not loaded.errors
        return loaded.ruleset

    def tick_every_partition(ruleset: RuleSet) -> None:
        runner = stateful_runner(ruleset, metrics, table)
        for partition in range(PARTITIONS):
            runner.process(partition, 10_000 + partition, TICK)

    def entries(prefix: str) -> dict[str, Any]:
        return {key: value for key, value in table.items() if key.startswith(prefix)}

    table = ChangelogDict()
    run(rules("both", USER_AGENT.format(enabled="true")), metrics, table, scenario)
    agents, addresses = entries(f"fs|{USER_AGENT_RULE}|"), entries(f"fs|{NEW_IP_RULE}|")
    assert len({partition_for(group_key(orjson.loads(key.split("|", 2)[2])), PARTITIONS)
                for key in agents}) > 1  # the deletion has to reach several partitions

    tick_every_partition(rules("disabled", USER_AGENT.format(enabled="false")))
    assert entries(f"fs|{USER_AGENT_RULE}|") == agents  # kept for when it is enabled again

    tick_every_partition(rules("deleted", None))
    assert entries(f"fs|{USER_AGENT_RULE}|") == {}
    assert entries(f"fs|{NEW_IP_RULE}|") == addresses


def interleaved(scenario: list[dict[str, Any]]) -> list[tuple[dict[str, Any], Source]]:
    """Every event, and right after it its copy through another input partition."""
    return [(event, Source("in", copy, offset, None, []))
            for offset, event in enumerate(scenario) for copy in (0, 1)]


def forwarded(ruleset: RuleSet, metrics: Metrics, events: list[dict[str, Any]]) -> int:
    """How many of `events` some rule matched: those the state side sees."""
    processor = Processor(ruleset, metrics, Limits(), PARTITIONS)
    return sum(bool(processor.on_message(orjson.dumps(event), SOURCE).forwards)
               for event in events)


def test_an_event_delivered_twice_alerts_once_with_the_ids_of_scan(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]]
) -> None:
    pipeline = Pipeline(Processor(ruleset, metrics, Limits(), PARTITIONS), PARTITIONS)
    sent = [item for event, source in interleaved(scenario)
            for item in pipeline.on_message(orjson.dumps(event), source).alerts]
    twice = [event for pair in zip(scenario, scenario, strict=True) for event in pair]
    assert sorted(ids(sent)) == sorted(engine_ids(ruleset, twice))
    assert len(set(ids(sent))) == len(sent)  # none twice
    matched = forwarded(ruleset, Metrics(CollectorRegistry()), scenario)
    assert sample(metrics, "detector_duplicate_events_total") == matched > 0


def test_a_restarted_worker_remembers_the_event_ids_of_its_ledger(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]]
) -> None:
    table = ChangelogDict()
    first = run(ruleset, metrics, table, scenario)
    assert sorted(ids(first)) == sorted(engine_ids(ruleset, scenario))
    # the events the engine still remembers: an hour and the lateness behind the watermark
    recent = [event for event in scenario if event["eventTime"] >= "2026-03-02T10:00"]
    processor = Processor(ruleset, metrics, Limits(), PARTITIONS)
    runner = stateful_runner(ruleset, metrics, table.recover())  # only the changelog to go on
    again = [item for offset, event in enumerate(recent) for item in feed(
        runner, processor.on_message(orjson.dumps(event), Source("in", 1, offset, None, []))
        .forwards, offset)]
    assert again == []
    matched = forwarded(ruleset, Metrics(CollectorRegistry()), recent)
    assert sample(metrics, "detector_duplicate_events_total") == matched > 0


def test_a_record_read_again_by_the_worker_that_sent_its_alerts_sends_nothing_more(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]]
) -> None:
    """Its input offset was committed after its copy left: the copy comes twice."""
    deletion = next(e for e in scenario if e["eventName"] == "DeleteStream")
    processor = Processor(ruleset, metrics, Limits(), PARTITIONS)
    runner = stateful_runner(ruleset, metrics, ChangelogDict())
    forwards = processor.on_message(orjson.dumps(deletion), SOURCE).forwards
    assert [item.rule_id for item in feed(runner, forwards, 0)] == [DELETE_RULE]
    assert feed(runner, forwards, 1) == []  # the same copy, at the next offset
    assert sample(metrics, "detector_duplicate_events_total") == 0  # not a redelivered event


def test_an_early_decision_a_late_earlier_event_contradicts_is_counted(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]]
) -> None:
    """The second use of a new address arrives first and alerts at once; the first use,
    inside the key's learning hour, arrives late (docs/stateful-rules.md, case 1)."""
    def use(minute: int, address: str) -> dict[str, Any]:
        hour, rest = divmod(minute, 60)
        return {**scenario[0], "eventTime": f"2026-03-02T{8 + hour:02d}:{rest:02d}:00Z",
                "sourceIPAddress": address, "eventID": f"contradiction-{minute}"}

    processor = Processor(ruleset, metrics, Limits(), PARTITIONS)
    runner = stateful_runner(ruleset, metrics, ChangelogDict(), lateness=7200.0)
    sent = [item for offset, event in enumerate([use(0, "198.51.100.10"),
                                                 use(70, "203.0.113.66"),
                                                 use(50, "203.0.113.66")])
            for item in feed(runner, processor.on_message(orjson.dumps(event), SOURCE).forwards,
                             offset)]
    assert [item.rule_id for item in sent].count(NEW_IP_RULE) == 1
    runner.report()
    assert sample(metrics, "detector_contradicted_decisions_total") == 1
    runner.report()  # counted once
    assert sample(metrics, "detector_contradicted_decisions_total") == 1
