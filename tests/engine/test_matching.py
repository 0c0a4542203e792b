"""Sigma matching semantics, as rule authors expect them: given a detection and events,
expect the rule to fire or not."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import engine, record, rule

RULE_ID = "0b1c2d3e-0000-4000-8000-000000000001"


def fires(tmp_path: Path, detection: str, rec: object, lists: dict[str, list[str]] | None = None
          ) -> bool:
    detector = engine(tmp_path, rule(detection), lists=lists)
    return RULE_ID in [alert.rule_id for alert in detector.process(rec)]  # type: ignore[arg-type]


def test_equality_is_case_insensitive(tmp_path: Path) -> None:
    detection = "sel:\n  eventName: deletestream\ncondition: sel"
    assert fires(tmp_path, detection, record(eventName="DeleteStream"))
    assert not fires(tmp_path, detection, record(eventName="DeleteStreams"))


def test_cased_modifier_is_case_sensitive(tmp_path: Path) -> None:
    detection = "sel:\n  eventName|cased: DeleteStream\ncondition: sel"
    assert fires(tmp_path, detection, record(eventName="DeleteStream"))
    assert not fires(tmp_path, detection, record(eventName="deletestream"))


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("Delete*", "DeleteStream", True),
        ("*Stream", "DeleteStream", True),
        ("*lete*", "DeleteStream", True),
        ("D?leteStream", "DeleteStream", True),
        ("Del*Str*m", "DeleteStream", True),
        ("Delete*", "CreateStream", False),
        ("D?leteStream", "DleteStream", False),
    ],
)
def test_wildcards(tmp_path: Path, pattern: str, value: str, expected: bool) -> None:
    detection = f"sel:\n  eventName: '{pattern}'\ncondition: sel"
    assert fires(tmp_path, detection, record(eventName=value)) is expected


def test_escaped_wildcard_is_literal(tmp_path: Path) -> None:
    detection = "sel:\n  userAgent: 'agent\\*'\ncondition: sel"
    assert fires(tmp_path, detection, record(userAgent="agent*"))
    assert not fires(tmp_path, detection, record(userAgent="agent-x"))


def test_lists_are_or_and_maps_are_and(tmp_path: Path) -> None:
    detection = """
    sel:
      eventName: [DeleteStream, UpdateStream]
      awsRegion: us-east-1
    condition: sel
    """
    assert fires(tmp_path, detection, record(eventName="UpdateStream"))
    assert not fires(tmp_path, detection, record(eventName="UpdateStream", awsRegion="eu-west-1"))
    assert not fires(tmp_path, detection, record(eventName="CreateStream"))


def test_list_of_maps_is_or(tmp_path: Path) -> None:
    detection = """
    sel:
      - eventName: DeleteStream
      - awsRegion: eu-west-1
    condition: sel
    """
    assert fires(tmp_path, detection, record(awsRegion="eu-west-1"))
    assert not fires(tmp_path, detection, record())


def test_null_matches_missing_and_null(tmp_path: Path) -> None:
    detection = "sel:\n  requestParameters.kmsKeyId: null\ncondition: sel"
    assert fires(tmp_path, detection, record(requestParameters={"streamName": "a"}))
    assert fires(tmp_path, detection, record(requestParameters={"kmsKeyId": None}))
    assert not fires(tmp_path, detection, record(requestParameters={"kmsKeyId": "arn:key"}))


@pytest.mark.parametrize(
    ("modifier", "pattern", "value", "expected"),
    [
        ("contains", "Stream", "DeleteStream", True),
        ("contains", "stream", "DeleteSignalingChannel", False),
        ("startswith", "delete", "DeleteStream", True),
        ("endswith", "STREAM", "DeleteStream", True),
        ("endswith", "Delete", "DeleteStream", False),
    ],
)
def test_string_modifiers(tmp_path: Path, modifier: str, pattern: str, value: str,
                          expected: bool) -> None:
    detection = f"sel:\n  eventName|{modifier}: {pattern}\ncondition: sel"
    assert fires(tmp_path, detection, record(eventName=value)) is expected


def test_contains_all_requires_every_value(tmp_path: Path) -> None:
    detection = "sel:\n  userAgent|contains|all: [aws-cli, Linux]\ncondition: sel"
    assert fires(tmp_path, detection, record(userAgent="aws-cli/2.15 Python/3.11 Linux/6.1"))
    assert not fires(tmp_path, detection, record(userAgent="aws-cli/2.15 Darwin/23"))


def test_contains_wildcard_only_needs_the_field(tmp_path: Path) -> None:
    """SigmaHQ's `errorCode|contains: '*'` means 'has an error': a missing field never matches."""
    detection = "sel:\n  errorCode|contains: '*'\ncondition: sel"
    assert fires(tmp_path, detection, record(errorCode="AccessDenied"))
    assert not fires(tmp_path, detection, record())


def test_regular_expression_is_case_sensitive_unless_flagged(tmp_path: Path) -> None:
    assert fires(tmp_path, "sel:\n  eventName|re: '^Delete(Stream|SignalingChannel)$'\n"
                 "condition: sel", record(eventName="DeleteSignalingChannel"))
    assert not fires(tmp_path, "sel:\n  eventName|re: '^delete'\ncondition: sel",
                     record(eventName="DeleteStream"))
    assert fires(tmp_path, "sel:\n  eventName|re|i: '^delete'\ncondition: sel",
                 record(eventName="DeleteStream"))


def test_cidr_matches_networks_and_ignores_invalid_addresses(tmp_path: Path) -> None:
    detection = "sel:\n  sourceIPAddress|cidr: [10.0.0.0/8, '2001:db8::/32']\ncondition: sel"
    assert fires(tmp_path, detection, record(sourceIPAddress="10.20.30.40"))
    assert fires(tmp_path, detection, record(sourceIPAddress="2001:db8::1"))
    assert not fires(tmp_path, detection, record(sourceIPAddress="203.0.113.9"))
    assert not fires(tmp_path, detection, record(sourceIPAddress="253.252.51.07"))
    assert not fires(tmp_path, detection, record(sourceIPAddress="kinesisvideo.amazonaws.com"))


def test_exists(tmp_path: Path) -> None:
    assert fires(tmp_path, "sel:\n  errorCode|exists: true\ncondition: sel",
                 record(errorCode="AccessDenied"))
    assert not fires(tmp_path, "sel:\n  errorCode|exists: true\ncondition: sel", record())
    assert fires(tmp_path, "sel:\n  errorCode|exists: false\ncondition: sel", record())


def test_fieldref_compares_two_fields(tmp_path: Path) -> None:
    detection = """
    sel:
      eventName: CreateAccessKey
    same_user:
      userIdentity.userName|fieldref: requestParameters.userName
    condition: sel and not same_user
    """
    other = record(eventName="CreateAccessKey", userIdentity__userName="alice",
                   requestParameters={"userName": "mallory"})
    own = record(eventName="CreateAccessKey", userIdentity__userName="Alice",
                 requestParameters={"userName": "alice"})
    assert fires(tmp_path, detection, other)
    assert not fires(tmp_path, detection, own)


@pytest.mark.parametrize(
    ("modifier", "bound", "value", "expected"),
    [
        ("gt", 24, 25, True),
        ("gt", 24, 24, False),
        ("gte", 24, 24, True),
        ("lt", 24, 23, True),
        ("lte", 24, 25, False),
        ("gte", 24, "48", True),
        ("gte", 24, "many", False),
    ],
)
def test_numeric_comparisons(tmp_path: Path, modifier: str, bound: int, value: object,
                             expected: bool) -> None:
    detection = f"sel:\n  requestParameters.dataRetentionChangeInHours|{modifier}: {bound}\n" \
                "condition: sel"
    rec = record(requestParameters={"dataRetentionChangeInHours": value})
    assert fires(tmp_path, detection, rec) is expected


def test_numbers_and_booleans_match_their_json_forms(tmp_path: Path) -> None:
    assert fires(tmp_path, "sel:\n  requestParameters.dataRetentionChangeInHours: 24\n"
                 "condition: sel", record(requestParameters={"dataRetentionChangeInHours": 24}))
    assert fires(tmp_path, "sel:\n  readOnly: true\ncondition: sel", record(readOnly=True))
    assert not fires(tmp_path, "sel:\n  readOnly: true\ncondition: sel", record(readOnly=False))


def test_conditions_with_not_parentheses_and_selectors(tmp_path: Path) -> None:
    detection = """
    selection_delete:
      eventName: DeleteStream
    selection_update:
      eventName: UpdateStream
    filter_admin:
      userIdentity.arn|endswith: ':role/VideoAdmin'
    filter_service:
      sourceIPAddress: '*.amazonaws.com'
    condition: (1 of selection_*) and not 1 of filter_*
    """
    assert fires(tmp_path, detection, record(eventName="UpdateStream"))
    assert not fires(tmp_path, detection, record(
        eventName="DeleteStream", userIdentity__arn="arn:aws:iam::111122223333:role/VideoAdmin"))
    assert not fires(tmp_path, detection, record(
        eventName="DeleteStream", sourceIPAddress="kinesisvideo.amazonaws.com"))
    assert not fires(tmp_path, detection, record(eventName="CreateStream"))


def test_all_of_selector_and_them(tmp_path: Path) -> None:
    both = """
    sel_name:
      eventName: DeleteStream
    sel_region:
      awsRegion: us-east-1
    condition: all of sel_*
    """
    assert fires(tmp_path, both, record(eventName="DeleteStream"))
    assert not fires(tmp_path, both, record(eventName="DeleteStream", awsRegion="eu-west-1"))
    any_ = both.replace("all of sel_*", "1 of them")
    assert fires(tmp_path, any_, record(eventName="ListStreams"))
    all_ = both.replace("all of sel_*", "all of them")
    assert not fires(tmp_path, all_, record(eventName="ListStreams"))


def test_lists_of_principals_cidrs_and_wildcards(tmp_path: Path) -> None:
    detection = """
    sel:
      eventName: GetDataEndpoint
    trusted:
      sourceIPAddress|expand: '%trusted%'
    condition: sel and not trusted
    """
    lists = {"trusted": ["10.0.0.0/8", "198.51.100.7", "*.amazonaws.com"]}
    assert fires(tmp_path, detection, record(eventName="GetDataEndpoint",
                                             sourceIPAddress="203.0.113.50"), lists)
    for address in ("10.1.2.3", "198.51.100.7", "kinesisvideo.amazonaws.com"):
        assert not fires(tmp_path, detection, record(eventName="GetDataEndpoint",
                                                     sourceIPAddress=address), lists)


def test_changing_a_list_changes_the_verdict_without_touching_the_rule(tmp_path: Path) -> None:
    detection = "sel:\n  eventName: DeleteStream\nadmin:\n  userIdentity.arn|expand: " \
                "'%admins%'\ncondition: sel and not admin"
    deleter = record(eventName="DeleteStream")
    assert fires(tmp_path, detection, deleter, {"admins": ["arn:aws:iam::1:role/Other"]})
    arn = deleter.data["userIdentity"]["arn"]
    assert not fires(tmp_path, detection, deleter, {"admins": [arn]})


def test_nested_lists_in_records_match_any_element(tmp_path: Path) -> None:
    detection = "sel:\n  requestParameters.createVolumePermission.add.items.group: all\n" \
                "condition: sel"
    shared = record(requestParameters={"createVolumePermission": {"add": {"items": [
        {"userId": "444455556666"}, {"group": "all"}]}}})
    private = record(requestParameters={"createVolumePermission": {"add": {"items": [
        {"userId": "444455556666"}]}}})
    assert fires(tmp_path, detection, shared)
    assert not fires(tmp_path, detection, private)


def test_contains_on_an_object_searches_its_values(tmp_path: Path) -> None:
    detection = "sel:\n  responseElements|contains: Failure\ncondition: sel"
    assert fires(tmp_path, detection, record(responseElements={"exportTask": {
        "state": "failure", "statusMessage": "Failure: no permission"}}))
    assert not fires(tmp_path, detection, record(responseElements={"exportTask": {
        "state": "active"}}))


def test_keywords_search_every_value(tmp_path: Path) -> None:
    detection = "keywords:\n  - 'stratus-red-team'\ncondition: keywords"
    assert fires(tmp_path, detection, record(userAgent="stratus-red-team_1234"))
    assert not fires(tmp_path, detection, record(userAgent="aws-cli/2"))


def test_whitespace_in_event_source_is_normalised_before_matching(tmp_path: Path) -> None:
    detection = "sel:\n  eventSource: kinesisvideo.amazonaws.com\ncondition: sel"
    assert fires(tmp_path, detection, record(eventSource=" kinesisvideo.amazonaws.com"))


def test_fieldref_contains_finds_the_other_value_inside(tmp_path: Path) -> None:
    detection = "sel:\n  requestParameters.policyDocument|fieldref|contains: " \
                "requestParameters.userName\ncondition: sel"
    assert fires(tmp_path, detection, record(requestParameters={
        "userName": "bob", "policyDocument": "xx bob yy"}))
    assert not fires(tmp_path, detection, record(requestParameters={
        "userName": "bob", "policyDocument": "xx alice yy"}))


def test_expand_with_cased_is_case_sensitive(tmp_path: Path) -> None:
    detection = "sel:\n  eventName|expand|cased: '%names%'\ncondition: sel"
    names = {"names": ["DeleteStream"]}
    assert fires(tmp_path, detection, record(eventName="DeleteStream"), names)
    assert not fires(tmp_path, detection, record(eventName="deletestream"), names)


def test_list_values_follow_sigma_escapes_like_inline_values(tmp_path: Path) -> None:
    detection = "sel:\n  userAgent|expand: '%agents%'\ncondition: sel"
    agents = {"agents": ["agent\\*"]}
    assert fires(tmp_path, detection, record(userAgent="agent*"), agents)
    assert not fires(tmp_path, detection, record(userAgent="agent\\*"), agents)


def test_null_and_exists_agree_through_lists(tmp_path: Path) -> None:
    rec = record(requestParameters={"items": [{"a": None}]})
    assert fires(tmp_path, "sel:\n  requestParameters.items.a: null\ncondition: sel", rec)
    assert not fires(tmp_path, "sel:\n  requestParameters.items.a|exists: true\n"
                     "condition: sel", rec)


def test_keys_holding_dots_are_found_whole(tmp_path: Path) -> None:
    assert fires(tmp_path, "sel:\n  a.b: v\ncondition: sel", record(**{"a.b": "v"}))
    assert fires(tmp_path, "sel:\n  a.b.c: v\ncondition: sel", record(**{"a.b.c": "v"}))


@pytest.mark.parametrize("text", ["infinity", "nan", "1_000", " 200"])
def test_numeric_comparisons_ignore_text_that_is_not_a_number(tmp_path: Path, text: str) -> None:
    detection = "sel:\n  requestParameters.size|gt: 100\ncondition: sel"
    assert not fires(tmp_path, detection, record(requestParameters={"size": text}))


def test_keywords_with_wildcards_also_match_anywhere(tmp_path: Path) -> None:
    detection = "keywords:\n  - '*evil'\n  - 'bad?ctor*'\ncondition: keywords"
    assert fires(tmp_path, detection, record(userAgent="devils-tool"))
    assert fires(tmp_path, detection, record(userAgent="a badactor here"))
    assert not fires(tmp_path, detection, record(userAgent="aws-cli"))


def test_deeply_nested_records_do_not_break_matching(tmp_path: Path) -> None:
    nested: object = "evil"
    for _ in range(990):
        nested = [nested]
    detection = "sel:\n  requestParameters|contains: evil\ncondition: sel"
    assert fires(tmp_path, detection, record(requestParameters={"a": nested}))


HUNDRED_KB = 100_000


def test_nested_quantifier_regex_finishes_on_hostile_user_agents(tmp_path: Path) -> None:
    detector = engine(tmp_path, rule("sel:\n  userAgent|re: '(a+)+$'\ncondition: sel"))
    assert RULE_ID not in [a.rule_id for a in detector.process(record(userAgent="a" * 30 + "!"))]
    assert RULE_ID in [a.rule_id for a in detector.process(record(userAgent="a" * HUNDRED_KB))]
    assert RULE_ID not in [a.rule_id for a in detector.process(
        record(userAgent="a" * HUNDRED_KB + "!"))]


def test_many_star_wildcard_finishes_on_long_fields(tmp_path: Path) -> None:
    detector = engine(tmp_path, rule("sel:\n  userAgent: '*a*a*a*a*a*b'\ncondition: sel"))
    for text in ("a" * 200, "a" * HUNDRED_KB):
        assert RULE_ID not in [a.rule_id for a in detector.process(record(userAgent=text))]
    assert RULE_ID in [a.rule_id for a in detector.process(record(userAgent="a" * 200 + "b"))]


def test_ten_thousand_contains_values_keep_sigma_semantics(tmp_path: Path) -> None:
    values = "".join(f"    - 'tool-{n}/'\n" for n in range(10_000))
    detector = engine(tmp_path, rule(f"sel:\n  userAgent|contains:\n{values}condition: sel"))
    assert RULE_ID in [a.rule_id for a in detector.process(record(userAgent="x TOOL-9999/1"))]
    assert RULE_ID not in [a.rule_id for a in detector.process(record(userAgent="tool-10000"))]


def test_many_contains_values_with_cased_and_all(tmp_path: Path) -> None:
    values = "".join(f"    - 'Tool{n}'\n" for n in range(100))
    cased = engine(tmp_path, rule(f"sel:\n  userAgent|contains|cased:\n{values}condition: sel"))
    assert RULE_ID in [a.rule_id for a in cased.process(record(userAgent="xTool42y"))]
    assert RULE_ID not in [a.rule_id for a in cased.process(record(userAgent="xtool42y"))]
    (tmp_path / "all").mkdir()
    every = engine(tmp_path / "all", rule(f"sel:\n  userAgent|contains|all:\n{values}"
                                           "condition: sel"))
    everything = "".join(f"tool{n} " for n in range(100))
    assert RULE_ID in [a.rule_id for a in every.process(record(userAgent=everything))]
    assert RULE_ID not in [a.rule_id for a in every.process(
        record(userAgent=everything.replace("tool42 ", "")))]


def test_many_keywords_search_every_value(tmp_path: Path) -> None:
    keywords = "".join(f"  - 'marker-{n}'\n" for n in range(200))
    detector = engine(tmp_path, rule(f"keywords:\n{keywords}condition: keywords"))
    assert RULE_ID in [a.rule_id for a in detector.process(
        record(requestParameters={"tags": [{"value": "has MARKER-199 inside"}]}))]
    assert RULE_ID not in [a.rule_id for a in detector.process(record())]


def test_long_lists_of_wildcards_and_networks(tmp_path: Path) -> None:
    detection = "sel:\n  sourceIPAddress|expand: '%trusted%'\ncondition: sel"
    lists = {"trusted": [*(f"10.{n}.0.0/16" for n in range(200)),
                         *(f"host-{n}.example.*" for n in range(200)), "2001:db8::/32"]}
    for address in ("10.199.3.4", "host-7.example.org", "2001:db8::9"):
        assert fires(tmp_path, detection, record(sourceIPAddress=address), lists)
    for address in ("10.200.3.4", "xhost-7.example.org", "11.0.0.1"):
        assert not fires(tmp_path, detection, record(sourceIPAddress=address), lists)


@pytest.mark.parametrize(("text", "expected"), [
    ("1e3", True), ("-2.5E+2", False), ("٢٠٠", True), ("1.", False), (".5", False),
    ("1e", False), ("+200", False), ("2e--1", False),
])
def test_numbers_written_as_text(tmp_path: Path, text: str, expected: bool) -> None:
    detection = "sel:\n  requestParameters.size|gt: 100\ncondition: sel"
    assert fires(tmp_path, detection, record(requestParameters={"size": text})) is expected


@pytest.mark.parametrize(("request_parameters", "expected"), [
    ({"a": {"b": {"c": "v"}}}, True),
    ({"a": {"b": [{"c": "x"}, {"c": "V"}]}}, True),  # a list on the way: any element
    ({"a": {"b.c": "v"}}, True),  # a key holding the rest of the path
    ({"a": {"b": {"c": "w"}}}, False),
    ({"a": {"b": "v"}}, False),
    ({"a": ["v"]}, False),
    ({"a": None}, False),
])
def test_deep_paths_read_objects_lists_and_dotted_keys(
    tmp_path: Path, request_parameters: dict[str, object], expected: bool
) -> None:
    detection = "sel:\n  requestParameters.a.b.c: v\ncondition: sel"
    assert fires(tmp_path, detection, record(requestParameters=request_parameters)) is expected
