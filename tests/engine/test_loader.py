"""Loading rules: every problem names the file, the line and the rule, and says how to fix it;
nothing unsupported is silently mis-evaluated."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import load, rule
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.engine import load_rules

GOOD = rule("sel:\n  eventName: DeleteStream\ncondition: sel")


def only_error(tmp_path: Path, *documents: str, lists: dict[str, list[str]] | None = None) -> str:
    result = load(tmp_path, *documents, lists=lists)
    assert len(result.errors) == 1, [str(error) for error in result.errors]
    return str(result.errors[0])


def test_a_good_rule_loads(tmp_path: Path) -> None:
    result = load(tmp_path, GOOD)
    assert result.errors == []
    (loaded,) = result.ruleset.rules
    assert loaded.meta.title == "test rule"
    assert loaded.meta.level == "high"
    assert loaded.index_key.event_names == frozenset({"deletestream"})


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    message = only_error(tmp_path, GOOD + "tags: [unclosed\nfoo: bar\n")
    assert "rule0.yml:" in message
    assert "invalid YAML" in message


def test_undefined_detection_in_condition(tmp_path: Path) -> None:
    message = only_error(tmp_path, rule("sel:\n  eventName: X\ncondition: sel and other"))
    assert "rule0.yml:" in message and "test rule" in message
    assert "other" in message


def test_missing_id_says_how_to_fix(tmp_path: Path) -> None:
    message = only_error(tmp_path, GOOD.replace("id: 0b1c2d3e-0000-4000-8000-000000000001\n", ""))
    assert "needs an `id`" in message


def test_duplicate_ids_point_at_both(tmp_path: Path) -> None:
    message = only_error(tmp_path, GOOD, GOOD)
    assert "duplicate rule id" in message and "rule0.yml:1" in message


def test_other_logsources_are_rejected(tmp_path: Path) -> None:
    message = only_error(tmp_path, GOOD.replace("product: aws", "product: windows"))
    assert "CloudTrail rules only" in message
    assert "rule0.yml:4:" in message  # the logsource line


def test_unsupported_modifier_is_rejected_at_load(tmp_path: Path) -> None:
    message = only_error(tmp_path, rule("sel:\n  eventTime|minute: 5\ncondition: sel"))
    assert "unsupported detection" in message


def test_unknown_list_is_rejected(tmp_path: Path) -> None:
    message = only_error(tmp_path, rule(
        "sel:\n  userIdentity.arn|expand: '%admins%'\ncondition: sel"))
    assert "%admins% is not defined" in message


def test_unknown_extension_key_is_rejected(tmp_path: Path) -> None:
    message = only_error(tmp_path, GOOD + "detector:\n  ouptut: 'x'\n")
    assert "ouptut" in message and "allowed" in message


def test_bad_test_block_is_rejected(tmp_path: Path) -> None:
    message = only_error(tmp_path, GOOD + "detector:\n  tests:\n    - name: t\n      expect: yes\n")
    assert "needs `events:`" in message


def test_disabled_rules_load_but_are_not_evaluated_unless_enabled(tmp_path: Path) -> None:
    result = load(tmp_path, GOOD + "detector:\n  enabled: false\n")
    assert result.errors == []
    assert result.ruleset.rules[0].meta.enabled is False


def test_multi_document_files_and_correlations(tmp_path: Path) -> None:
    base = GOOD.replace("title: test rule", "title: base\nname: deletes")
    correlation = """title: many deletes
id: 0b1c2d3e-0000-4000-8000-000000000002
level: high
correlation:
  type: event_count
  rules: [deletes]
  group-by: [userIdentity.arn]
  timespan: 10m
  condition: {gte: 3, lte: 10}
"""
    result = load(tmp_path, base + "---\n" + correlation)
    assert result.errors == []
    (corr,) = result.ruleset.correlations
    assert corr.timespan == 600 and corr.group_by == ("userIdentity.arn",)
    assert corr.condition.holds(3) and corr.condition.holds(10) and not corr.condition.holds(11)
    assert result.ruleset.rules[0].generates is False  # base rules feed the correlation only


def test_correlation_to_a_missing_rule(tmp_path: Path) -> None:
    correlation = """title: c
id: 0b1c2d3e-0000-4000-8000-000000000003
correlation:
  type: event_count
  rules: [nowhere]
  timespan: 10m
  condition: {gte: 3}
"""
    message = only_error(tmp_path, correlation)
    assert "'nowhere'" in message and "not loaded" in message


def test_list_files_must_hold_lists(tmp_path: Path) -> None:
    (tmp_path / "rules" / "lists").mkdir(parents=True)
    (tmp_path / "rules" / "lists" / "bad.yml").write_text("admins: just-a-string\n")
    message = only_error(tmp_path, GOOD)
    assert "bad.yml:1" in message and "list admins" in message


def test_lists_folder_given_twice_is_read_once(tmp_path: Path) -> None:
    """Kubernetes mounts lists under the rules folder and also names them in DETECTOR_LISTS_DIR."""
    from detector.engine import load_rules

    load(tmp_path, GOOD, lists={"admins": ["arn:aws:iam::1:user/a"]})
    result = load_rules([tmp_path / "rules"], [tmp_path / "rules" / "lists"])
    assert result.errors == []
    assert result.ruleset.lists == {"admins": ("arn:aws:iam::1:user/a",)}


def test_first_seen_defaults_to_no_learning_and_thirty_days_retention(tmp_path: Path) -> None:
    result = load(tmp_path, GOOD + "detector:\n  first_seen:\n    key: userIdentity.arn\n"
                  "    value: [sourceIPAddress, userAgent]\n")
    assert result.errors == []
    first_seen = result.ruleset.rules[0].per_key
    assert first_seen is not None
    assert (first_seen.key, first_seen.value) == (("userIdentity.arn",),
                                                  ("sourceIPAddress", "userAgent"))
    assert (first_seen.learning, first_seen.retention) == (0.0, 30 * 86400.0)


def test_typos_inside_extension_blocks_are_refused(tmp_path: Path) -> None:
    message = only_error(tmp_path, GOOD + "detector:\n  first_seen:\n    key: [userIdentity.arn]\n"
                         "    value: [sourceIPAddress]\n    learnig: 7d\n")
    assert "learnig" in message and "first_seen" in message


def test_a_zero_suppression_window_is_refused(tmp_path: Path) -> None:
    message = only_error(tmp_path, GOOD + "detector:\n  suppress:\n    window: 0s\n")
    assert "longer than 0s" in message


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    named = GOOD.replace("title: test rule", "title: test rule\nname: deletes")
    other = named.replace("0b1c2d3e-0000-4000-8000-000000000001",
                          "0b1c2d3e-0000-4000-8000-000000000009")
    message = only_error(tmp_path, named, other)
    assert "duplicate rule name 'deletes'" in message


def test_enable_and_references_accept_upper_case_ids(tmp_path: Path) -> None:
    from detector.engine import load_rules

    load(tmp_path, GOOD + "detector:\n  enabled: false\n")
    result = load_rules([tmp_path / "rules"], enable=["0B1C2D3E-0000-4000-8000-000000000001"])
    assert result.ruleset.rules[0].meta.enabled is True


def test_a_regex_re2_cannot_run_is_refused_at_its_field_and_line(tmp_path: Path) -> None:
    message = only_error(tmp_path, rule(
        "sel:\n  eventName: GetObject\n  userAgent|re:\n    - '^aws'\n    - '(a)\\1'\n"
        "condition: sel"))
    assert "rule0.yml:12:" in message  # the line of the refused value
    assert "userAgent|re" in message and "invalid escape sequence" in message


def test_lookaround_is_refused_not_evaluated(tmp_path: Path) -> None:
    message = only_error(tmp_path, rule("sel:\n  userAgent|re|i: '(?=evil)'\ncondition: sel"))
    assert "rule0.yml:9:" in message and "RE2 cannot run" in message


def test_an_unsupported_value_names_its_field_and_line(tmp_path: Path) -> None:
    message = only_error(tmp_path, rule(
        "sel:\n  eventName: GetObject\nwhen:\n  eventTime|minute: 5\ncondition: sel and when"))
    assert "rule0.yml:11:" in message and "eventTime" in message


def test_a_path_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    from detector.engine import load_rules

    result = load_rules([tmp_path / "nowhere"], [tmp_path / "no-lists"])
    assert [str(error) for error in result.errors] == [
        f"{tmp_path / 'no-lists'}: (path): no such file or directory",
        f"{tmp_path / 'nowhere'}: (path): no such file or directory",
    ]


def test_a_rule_file_over_the_size_cap_is_refused_before_parsing(tmp_path: Path) -> None:
    from detector.engine.yamlfiles import MAX_FILE_BYTES

    padding = "# " + "x" * 1022 + "\n"
    message = only_error(tmp_path, GOOD + padding * (MAX_FILE_BYTES // len(padding) + 1))
    assert "rule0.yml: (file): rule file refused: the file is larger than 4 MiB" in message


def test_an_alias_bomb_is_refused(tmp_path: Path) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + n)}: &{chr(98 + n)} [{', '.join([f'*{chr(97 + n)}'] * 10)}]\n"
        for n in range(8))
    message = only_error(tmp_path, GOOD + "bomb:\n" + "".join(
        f"  {line}\n" for line in bomb.splitlines()))
    assert "rule file refused: more than 1,000,000 values" in message


def test_an_alias_that_contains_itself_is_refused(tmp_path: Path) -> None:
    message = only_error(tmp_path, GOOD + "loop: &loop [*loop]\n")
    assert "an alias refers to a node that contains it" in message


def test_absurd_nesting_is_refused(tmp_path: Path) -> None:
    deep = only_error(tmp_path, GOOD + "deep: " + "[" * 100 + "]" * 100 + "\n")
    assert "nested deeper than 64 levels" in deep
    (tmp_path / "rules" / "rule0.yml").unlink()
    deeper = only_error(tmp_path, GOOD + "deep: " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert "rule0.yml:" in deeper and "nesting depth" in deeper


def test_a_rule_with_a_huge_value_list_loads(tmp_path: Path) -> None:
    values = "".join(f"    - 'arn:aws:iam::111122223333:user/u{n}'\n" for n in range(50_000))
    result = load(tmp_path, rule(f"sel:\n  userIdentity.arn|endswith:\n{values}condition: sel"))
    assert result.errors == []
    assert len(result.ruleset.rules) == 1


CORRELATION = """title: base
id: 0b1c2d3e-0000-4000-8000-000000000002
name: base
logsource: {product: aws, service: cloudtrail}
detection: {sel: {eventName: X}, condition: sel}
---
title: many
id: 0b1c2d3e-0000-4000-8000-000000000003
correlation:
  type: event_count
  rules: [base]
  group-by: [userIdentity.arn]
  timespan: 5m
  condition: {gte: 3}
"""
_SELECTION = "detection:\n  sel:\n    eventName: DeleteStream\n  condition: sel\n"


@pytest.mark.parametrize(("document", "line", "expected"), [
    (GOOD.replace("id: 0b1c2d3e-0000-4000-8000-000000000001", "id: 0x1F"), 2,
     "`id` must be a string"),
    (GOOD.replace("id: 0b1c2d3e-0000-4000-8000-000000000001", "id: [a]"), 2,
     "`id` must be a string"),
    *[(GOOD.replace("condition: sel", f"condition: {value}"), 10,
       "`detection.condition` must be")
      for value in ("yes", "", "[sel, 5]", "{a: b}", "!!binary aGVsbG8=", "!!set {sel}")],
    (rule("5:\n  eventName: X\ncondition: sel"), 8, "selection names are text; quote 5"),
    (rule("sel:\n  5: X\ncondition: sel"), 9, "`detection.sel`: field names are text; quote 5"),
    *[(rule(f"sel:\n  eventName: {value}\ncondition: sel"), 9, "`detection.sel.eventName` must")
      for value in ("!!set {a}", "2024-05-31", "[[a]]", "{a: b}")],
    (rule("sel:\n  - [a]\ncondition: sel"), 8, "`detection.sel` must map field names"),
    (rule("sel: !!binary aGVsbG8=\ncondition: sel"), 8, "`detection.sel` must map field names"),
    (rule("sel:\n  userAgent|re: 5\ncondition: sel"), 9,
     "`detection.sel.userAgent|re` must be a regular expression"),
    (rule("sel:\n  userAgent|re: ~\ncondition: sel"), 9,
     "`detection.sel.userAgent|re` must be a regular expression"),
    (GOOD.replace(_SELECTION, "detection: [a, b]\n"), 7, "`detection` must be a mapping"),
    (GOOD.replace("level: high", "level: 5"), 3, "`level` must be a string"),
    (GOOD.replace("level: high", "level: [high]"), 3, "`level` must be a string"),
    (GOOD.replace("title: test rule", "title: {a: b}"), 1, "`title` must be a string"),
    (GOOD + "status: [test]\n", 11, "`status` must be a string"),
    (GOOD + "tags: attack.t1078\n", 11, "`tags` must be a list of strings"),
    (GOOD + "tags: [5, ~]\n", 11, "`tags` must be a list of strings"),
    (GOOD + "date: {a: 1}\n", 11, "`date` must be a date"),
    (GOOD + "references: {a: 1}\n", 11, "`references` must be a list of strings"),
    (GOOD + "related: [5]\n", 11, "`related` must be a list of {id, type} mappings"),
    (GOOD.replace("product: aws", "product: [aws]"), 4, "`logsource` must be a mapping"),
    (GOOD.replace("logsource:\n  product: aws\n  service: cloudtrail\n", "logsource: 5\n"), 4,
     "`logsource` must be a mapping"),
    (CORRELATION.replace("[userIdentity.arn]", "[5]"), 12,
     "`correlation.group-by` must be a string or a list of strings"),
    (CORRELATION.replace("[userIdentity.arn]", "{a: b}"), 12, "`correlation.group-by` must"),
    (CORRELATION.replace("rules: [base]", "rules: [0x1F]"), 11, "`correlation.rules` must"),
    (CORRELATION.replace("rules: [base]", "rules: 5"), 11, "`correlation.rules` must"),
    (CORRELATION.replace("timespan: 5m", "timespan: [5m]"), 13, "`correlation.timespan` must"),
    (CORRELATION.replace("type: event_count", "type: [event_count]"), 10,
     "`correlation.type` must be a string"),
    (CORRELATION.replace("{gte: 3}", "{5: 3}"), 14, "`correlation.condition` must be a mapping"),
    (CORRELATION.replace("  type:", "  generate: [yes]\n  type:"), 10,
     "`correlation.generate` must be true or false"),
    (CORRELATION.replace("correlation:\n  type", "correlation: [a]\nx:\n  type"), 9,
     "`correlation` must be a mapping"),
    (GOOD + "detector: {tests: [{events: [{eventTime: 2024-05-31}], expect: 1}]}\n", 11,
     "JSON values only"),
    (GOOD + "detector: {tests: [{events: [{a: !!binary aGVsbG8=}], expect: 1}]}\n", 11,
     "JSON values only"),
    (GOOD + "detector: {tests: [{events: [], expect: -1}]}\n", 11, "needs `events:`"),
    (GOOD + "detector: {tests: [{name: [a], events: [], expect: 0}]}\n", 11, "text `name:`"),
    (GOOD + "x: !!int abc\n", 11, "invalid YAML: cannot read the int value 'abc'"),
    (GOOD + "x: !!float abc\n", 11, "invalid YAML: cannot read the float value 'abc'"),
    (GOOD + "x: !!bool abc\n", 11, "invalid YAML: cannot read the bool value 'abc'"),
    (GOOD + "x: !!timestamp 2024-13-45\n", 11, "cannot read the timestamp value '2024-13-45'"),
    *[(GOOD + f"x: !!{tag} \n", 11, f"cannot read the {tag} value ''")
      for tag in ("timestamp", "float", "int")],  # PyYAML raised AttributeError, IndexError
    (GOOD + "x: " + "9" * 5000 + "\n", 11, "integers beyond 64 bits are refused"),
    (GOOD + "x: 0x" + "F" * 17 + "\n", 11, "integers beyond 64 bits are refused"),
    (rule("sel:\n  eventName|gt: " + "9" * 30 + "\ncondition: sel"), 9,
     "integers beyond 64 bits are refused"),
    (CORRELATION.replace("{gte: 3}", "{gte: " + "9" * 5000 + "}"), 14,
     "integers beyond 64 bits are refused"),
])
def test_a_value_of_the_wrong_yaml_type_is_an_error_at_its_field(
        tmp_path: Path, document: str, line: int, expected: str) -> None:
    message = only_error(tmp_path, document)
    assert f"rule0.yml:{line}:" in message and expected in message


def test_the_detection_types_a_rule_may_use_still_load(tmp_path: Path) -> None:
    result = load(tmp_path, rule(
        "sel:\n  eventName: [a, 5, 1.5, true, ~]\n  errorCode|exists: yes\n"
        "keywords:\n  - evil\n  - 5\ncondition: sel or keywords"), CORRELATION)
    assert result.errors == []
    assert len(result.ruleset) == 3


def test_aliases_load_when_they_stay_within_the_limits(tmp_path: Path) -> None:
    result = load(tmp_path, GOOD.replace("eventName: DeleteStream", "eventName: &n DeleteStream")
                  + "description: *n\n")
    assert result.errors == []
    assert result.ruleset.rules[0].meta.description == "DeleteStream"


_SCALARS = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
            | st.binary(max_size=4) | st.dates())
_VALUES = st.recursive(
    _SCALARS | st.sets(st.text(max_size=3), max_size=2),
    lambda children: (st.lists(children, max_size=3)
                      | st.dictionaries(st.text(max_size=5) | st.integers(), children,
                                        max_size=3)),
    max_leaves=6)
_DOCUMENT = {
    "title": "t", "id": "0b1c2d3e-0000-4000-8000-000000000001", "name": "base",
    "level": "high", "status": "test", "tags": ["attack.t1"], "date": "2024-05-31",
    "logsource": {"product": "aws", "service": "cloudtrail"},
    "detection": {"sel": {"eventName": "X", "userAgent|re": "^a"}, "condition": "sel"},
    "detector": {"output": "{eventName}", "enabled": True,
                 "suppress": {"window": "1h", "by": ["userIdentity.arn"]},
                 "first_seen": {"key": "userIdentity.arn", "value": "sourceIPAddress"},
                 "tests": [{"name": "t", "events": [{"eventName": "X"}], "expect": 1}]},
}
_CORRELATION = {
    "title": "c", "id": "0b1c2d3e-0000-4000-8000-000000000002", "level": "high",
    "correlation": {"type": "value_count", "rules": ["base"], "group-by": ["a"],
                    "timespan": "5m", "condition": {"gte": 2, "field": "b"}},
}


def _paths(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place of a document: each mapping value and list item, at any depth."""
    children = (document.items() if isinstance(document, dict)
                else enumerate(document) if isinstance(document, list) else ())
    found = [prefix] if prefix else []
    for key, child in children:
        found += _paths(child, (*prefix, key))
    return found


def _replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = dict(document) if isinstance(document, dict) else list(document)
    copy[path[0]] = _replaced(document[path[0]], path[1:], value)
    return copy


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_yaml_value_in_any_place_is_a_rule_or_a_load_error(data: st.DataObject) -> None:
    documents = [_DOCUMENT, _CORRELATION]
    for _ in range(data.draw(st.integers(1, 3))):
        which = data.draw(st.integers(0, 1))
        path = data.draw(st.sampled_from(_paths(documents[which])))
        documents[which] = _replaced(documents[which], path, data.draw(_VALUES))
    text = yaml.safe_dump_all(documents, allow_unicode=True, sort_keys=False)
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "rule.yml").write_text(text)
        result = load_rules([Path(directory)])
    for error in result.errors:
        assert error.location.line > 0, error
        assert "please report it" not in error.message, (error, text)
