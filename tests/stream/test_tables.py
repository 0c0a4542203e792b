"""A TableState sees only its partition's keys; partitions are stable functions of the key."""

from __future__ import annotations

from typing import Any

from detector.stream.tables import (
    TableState,
    group_key,
    own_key,
    own_key_partition,
    partition_for,
)


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


def test_a_table_state_lists_only_its_own_partition() -> None:
    table: dict[str, Any] = {}

    def partition_of(key: str) -> int:
        return int(key.split("|")[2].strip('["user-]')) % 4

    states = [TableState(table, partition, partition_of) for partition in range(4)]
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
