"""Small builders shared by the tests: rules from YAML text, records from a few fields."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path
from typing import Any

from detector.engine import Engine, LoadResult, load_rules
from detector.engine.factory import make_engine
from detector.events import Record, decode_record

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

_ids = itertools.count(1)


def record(**fields: Any) -> Record:
    """A CloudTrail record with sensible defaults; dotted keys build nested objects."""
    data: dict[str, Any] = {
        "eventVersion": "1.08",
        "eventSource": "kinesisvideo.amazonaws.com",
        "eventName": "DescribeStream",
        "eventTime": "2026-03-10T12:00:00Z",
        "eventID": f"evt-{next(_ids)}",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "10.0.0.5",
        "userAgent": "aws-sdk-go/1.44.0",
        "recipientAccountId": "111122223333",
        "userIdentity": {
            "type": "AssumedRole",
            "arn": "arn:aws:sts::111122223333:assumed-role/CameraFleet/device-1",
            "accountId": "111122223333",
        },
    }
    for key, value in fields.items():
        target = data
        *parents, last = key.split("__") if "__" in key else key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[last] = value
    result = decode_record(data)
    assert isinstance(result, Record), result
    return result


def load(tmp_path: Path, *documents: str, lists: dict[str, list[str]] | None = None) -> LoadResult:
    """Write rule documents (and lists) under tmp_path and load them."""
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir(exist_ok=True)
    for position, document in enumerate(documents):
        (rules_dir / f"rule{position}.yml").write_text(textwrap.dedent(document))
    if lists:
        (rules_dir / "lists").mkdir(exist_ok=True)
        lines = [f"{name}:\n" + "".join(f"  - '{value}'\n" for value in values)
                 for name, values in lists.items()]
        (rules_dir / "lists" / "lists.yml").write_text("".join(lines))
    return load_rules([rules_dir])


def engine(tmp_path: Path, *documents: str, lists: dict[str, list[str]] | None = None) -> Engine:
    result = load(tmp_path, *documents, lists=lists)
    assert not result.errors, [str(error) for error in result.errors]
    return make_engine(result.ruleset)


def rule(detection: str, *, rule_id: str = "0b1c2d3e-0000-4000-8000-000000000001",
         extra: str = "") -> str:
    """A minimal CloudTrail Sigma rule around a detection block (indented YAML)."""
    return (
        f"title: test rule\nid: {rule_id}\nlevel: high\n"
        "logsource:\n  product: aws\n  service: cloudtrail\n"
        "detection:\n" + textwrap.indent(textwrap.dedent(detection).strip("\n"), "  ") + "\n"
        + textwrap.dedent(extra)
    )


def fired(engine_: Engine, rec: Record) -> list[str]:
    return [alert.rule_id for alert in engine_.process(rec)]
