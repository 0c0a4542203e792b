"""Which stateful rules share a repartition topic and a table: the groups, planned from a
rule set.

Every stateful rule keeps its memory per group key (first seen: its `key`; suppression: its
`by`; correlation: its `group-by`). Rules share one *group* (one repartition topic, one faust
Table) when they can be partitioned alike: the same group-by fields, or group-by fields that
include a field some other rule groups by alone (rules grouped by principal and source IP
ride with the rules grouped by principal: every event of one (principal, IP) key is still on
one partition). So a record is sent once per partitioning field, not once per rule.

One more group is partitioned by eventID (`EVENT_ID`): where a record that only single-event
rules matched is admitted (a redelivered event raises nothing) before its alerts are raised,
so that every copy of one event meets the same partition's memory of event ids, whichever
input partition and worker it came through.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import orjson

from detector.engine import Rule, RuleSet
from detector.engine.state import MemoryState
from detector.engine.stateful import Stateful
from detector.engine.stateful.keys import CORRELATION, FIRST_SEEN, SUPPRESSION
from detector.stream.tables import group_key, partition_for

log = logging.getLogger(__name__)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
EVENT_ID = ("eventID",)  # the fields of the group that admits records of single-event rules


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
            meaning[f"{FIRST_SEEN}|{rule.id}"] = repr(rule.per_key)
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

    @cached_property
    def name(self) -> str:
        """A topic-safe name, stable for the same fields."""
        readable = _UNSAFE.sub("_", "-".join(self.fields))[:80]
        digest = hashlib.sha256("\0".join(self.fields).encode()).hexdigest()[:8]
        return f"{readable}-{digest}"


def plan_groups(ruleset: RuleSet) -> list[Group]:
    """The groups of `ruleset`'s enabled stateful rules, each with its own rule set, and the
    group partitioned by eventID (always there: a reload cannot add a topic)."""
    prefix_fields = Stateful(ruleset, MemoryState()).group_fields()
    fields_of = _primary_fields(prefix_fields)
    correlations = {c.id: c for c in ruleset.correlations if c.meta.enabled}
    first_seen = {rule.id: rule.per_key.key for rule in ruleset.rules
                  if rule.meta.enabled and rule.per_key is not None}
    partition_by = _partition_fields(set(fields_of.values()))
    dormant = frozenset({rule.id for rule in ruleset.rules if not rule.meta.enabled}
                        | {item.id for item in ruleset.correlations if not item.meta.enabled})
    needs: dict[tuple[str, ...], set[str]] = {EVENT_ID: set()}
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
            if rule.per_key is not None:
                paths += rule.per_key.value
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
        elif rule.per_key is None:
            rules.append(replace(rule, meta=replace(rule.meta, suppression=None)))
    correlations = tuple(c for c in ruleset.correlations if own(c.id))
    return RuleSet(tuple(rules), correlations, ruleset.lists)
