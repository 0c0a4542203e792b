"""A TableState sees only its partition's keys; partitions are stable functions of the key;
a changed key reaches the changelog once per commit."""

from __future__ import annotations

from detector.stream.tables import (
    EVICTED,
    TOO_LARGE,
    Changelog,
    TableState,
    group_key,
    own_key,
    own_key_partition,
    partition_for,
)
from stream.support import ChangelogDict

MIB = 1024 * 1024


class Drops(list[tuple[str, str, str]]):
    """The entries a changelog reported dropped: (reason, key, why)."""

    def __call__(self, reason: str, key: str, why: str) -> None:
        self.append((reason, key, why))


def changelog_of(table: ChangelogDict, max_bytes: int = MIB) -> tuple[Changelog, Drops]:
    drops = Drops()
    return Changelog(table, max_bytes, drops), drops


def test_partitions_are_stable_and_in_range() -> None:
    key = group_key(["arn:aws:iam::111122223333:user/alice"])
    assert key == b'["arn:aws:iam::111122223333:user/alice"]'
    assert partition_for(key, 8) == partition_for(key, 8) == 1  # crc32 mod 8, pinned
    assert all(0 <= partition_for(group_key([str(i)]), 8) < 8 for i in range(100))
    assert len({partition_for(group_key([str(i)]), 8) for i in range(100)}) == 8


def test_bookkeeping_keys_carry_their_partition() -> None:
    assert own_key_partition(own_key("clock", 5)) == 5
    assert own_key_partition(own_key("sent", 2, "event-1")) == 2
    assert own_key_partition('fs|rule|["x"]') is None


def partition_of(key: str) -> int:
    return int(key.split("|")[2].strip('["user-]')) % 4


def test_a_table_state_lists_only_its_own_partition() -> None:
    table = ChangelogDict()
    changelog, _drops = changelog_of(table)
    states = [TableState(changelog, partition, partition_of, 100) for partition in range(4)]
    keys = [f'fs|r|["user-{i}"]' for i in range(20)]
    for key in keys:
        states[partition_of(key)].put(key, [1])
    table[own_key("clock", 2)] = {"max_event_time": 1.0}
    assert sorted(k for state in states for k in state.all_keys()) == sorted(keys)
    assert [len(state) for state in states] == [5, 5, 5, 5]
    assert states[2].own_keys("clock") == [own_key("clock", 2)]
    state = states[partition_of(keys[0])]
    assert state.get(keys[0]) == [1]
    state.delete(keys[0])
    state.delete(keys[0])
    assert state.get(keys[0]) is None
    changelog.publish()
    assert sorted(table.messages) == sorted(
        [(partition_of(key), key, [1]) for key in keys[1:]]
        + [(partition_of(keys[0]), keys[0], None)])  # the deleted key as a tombstone


def test_a_changed_key_is_sent_once_with_its_latest_value_in_the_order_of_last_writes(
) -> None:
    table = ChangelogDict()
    changelog, _drops = changelog_of(table)
    changelog.set(1, "a", [1])
    changelog.set(1, "a", [1, 2])
    changelog.set(2, "b", {"x": 1})
    changelog.set(0, "c", [3])
    assert table == {"a": [1, 2], "b": {"x": 1}, "c": [3]}  # the store has them at once
    assert table.messages == []
    changelog.delete(2, "b")
    changelog.publish()
    # "b" was deleted after "c" was written: a write lands after what was written before it
    assert table.messages == [(1, "a", [1, 2]), (0, "c", [3]), (2, "b", None)]
    changelog.publish()
    assert len(table.messages) == 3


def test_an_event_publishes_its_own_changes_in_order_and_leaves_the_others() -> None:
    table = ChangelogDict()
    changelog, _drops = changelog_of(table)
    changelog.set(0, "before", 1)
    changelog.begin()
    changelog.set(0, "state", 2)
    changelog.set(0, "@sent|0|event", 3)
    changelog.publish_event()
    assert table.messages == [(0, "state", 2), (0, "@sent|0|event", 3)]
    assert len(changelog) == 1
    # the commit waits for every send since the last one, the event's as well
    assert changelog.publish() == table.messages
    assert table.messages[-1] == (0, "before", 1)
    assert changelog.publish() == []


def test_changes_discarded_after_a_rebalance_are_never_sent() -> None:
    table = ChangelogDict()
    changelog, _drops = changelog_of(table)
    changelog.set(0, "a", 1)
    changelog.discard()
    changelog.publish()
    assert table.messages == []


def test_an_entry_larger_than_the_changelog_takes_is_dropped_not_sent() -> None:
    """The broker would refuse it, the worker stop, and its restart meet it again."""
    table = ChangelogDict()
    changelog, drops = changelog_of(table, max_bytes=100)
    changelog.set(3, 'fs|rule-1|["big"]', ["x" * 200])
    changelog.set(3, 'fs|rule-1|["small"]', ["x"])
    changelog.publish()
    assert table.messages == [(3, 'fs|rule-1|["big"]', None), (3, 'fs|rule-1|["small"]', ["x"])]
    assert 'fs|rule-1|["big"]' not in table  # gone from the store too
    [(reason, key, why)] = drops
    assert (reason, key) == (TOO_LARGE, 'fs|rule-1|["big"]')
    assert why == "221 bytes, over the 100 its changelog takes"  # key 17, value 204


def test_a_partition_at_its_cap_drops_its_oldest_entry() -> None:
    table = ChangelogDict()
    changelog, drops = changelog_of(table)
    states = [TableState(changelog, partition, partition_of, 2) for partition in range(4)]
    for user in (0, 1, 4, 2, 8):  # 0, 4 and 8 are partition 0's
        states[partition_of(f'fs|r|["user-{user}"]')].put(f'fs|r|["user-{user}"]', [user])
    states[0].put('fs|r|["user-4"]', [4, 4])  # a change: no new entry
    assert sorted(states[0].all_keys()) == ['fs|r|["user-4"]', 'fs|r|["user-8"]']
    assert [(reason, key) for reason, key, _why in drops] == [(EVICTED, 'fs|r|["user-0"]')]
    assert len(states[1]) == 1 and len(states[2]) == 1
    states[0].delete('fs|r|["user-8"]')
    states[0].put('fs|r|["user-12"]', [12])  # room again: nothing dropped
    assert len(drops) == 1
