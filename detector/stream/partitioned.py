"""Stateful rules in the stream: repartition by group-by fields, one evaluator per partition.

Every stateful rule keeps its memory per group key (first seen: its `key`; suppression: its
`by`; correlation: its `group-by`). Rules share one *group* (one repartition topic, one faust
Table) when they can be partitioned alike: the same group-by fields, or group-by fields that
include a field some other rule groups by alone (rules grouped by principal and source IP
ride with the rules grouped by principal: every event of one (principal, IP) key is still on
one partition). So a record is sent once per partitioning field, not once per rule. The input
agent sends a record to a group's topic only when one of the group's rules matched it, keyed
and partitioned by the group's partition values, with the ids of the rules that matched and
cut to the top-level fields the group's rules, templates and alert summaries read. A record
sent to several groups is late or a duplicate in each of them; only the group it was sent to
first counts it in `detector_late_events_total` and `detector_duplicate_events_total`, the
other copies are marked `"q"` (quiet), so the metrics count records, not copies.

Each partition of a group gets its own `Stateful` evaluator over a `TableState` of that
partition, so the event-time clock of a partition does not depend on which worker holds it:
two workers give the alerts of one. Forwarded records name their input partition, and the
partition's watermark follows the slowest input partition (`detector.stream.watermark`), so
input partitions consumed at uneven speeds do not make each other's records late. The clock
is kept in the table too (`@clock|<partition>|`), and evaluators are rebuilt from the table
after every rebalance.

Idempotent replay: the alerts raised while processing an event are written to the table
(`@sent|<partition>|<event key>`) in the same changelog partition as the state change that
raised them. If the worker dies after the changelog got the state but before the alerts
left, the event comes again (its offset was not committed), finds its ledger entry and the
same alerts (same ids) are sent again instead of being lost to the state that now knows.
Table changes reach the changelog before each commit, once per entry (`tables.Changelog`); an
event that raised alerts sends its changes and its ledger entry at once, in that order.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from detector.alerts import Alert, event_key, format_time
from detector.engine import Rule, RuleSet
from detector.engine.evaluator import Failure, failure
from detector.engine.state import MemoryState
from detector.engine.stateful import Stateful
from detector.engine.stateful.clock import CORROBORATION
from detector.engine.stateful.keys import CORRELATION, FIRST_SEEN, SUPPRESSION, Fields
from detector.events import DEFAULT_LIMITS, Record, decode_record
from detector.metrics import Metrics
from detector.sinks.formats import DEFAULT_FORMAT, AlertFormat
from detector.stream.deadletter import INTERNAL_ERROR, TOO_LARGE, max_output_bytes
from detector.stream.messages import Sent, json_bounded
from detector.stream.tables import (
    Changelog,
    LoggedTable,
    TableState,
    group_key,
    own_key,
    partition_for,
)
from detector.stream.watermark import SourceClock

log = logging.getLogger(__name__)
LEDGER_HORIZON = 3600.0  # event-time seconds a ledger entry outlives the watermark
# The clock is written when it moved this far (event time): one changelog message per event
# would double the changelog traffic, and a restored clock a few seconds behind only makes
# the partition a little more lenient with late events.
CLOCK_STEP = 10.0
TICK = b'{"tick":true}'
BATCH_BYTES = 128 * 1024  # the records of one repartition message, at most (see `batched`)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class ItemFailure:
    """A record of a repartition message that could not be evaluated (in whole, or by some of
    its rules), or whose alerts could not be sent (`too_large`)."""

    index: int  # its position in the message (0 for a message of one record)
    value: bytes  # the item as JSON
    reason: str
    failures: list[Failure]
    exception: BaseException | None = None  # what raised, when the item failed as a whole


@dataclass(frozen=True)
class Group:
    """Stateful rules partitioned alike: one repartition topic, one table."""

    fields: tuple[str, ...]  # what records are partitioned by
    rule_ids: frozenset[str]  # matched rules whose records this group needs
    ruleset: RuleSet
    key_fields: dict[str, tuple[str, ...]] = field(default_factory=dict)  # state key prefix
    # (`<kind>|<rule id>`) -> the fields its entries are keyed by
    top_level: frozenset[str] = frozenset()  # the record keys the group's rules read
    dormant: frozenset[str] = frozenset()  # ids of disabled rules: their entries are kept

    def definitions(self) -> dict[str, str]:
        """Per state key prefix of the group's rules, what their entries mean (the rule's
        stateful definition as text): entries kept under another definition are dropped."""
        meaning: dict[str, str] = {}
        for rule in self.ruleset.rules:
            meaning[f"{FIRST_SEEN}|{rule.id}"] = repr(rule.first_seen)
            meaning[f"{SUPPRESSION}|{rule.id}"] = repr(rule.meta.suppression)
        for correlation in self.ruleset.correlations:
            meaning[f"{CORRELATION}|{correlation.id}"] = repr(
                (correlation.type, correlation.rules, correlation.group_by,
                 correlation.timespan, correlation.condition))
            meaning[f"{SUPPRESSION}|{correlation.id}"] = repr(correlation.meta.suppression)
        return {prefix: meaning[prefix] for prefix in self.key_fields}

    def partition_of(self, state_key: str, partitions: int,
                     key_fields: Mapping[str, Sequence[str]] | None = None) -> int | None:
        """The partition of an engine state key of this group's rules (or of the rules whose
        `key_fields` are given: those the group had before a reload)."""
        parts = state_key.split("|", 2)
        known = self.key_fields if key_fields is None else key_fields
        names = known.get(f"{parts[0]}|{parts[1]}") if len(parts) == 3 else None
        if names is None or not set(self.fields) <= set(names):
            return None
        try:
            values = orjson.loads(parts[2])
        except orjson.JSONDecodeError:
            return None
        if not isinstance(values, list) or len(values) != len(names):
            return None
        by_name = dict(zip(names, values, strict=True))
        return partition_for(group_key([by_name.get(name) for name in self.fields]), partitions)

    @property
    def name(self) -> str:
        """A topic-safe name, stable for the same fields."""
        readable = _UNSAFE.sub("_", "-".join(self.fields))[:80]
        digest = hashlib.sha256("\0".join(self.fields).encode()).hexdigest()[:8]
        return f"{readable}-{digest}"


def plan_groups(ruleset: RuleSet) -> list[Group]:
    """The groups of `ruleset`'s enabled stateful rules, each with its own rule set."""
    prefix_fields = Stateful(ruleset, MemoryState()).group_fields()
    fields_of = _primary_fields(prefix_fields)
    correlations = {c.id: c for c in ruleset.correlations if c.meta.enabled}
    first_seen = {rule.id: rule.first_seen.key for rule in ruleset.rules
                  if rule.meta.enabled and rule.first_seen is not None}
    partition_by = _partition_fields(set(fields_of.values()))
    dormant = frozenset({rule.id for rule in ruleset.rules if not rule.meta.enabled}
                        | {item.id for item in ruleset.correlations if not item.meta.enabled})
    needs: dict[tuple[str, ...], set[str]] = {}
    for rule_id, fields in fields_of.items():
        group = partition_by[fields]
        correlation = correlations.get(rule_id)
        if correlation is None:
            needs.setdefault(group, set()).add(rule_id)
            continue
        for base in correlation.rules:
            if base in first_seen and partition_by[first_seen[base]] != group:
                log.warning("correlation %s: base rule %s is a first-seen rule keyed by %s, "
                            "not partitioned like the correlation's group-by %s; the stream "
                            "worker cannot feed it", rule_id, base, first_seen[base], fields)
                continue
            needs.setdefault(group, set()).add(base)
    groups = []
    for group, rule_ids in sorted(needs.items()):
        group_rules = _group_ruleset(ruleset, group, fields_of, partition_by)
        key_fields = {prefix: fields for prefix, fields in prefix_fields.items()
                      if partition_by[fields_of[prefix.split("|", 1)[1]]] == group}
        groups.append(Group(group, frozenset(rule_ids), group_rules, key_fields,
                            _read_fields(group_rules, key_fields), dormant))
    return groups


def _primary_fields(prefix_fields: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """Per rule id, the fields its records are partitioned by: a first-seen rule's key or a
    correlation's group-by; the suppression `by` only for rules with no other state."""
    primary: dict[str, tuple[str, ...]] = {}
    for prefix, fields in sorted(prefix_fields.items(), key=lambda item: item[0].startswith(
            SUPPRESSION + "|")):
        primary.setdefault(prefix.split("|", 1)[1], fields)
    return primary


# What an alert's event summary reads (detector.alerts.EventSummary.of); a unit test checks
# that a projected record gives the summary of the whole record.
SUMMARY_FIELDS = ("eventID", "eventTime", "eventSource", "eventName", "userIdentity",
                  "sourceIPAddress", "userAgent", "awsRegion", "recipientAccountId",
                  "errorCode", "requestParameters")


def _read_fields(ruleset: RuleSet, key_fields: dict[str, tuple[str, ...]]) -> frozenset[str]:
    """Top-level record keys a group's alerts and state can read: group-by and first-seen
    fields, value_count fields, output templates of its rules, the alert summary."""
    paths: list[str] = [*SUMMARY_FIELDS]
    for fields in key_fields.values():
        paths += fields
    own = {prefix.split("|", 1)[1] for prefix in key_fields}
    metas = []
    for rule in ruleset.rules:
        if rule.id in own:
            metas.append(rule.meta)
            if rule.first_seen is not None:
                paths += rule.first_seen.value
    for correlation in ruleset.correlations:
        metas.append(correlation.meta)
        if correlation.condition.field:
            paths.append(correlation.condition.field)
    for meta in metas:
        if meta.output is not None:
            paths += meta.output.fields()
    return frozenset(path.split(".", 1)[0] for path in paths)


def project(data: dict[str, Any], top_level: frozenset[str]) -> dict[str, Any]:
    """The record cut to the keys a group reads (a key holding dots counts by its first part)."""
    return {key: value for key, value in data.items() if key.split(".", 1)[0] in top_level}


def _partition_fields(tuples: set[tuple[str, ...]]) -> dict[tuple[str, ...], tuple[str, ...]]:
    """For each group-by, the fields to partition by: a single field another rule groups by
    alone when it has one (the first in sort order), else the group-by itself."""
    singles = sorted(fields for fields in tuples if len(fields) == 1)
    chosen: dict[tuple[str, ...], tuple[str, ...]] = {}
    for fields in tuples:
        shared = [single for single in singles if single[0] in fields]
        chosen[fields] = shared[0] if shared else fields
    return chosen


def _group_ruleset(ruleset: RuleSet, group: tuple[str, ...],
                   fields_of: dict[str, tuple[str, ...]],
                   partition_by: dict[tuple[str, ...], tuple[str, ...]]) -> RuleSet:
    """The rules one group evaluates: its own stateful rules, others only as correlation feeds."""
    def own(rule_id: str) -> bool:
        fields = fields_of.get(rule_id)
        return fields is not None and partition_by[fields] == group

    rules: list[Rule] = []
    for rule in ruleset.rules:
        if own(rule.id) or rule.id not in fields_of:
            rules.append(rule)
        elif rule.first_seen is None:
            rules.append(replace(rule, meta=replace(rule.meta, suppression=None)))
    correlations = tuple(c for c in ruleset.correlations if own(c.id))
    return RuleSet(tuple(rules), correlations, ruleset.lists)


@dataclass
class Forward:
    """A record (or a batch of records) on its way to a group's repartition topic."""

    group: str
    key: bytes | None  # None for a beat or a batch
    partition: int
    value: bytes


class Outbox:
    """Records for the stateful groups, held until the next commit of offsets.

    Faust publishes what an event sends when the event's offset is committed; the outbox
    sends then too, but the records of all the events since the last commit go in one
    message per group partition (`batched`): each Kafka message costs the worker more than
    evaluating the record it carries.
    """

    def __init__(self) -> None:
        self._forwards: list[Forward] = []

    def add(self, forwards: Iterable[Forward]) -> None:
        self._forwards.extend(forwards)

    def take(self) -> list[Forward]:
        """The messages to send now, in the order their records came."""
        forwards, self._forwards = self._forwards, []
        return batched(forwards)


def batched(forwards: list[Forward]) -> list[Forward]:
    """The records in one message per group partition (`{"b": [...]}`, up to BATCH_BYTES
    each; a record alone may be larger), each partition's in the order they came."""
    targets: dict[tuple[str, int], list[Forward]] = {}
    for forward in forwards:
        targets.setdefault((forward.group, forward.partition), []).append(forward)
    messages: list[Forward] = []
    for (group, partition), items in targets.items():
        chunks: list[list[Forward]] = [[]]
        size = 0
        for item in items:
            if chunks[-1] and size + len(item.value) > BATCH_BYTES:
                chunks.append([])
                size = 0
            chunks[-1].append(item)
            size += len(item.value) + 1
        messages += [chunk[0] if len(chunk) == 1 else Forward(
            group, None, partition, b'{"b":[' + b",".join(item.value for item in chunk) + b"]}")
            for chunk in chunks]
    return messages


class Router:
    """On the input side: which groups need a record, and the message to send them."""

    def __init__(self, groups: list[Group], partitions: int,
                 max_bytes: int = max_output_bytes(DEFAULT_LIMITS)) -> None:
        self.partitions = partitions
        self.max_bytes = max_bytes  # of a record written cut (`json_bounded`)
        self._groups = [(group.name, group.rule_ids, Fields(group.fields), group.top_level)
                        for group in groups]

    def route(self, record: Record, matched: list[Rule], source: int) -> list[Forward]:
        """The messages for the groups whose rules matched: the rule ids, what they read and
        the input partition the record came from (`source`, for the watermark). A record
        nested deeper than orjson writes goes cut to the bounds of `detector.bounded`."""
        if not matched:
            return []
        ids = {rule.id for rule in matched}
        forwards: list[Forward] = []
        data = record.data
        for name, rule_ids, fields, top_level in self._groups:
            needed = ids & rule_ids
            if not needed:
                continue
            message: dict[str, Any] = {"m": sorted(needed), "r": project(data, top_level),
                                       "s": source}
            if forwards:
                message["q"] = 1
            value = json_bounded(message, self.max_bytes)
            key = group_key(fields.values(data))
            forwards.append(Forward(name, key, partition_for(key, self.partitions), value))
        return forwards

    def beats(self, source: int, latest: float | None) -> list[Forward]:
        """The messages telling every state partition that input partition `source` has got
        to eventTime `latest`, or (None) that it is read to its end and need not be waited
        for (a state partition hears of an input partition through its records only when
        they hash there)."""
        value = orjson.dumps({"s": source, "w": latest} if latest is not None else
                             {"s": source, "quiet": True})
        return [Forward(name, None, partition, value)
                for name, *_ in self._groups for partition in range(self.partitions)]


@dataclass
class _Partition:
    """The evaluator of one partition of a group, and what it last wrote of its clock."""

    stateful: Stateful
    clock: SourceClock
    ledger: dict[str, float]  # ledger key -> event time
    last_event: float  # wall clock (monotonic) of its last record or beat
    written: tuple[float, float] = (-math.inf, -math.inf)  # clock (max_seen, floor) in table
    late: int = 0
    duplicates: int = 0


class GroupRunner:
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
                 now: Callable[[], float] = time.monotonic) -> None:
        self.input_partitions = input_partitions  # asked when a partition's evaluator is built
        self.alert_format = alert_format
        self.now = now  # the wall clock of idle ticks and input partitions gone quiet
        self.changelog = Changelog(table)  # every write goes through it
        self.table = self.changelog.store
        self.partitions = partitions
        self.lateness = lateness
        self.idle_timeout = idle_timeout
        self.metrics = metrics
        self._evaluators: dict[int, _Partition] = {}
        self.max_bytes = max_bytes  # of an alert, and of the ledger entry of an event's alerts
        self._failures: list[ItemFailure] = []
        self._failed: list[Failure] = []  # rules that raised on the current item's record
        self._unsent: list[Failure] = []  # alerts of the current item that were not sent
        self.swap(group)

    def swap(self, group: Group) -> None:
        """New rules: evaluators are rebuilt from the table on their next event."""
        self.group = group
        self._rules = {rule.id: rule for rule in group.ruleset.rules}
        self._definitions = group.definitions()
        self._evaluators.clear()

    def reset(self) -> None:
        """After a rebalance the table is the truth: forget every evaluator, and the changes
        not sent to the changelog (the worker sends them when partitions are taken away,
        so these are a worker's that lost its partitions without being told: they may be
        another worker's now)."""
        self._evaluators.clear()
        self.changelog.discard()

    def process(self, partition: int, offset: int, payload: bytes) -> list[Sent]:
        """Alerts raised in `partition` by one message of the repartition topic: a record,
        records sent together (a batch), an input partition's progress (a beat) or an idle
        tick. A record that fails costs the others nothing: it waits in `take_failures`
        (the agent dead-letters it)."""
        message = orjson.loads(payload)
        sent: list[Sent] = []
        for index, item in enumerate(message.get("b", [message])):
            exception: Exception | None = None
            try:
                sent += self._process(partition, offset, item)
            except Exception as error:  # a bug on one record must not cost the others
                exception = error
                self._failed.append(replace(failure(None, None, error),
                                            event_id=_event_id(item)))
            if self._failed:
                self._failures.append(ItemFailure(index, self._item_json(item), INTERNAL_ERROR,
                                                  self._failed, exception))
                self._failed = []
            if self._unsent:
                self._failures.append(ItemFailure(index, self._item_json(item), TOO_LARGE,
                                                  self._unsent))
                self._unsent = []
        return sent

    def take_failures(self) -> list[ItemFailure]:
        """The records `process` could not evaluate since the last call."""
        failures, self._failures = self._failures, []
        return failures

    def _item_json(self, item: object) -> bytes:
        return json_bounded(item, self.max_bytes)

    def _process(self, partition: int, offset: int, message: dict[str, Any]) -> list[Sent]:
        self.changelog.begin()
        evaluator = self._evaluator(partition)
        record: Record | None = None
        if "r" in message:
            # the input side checked its eventTime against its wall clock; this worker's
            # may be behind it
            decoded = decode_record(message["r"], latest=math.inf)
            if not isinstance(decoded, Record):  # the input side decoded it: our bug
                raise ValueError(f"unreadable repartitioned record: {decoded.message}")
            record = decoded
            ledger_key = own_key("sent", partition, event_key(record))
        else:
            ledger_key = own_key("sent", partition, f"time@{offset}")
        earlier = self.table.get(ledger_key)
        if earlier is not None:
            return [Sent(bytes.fromhex(key), value.encode(), _headers(headers))
                    for key, value, headers in earlier["a"]]
        if "w" in message:
            return self._beat(partition, evaluator, ledger_key, int(message["s"]),
                              float(message["w"]))
        if "quiet" in message:
            evaluator.clock.quiet(int(message["s"]))
            return self._pass_time(partition, evaluator, ledger_key, evaluator.clock.max_seen)
        if record is None:
            return self._tick(partition, evaluator, ledger_key)
        evaluator.last_event = self.now()
        stateful = evaluator.stateful
        counted = not message.get("q")
        if not stateful.admit(record):
            self._count(evaluator, counted)
            return []
        matched = [self._rules[rule_id] for rule_id in message["m"] if rule_id in self._rules]
        evaluator.clock.hear(int(message["s"]), record.event_time)
        alerts = self._observe(partition, evaluator, record, matched)
        return self._finish(partition, evaluator, alerts, ledger_key, record.event_time,
                            counted=counted, event_id=record.event_id)

    def _beat(self, partition: int, evaluator: _Partition, ledger_key: str, source: int,
              latest: float) -> list[Sent]:
        """Input partition `source` has got to eventTime `latest`: the watermark may move."""
        evaluator.last_event = self.now()
        clock = evaluator.clock
        clock.hear(source, latest)
        now = max(clock.max_seen, latest)
        return self._pass_time(partition, evaluator, ledger_key, now)

    def _tick(self, partition: int, evaluator: _Partition, ledger_key: str) -> list[Sent]:
        """Without events for `idle_timeout`, event time is taken to pass like wall time."""
        clock = evaluator.clock
        idle = self.now() - evaluator.last_event
        if idle < self.idle_timeout or clock.max_seen == -math.inf:
            return []
        evaluator.last_event = self.now()
        now = clock.max_seen + idle
        clock.pass_idle(now)
        return self._pass_time(partition, evaluator, ledger_key, now)

    def _pass_time(self, partition: int, evaluator: _Partition, ledger_key: str,
                   now: float) -> list[Sent]:
        """Event time is `now` (not late): take the decisions and close the windows due."""
        if now == -math.inf:
            return []
        alerts = self._observe(partition, evaluator, Record({}, "", "", now, None), [])
        return self._finish(partition, evaluator, alerts, ledger_key, now)

    def _observe(self, partition: int, evaluator: _Partition, record: Record,
                 matched: list[Rule]) -> list[Alert]:
        """The evaluator's alerts for `record` (or for event time passing). Rules that raised
        on the record make its item fail; those that raised on a decision taken as the
        watermark moved have no record to dead-letter: they are counted and logged."""
        alerts = evaluator.stateful.observe(record, matched)
        for failed in evaluator.stateful.take_failures():
            if failed.event_id is not None:
                self._failed.append(failed)
                continue
            self.metrics.processing_failures.labels(INTERNAL_ERROR, failed.rule_id or "").inc()
            log.error("rule %s failed on a decision of partition %d of %s, taken as event time "
                      "reached %s (no record to dead-letter): %s", failed.rule_id or "(none)",
                      partition, self.group.name, format_time(evaluator.clock.watermark),
                      failed.error, extra={"rule_id": failed.rule_id})
        return alerts

    def _finish(self, partition: int, evaluator: _Partition, alerts: list[Alert],
                ledger_key: str, event_time: float, *, counted: bool = True,
                event_id: str | None = None) -> list[Sent]:
        for summary in evaluator.stateful.closed_suppressions():
            log.info("suppressed: %s", summary.describe())
        clock = evaluator.clock
        written_max, written_floor = evaluator.written
        if (clock.max_seen >= written_max + CLOCK_STEP
                or clock.floor >= written_floor + CLOCK_STEP):
            self.changelog.set(partition, own_key("clock", partition), clock.dump())
            evaluator.written = (clock.max_seen, clock.floor)
        self._count(evaluator, counted)
        sent = self._sendable([Sent.of(alert, self.alert_format) for alert in alerts],
                              event_id)
        if sent:
            for item in sent:
                if item.alert is not None:
                    self.metrics.alerts.labels(item.alert.rule_id, item.alert.level).inc()
            self.changelog.set(partition, ledger_key, {
                "t": event_time,
                "a": [[item.key.hex(), item.value.decode(),
                       [[name, value.decode()] for name, value in item.headers]]
                      for item in sent],
            })
            evaluator.ledger[ledger_key] = event_time
            self.changelog.publish_event()
        self._expire_ledger(partition, evaluator)
        return sent

    def _sendable(self, sent: list[Sent], event_id: str | None) -> list[Sent]:
        """The alerts that fit, with their ledger entry, in the largest message the worker
        sends; why the others do not (`_unsent`)."""
        kept: list[Sent] = []
        total = 0
        for item in sent:
            size = item.size + len(item.key)  # the ledger keeps the key as hex
            if total + size > self.max_bytes:
                self._unsent.append(Failure(
                    item.alert.rule_id if item.alert is not None else None, event_id,
                    f"its alert is {size} bytes, over the {self.max_bytes - total} left of the "
                    f"{self.max_bytes} the worker sends"))
                continue
            kept.append(item)
            total += size
        return kept

    def _expire_ledger(self, partition: int, evaluator: _Partition) -> None:
        """Drop ledger entries an hour behind the watermark (oldest first, in write order)."""
        oldest = evaluator.stateful.clock.watermark - LEDGER_HORIZON
        ledger = evaluator.ledger
        while ledger:
            key, when = next(iter(ledger.items()))
            if when >= oldest:
                break
            del ledger[key]
            self.changelog.delete(partition, key)

    def _count(self, evaluator: _Partition, counted: bool) -> None:
        """Add the late and duplicate records since the last call to the metrics, unless
        another group counts this record (`counted` False)."""
        stateful = evaluator.stateful
        if counted:
            self.metrics.late.inc(stateful.late - evaluator.late)
            self.metrics.duplicates.inc(stateful.duplicates - evaluator.duplicates)
        evaluator.late, evaluator.duplicates = stateful.late, stateful.duplicates

    def _evaluator(self, partition: int) -> _Partition:
        evaluator = self._evaluators.get(partition)
        if evaluator is not None:
            return evaluator
        group, partitions = self.group, self.partitions
        state = TableState(self.changelog, partition,
                           lambda key: group.partition_of(key, partitions))
        self._forget_stale(partition)
        clock = SourceClock(self.lateness, self.idle_timeout, self.input_partitions(),
                            now=self.now, corroboration=CORROBORATION)
        saved = self.table.get(own_key("clock", partition)) or {}
        clock.restore(saved)
        stateful = Stateful(self.group.ruleset, state, lateness=self.lateness, clock=clock)
        stateful.resume()  # the clock came back above, the entries are in the table
        ledger = dict(sorted(((key, float(self.table.get(key, {}).get("t", 0.0)))
                              for key in state.own_keys("sent")), key=lambda item: item[1]))
        evaluator = _Partition(stateful, clock, ledger, self.now(),
                               (clock.max_seen, clock.floor))
        self._evaluators[partition] = evaluator
        return evaluator

    def _forget_stale(self, partition: int) -> None:
        """Drop the entries no rule of the group can use any more. Those of a rule whose
        stateful definition changed since they were written (a reload changed a first-seen
        value, a window, a threshold): a baseline of source addresses says nothing about
        user agents. And those of a rule gone from the group (deleted, its stateful part
        removed, or now partitioned by other fields), which nothing would read or expire
        again. A disabled rule keeps its entries (and what they mean) for when it is enabled
        again. Called inside an event of the partition, so the deletions reach its changelog.
        """
        definitions, dormant = self._definitions, self.group.dormant

        def kept(prefix: str) -> bool:
            return prefix in definitions or prefix.split("|", 1)[-1] in dormant

        meant_key, keyed_key = own_key("definitions", partition), own_key("keyed", partition)
        written: dict[str, str] = self.table.get(meant_key) or {}
        keyed: dict[str, list[str]] = self.table.get(keyed_key) or {}
        # The fields each stale rule's entries were keyed by when they were written.
        stale = {prefix: keyed.get(prefix, self.group.key_fields[prefix])
                 for prefix, meaning in written.items()
                 if prefix in definitions and definitions[prefix] != meaning}
        stale.update((prefix, names) for prefix, names in keyed.items() if not kept(prefix))
        if stale:
            for state_key in list(self.table.keys()):
                if _prefix(state_key) in stale and self.group.partition_of(
                        state_key, self.partitions, stale) == partition:
                    self.changelog.delete(partition, state_key)
        meanings = {**{prefix: meaning for prefix, meaning in written.items() if kept(prefix)},
                    **definitions}
        names = {**{prefix: fields for prefix, fields in keyed.items() if kept(prefix)},
                 **{prefix: list(fields) for prefix, fields in self.group.key_fields.items()}}
        if written != meanings:
            self.changelog.set(partition, meant_key, meanings)
        if keyed != names:
            self.changelog.set(partition, keyed_key, names)

    def entries(self) -> dict[str, int]:
        """State entries on this worker by kind (first seen, correlation, suppression)."""
        counts: dict[str, int] = {}
        for key in list(self.table.keys()):
            kind = key.split("|", 1)[0]
            counts[kind] = counts.get(kind, 0) + 1
        return counts


def _prefix(state_key: str) -> str:
    """`<kind>|<rule id>` of a state key: what its rule's entries share."""
    return "|".join(state_key.split("|", 2)[:2])


def _event_id(item: object) -> str | None:
    """The eventID of a repartitioned record, if it has a readable one."""
    record = item.get("r") if isinstance(item, dict) else None
    event_id = record.get("eventID") if isinstance(record, dict) else None
    return event_id if isinstance(event_id, str) else None


def _headers(pairs: list[list[str]]) -> list[tuple[str, bytes]]:
    return [(name, value.encode()) for name, value in pairs]
