"""One input message in, alerts, dead letters and repartitioned records out (no Kafka); the
alerts of single-event rules come from the state side once the record is admitted."""

from __future__ import annotations

import gzip
from dataclasses import replace
from typing import Any

import orjson
import pytest

from detector.engine import Rule, RuleSet
from detector.events import REASONS, Limits, Record
from detector.metrics import Metrics
from detector.stream.deadletter import DEAD_LETTER_REASONS, HEADROOM, Source
from detector.stream.groups import EVENT_ID
from detector.stream.messages import alert_headers, alert_key
from detector.stream.processor import Output, Processor
from detector.stream.repartition import Beat
from detector.stream.tables import group_key, partition_for
from stream.support import DELETE_RULE, NEW_IP_RULE, Pipeline, sample

SOURCE = Source("cloudtrail-events", 0, 7, None, [])


def deletion(scenario: list[dict[str, Any]]) -> dict[str, Any]:
    return next(e for e in scenario if e["eventName"] == "DeleteStream")


def rule_ids(output: Output) -> list[str]:
    return [item.alert.rule_id for item in output.alerts if item.alert is not None]


def test_a_matching_record_raises_its_single_event_alert(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]]
) -> None:
    processor = Processor(ruleset, metrics, Limits())
    output = Pipeline(processor).on_message(orjson.dumps(deletion(scenario)), SOURCE)
    assert rule_ids(output) == [DELETE_RULE]
    assert output.dead_letters == []
    assert sample(metrics, "detector_messages_total", outcome="ok") == 1
    assert sample(metrics, "detector_records_total", format="record") == 1
    assert sample(metrics, "detector_records_evaluated_total") == 1
    assert sample(metrics, "detector_alerts_total", rule_id=DELETE_RULE, level="high") == 1


def test_records_of_stateful_rules_go_to_their_group_partition(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]]
) -> None:
    processor = Processor(ruleset, metrics, Limits(), partitions=4)
    [group] = [group for group in processor.groups if group.fields != EVENT_ID]
    assert group.fields == ("userIdentity.arn",)
    assert group.rule_ids == {NEW_IP_RULE}
    record = scenario[0]
    output = processor.on_message(orjson.dumps(record), SOURCE)
    key = group_key([record["userIdentity"]["arn"]])
    [forward] = [forward for forward in output.forwards if forward.key is not None]
    assert (forward.group, forward.key, forward.partition) == (group.name, key,
                                                              partition_for(key, 4))
    sent = orjson.loads(forward.value)
    assert sent["rules"] == [NEW_IP_RULE] and sent["alerts"] == []
    assert set(sent["record"]) == set(record) - {"eventVersion", "responseElements", "requestID",
                                             "readOnly", "eventType", "managementEvent",
                                             "eventCategory"}
    assert all(sent["record"][key] == record[key] for key in sent["record"])
    assert sent["origin"] == [SOURCE.partition, SOURCE.offset, 0] and sent["counted"]
    assert output.alerts == []


def test_a_record_no_stateful_rule_matched_is_not_forwarded(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]]
) -> None:
    record = dict(scenario[0], eventSource="s3.amazonaws.com", eventName="GetObject")
    output = Processor(ruleset, metrics, Limits()).on_message(orjson.dumps(record), SOURCE)
    assert [forward for forward in output.forwards if forward.key is not None] == []
    assert output.alerts == []


def test_every_state_partition_hears_how_far_each_input_partition_has_got(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]]
) -> None:
    """As far as two of its messages got (one message ahead of the others moves nothing)."""
    processor = Processor(ruleset, metrics, Limits(), partitions=3)
    other = dict(scenario[1], eventSource="s3.amazonaws.com", eventName="GetObject")
    processor.on_message(orjson.dumps(other), Source("in", 2, 10, None, []))
    assert processor.beats(2, 11, 12) == []  # one message (08:01:00Z) alone tells nothing
    processor.on_message(orjson.dumps(scenario[3]), Source("in", 2, 11, None, []))
    assert processor.beats(2, 11, 12) == []  # offset 11 not committed yet: its records
    # may still be on their way to the state partitions
    beats = processor.beats(2, 12, 13)
    assert [(beat.group, beat.key, beat.partition) for beat in beats] == [
        (group.name, None, p) for group in processor.groups for p in range(3)]
    assert {beat.value for beat in beats} == {
        Beat(2, 1772438460.0).encode()}  # 08:01:00Z, reached by offsets 10, 11
    assert processor.beats(2, 12, 13) == []  # nothing new to tell
    processor.on_message(orjson.dumps(scenario[5]), Source("in", 2, 12, None, []))
    assert [beat.value for beat in processor.beats(2, 13, 13)] == [
        Beat(2, 1772438820.0).encode()] * 6 + [  # 08:07:00Z, of offsets 11, 12
        Beat(2, None).encode()] * 6  # and read to its end: not waited for
    assert processor.beats(2, 13, 13) == []  # told once
    processor.on_message(orjson.dumps(scenario[7]), Source("in", 2, 13, None, []))
    assert [beat.value for beat in processor.beats(2, 14, 14)] == [
        Beat(2, 1772439180.0).encode()] * 6 + [  # 08:13:00Z, of offsets 12, 13
        Beat(2, None).encode()] * 6  # read to its new end: told again


def test_an_empty_input_partition_is_not_waited_for(
    ruleset: RuleSet, metrics: Metrics
) -> None:
    processor = Processor(ruleset, metrics, Limits(), partitions=2)
    assert processor.beats(0, None, None) == []  # nothing known yet
    assert [beat.value for beat in processor.beats(0, None, 0)] == [
        Beat(0, None).encode()] * 2 * len(processor.groups)
    assert processor.beats(0, None, 5) == []  # records came: read them first


def test_a_partly_bad_log_file_is_processed_and_its_bad_records_dead_lettered(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]]
) -> None:
    bad = dict(deletion(scenario), eventTime="not a time")
    payload = orjson.dumps({"Records": [deletion(scenario), bad]})
    output = Pipeline(Processor(ruleset, metrics, Limits())).on_message(payload, SOURCE)
    assert rule_ids(output) == [DELETE_RULE]
    assert [orjson.loads(letter.value) for letter in output.dead_letters] == [bad]
    assert sample(metrics, "detector_messages_total", outcome="partial") == 1
    assert sample(metrics, "detector_decode_errors_total", reason="bad_event_time") == 1
    assert sample(metrics, "detector_dead_letter_messages_total", reason="bad_event_time") == 1


def test_an_unreadable_message_is_rejected_whole(ruleset: RuleSet, metrics: Metrics) -> None:
    output = Processor(ruleset, metrics, Limits(max_message_bytes=10)).on_message(
        b'{"eventName": "x", "padding": 1}', SOURCE)
    assert [(letter.value, letter.reason) for letter in output.dead_letters] == [
        (b'{"eventNam', "too_large")]  # cut to the limit, to fit the dead-letter topic
    assert sample(metrics, "detector_messages_total", outcome="rejected") == 1


def test_a_message_of_mostly_bad_records_is_dead_lettered_once_and_counted_by_reason(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]]
) -> None:
    payload = orjson.dumps({"Records": [deletion(scenario), *[{}] * 1000]})
    output = Pipeline(Processor(ruleset, metrics, Limits())).on_message(payload, SOURCE)
    assert [(letter.value, letter.reason) for letter in output.dead_letters] == [
        (payload, "too_many_bad_records")]
    assert rule_ids(output) == [DELETE_RULE]  # the good one is read
    assert sample(metrics, "detector_dead_letter_messages_total",
                  reason="too_many_bad_records") == 1
    assert sample(metrics, "detector_decode_errors_total", reason="missing_field") == 1000


def test_a_record_our_code_fails_on_is_dead_lettered_and_the_others_carry_on(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    processor = Processor(ruleset, metrics, Limits())
    matching = processor.engine.matching

    def explode_on_poison(record: Record) -> list[Rule]:
        if record.event_id == "poison":
            raise RuntimeError("boom")
        return matching(record)

    processor.engine.matching = explode_on_poison  # type: ignore[method-assign]
    poison = dict(deletion(scenario), eventID="poison")
    payload = orjson.dumps({"Records": [poison, deletion(scenario)]})
    output = Pipeline(processor).on_message(payload, SOURCE)
    [letter] = output.dead_letters
    assert (letter.reason, orjson.loads(letter.value)) == ("internal_error", poison)
    assert dict(letter.headers)["message"] == b"RuntimeError: boom"
    assert rule_ids(output) == [DELETE_RULE]  # the next record of the message was evaluated
    assert sample(metrics, "detector_processing_failures_total", reason="internal_error",
                  rule_id="") == 1
    assert sample(metrics, "detector_dead_letter_messages_total", reason="internal_error") == 1
    assert sample(metrics, "detector_records_evaluated_total") == 1
    [logged] = [r for r in caplog.records if "poison" in r.getMessage()]
    assert logged.exc_info is not None  # the first failure of its kind has its traceback

    processor.on_message(orjson.dumps(poison), SOURCE)
    [again] = [r for r in caplog.records if "poison" in r.getMessage()][1:]
    assert again.exc_info is None  # a broken rule does not flood the log with tracebacks


def test_a_record_too_deep_to_write_whole_is_dead_lettered_cut_to_the_bounds(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]]
) -> None:
    processor = Processor(ruleset, metrics, Limits())

    def explode(record: Record) -> list[Rule]:
        raise RecursionError("maximum recursion depth exceeded")

    processor.engine.matching = explode  # type: ignore[method-assign]
    record = orjson.dumps(dict(deletion(scenario), requestParameters="NESTED"))
    nested = b'{"n":' * 600 + b"{}" + b"}" * 600  # orjson reads 1,024 levels, writes 254
    [letter] = processor.on_message(record.replace(b'"NESTED"', nested), SOURCE).dead_letters
    assert letter.reason == "internal_error"
    written = orjson.loads(letter.value)
    assert {key: written[key] for key in ("eventID", "eventTime", "userIdentity")} == {
        key: deletion(scenario)[key] for key in ("eventID", "eventTime", "userIdentity")}
    assert "truncated: nested deeper than" in letter.value.decode()


def test_a_message_our_code_fails_on_as_a_whole_is_dead_lettered_whole(
    ruleset: RuleSet, metrics: Metrics
) -> None:
    processor = Processor(ruleset, metrics, Limits())
    output = processor.failed(b"the message", SOURCE, KeyError("x"))
    [letter] = output.dead_letters
    assert (letter.value, letter.reason) == (b"the message", "internal_error")
    assert dict(letter.headers)["source-offset"] == b"7"
    assert sample(metrics, "detector_processing_failures_total", reason="internal_error",
                  rule_id="") == 1


def test_a_message_the_worker_died_on_is_dead_lettered_unprocessed(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]]
) -> None:
    processor = Processor(ruleset, metrics, Limits())
    payload = orjson.dumps(deletion(scenario))
    output = processor.abandoned(payload, SOURCE, deaths=3)
    assert output.alerts == [] and output.forwards == []
    [letter] = output.dead_letters
    assert (letter.value, letter.reason) == (payload, "attempts_exhausted")
    assert b"died 3 times" in dict(letter.headers)["message"]
    assert sample(metrics, "detector_records_evaluated_total") == 0
    assert sample(metrics, "detector_dead_letter_messages_total",
                  reason="attempts_exhausted") == 1


def test_a_record_too_large_to_forward_is_dead_lettered_not_sent(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]]
) -> None:
    limits = Limits(max_message_bytes=1000, max_decompressed_bytes=10_000_000)
    processor = Processor(ruleset, metrics, limits, partitions=2)
    big = dict(scenario[0], userAgent="x" * (HEADROOM + 2000))  # matches the first-seen rule
    output = processor.on_message(gzip.compress(orjson.dumps(big)), SOURCE)
    assert [forward for forward in output.forwards if forward.key is not None] == []
    [letter] = output.dead_letters
    assert letter.reason == "too_large"
    assert b"copy for the stateful rules" in dict(letter.headers)["message"]
    assert len(letter.value) == 1000  # cut to the limit like any dead letter
    assert sample(metrics, "detector_processing_failures_total", reason="too_large",
                  rule_id="") == 1


def test_every_known_series_is_exported_before_the_first_message(
    ruleset: RuleSet, metrics: Metrics
) -> None:
    Processor(ruleset, metrics, Limits())
    for outcome in ("ok", "partial", "rejected"):
        assert metrics.registry.get_sample_value("detector_messages_total",
                                                 {"outcome": outcome}) == 0
    for reason in REASONS:
        assert metrics.registry.get_sample_value("detector_decode_errors_total",
                                                 {"reason": reason}) == 0
    for reason in DEAD_LETTER_REASONS:
        assert metrics.registry.get_sample_value("detector_dead_letter_messages_total",
                                                 {"reason": reason}) == 0
    assert metrics.registry.get_sample_value(
        "detector_alerts_total", {"rule_id": DELETE_RULE, "level": "high"}) == 0
    assert metrics.registry.get_sample_value(
        "detector_processing_failures_total",
        {"reason": "attempts_exhausted", "rule_id": ""}) == 0


def test_new_rules_grouped_alike_are_swapped_in(ruleset: RuleSet, metrics: Metrics) -> None:
    processor = Processor(ruleset, metrics, Limits())
    fewer = RuleSet(tuple(r for r in ruleset.rules if r.id != DELETE_RULE))
    assert processor.swap(fewer) is None
    assert processor.engine.rule_count == 1
    assert sample(metrics, "detector_rules_loaded") == 1


def test_rules_grouped_by_other_fields_need_a_restart(ruleset: RuleSet, metrics: Metrics) -> None:
    processor = Processor(ruleset, metrics, Limits())
    without_state = RuleSet(tuple(r for r in ruleset.rules if r.id == DELETE_RULE))
    problem = processor.swap(without_state)
    assert problem is not None and "restart" in problem
    assert processor.engine.rule_count == 2


def test_alerts_are_keyed_by_group_key_or_rule_and_carry_their_id(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]]
) -> None:
    [sent] = Pipeline(Processor(ruleset, metrics, Limits())).on_message(
        orjson.dumps(deletion(scenario)), SOURCE).alerts
    assert sent.alert is not None
    assert sent.key == alert_key(sent.alert) == DELETE_RULE.encode()
    assert sent.headers == alert_headers(sent.alert)
    assert ("alert-id", sent.alert.id.encode()) in sent.headers
    assert orjson.loads(sent.value)["id"] == sent.alert.id


def raising_on(name: str) -> Any:
    """A rule predicate that raises on records named `name` and holds on the others."""
    def predicate(data: dict[str, Any]) -> bool:
        if data.get("eventName") == name:
            raise RuntimeError(f"cannot evaluate {name}")
        return True
    return predicate


def test_a_rule_that_raises_dead_letters_its_record_and_the_other_rules_still_act(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    processor = Processor(ruleset, metrics, Limits(), partitions=2)
    broken = RuleSet(tuple(replace(rule, predicate=raising_on("DeleteStream"))
                           if rule.id == DELETE_RULE else rule for rule in ruleset.rules))
    assert processor.swap(broken) is None
    event = deletion(scenario)
    output = processor.on_message(orjson.dumps(event), SOURCE)
    [letter] = output.dead_letters
    assert (letter.reason, orjson.loads(letter.value)) == ("internal_error", event)
    assert dict(letter.headers)["message"] == (
        f"rule {DELETE_RULE}: RuntimeError: cannot evaluate DeleteStream".encode())
    [forward] = [forward for forward in output.forwards if forward.key is not None]
    assert orjson.loads(forward.value)["rules"] == [NEW_IP_RULE]  # the stateful rule sees it
    assert sample(metrics, "detector_processing_failures_total", reason="internal_error",
                  rule_id=DELETE_RULE) == 1
    assert sample(metrics, "detector_records_evaluated_total") == 1
    [logged] = [r for r in caplog.records if event["eventID"] in r.getMessage()]
    assert DELETE_RULE in logged.getMessage()


def test_a_rule_that_raises_costs_the_record_its_alert_only(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]]
) -> None:
    processor = Processor(ruleset, metrics, Limits())
    broken = RuleSet(tuple(replace(rule, predicate=raising_on("DeleteStream"))
                           if rule.id == NEW_IP_RULE else rule for rule in ruleset.rules))
    assert processor.swap(broken) is None
    output = Pipeline(processor).on_message(orjson.dumps(deletion(scenario)), SOURCE)
    assert rule_ids(output) == [DELETE_RULE]
    assert [letter.reason for letter in output.dead_letters] == ["internal_error"]
    # the record goes to be admitted for its single-event alert, not to the stateful rule
    [forward] = output.forwards
    assert forward.group == next(g.name for g in processor.groups if g.fields == EVENT_ID)
    assert sample(metrics, "detector_alerts_total", rule_id=DELETE_RULE, level="high") == 1
