"""Alert text from output templates: each field as a security engineer would read it."""

from __future__ import annotations

from detector.engine.template import Template


def test_fields_are_filled_in_and_a_missing_one_reads_as_a_dash() -> None:
    template = Template("stream {requestParameters.streamName} deleted by {userIdentity.arn}")
    assert template.fields() == ["requestParameters.streamName", "userIdentity.arn"]
    assert template.render({"requestParameters": {"streamName": "lobby"}}) == (
        "stream lobby deleted by -")


def test_scalars_read_as_json_writes_them() -> None:
    template = Template("{a} {b} {c} {d} {e}")
    assert template.render({"a": 3, "b": 2.5, "c": True, "d": None, "e": ""}) == "3 2.5 true - "


def test_values_reached_through_a_list_are_joined_by_commas() -> None:
    template = Template("groups {items.group}; raw {tags}")
    data = {"items": [{"group": "all"}, {"group": "admins"}], "tags": ["a", 1, {"k": "v"}]}
    assert template.render(data) == 'groups all,admins; raw a,1,{"k":"v"}'


def test_an_object_reads_as_json_with_sorted_keys() -> None:
    template = Template("params {requestParameters}")
    data = {"requestParameters": {"streamName": "lobby", "dataRetentionChangeInHours": 0}}
    assert template.render(data) == (
        'params {"dataRetentionChangeInHours":0,"streamName":"lobby"}')


def test_a_value_too_deep_for_json_is_cut_not_an_error() -> None:
    deep: dict[str, object] = {}
    inner = deep
    for _ in range(300):
        inner["x"] = {}
        inner = inner["x"]  # type: ignore[assignment]
    text = Template("{v}").render({"v": deep})
    assert text.startswith('{"x":{"x":') and "truncated: nested deeper than 32 levels" in text
    assert text.count('{"x":') == 32
