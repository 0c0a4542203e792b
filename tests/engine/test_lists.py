"""List files: every entry is one value the operator can have meant; anything else is refused
with the file and the entry's line, so `detector rules validate` shows it."""

from __future__ import annotations

from pathlib import Path

import pytest

from detector.engine.lists import load_lists


def load(tmp_path: Path, text: str) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    path = tmp_path / "lists.yml"
    path.write_text(text, encoding="utf-8")
    lists, errors = load_lists([path])
    return lists, [str(error).replace(f"{tmp_path}/", "") for error in errors]


def test_good_entries_load_as_written(tmp_path: Path) -> None:
    lists, errors = load(tmp_path, "trusted:\n  - 10.0.0.0/8\n  - '2001:db8::/32'\n"
                                   "  - arn:aws:iam::1:role/Admin/*\n  - 123\n  - true\n")
    assert errors == []
    assert lists == {"trusted": ("10.0.0.0/8", "2001:db8::/32", "arn:aws:iam::1:role/Admin/*",
                                 "123", "true")}


@pytest.mark.parametrize("entry", ["203.0.113.0/33", "10.0.0.0/8/8", "300.1.1.1/24",
                                   "'2001:db8::/129'", "10.0.0/8", "10.0.0.0/",
                                   "10.0.0.0/-1", "10.0.0.0/+8", "'10.0.0.0/ 8'"])
def test_an_invalid_network_is_refused_at_its_line(tmp_path: Path, entry: str) -> None:
    lists, errors = load(tmp_path, f"trusted:\n  - 10.0.0.0/8\n  - {entry}\n")
    assert len(errors) == 1
    assert errors[0].startswith("lists.yml:3: list trusted: entry #2 is refused: ")
    assert "not a valid" in errors[0]
    assert lists == {"trusted": ("10.0.0.0/8",)}  # the list stays defined: no follow-on errors


@pytest.mark.parametrize(("entry", "reason"), [
    ("''", "empty entry"),
    ("", "empty (null)"),
    ("null", "empty (null)"),
    ("[a, b]", "a nested list or mapping"),
    ("{a: b}", "a nested list or mapping"),
    ("' admin'", "space around it"),
    ('"admin\\t"', "space around it"),
    ('"ad\\tmin"', "U+0009"),
    ('"ad\\u200bmin"', "U+200B"),
    ('"admin\\u202e"', "U+202E"),
])
def test_entries_that_cannot_be_meant_are_refused(tmp_path: Path, entry: str,
                                                  reason: str) -> None:
    _, errors = load(tmp_path, f"admins:\n  - arn:aws:iam::1:user/a\n  - {entry}\n")
    assert len(errors) == 1 and errors[0].startswith("lists.yml:3: list admins: entry #2")
    assert reason in errors[0]


def test_slashes_in_other_values_are_not_networks(tmp_path: Path) -> None:
    lists, errors = load(tmp_path, "paths:\n  - role/Admin\n  - dead/beef\n  - a.b/c.d\n"
                                   "  - 1.2.3.4/x\n")
    assert errors == []
    assert lists["paths"] == ("role/Admin", "dead/beef", "a.b/c.d", "1.2.3.4/x")


def test_a_list_file_holds_one_document(tmp_path: Path) -> None:
    _, errors = load(tmp_path, "a: [x]\n---\nb: [y]\n")
    assert len(errors) == 1 and "maps list names to lists of values" in errors[0]
