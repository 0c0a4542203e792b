"""The state side: one engine per partition of a group, over the group's faust Table.

Each partition of a group gets its own engine (`StatefulEngine`) over a `TableState` of that
partition, so the event-time clock of a partition does not depend on which worker holds it:
two workers give the alerts of one. A record takes the steps `detector scan` takes (see
`detector.engine.evaluator`): admitted (a redelivered eventID raises nothing), the alerts of
the single-event rules it carries, the stateful decisions of the group's rules it matched.
Forwarded records name their input partition, and the partition's watermark follows the
slowest input partition (`detector.stream.watermark`), so input partitions consumed at uneven
speeds do not make each other's records late. The clock is kept in the table too
(`@clock|<partition>|`), and engines are rebuilt from the table after every rebalance.

Each partition's ledger (`detector.stream.ledger`) remembers the event ids it admitted and
the alerts its records raised, in the same changelog partition as the state changes they
made: a rebuilt engine drops redelivered events, and a record read again after a crash sends
its alerts again (the same ids) rather than losing them. Table changes reach the changelog
before each commit, once per entry (`tables.Changelog`); a record that raised alerts sends
its changes, its ledger entry and its alerts at once.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache, partial
from typing import Any

from detector.alerts import Alert, event_key, format_time
from detector.bounded import bounded_text
from detector.engine import Rule
from detector.engine.evaluator import Failure, failure
from detector.engine.factory import StatefulEngine
from detector.engine.stateful import Stateful
from detector.engine.stateful.clock import CORROBORATION
from detector.events import DEFAULT_LIMITS, Record, decode_record
from detector.metrics import Metrics
from detector.sinks.formats import DEFAULT_FORMAT, AlertFormat
from detector.stream.deadletter import INTERNAL_ERROR, TOO_LARGE, max_output_bytes
from detector.stream.groups import Group
from detector.stream.ledger import Ledger
from detector.stream.messages import AlertMessage, json_bounded
from detector.stream.repartition import (
    Beat,
    RecordBatch,
    RecordItem,
    Tick,
    decode,
    event_id_of,
)
from detector.stream.stale import forget_stale
from detector.stream.tables import Changelog, LoggedTable, TableState, own_key
from detector.stream.watermark import SourceClock

log = logging.getLogger(__name__)
PARTITION_CACHE = 1 << 18  # state keys whose partition is kept parsed
# Engine entries one state partition holds at most (the oldest go first): a worker holding
# all 8 default partitions of a group then keeps up to 8 million, as scan's 5 million.
MAX_ENTRIES = 1_000_000
# The clock is written when it moved this far (event time): one changelog message per event
# would double the changelog traffic, and a restored clock a few seconds behind only makes
# the partition a little more lenient with late events.
CLOCK_STEP = 10.0


@dataclass(frozen=True, slots=True)
class ItemFailure:
    """A record of a repartition message that could not be evaluated (in whole, or by some of
    its rules), or whose alerts could not be sent (`too_large`)."""

    index: int  # its position in the message
    value: bytes  # the item as JSON
    reason: str
    failures: list[Failure]
    exception: BaseException | None = None  # what raised, when the item failed as a whole


@dataclass
class PartitionEvaluator:
    """The engine of one partition of a group, and what it last wrote of its clock."""

    engine: StatefulEngine
    clock: SourceClock
    ledger: Ledger
    last_event: float  # wall clock (monotonic) of its last record or beat
    written: tuple[float, float] = (-math.inf, -math.inf)  # clock (max_seen, floor) in table
    late: int = 0
    duplicates: int = 0
    contradicted: int = 0  # as last reported

    @property
    def stateful(self) -> Stateful:
        return self.engine.stateful


class GroupEvaluator:
    """Evaluates one group's records, partition by partition, over its faust Table.

    A rule that raises on a record makes the record's item fail (`take_failures`: the agent
    dead-letters it) and costs the record nothing else; one that raises on a decision taken as
    the watermark moved (no record at hand) is counted and logged here.
    """

    def __init__(self, group: Group, table: LoggedTable, metrics: Metrics, *,
                 partitions: int, lateness: float, idle_timeout: float,
                 input_partitions: Callable[[], int],
                 max_bytes: int = max_output_bytes(DEFAULT_LIMITS),
                 alert_format: AlertFormat = DEFAULT_FORMAT,
                 max_entries: int = MAX_ENTRIES,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.input_partitions = input_partitions  # asked when a partition's engine is built
        self.alert_format = alert_format
        self.now = now  # the wall clock of idle ticks and input partitions gone quiet
        # every write goes through it; an entry over `max_bytes` is dropped, not sent
        self.changelog = Changelog(table, max_bytes, self._dropped)
        self.table = self.changelog.store
        self.partitions = partitions
        self.lateness = lateness
        self.idle_timeout = idle_timeout
        self.metrics = metrics
        self._evaluators: dict[int, PartitionEvaluator] = {}
        self.max_bytes = max_bytes  # of an alert, a ledger entry, any entry of the table
        self.max_entries = max_entries  # engine entries of one partition
        self._failures: list[ItemFailure] = []
        self._failed: list[Failure] = []  # rules that raised on the current item's record
        self._unsent: list[Failure] = []  # alerts of the current item that were not sent
        # the Kafka timestamp of the input (or the beat, the tick) deciding what is evaluated
        self._deciding: float | None = None
        self.swap(group)

    def swap(self, group: Group) -> None:
        """New rules: evaluators are rebuilt from the table on their next event."""
        self.group = group
        self._rules = {rule.id: rule for rule in group.ruleset.rules}
        self._definitions = group.definitions()
        # the partition of a state key, parsed once: listing a partition's keys (to count
        # them, to sweep them) reads every key of the table
        self._partition_of = lru_cache(maxsize=PARTITION_CACHE)(
            partial(group.partition_of, partitions=self.partitions))
        self._evaluators.clear()

    def reset(self) -> None:
        """After a rebalance the table is the truth: forget every evaluator, and the changes
        not sent to the changelog (the worker sends them when partitions are taken away,
        so these are a worker's that lost its partitions without being told: they may be
        another worker's now)."""
        self._evaluators.clear()
        self.changelog.discard()

    def process(self, partition: int, offset: int, payload: bytes,
                timestamp: float | None = None) -> list[AlertMessage]:
        """Alerts raised in `partition` by one message of the repartition topic (produced at
        Kafka `timestamp`): records, an input partition's progress (a beat) or an idle tick.
        A record that fails costs the others nothing: it waits in `take_failures` (the agent
        dead-letters it). A message this worker cannot read raises RepartitionError."""
        message = decode(payload)
        if not isinstance(message, RecordBatch):
            self.changelog.begin()
            self._deciding = timestamp
            return self._time(partition, offset, message)
        sent: list[AlertMessage] = []
        for index, item in enumerate(message.items):
            exception: Exception | None = None
            try:
                decoded = RecordItem.decode(item)
                self._deciding = decoded.produced
                sent += self._record(partition, decoded)
            except Exception as error:  # a bug on one record must not cost the others
                exception = error
                self._failed.append(replace(failure(None, None, error),
                                            event_id=event_id_of(item)))
            if self._failed:
                self._failures.append(ItemFailure(index, self._item_json(item), INTERNAL_ERROR,
                                                  self._failed, exception))
                self._failed = []
            if self._unsent:
                self._failures.append(ItemFailure(index, self._item_json(item), TOO_LARGE,
                                                  self._unsent))
                self._unsent = []
        return sent

    def publish(self) -> list[Any]:
        """Before a commit: every change goes to the changelog (the sends to wait for), and
        the ledgers start new entries for the records admitted after it."""
        for evaluator in self._evaluators.values():
            evaluator.ledger.close()
        return self.changelog.publish()

    def _resend(self, alerts: list[Any]) -> list[AlertMessage]:
        """The alerts of a ledger entry, for the record (or time message) read again."""
        return [AlertMessage.from_ledger(item, self._deciding) for item in alerts]

    def take_failures(self) -> list[ItemFailure]:
        """The records `process` could not evaluate since the last call."""
        failures, self._failures = self._failures, []
        return failures

    def _item_json(self, item: object) -> bytes:
        return json_bounded(item, self.max_bytes)

    def _record(self, partition: int, item: RecordItem) -> list[AlertMessage]:
        """Admit the record, raise the alerts of the single-event rules it carries, take the
        stateful decisions of the group's rules it matched."""
        self.changelog.begin()
        evaluator = self._evaluator(partition)
        # the input side checked its eventTime against its wall clock; this worker's may be
        # behind it
        decoded = decode_record(item.record, latest=math.inf)
        if not isinstance(decoded, Record):  # the input side decoded it: our bug
            raise ValueError(f"unreadable repartitioned record: {decoded.message}")
        record = decoded
        event = event_key(record)
        origin = item.origin.encode()
        replayed = evaluator.ledger.replayed(event, origin)
        if replayed is not None:  # read again: its state changed already
            return self._resend(replayed)
        evaluator.last_event = self.now()
        engine = evaluator.engine
        if not engine.admit(record):
            self._count(evaluator, item.counted)
            return []
        rules = self._rules
        alerts = engine.alerts(record, [rules[rule_id] for rule_id in item.alerts
                                        if rule_id in rules])
        evaluator.clock.hear(item.origin.source, record.event_time)
        alerts += self._observe(partition, evaluator, record,
                                [rules[rule_id] for rule_id in item.rules if rule_id in rules])
        return self._finish(partition, evaluator, alerts, evaluator.ledger.record_key(event),
                            record.event_time, counted=item.counted, event_id=record.event_id,
                            origin=origin)

    def _time(self, partition: int, offset: int, message: Beat | Tick) -> list[AlertMessage]:
        """Event time passing: its decisions are in the ledger under the message's offset."""
        evaluator = self._evaluator(partition)
        ledger_key, earlier = evaluator.ledger.timed(offset)
        if earlier is not None:
            return self._resend(earlier)
        if isinstance(message, Tick):
            return self._tick(partition, evaluator, ledger_key)
        if message.latest is None:
            evaluator.clock.quiet(message.source)
            return self._pass_time(partition, evaluator, ledger_key, evaluator.clock.max_seen)
        return self._beat(partition, evaluator, ledger_key, message.source, message.latest)

    def _beat(self, partition: int, evaluator: PartitionEvaluator, ledger_key: str, source: int,
              latest: float) -> list[AlertMessage]:
        """Input partition `source` has got to eventTime `latest`: the watermark may move."""
        evaluator.last_event = self.now()
        clock = evaluator.clock
        clock.hear(source, latest)
        now = max(clock.max_seen, latest)
        return self._pass_time(partition, evaluator, ledger_key, now)

    def _tick(self, partition: int, evaluator: PartitionEvaluator, ledger_key: str
              ) -> list[AlertMessage]:
        """Without events for `idle_timeout`, event time is taken to pass like wall time."""
        clock = evaluator.clock
        idle = self.now() - evaluator.last_event
        if idle < self.idle_timeout or clock.max_seen == -math.inf:
            return []
        evaluator.last_event = self.now()
        now = clock.max_seen + idle
        clock.pass_idle(now)
        return self._pass_time(partition, evaluator, ledger_key, now)

    def _pass_time(self, partition: int, evaluator: PartitionEvaluator, ledger_key: str,
                   now: float) -> list[AlertMessage]:
        """Event time is `now` (not late): take the decisions and close the windows due."""
        if now == -math.inf:
            return []
        alerts = self._observe(partition, evaluator, Record({}, "", "", now, None), [])
        return self._finish(partition, evaluator, alerts, ledger_key, now)

    def _observe(self, partition: int, evaluator: PartitionEvaluator, record: Record,
                 matched: list[Rule]) -> list[Alert]:
        """The evaluator's alerts for `record` (or for event time passing). Rules that raised
        on the record make its item fail; those that raised on a decision taken as the
        watermark moved have no record to dead-letter: they are counted and logged."""
        alerts = evaluator.engine.observe(record, matched)
        for failed in evaluator.engine.take_failures():
            if failed.event_id is not None:
                self._failed.append(failed)
                continue
            self.metrics.processing_failures.labels(INTERNAL_ERROR, failed.rule_id or "").inc()
            log.error("rule %s failed on a decision of partition %d of %s, taken as event time "
                      "reached %s (no record to dead-letter): %s", failed.rule_id or "(none)",
                      partition, self.group.name, format_time(evaluator.clock.watermark),
                      failed.error, extra={"rule_id": failed.rule_id})
        return alerts

    def _finish(self, partition: int, evaluator: PartitionEvaluator, alerts: list[Alert],
                ledger_key: str, event_time: float, *, counted: bool = True,
                event_id: str | None = None, origin: list[int] | None = None
                ) -> list[AlertMessage]:
        """Count, write the clock and the ledger entry (a record with an eventID always has
        one: the memory of event ids), and the alerts' messages."""
        for summary in evaluator.stateful.closed_suppressions():
            log.info("suppressed: %s", summary.describe())
        clock = evaluator.clock
        written_max, written_floor = evaluator.written
        if (clock.max_seen >= written_max + CLOCK_STEP
                or clock.floor >= written_floor + CLOCK_STEP):
            self.changelog.set(partition, own_key("clock", partition), clock.dump())
            evaluator.written = (clock.max_seen, clock.floor)
        self.metrics.set_watermark(partition, clock.watermark, self.group.name)
        self._count(evaluator, counted)
        sent = self._sendable([AlertMessage.of(alert, self.alert_format, self._deciding)
                               for alert in alerts], event_id)
        for item in sent:
            item.count(self.metrics)
        ledger = evaluator.ledger
        if sent:
            entry: dict[str, Any] = {"t": event_time, "a": [item.ledger() for item in sent]}
            if origin is not None:
                entry["o"] = origin
            if event_id:
                entry["id"] = event_id
            ledger.alerts(ledger_key, entry)
            self.changelog.publish_event()
        elif event_id and origin is not None:
            ledger.admit(event_id, event_time, origin)
        stateful = evaluator.stateful
        ledger.expire(stateful.clock.watermark - stateful.recent.horizon)
        return sent

    def _sendable(self, sent: list[AlertMessage], event_id: str | None) -> list[AlertMessage]:
        """The alerts that fit, with their ledger entry, in the largest message the worker
        sends; why the others do not (`_unsent`)."""
        kept: list[AlertMessage] = []
        total = 0
        for item in sent:
            size = item.size + len(item.key)  # the ledger keeps the key as hex
            if total + size > self.max_bytes:
                self._unsent.append(Failure(
                    item.rule_id, event_id,
                    f"its alert is {size} bytes, over the {self.max_bytes - total} left of the "
                    f"{self.max_bytes} the worker sends"))
                continue
            kept.append(item)
            total += size
        return kept

    def _count(self, evaluator: PartitionEvaluator, counted: bool) -> None:
        """Add the late and duplicate records since the last call to the metrics, unless
        another group counts this record (`counted` False)."""
        stateful = evaluator.stateful
        late = stateful.late - evaluator.late
        duplicates = stateful.duplicates - evaluator.duplicates
        if counted and late:
            self.metrics.late.inc(late)
        if counted and duplicates:
            self.metrics.duplicates.inc(duplicates)
        evaluator.late, evaluator.duplicates = stateful.late, stateful.duplicates

    def _evaluator(self, partition: int) -> PartitionEvaluator:
        evaluator = self._evaluators.get(partition)
        if evaluator is not None:
            return evaluator
        state = TableState(self.changelog, partition, self._partition_of, self.max_entries)
        # inside an event of the partition: the deletions reach its changelog
        forget_stale(self.changelog, self.group, partition, self.partitions,
                     self._definitions)
        clock = SourceClock(self.lateness, self.idle_timeout, self.input_partitions(),
                            now=self.now, corroboration=CORROBORATION)
        saved = self.table.get(own_key("clock", partition)) or {}
        clock.restore(saved)
        stateful = Stateful(self.group.ruleset, state, lateness=self.lateness, clock=clock,
                            max_entry_bytes=self.max_bytes)
        stateful.resume()  # the clock came back above, the entries are in the table
        ledger, remembered = Ledger.restore(self.changelog, state)
        # the event ids it remembers: a redelivered event is dropped after a rebuild too
        stateful.recent.restore(remembered)
        evaluator = PartitionEvaluator(StatefulEngine(self.group.ruleset, stateful), clock,
                                       ledger, self.now(), (clock.max_seen, clock.floor))
        self._evaluators[partition] = evaluator
        return evaluator

    def _dropped(self, reason: str, key: str, why: str) -> None:
        """An entry dropped from the table: counted for its rule, and logged."""
        rule_id = key.split("|", 2)[1] if key.count("|") >= 2 else ""
        self.metrics.processing_failures.labels(reason, rule_id).inc()
        log.warning("state entry %s of %s dropped (%s): %s", bounded_text(key, 200),
                    self.group.name, reason, why, extra={"rule_id": rule_id})

    def report(self) -> None:
        """The decisions each partition of this worker has waiting for its watermark
        (`detector_pending_decisions`), and the early decisions late events contradicted
        since the last report (`detector_contradicted_decisions_total`)."""
        for partition, evaluator in self._evaluators.items():
            stats = evaluator.engine.stats()
            self.metrics.set_pending(partition, stats["pending_entries"], self.group.name)
            self.metrics.contradicted.inc(stats["contradicted"] - evaluator.contradicted)
            evaluator.contradicted = stats["contradicted"]

    def entries(self) -> dict[str, int]:
        """State entries on this worker by kind (first seen, correlation, suppression)."""
        counts: dict[str, int] = {}
        for key in list(self.table.keys()):
            kind = key.split("|", 1)[0]
            counts[kind] = counts.get(kind, 0) + 1
        return counts

