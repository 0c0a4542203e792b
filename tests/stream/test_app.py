"""The app factory: one independent Faust app per call, configured from Settings."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from sinks.ocsf_schema import ocsf_errors

from detector.events import DecodeError
from detector.settings.worker import WorkerSettings as Settings
from detector.stream.app import _guarded, create_app, faust_settings
from detector.stream.deadletter import MAX_INPUT_HEADERS, MAX_INPUT_KEY, Source, dead_letter
from detector.stream.rules import RuleSource
from detector.stream.topics import internal_topics, output_topic_config
from stream.support import DELETE_RULE, FIXTURES, Pipeline, build


def test_settings_reach_faust(tmp_path: Path) -> None:
    settings = Settings(bootstrap_servers=("k1:9092", "k2:9092"), group_id="det-a",
                        data_dir=str(tmp_path), web_port=7070, state_partitions=6,
                        commit_interval=0.5, producer_linger=0.025)
    conf = build(settings).app.conf
    assert conf.id == "det-a"
    assert [str(url) for url in conf.broker] == ["kafka://k1:9092", "kafka://k2:9092"]
    assert conf.web_port == 7070
    assert conf.topic_partitions == 6
    assert conf.broker_commit_interval == 0.5
    assert conf.producer_linger == 0.025
    assert conf.web_tables_enabled is False
    assert faust_settings(settings)["processing_guarantee"] == "at_least_once"


def test_each_call_builds_its_own_app_and_registry(tmp_path: Path) -> None:
    one = build(Settings(group_id="one", data_dir=str(tmp_path / "1")))
    two = build(Settings(group_id="two", data_dir=str(tmp_path / "2")))
    assert one.app is not two.app
    assert one.registry is not two.registry
    one.metrics.alerts.labels("r", "high").inc()
    assert two.registry.get_sample_value("detector_alerts_total",
                                         {"rule_id": "r", "level": "high"}) is None


def test_stateful_groups_get_a_repartition_topic_a_table_and_an_agent(tmp_path: Path) -> None:
    detector = build(Settings(group_id="det", data_dir=str(tmp_path), state_partitions=4))
    # the fixture's first-seen rule's, and the group by eventID's (single-event rules)
    names = [group.name for group in detector.processor.groups]
    assert len(names) == 2 and list(detector.evaluators) == names
    agents = sorted(agent.name for agent in detector.app.agents.values())
    assert agents == ["detector.input", *sorted(f"detector.state.{name}" for name in names)]
    tables = detector.app.tables.values()
    assert sorted(table.name for table in tables) == sorted(f"state-{name}" for name in names)
    assert {table.partitions for table in tables} == {4}
    topics = {topic for agent in detector.app.agents.values()
              for topic in agent.channel.topics}
    assert topics == {"cloudtrail-events", *(f"det-repartition-{name}" for name in names)}


def test_sinks_come_from_the_environment(tmp_path: Path) -> None:
    assert len(build(Settings(data_dir=str(tmp_path))).sinks) == 0
    detector = build(Settings(data_dir=str(tmp_path)), {"DETECTOR_STDOUT_SINK": "true"})
    assert len(detector.sinks) == 1


def test_changed_rules_are_swapped_in_and_broken_ones_refused(tmp_path: Path) -> None:
    rules_dir = tmp_path / "rules"
    shutil.copytree(FIXTURES / "rules", rules_dir)
    source = RuleSource([str(rules_dir)])
    detector = create_app(Settings(data_dir=str(tmp_path)), source, source.load(), environ={})
    registry = detector.registry
    text = (rules_dir / "stream_deleted.yml").read_text()
    (rules_dir / "stream_deleted.yml").write_text(text.replace("level: high", "level: low"))
    detector.reloader.reload()
    assert registry.get_sample_value("detector_rules_reloads_total", {"result": "success"}) == 1
    assert [r.meta.level for r in detector.processor.engine.ruleset.rules
            if r.id == DELETE_RULE] == ["low"]

    (rules_dir / "broken.yml").write_text("title: broken\ndetection: {}\n")
    detector.reloader.reload()
    assert registry.get_sample_value("detector_rules_reloads_total", {"result": "failure"}) == 1
    assert registry.get_sample_value("detector_rules_last_reload_success") == 0
    assert detector.status.snapshot()["rules"]["last_reload"]["ok"] is False  # type: ignore[index]
    assert detector.processor.engine.rule_count == 2


async def test_a_failing_timer_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    async def probe_lag() -> None:
        raise RuntimeError("partition is not assigned")

    guarded = _guarded(probe_lag)
    await guarded()
    assert guarded.__name__ == "probe_lag"
    assert "probe_lag failed" in caplog.text


def test_the_internal_topics_created_beforehand_are_the_ones_faust_uses(tmp_path: Path) -> None:
    settings = Settings(group_id="det", data_dir=str(tmp_path), state_partitions=4)
    detector = build(settings)
    specs = internal_topics(settings, [group.name for group in detector.processor.groups])
    tables = list(detector.app.tables.values())
    assert [(spec.name, spec.partitions) for spec in specs] == [
        (settings.input_topic, 4), (settings.alerts_topic, 4), (settings.dead_letter_topic, 4),
        *[(name, 4) for group, table in zip(detector.processor.groups, tables, strict=True)
          for name in (f"det-repartition-{group.name}", table.changelog_topic.get_topic_name())]]
    assert all(spec.config == {**table.extra_topic_configs, "cleanup.policy": "compact"}
               for spec, table in zip(specs[4::2], tables, strict=True))


def test_the_output_topics_take_the_biggest_message_the_worker_produces(tmp_path: Path) -> None:
    settings = Settings(group_id="det", data_dir=str(tmp_path), max_message_bytes=4_000_000)
    # the biggest dead letter: a whole input message, key and headers at their bounds
    source = Source("in", 0, 1, b"k" * MAX_INPUT_KEY,
                    [("h", b"v" * 1000)] * (MAX_INPUT_HEADERS // 1011))
    letter = dead_letter(source, b"x" * 5_000_000, DecodeError("invalid_json", "\u00e9" * 2000),
                         settings.limits)
    assert "dropped" not in dict(letter.headers)
    record = DefaultRecordBatchBuilder.estimate_size_in_bytes(letter.key, letter.value,
                                                              letter.headers)
    request = faust_settings(settings)["producer_max_request_size"]
    assert record <= request  # the producer sends it
    by_name = {spec.name: spec for spec in internal_topics(settings, ["g"])}
    for name in (settings.alerts_topic, settings.dead_letter_topic, "det-repartition-g",
                 "det-state-g-changelog"):
        config = by_name[name].config
        assert int(config["max.message.bytes"]) >= request  # the broker takes it
        assert int(config["segment.bytes"]) >= int(config["max.message.bytes"])
        assert "min.insync.replicas" not in config  # one replica
    assert by_name[settings.input_topic].config == {}


@pytest.mark.parametrize(("replicas", "min_insync"), [(1, None), (2, None), (3, "2"), (5, "2")])
def test_topics_with_three_replicas_or_more_need_two_in_sync(
    tmp_path: Path, replicas: int, min_insync: str | None
) -> None:
    settings = Settings(data_dir=str(tmp_path), replication_factor=replicas)
    for spec in internal_topics(settings, ["g"]):
        assert spec.config.get("min.insync.replicas") == min_insync, spec.name
    assert output_topic_config(settings).get("min.insync.replicas") == min_insync


def test_everything_the_worker_produces_waits_for_every_in_sync_replica(tmp_path: Path) -> None:
    detector = build(Settings(data_dir=str(tmp_path)))
    assert detector.app.conf.producer_acks == -1  # acks=all
    assert detector.app.producer.acks == -1


def test_the_worker_decodes_with_its_limits_and_writes_alerts_in_its_format(
    tmp_path: Path,
) -> None:
    detector = build(Settings(data_dir=str(tmp_path), max_records=2, alert_format="ocsf"))
    processor = detector.processor
    scenario = [orjson.loads(line) for line in
                (FIXTURES / "kvs-intruder.jsonl").read_bytes().splitlines()]
    deletion = next(event for event in scenario if event["eventName"] == "DeleteStream")
    source = Source("in", 0, 0, None, [])
    many = processor.on_message(orjson.dumps({"Records": scenario[:3]}), source)
    assert [letter.reason for letter in many.dead_letters] == ["too_many_records"]
    [sent] = Pipeline(processor).on_message(orjson.dumps(deletion), source).alerts
    finding = orjson.loads(sent.value)
    assert ocsf_errors(finding) == []
    assert (finding["class_uid"], finding["finding_info"]["analytic"]["uid"]) == (
        2004, DELETE_RULE)
    assert {runner.alert_format for runner in detector.evaluators.values()} == {"ocsf"}


def test_a_reload_that_finds_no_rule_or_raises_is_a_failure_and_keeps_the_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules_dir = tmp_path / "rules"
    shutil.copytree(FIXTURES / "rules", rules_dir)
    source = RuleSource([str(rules_dir)])
    detector = create_app(Settings(data_dir=str(tmp_path)), source, source.load(), environ={})
    failures = {"result": "failure"}
    for path in rules_dir.iterdir():  # a ConfigMap mounted without its files
        path.unlink()
    detector.reloader.reload()
    assert detector.registry.get_sample_value("detector_rules_reloads_total", failures) == 1
    status = detector.status.snapshot()["rules"]["last_reload"]  # type: ignore[index]
    assert status["ok"] is False and "no rule found" in status["errors"][0]
    assert detector.processor.engine.rule_count == 2  # still the running ones

    def unreadable() -> object:
        raise PermissionError("rules: permission denied")

    monkeypatch.setattr(source, "load", unreadable)
    detector.reloader.reload(force=True)
    assert detector.registry.get_sample_value("detector_rules_reloads_total", failures) == 2
    assert detector.registry.get_sample_value("detector_rules_last_reload_success") == 0
    status = detector.status.snapshot()["rules"]["last_reload"]  # type: ignore[index]
    assert status["errors"] == ["PermissionError: rules: permission denied"]
    assert detector.processor.engine.rule_count == 2
