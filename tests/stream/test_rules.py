"""Rules reload when their files change; a broken change keeps the running rules."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from detector.stream.rules import RuleSource
from stream.support import FIXTURES


def copy_rules(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(FIXTURES / "rules", target)
    return target


def test_unchanged_files_do_not_reload(tmp_path: Path) -> None:
    source = RuleSource([str(copy_rules(tmp_path))])
    assert not source.load().errors
    assert source.files == 2
    assert not source.changed()


def test_an_edited_rule_file_reloads(tmp_path: Path) -> None:
    rules = copy_rules(tmp_path)
    source = RuleSource([str(rules)])
    source.load()
    (rules / "new_source_ip.yml").unlink()
    assert source.changed()
    reloaded = source.load()
    assert not reloaded.errors
    assert [rule.id for rule in reloaded.ruleset.rules] == [
        "5f0e4d2a-1c3b-4a5e-9f6d-7a8b9c0d1e2f"]
    assert source.status.ok


def test_a_broken_rule_file_is_reported_and_not_applied(tmp_path: Path) -> None:
    rules = copy_rules(tmp_path)
    source = RuleSource([str(rules)])
    source.load()
    (rules / "broken.yml").write_text("title: broken\ndetection: {}\n")
    assert source.changed()
    assert source.load().errors
    assert not source.status.ok
    assert any("broken.yml" in error for error in source.status.errors)
    assert source.files == 2


def test_a_swapped_configmap_symlink_is_a_change(tmp_path: Path) -> None:
    first, second = tmp_path / "v1", tmp_path / "v2"
    shutil.copytree(FIXTURES / "rules", first)
    shutil.copytree(FIXTURES / "rules", second)
    (second / "new_source_ip.yml").unlink()
    link = tmp_path / "current"
    link.symlink_to(first)
    source = RuleSource([str(link)])
    source.load()
    temporary = tmp_path / "next"
    temporary.symlink_to(second)
    os.replace(temporary, link)
    assert source.changed()
    assert len(source.load().ruleset.rules) == 1
