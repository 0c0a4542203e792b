"""Constants and helpers of the stream unit tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from detector.metrics import Metrics
from detector.settings.worker import WorkerSettings as Settings
from detector.stream.agents import evaluate
from detector.stream.app import Detector, create_app
from detector.stream.deadletter import Source
from detector.stream.evaluation import GroupEvaluator
from detector.stream.processor import Output, Processor
from detector.stream.repartition import batched
from detector.stream.rules import RuleSource

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "stream"
DELETE_RULE = "5f0e4d2a-1c3b-4a5e-9f6d-7a8b9c0d1e2f"
NEW_IP_RULE = "8c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else value


def build(settings: Settings, environ: dict[str, str] | None = None) -> Detector:
    """A worker's app over the fixture rules, sinks from `environ` only."""
    rules = RuleSource([str(FIXTURES / "rules")])
    return create_app(settings, rules, rules.load(), environ=environ or {})


class ChangelogDict(dict[str, Any]):
    """A faust Table for unit tests: the dict is its store, `messages` its changelog
    (partition, key, value as sent: None deletes)."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[tuple[int | None, str, Any]] = []

    @property
    def data(self) -> ChangelogDict:
        return self

    def send_changelog(self, partition: int | None, key: Any, value: Any,
                       key_serializer: Any = None, value_serializer: Any = None
                       ) -> tuple[int | None, str, Any]:
        """The message as sent (the real one returns a future of it), its value as the
        table's JSON serializer reads it back."""
        if value_serializer == "raw" and value is not None:
            value = orjson.loads(value)
        self.messages.append((partition, key, orjson.loads(orjson.dumps(value))))
        return self.messages[-1]

    def recover(self) -> ChangelogDict:
        """The table a restarted worker builds from the changelog."""
        table = ChangelogDict()
        for _partition, key, value in self.messages:
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
        table.messages = list(self.messages)
        return table


class Pipeline:
    """The worker without Kafka: the input processor, then every record it forwards through
    its group's evaluator at once (the repartition topics left out)."""

    def __init__(self, processor: Processor, partitions: int = 1) -> None:
        self.processor = processor
        self.evaluators = {group.name: GroupEvaluator(
            group, ChangelogDict(), processor.metrics, partitions=partitions, lateness=60.0,
            idle_timeout=3600.0, input_partitions=lambda: 1,
            alert_format=processor.alert_format) for group in processor.groups}
        self._offset = 0

    def on_message(self, payload: bytes, source: Source) -> Output:
        """What the worker sends for one input message: its alerts raised on either side,
        its dead letters; forwards left to the outbox are not kept."""
        output = self.processor.on_message(payload, source)
        for forward in batched(output.forwards):
            self._offset += 1
            state = evaluate(self.evaluators[forward.group], self.processor, forward.partition,
                             forward.value,
                             Source(forward.group, forward.partition, self._offset, None, []))
            output.alerts += state.alerts
            output.dead_letters += state.dead_letters
        return output
