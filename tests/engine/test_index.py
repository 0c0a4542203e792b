"""The rule index only ever skips rules that cannot match: what it hands the evaluator, filtered
by the predicates, is exactly what evaluating every rule would give."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from helpers import engine, record, rule

from detector.engine import index

DETECTIONS = [
    "sel:\n  eventName: DeleteStream\ncondition: sel",
    "sel:\n  eventName|startswith: [Describe, List]\ncondition: sel",
    "sel:\n  eventSource: kinesisvideo.amazonaws.com\n  errorCode|contains: Denied\n"
    "condition: sel",
    "sel:\n  eventName|re: '^Get'\nfilter:\n  eventSource: s3.amazonaws.com\n"
    "condition: sel and not filter",
    "a:\n  eventName: DeleteStream\nb:\n  userAgent|contains: cli\ncondition: a or b",
    "a:\n  eventName: 'Delete*'\nb:\n  eventSource: '*video*'\ncondition: a and b",
    "sel:\n  - eventName: UpdateStream\n  - eventSource: s3.amazonaws.com\ncondition: sel",
    "keywords:\n  - DescribeStream\ncondition: keywords",
]
RECORDS = [
    {"eventSource": source, "eventName": name, **extra}
    for source, name, extra in itertools.product(
        ["kinesisvideo.amazonaws.com", "s3.amazonaws.com", "iam.amazonaws.com"],
        ["DeleteStream", "DescribeStream", "ListStreams", "GetObject", "UpdateStream",
         "deletestream", "CreateUser"],
        [{}, {"errorCode": "AccessDenied", "userAgent": "aws-cli/2"}],
    )
]


def test_index_and_brute_force_agree(tmp_path: Path) -> None:
    documents = [rule(detection, rule_id=f"0b1c2d3e-0000-4000-8000-{n:012d}")
                 for n, detection in enumerate(DETECTIONS)]
    detector = engine(tmp_path, *documents)
    for fields in RECORDS:
        rec = record(**fields)
        brute = [r.id for r in detector.ruleset.rules if r.predicate(rec.data)]
        assert [r.id for r in detector.match(rec)] == brute, fields


def test_prefix_rules_are_not_candidates_for_other_event_names(tmp_path: Path) -> None:
    detector = engine(tmp_path, rule(DETECTIONS[1]))
    assert detector.index.candidates("iam.amazonaws.com", "ListUsers") != ()
    assert detector.index.candidates("iam.amazonaws.com", "CreateUser") == ()


def test_the_candidate_cache_stays_bounded_and_right(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index, "_MAX_CACHED_PAIRS", 4)
    detector = engine(tmp_path, rule(DETECTIONS[0]))
    candidates = detector.index.candidates
    for n in range(20):
        assert candidates(f"source-{n % 3}", f"Name{n}") == ()
        assert len(candidates("kinesisvideo.amazonaws.com", "DeleteStream")) == 1
        cached = sum(map(len, detector.index._cache.values()))
        assert cached <= 4
