"""Alerts as Kafka messages: the key and headers every alert is produced with."""

from __future__ import annotations

import orjson

from detector.alerts import Alert


def alert_key(alert: Alert) -> bytes:
    """The Kafka key of an alert: its group key as JSON, or its rule id when it has none."""
    if alert.group_key:
        return orjson.dumps(alert.group_key, option=orjson.OPT_SORT_KEYS)
    return alert.rule_id.encode()


def alert_headers(alert: Alert) -> list[tuple[str, bytes]]:
    return [("alert-id", alert.id.encode()), ("rule-id", alert.rule_id.encode()),
            ("level", alert.level.encode())]
