"""State entries a reload made meaningless, dropped when a partition's engine is rebuilt.

Each partition keeps what its rules' entries meant when they were written (`@definitions`:
per state key prefix, the rule's stateful definition as text) and the fields they were keyed
by (`@keyed`), so the next worker to build the partition's engine knows which entries no
rule of its group can use any more.
"""

from __future__ import annotations

from detector.stream.groups import Group
from detector.stream.tables import Changelog, own_key


def forget_stale(changelog: Changelog, group: Group, partition: int, partitions: int,
                 definitions: dict[str, str]) -> None:
    """Drop `partition`'s entries no rule of `group` (whose `definitions` these are) can use.

    Those of a rule whose stateful definition changed since they were written (a reload
    changed a first-seen value, a window, a threshold): a baseline of source addresses says
    nothing about user agents. And those of a rule gone from the group (deleted, its stateful
    part removed, or now partitioned by other fields), which nothing would read or expire
    again. A disabled rule keeps its entries (and what they mean) for when it is enabled
    again.
    """
    table, dormant = changelog.store, group.dormant

    def kept(prefix: str) -> bool:
        return prefix in definitions or prefix.split("|", 1)[-1] in dormant

    meant_key, keyed_key = own_key("definitions", partition), own_key("keyed", partition)
    written: dict[str, str] = table.get(meant_key) or {}
    keyed: dict[str, list[str]] = table.get(keyed_key) or {}
    # The fields each stale rule's entries were keyed by when they were written.
    stale = {prefix: keyed.get(prefix, group.key_fields[prefix])
             for prefix, meaning in written.items()
             if prefix in definitions and definitions[prefix] != meaning}
    stale.update((prefix, names) for prefix, names in keyed.items() if not kept(prefix))
    if stale:
        for state_key in list(table.keys()):
            if _prefix(state_key) in stale and group.partition_of(
                    state_key, partitions, stale) == partition:
                changelog.delete(partition, state_key)
    meanings = {**{prefix: meaning for prefix, meaning in written.items() if kept(prefix)},
                **definitions}
    names = {**{prefix: fields for prefix, fields in keyed.items() if kept(prefix)},
             **{prefix: list(fields) for prefix, fields in group.key_fields.items()}}
    if written != meanings:
        changelog.set(partition, meant_key, meanings)
    if keyed != names:
        changelog.set(partition, keyed_key, names)


def _prefix(state_key: str) -> str:
    """`<kind>|<rule id>` of a state key: what its rule's entries share."""
    return "|".join(state_key.split("|", 2)[:2])
