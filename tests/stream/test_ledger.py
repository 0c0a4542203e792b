"""A state partition's ledger: the records it admitted between two commits cost one changelog
message; a rebuilt ledger knows its event ids and the records read again; old entries go."""

from __future__ import annotations

import orjson

from detector.stream.ledger import BATCH_BYTES, ITEM_BYTES, Ledger
from detector.stream.tables import Changelog, TableState, own_key
from stream.support import ChangelogDict

PARTITION = 3


def ledger_of(table: ChangelogDict, max_bytes: int = 1 << 20
              ) -> tuple[Ledger, list[list[object]], Changelog]:
    changelog = Changelog(table, max_bytes, lambda *_: None)
    state = TableState(changelog, PARTITION, lambda _key: PARTITION, 1000)
    ledger, remembered = Ledger.restore(changelog, state)
    return ledger, remembered, changelog


def test_the_records_admitted_between_two_commits_are_one_changelog_message() -> None:
    table = ChangelogDict()
    ledger, _remembered, changelog = ledger_of(table)
    for offset in range(500):
        ledger.admit(f"event-{offset}", 1000.0 + offset, [0, offset, 0])
    ledger.close()
    changelog.publish()
    [(partition, key, entry)] = table.messages
    assert partition == PARTITION and key.startswith(own_key("sent", PARTITION))
    assert entry["t"] == 1499.0
    assert [item[0] for item in entry["ids"]] == [f"event-{n}" for n in range(500)]
    ledger.admit("event-500", 1500.0, [0, 500, 0])  # after the commit: a new entry
    changelog.publish()
    assert len(table.messages) == 2 and table.messages[1][1] != key


def test_an_entry_is_closed_when_it_holds_its_bytes() -> None:
    table = ChangelogDict()
    ledger, _remembered, changelog = ledger_of(table)
    per_entry = BATCH_BYTES // (102 + ITEM_BYTES)  # 100 digits and their quotes
    for offset in range(per_entry + 1):
        ledger.admit(f"{offset:0100d}", 1.0, [0, offset, 0])
    changelog.publish()
    assert [len(entry["ids"]) for _p, _key, entry in table.messages] == [per_entry, 1]


def test_escaped_event_ids_never_make_an_entry_the_changelog_drops() -> None:
    """An eventID of control characters writes six bytes of JSON per character; a worker whose
    largest message is small closes entries at half of it."""
    table = ChangelogDict()
    max_bytes = 20_000
    ledger, _remembered, changelog = ledger_of(table, max_bytes)
    drops: list[str] = []
    changelog.dropped = lambda reason, key, why: drops.append(key)
    for offset in range(100):
        ledger.admit("\x01" * 1000 + str(offset), 1.0, [0, offset, 0])
    changelog.publish()
    assert drops == []
    assert len(table.messages) > 1
    assert all(len(key) + len(orjson.dumps(entry)) <= max_bytes
               for _p, key, entry in table.messages)


def test_an_entry_reaches_the_changelog_after_the_state_changes_of_its_records() -> None:
    table = ChangelogDict()
    ledger, _remembered, changelog = ledger_of(table)
    changelog.set(PARTITION, "first-seen|rule|[\"a\"]", 1)
    ledger.admit("event-1", 1.0, [0, 1, 0])
    changelog.set(PARTITION, "first-seen|rule|[\"b\"]", 2)  # a later record's change
    ledger.admit("event-2", 2.0, [0, 2, 0])
    changelog.publish()
    assert [key for _p, key, _value in table.messages][-1].startswith("@sent|")


def test_a_rebuilt_ledger_remembers_event_ids_and_knows_a_record_read_again() -> None:
    table = ChangelogDict()
    ledger, _remembered, changelog = ledger_of(table)
    ledger.admit("quiet", 10.0, [1, 7, 0])
    alerted = ledger.record_key("loud")
    ledger.alerts(alerted, {"t": 5.0, "a": [["6b", "{}", []]], "o": [1, 8, 0], "id": "loud"})
    changelog.publish()
    rebuilt, remembered, _changelog = ledger_of(table.recover())
    assert remembered == [["loud", 5.0], ["quiet", 10.0]]  # oldest first
    assert rebuilt.replayed("quiet", [1, 7, 0]) == []  # its state changed already
    assert rebuilt.replayed("quiet", [2, 7, 0]) is None  # a redelivered copy: the engine's
    assert rebuilt.replayed("loud", [1, 8, 0]) == [["6b", "{}", []]]  # its alerts again
    assert ledger.replayed("loud", [1, 8, 0]) == []  # the worker that raised them sent them


def test_an_event_id_cannot_pass_for_another_kind_of_entry() -> None:
    table = ChangelogDict()
    ledger, _remembered, _changelog = ledger_of(table)
    key, earlier = ledger.timed(5)
    ledger.alerts(key, {"t": 1.0, "a": [["6b", "{}", []]]})
    assert ledger.replayed("t:5", [0, 5, 0]) is None  # an eventID spelt like a time entry
    assert ledger.record_key("t:5") != key
    assert earlier is None and ledger.timed(5)[1] == [["6b", "{}", []]]


def test_entries_expire_with_the_event_ids_they_hold() -> None:
    table = ChangelogDict()
    ledger, _remembered, changelog = ledger_of(table)
    ledger.admit("old", 10.0, [0, 1, 0])
    ledger.close()
    ledger.admit("new", 100.0, [0, 2, 0])
    ledger.expire(50.0)
    assert ledger.replayed("old", [0, 1, 0]) is None
    assert ledger.replayed("new", [0, 2, 0]) == []
    changelog.publish()
    recovered = table.recover()
    assert [entry["ids"][0][0] for key, entry in recovered.items()] == ["new"]


def test_a_broken_entry_in_the_table_is_skipped_when_rebuilt() -> None:
    table = ChangelogDict()
    table[own_key("sent", PARTITION, "b:0.1.0")] = {"t": "soon", "ids": [["x"], 5, None]}
    table[own_key("sent", PARTITION, "e:y")] = ["not", "an", "entry"]
    ledger, remembered, _changelog = ledger_of(table)
    assert remembered == []
    assert ledger.replayed("x", [0, 1, 0]) is None
