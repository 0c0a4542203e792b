"""Alerts as Kafka messages: the key and headers every alert is produced with; and JSON for
anything the worker writes out of a record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from detector.alerts import Alert
from detector.bounded import bounded
from detector.metrics import Metrics
from detector.sinks.formats import DEFAULT_FORMAT, AlertFormat, encode_alert


@dataclass(frozen=True, slots=True)
class AlertMessage:
    """An alert as a Kafka message, encoded once for the alerts topic and the ledger; `alert`
    (for the sinks) is None when it is read back from a ledger."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    alert: Alert | None = None
    produced: float | None = None  # Kafka timestamp of the record that decided it

    @property
    def size(self) -> int:
        """Bytes of key, value and headers."""
        return len(self.key) + len(self.value) + sum(len(name) + len(value)
                                                     for name, value in self.headers)

    @property
    def rule_id(self) -> str | None:
        return self.alert.rule_id if self.alert is not None else None

    @classmethod
    def of(cls, alert: Alert, alert_format: AlertFormat = DEFAULT_FORMAT,
           produced: float | None = None) -> AlertMessage:
        """The message of `alert` in `alert_format`, decided by a record produced at
        `produced`."""
        return cls(alert_key(alert), encode_alert(alert, alert_format), alert_headers(alert),
                   alert, produced)

    def count(self, metrics: Metrics) -> None:
        """`detector_alerts_total` of a newly raised alert."""
        if self.alert is not None:
            metrics.alerts.labels(self.alert.rule_id, self.alert.level).inc()

    def ledger(self) -> list[Any]:
        """As JSON for a ledger entry: [key as hex, value, [[header, value], ...]]."""
        return [self.key.hex(), self.value.decode(),
                [[name, value.decode()] for name, value in self.headers]]

    @classmethod
    def from_ledger(cls, item: list[Any], produced: float | None = None) -> AlertMessage:
        key, value, headers = item
        return cls(bytes.fromhex(key), value.encode(),
                   [(name, text.encode()) for name, text in headers], None, produced)


def alert_key(alert: Alert) -> bytes:
    """The Kafka key of an alert: its group key as JSON, or its rule id when it has none."""
    if alert.group_key:
        return orjson.dumps(alert.group_key, option=orjson.OPT_SORT_KEYS)
    return alert.rule_id.encode()


def alert_headers(alert: Alert) -> list[tuple[str, bytes]]:
    return [("alert-id", alert.id.encode()), ("rule-id", alert.rule_id.encode()),
            ("level", alert.level.encode())]


def json_bounded(value: Any, max_size: int) -> bytes:
    """`value` (taken from a record) as JSON; cut to the bounds of `detector.bounded`, in
    about `max_size` bytes, when orjson cannot write it whole (it reads 1,024 levels of
    nesting and writes 254). Values within the bounds are written as they are."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return orjson.dumps(bounded(value, max_size))
