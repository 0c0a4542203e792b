"""An alert as an OCSF Detection Finding (class 2004), for consumers that speak OCSF.

`detection_finding` is pure and total over the alerts the engine builds: the same alert gives
the same document, and values taken from events are copied as JSON data, never interpreted
(only `src_endpoint.ip` is checked, because OCSF constrains it to an address). Mapping,
choices and the schema releases it is validated against: docs/sinks.md, "Alert formats".
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson

from detector import __version__
from detector.alerts import Alert, EventSummary

PRODUCT_NAME: Final = "cloudtrail-detector"
OCSF_VERSION: Final = "1.5.0"  # the first release with anomaly_analyses
CLASS_UID: Final = 2004
CATEGORY_UID: Final = 2
CREATE: Final = 1
# Sigma levels -> OCSF severity_id and its caption.
SEVERITIES: Final[dict[str, tuple[int, str]]] = {
    "informational": (1, "Informational"),
    "low": (2, "Low"),
    "medium": (3, "Medium"),
    "high": (4, "High"),
    "critical": (5, "Critical"),
}
_OTHER_SEVERITY: Final = 99
_STATUS_NEW: Final = 1
_ANALYTIC_RULE: Final = 1
_AWS_ACCOUNT: Final = 10  # account.type_id
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND: Final = timedelta(milliseconds=1)
_ATTACK_TECHNIQUE: Final = re.compile(r"attack\.(t\d{4})(?:\.(\d{3}))?", re.IGNORECASE)
_ACCOUNT_ID: Final = re.compile(r"\d{12}")
# details.anomaly "method" -> OCSF observation_type; other methods are written as they are.
_OBSERVATION_TYPES: Final = {"rate": "Volume Analysis", "rare": "Frequency Analysis"}


def detection_finding(alert: Alert) -> dict[str, Any]:
    """The OCSF Detection Finding for an alert (a JSON-ready dict)."""
    trigger = alert.events[-1] if alert.events else None
    event_times = [ms for ms in map(epoch_ms, (event.event_time for event in alert.events))
                   if ms is not None]
    created = _required_ms(alert.detected_at)
    severity_id, severity = SEVERITIES.get(alert.level, (_OTHER_SEVERITY, alert.level))
    finding: dict[str, Any] = {
        "activity_id": CREATE,
        "activity_name": "Create",
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "class_uid": CLASS_UID,
        "class_name": "Detection Finding",
        "type_uid": CLASS_UID * 100 + CREATE,
        "type_name": "Detection Finding: Create",
        "severity_id": severity_id,
        "severity": severity,
        "status_id": _STATUS_NEW,
        "status": "New",
        "is_alert": True,
        "time": created if (event_ms := epoch_ms(alert.event_time)) is None else event_ms,
        "message": alert.text,
        "metadata": {
            "version": OCSF_VERSION,
            "uid": alert.id,
            "product": {"name": PRODUCT_NAME, "version": __version__},
            "profiles": ["cloud"],
            "labels": list(alert.tags),
        },
        "finding_info": _finding_info(alert, created, event_times),
        "cloud": _cloud(trigger),
        "evidences": [_evidence(event) for event in alert.events],
    }
    if event_times:
        finding["start_time"], finding["end_time"] = min(event_times), max(event_times)
    anomaly = alert.details.get("anomaly")
    if isinstance(anomaly, dict):
        finding["anomaly_analyses"] = [_anomaly_analysis(alert, anomaly)]
    unmapped = {"group_key": alert.group_key, "details": alert.details or None}
    if any(value is not None for value in unmapped.values()):
        finding["unmapped"] = _present(unmapped)
    return finding


def epoch_ms(text: str) -> int | None:
    """Milliseconds since the epoch of an ISO 8601 time, None when it is not one."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MILLISECOND


def _required_ms(text: str) -> int:
    """detected_at is the detector's own clock: a time that does not parse is a bug."""
    value = epoch_ms(text)
    if value is None:
        raise ValueError(f"not an ISO 8601 time: {text!r}")
    return value


def _finding_info(alert: Alert, created: int, event_times: list[int]) -> dict[str, Any]:
    info: dict[str, Any] = {
        "uid": alert.id,
        "title": alert.rule_title,
        "desc": alert.text,
        "types": [alert.kind],
        "analytic": {
            "uid": alert.rule_id,
            "name": alert.rule_title,
            "type_id": _ANALYTIC_RULE,
            "type": "Rule",
        },
        "created_time": created,
        "data_sources": ["AWS CloudTrail"],
    }
    if event_times:
        info["first_seen_time"], info["last_seen_time"] = min(event_times), max(event_times)
    attacks = [attack for attack in map(_attack, alert.tags) if attack is not None]
    if attacks:
        info["attacks"] = attacks
    return info


def _attack(tag: str) -> dict[str, Any] | None:
    """An ATT&CK technique tag (attack.t1485, attack.t1078.004); tactics and other tags are
    not mapped (their OCSF form needs ids a tag does not carry)."""
    match = _ATTACK_TECHNIQUE.fullmatch(tag)
    if match is None:
        return None
    technique = match.group(1).upper()
    attack: dict[str, Any] = {"technique": {"uid": technique}}
    if match.group(2):
        attack["sub_technique"] = {"uid": f"{technique}.{match.group(2)}"}
    return attack


def _cloud(trigger: EventSummary | None) -> dict[str, Any]:
    cloud: dict[str, Any] = {"provider": "AWS"}
    if trigger is not None and trigger.region is not None:
        cloud["region"] = trigger.region
    if trigger is not None and trigger.account_id is not None:
        cloud["account"] = {"uid": trigger.account_id, "type_id": _AWS_ACCOUNT,
                            "type": "AWS Account"}
    return cloud


def _evidence(event: EventSummary) -> dict[str, Any]:
    """One triggering CloudTrail record, as far as the alert carries it."""
    api: dict[str, Any] = {"operation": event.event_name, "service": {"name": event.event_source}}
    if event.error_code is not None:
        api["response"] = {"error": event.error_code}
    evidence: dict[str, Any] = {"api": api}
    if event.event_id is not None:
        evidence["uid"] = event.event_id
    user = _user(event)
    if user:
        evidence["actor"] = {"user": user}
    if event.source_ip is not None:
        evidence["src_endpoint"] = _endpoint(event.source_ip)
    if event.user_agent is not None:
        evidence["http_request"] = {"user_agent": event.user_agent}
    evidence["data"] = _present({
        "event_time": event.event_time,
        "region": event.region,
        "account_id": event.account_id,
        "request_parameters": event.request_parameters or None,
        "principal_type": None if user else event.principal_type,
    })
    return evidence


def _user(event: EventSummary) -> dict[str, Any]:
    """The principal: its ARN, identity type and the account the ARN names. OCSF wants a
    uid, name or account, so a type alone makes no user (it goes into the evidence data)."""
    if event.principal_arn is None:
        return {}
    account = _arn_account(event.principal_arn)
    return _present({
        "uid": event.principal_arn,
        "type": event.principal_type,
        "account": {"uid": account, "type_id": _AWS_ACCOUNT, "type": "AWS Account"}
        if account else None,
    })


def _arn_account(arn: str) -> str | None:
    """The account id field of an ARN (arn:partition:service:region:account:resource)."""
    parts = arn.split(":", 5)
    if len(parts) == 6 and parts[0] == "arn" and _ACCOUNT_ID.fullmatch(parts[4]):
        return parts[4]
    return None


def _endpoint(source: str) -> dict[str, str]:
    """sourceIPAddress holds an address, or the name of the AWS service that made the call
    (`ec2.amazonaws.com`, `AWS Internal`)."""
    try:
        address = ipaddress.ip_address(source)
    except ValueError:
        return {"svc_name": source}
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        return {"svc_name": source}
    return {"ip": source}


def _anomaly_analysis(alert: Alert, anomaly: dict[str, Any]) -> dict[str, Any]:
    """details.anomaly (docs/sinks.md lists the keys read) as one OCSF anomaly analysis:
    what was observed against the key's own baseline. Score, slot and learning state have
    no OCSF attribute; they stay in unmapped.details.anomaly with everything else."""
    parameter = _text(anomaly.get("field")) or "value"
    method = _text(anomaly.get("method"))
    kind = _present({
        "observation_parameter": parameter,
        "observation_type": _OBSERVATION_TYPES.get(method, method) if method else None,
    })
    observed = _text(anomaly.get("observed"))
    analysis: dict[str, Any] = {
        "analysis_targets": _targets(alert),
        "anomalies": [{**kind, "observations": [] if observed is None else [{"value": observed}]}],
    }
    history = _timespan(anomaly.get("history"))
    baselines = [
        {**kind, "observed_pattern": pattern.upper(),
         "observations": [_present({"value": value, "timespan": history})]}
        for pattern in ("expected", "threshold")
        if (value := _text(anomaly.get(pattern))) is not None
    ]
    if baselines:
        analysis["baselines"] = baselines
    return analysis


def _targets(alert: Alert) -> list[dict[str, str]]:
    """Whose normal it is: the fields the rule grouped by (its key), else the principal."""
    if alert.group_key:
        return [{"name": _label(value), "type": field}
                for field, value in sorted(alert.group_key.items())]
    arn = alert.events[-1].principal_arn if alert.events else None
    return [{"name": arn, "type": "userIdentity.arn"}] if arn else [
        {"name": alert.rule_id, "type": "rule"}
    ]


def _timespan(history: object) -> dict[str, int] | None:
    """{"start": time, "end": time} as an OCSF timespan; None when neither is a time."""
    if not isinstance(history, dict):
        return None
    span = {
        name: ms for name, key in (("start_time", "start"), ("end_time", "end"))
        if isinstance(text := history.get(key), str) and (ms := epoch_ms(text)) is not None
    }
    return span or None


def _label(value: object) -> str:
    """A group-key value as a name: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _text(value: object) -> str | None:
    """A scalar as OCSF's string-typed values want it; None for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return None


def _present(mapping: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in mapping.items() if value is not None}
