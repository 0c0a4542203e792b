"""Small builders for the stateful engine tests: rules from YAML text, records from a few
fields, and a run that feeds records through the engine and flushes it at the end."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from detector.alerts import Alert
from detector.engine import RuleSet, load_rules
from detector.engine.factory import StatefulEngine, make_engine
from detector.events import Record, decode_record

START = datetime(2026, 3, 10, tzinfo=UTC)
OPERATOR = "arn:aws:iam::111122223333:user/kvs-operator"
ADMIN = "arn:aws:iam::111122223333:user/video-admin"
HEADER = "logsource: {product: aws, service: cloudtrail}\n"


def ruleset(tmp_path: Path, text: str) -> RuleSet:
    """Load rules written as YAML documents (each gets the CloudTrail logsource)."""
    documents = [HEADER + document.strip() + "\n" if "correlation:" not in document
                 else document.strip() + "\n" for document in text.split("\n---\n")]
    (tmp_path / "rules.yml").write_text("---\n".join(documents))
    result = load_rules([tmp_path])
    assert not result.errors, [str(error) for error in result.errors]
    return result.ruleset


def engine(tmp_path: Path, text: str, lateness: str | float = "15m") -> StatefulEngine:
    return make_engine(ruleset(tmp_path, text), lateness=lateness)


def at(seconds: float) -> str:
    return (START + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def event(
    seconds: float,
    name: str = "DescribeStream",
    *,
    event_id: str | None = None,
    arn: str = OPERATOR,
    ip: str = "10.20.30.41",
    source: str = "kinesisvideo.amazonaws.com",
    **fields: Any,
) -> Record:
    """A CloudTrail record `seconds` after 2026-03-10T00:00:00Z."""
    data: dict[str, Any] = {
        "eventVersion": "1.09",
        "eventTime": at(seconds),
        "eventSource": source,
        "eventName": name,
        "eventID": event_id or f"{name}-{seconds}-{arn}-{ip}",
        "awsRegion": "eu-west-1",
        "sourceIPAddress": ip,
        "userAgent": "aws-cli/2.17.43",
        "userIdentity": {"type": "IAMUser", "arn": arn, "accountId": "111122223333"},
        "recipientAccountId": "111122223333",
        **fields,
    }
    record = decode_record(data)
    assert isinstance(record, Record), record
    return record


def run(target: StatefulEngine, records: Iterable[Record], *, flush: bool = True) -> list[Alert]:
    alerts = [alert for record in records for alert in target.process(record)]
    return alerts + (target.flush() if flush else [])


def fired(alerts: Iterable[Alert], rule_id: str) -> list[Alert]:
    return [alert for alert in alerts if alert.rule_id == rule_id]
