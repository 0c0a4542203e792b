"""The agents, given Faust events by hand: the offset guard's verdict, one attempt per
message, what they publish, and what the input agent leaves in the outbox."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from detector.engine import RuleSet
from detector.events import Limits
from detector.metrics import Metrics
from detector.sinks import SinkSet
from detector.stream.agents import InputAgent, StateAgent, source_of
from detector.stream.attempts import Attempts
from detector.stream.deadletter import Source
from detector.stream.evaluation import GroupEvaluator
from detector.stream.processor import Output, Processor
from detector.stream.publisher import Publisher
from detector.stream.repartition import Outbox
from stream.support import DELETE_RULE, ChangelogDict, sample


class Topic:
    """A faust Topic that keeps what it was sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, **message: Any) -> None:
        self.sent.append(message)


class Guard:
    def __init__(self, admit: bool = True) -> None:
        self.verdict = admit
        self.asked: list[int] = []

    async def admit(self, message: Any) -> bool:
        self.asked.append(message.offset)
        return self.verdict


def event(value: bytes, offset: int, topic: str = "in", partition: int = 0) -> Any:
    """What an agent reads of a Faust event."""
    message = SimpleNamespace(topic=topic, partition=partition, offset=offset, key=b"k",
                              headers=[("trace-id", b"t")], timestamp=1_000.0)
    return SimpleNamespace(message=message, value=value)


def deletion(scenario: list[dict[str, Any]]) -> bytes:
    return orjson.dumps(next(e for e in scenario if e["eventName"] == "DeleteStream"))


class Worker:
    """An input agent and the state agents of its groups, over topics that keep messages."""

    def __init__(self, ruleset: RuleSet, metrics: Metrics, directory: Path, *,
                 guard: Guard | None = None, max_attempts: int = 3,
                 held: tuple[int, ...] = ()) -> None:
        self.processor = Processor(ruleset, metrics, Limits(), 2)
        self.alerts, self.letters = Topic(), Topic()
        self.publisher = Publisher(self.alerts, self.letters, SinkSet(), metrics,
                                   now=lambda: 1_000.25)
        self.attempts = Attempts.open(directory, agents=1 + len(self.processor.groups))
        self.guard = guard or Guard()
        self.outbox = Outbox()
        self.state = {group.name: StateAgent(
            self.processor, self.attempts.slot(), self.guard, self.publisher,
            max_attempts=max_attempts, evaluator=GroupEvaluator(
                group, ChangelogDict(), metrics, partitions=2, lateness=60.0,
                idle_timeout=3600.0, input_partitions=lambda: 1))
            for group in self.processor.groups}
        self.input = InputAgent(
            self.processor, self.attempts.slot(), self.guard, self.publisher,
            max_attempts=max_attempts, outbox=self.outbox,
            local={name: (agent.evaluator, set(held)) for name, agent in self.state.items()})

    async def commit(self) -> None:
        """What the outbox sends at a commit, read by the state agents."""
        for offset, forward in enumerate(self.outbox.take()):
            await self.state[forward.group].handle(
                event(forward.value, offset, forward.group, forward.partition))


async def test_the_input_agent_holds_a_matched_record_for_its_state_partition(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]], tmp_path: Path
) -> None:
    worker = Worker(ruleset, metrics, tmp_path)
    await worker.input.handle(event(deletion(scenario), 7))
    assert worker.alerts.sent == [] and worker.letters.sent == []  # not admitted yet
    await worker.commit()
    [alert] = worker.alerts.sent
    assert dict(alert["headers"])["rule-id"] == DELETE_RULE.encode()
    assert worker.guard.asked == [7, 0]  # both agents asked the offset guard
    # timed from the input message's Kafka timestamp to the alert handed to its topic
    assert sample(metrics, "detector_produce_to_alert_seconds_sum") == pytest.approx(0.25)


async def test_a_record_for_a_state_partition_held_here_alerts_in_its_input_event(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]], tmp_path: Path
) -> None:
    """No repartition topic between: the same evaluator, at once."""
    worker = Worker(ruleset, metrics, tmp_path, held=(0, 1))
    await worker.input.handle(event(deletion(scenario), 7))
    [alert] = worker.alerts.sent
    assert dict(alert["headers"])["rule-id"] == DELETE_RULE.encode()
    assert worker.outbox.take() == []
    assert worker.guard.asked == [7]
    evaluator = next(agent.evaluator for agent in worker.state.values()
                     if agent.evaluator.group.rule_ids)
    assert [key for key in evaluator.table if key.startswith("@sent|")]  # its ledger entry
    # the same event again, from another input partition: a redelivered copy
    await worker.input.handle(event(deletion(scenario), 8, partition=1))
    assert len(worker.alerts.sent) == 1
    assert sample(metrics, "detector_duplicate_events_total") == 1


async def test_a_message_the_guard_drops_is_not_processed(
    ruleset: RuleSet, metrics: Metrics, scenario: list[dict[str, Any]], tmp_path: Path
) -> None:
    worker = Worker(ruleset, metrics, tmp_path, guard=Guard(admit=False))
    await worker.input.handle(event(deletion(scenario), 7))
    assert worker.outbox.take() == []
    assert sample(metrics, "detector_messages_total", outcome="ok") == 0


async def test_a_message_whose_processing_raises_is_dead_lettered_not_retried(
    ruleset: RuleSet, metrics: Metrics, tmp_path: Path
) -> None:
    worker = Worker(ruleset, metrics, tmp_path / "attempts")

    def explode(value: bytes, source: Source) -> Output:
        raise ZeroDivisionError("division by zero")

    worker.input.process = explode  # type: ignore[method-assign]
    await worker.input.handle(event(b"payload", 5))
    [letter] = worker.letters.sent
    assert (letter["key"], letter["value"]) == (b"k", b"payload")
    headers = dict(letter["headers"])
    assert headers["reason"] == b"internal_error"
    assert headers["message"] == b"ZeroDivisionError: division by zero"
    assert headers["trace-id"] == b"t"
    worker.attempts.close()
    assert Attempts.open(tmp_path / "attempts", agents=1).deaths == {}  # not in progress


async def test_a_message_the_worker_died_on_max_attempts_times_is_dead_lettered_unprocessed(
    ruleset: RuleSet, metrics: Metrics, tmp_path: Path
) -> None:
    processed: list[int] = []
    directory = tmp_path / "run-0"

    def die(value: bytes, source: Source) -> Output:
        """The process dies here: what it leaves behind is the file as it is now."""
        processed.append(source.offset)
        shutil.copytree(directory, tmp_path / f"run-{len(processed)}")
        return Output()

    for run in range(3):
        directory = tmp_path / f"run-{run}"
        worker = Worker(ruleset, metrics, directory, max_attempts=2)
        worker.input.process = die  # type: ignore[method-assign]
        await worker.input.handle(event(b"payload", 6))
        worker.attempts.close()
    assert processed == [6, 6]  # two attempts, then no more
    [letter] = worker.letters.sent
    assert letter["value"] == b"payload"
    assert dict(letter["headers"])["reason"] == b"attempts_exhausted"
    assert sample(metrics, "detector_processing_failures_total", reason="attempts_exhausted",
                  rule_id="") == 1


async def test_the_state_agent_dead_letters_a_message_it_cannot_read(
    ruleset: RuleSet, metrics: Metrics, tmp_path: Path
) -> None:
    worker = Worker(ruleset, metrics, tmp_path)
    name, agent = next(iter(worker.state.items()))
    await agent.handle(event(b'{"v":2,"type":"records","items":[]}', 3, name, 1))
    [letter] = worker.letters.sent
    headers = dict(letter["headers"])
    assert headers["reason"] == b"internal_error"
    assert b"this worker reads version 1" in headers["message"]
    assert headers["source-topic"] == name.encode()


def test_a_source_names_where_the_message_came_from() -> None:
    source = source_of(event(b"x", 9, "topic", 3))
    assert (source.topic, source.partition, source.offset, source.key, source.headers,
            source.timestamp) == ("topic", 3, 9, b"k", [("trace-id", b"t")], 1_000.0)
