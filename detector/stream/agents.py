"""The worker's two kinds of agent: one reads the input topic, one per group of stateful rules
reads its repartition topic. Each takes a Faust event through the same steps: the offset guard
(`workarounds.ContinuityGuard`), an attempt noted in its slot (`detector.stream.attempts`),
its processing, and the publisher; the input agent then holds the records for the groups in
the outbox until the next commit.

No message can stop the worker for good: an exception while processing it sends it (or the
record that raised) to the dead-letter topic, and a message the worker died on `max_attempts`
times goes there unprocessed.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any, Protocol

from detector.stream.attempts import Slot
from detector.stream.deadletter import Source
from detector.stream.evaluation import GroupEvaluator
from detector.stream.processor import Output, Processor
from detector.stream.publisher import Publisher
from detector.stream.repartition import Forward, Outbox, RecordBatch


class Guard(Protocol):
    async def admit(self, message: Any) -> bool: ...


def source_of(event: Any) -> Source:
    """Where a Faust event's message came from."""
    message = event.message
    headers = message.headers or ()
    timestamp = getattr(message, "timestamp", None)
    return Source(message.topic, message.partition, message.offset, message.key,
                  list(headers.items() if isinstance(headers, Mapping) else headers),
                  float(timestamp) if isinstance(timestamp, int | float) else None)


class Agent:
    """Guard, attempt, process, publish: what both agents do with an event."""

    def __init__(self, processor: Processor, slot: Slot, guard: Guard, publisher: Publisher,
                 *, max_attempts: int) -> None:
        self.processor = processor  # it counts, logs and writes dead letters
        self.slot = slot
        self.guard = guard
        self.publisher = publisher
        self.max_attempts = max_attempts

    async def handle(self, event: Any) -> None:
        if not await self.guard.admit(event.message):
            return
        output = self.attempt(event)
        await self.publisher.publish(output)
        self.done(output)

    def attempt(self, event: Any) -> Output:
        """Process one message, noted in the agent's slot: a message the worker died on
        `max_attempts` times goes to the dead-letter topic instead, and so does a message
        whose processing raised (our bug, which must cost the message, not the worker)."""
        value = event.value if isinstance(event.value, bytes) else b""
        source = source_of(event)
        key = (source.topic, source.partition, source.offset)
        deaths = self.slot.deaths(key)
        if deaths >= self.max_attempts:
            return self.processor.abandoned(value, source, deaths)
        self.slot.begin(key)
        try:
            return self.process(value, source)
        except Exception as error:
            return self.processor.failed(value, source, error)
        finally:
            self.slot.end()

    def process(self, value: bytes, source: Source) -> Output:
        raise NotImplementedError

    def done(self, output: Output) -> None:
        """After the event's messages were handed over."""


class InputAgent(Agent):
    """Decodes and matches input messages. A record for a state partition this worker holds
    is evaluated at once, in the input event (`local`): its alerts and dead letters go with
    the event's, its table changes reach the changelog before the input offset is committed,
    as those of the repartition topic's records do before theirs. The other records wait in
    the outbox."""

    def __init__(self, processor: Processor, slot: Slot, guard: Guard, publisher: Publisher,
                 *, max_attempts: int, outbox: Outbox,
                 local: Mapping[str, tuple[GroupEvaluator, Container[int]]]) -> None:
        super().__init__(processor, slot, guard, publisher, max_attempts=max_attempts)
        self.outbox = outbox
        self.local = local  # per group: its evaluator, and the partitions held here

    def process(self, value: bytes, source: Source) -> Output:
        output = self.processor.on_message(value, source)
        if not output.forwards:
            return output
        remote: list[Forward] = []
        for forward in output.forwards:
            evaluator, held = self.local[forward.group]
            if forward.partition not in held:
                remote.append(forward)
                continue
            state = evaluate(evaluator, self.processor, forward.partition,
                             RecordBatch.encode([forward.value]), source)
            output.alerts += state.alerts
            output.dead_letters += state.dead_letters
        output.forwards = remote
        return output

    def done(self, output: Output) -> None:
        self.outbox.add(output.forwards)


class StateAgent(Agent):
    """Evaluates a group's repartition messages; its records that fail are dead-lettered."""

    def __init__(self, processor: Processor, slot: Slot, guard: Guard, publisher: Publisher,
                 *, max_attempts: int, evaluator: GroupEvaluator) -> None:
        super().__init__(processor, slot, guard, publisher, max_attempts=max_attempts)
        self.evaluator = evaluator

    def process(self, value: bytes, source: Source) -> Output:
        return evaluate(self.evaluator, self.processor, source.partition, value, source)


def evaluate(evaluator: GroupEvaluator, processor: Processor, partition: int, value: bytes,
             source: Source) -> Output:
    """The alerts of one repartition message for state `partition`, and the dead letters of
    its records that failed (`processor` counts and logs them, from `source`)."""
    try:
        alerts = evaluator.process(partition, source.offset, value, source.timestamp)
    finally:
        failures = evaluator.take_failures()
    output = Output(alerts=alerts)
    for failed in failures:
        output.dead_letters.append(processor.record_failed(
            source, failed.value, failed.failures, index=failed.index, reason=failed.reason,
            error=failed.exception))
    return output
