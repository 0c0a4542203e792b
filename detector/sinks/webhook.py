"""Generic webhook: one JSON POST per alert (native or OCSF, see `formats`), optionally
HMAC-signed.

Signing: with a secret configured, each request carries

    X-Detector-Timestamp: <unix seconds when the request was made>
    X-Detector-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>

The timestamp is part of the signed material, so a receiver that rejects timestamps older
than a few minutes (and remembers `X-Detector-Alert-Id`s it has seen within that window)
cannot be fed a captured request again. `verify_signature` is the reference check.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

from detector.alerts import Alert
from detector.metrics import Metrics
from detector.settings.types import Secret
from detector.sinks.base import HttpSink, HttpSinkConfig
from detector.sinks.formats import DEFAULT_FORMAT, AlertFormat, encode_alert

SIGNATURE_HEADER = "X-Detector-Signature"
TIMESTAMP_HEADER = "X-Detector-Timestamp"
ALERT_ID_HEADER = "X-Detector-Alert-Id"
DEFAULT_TOLERANCE = 300.0


@dataclass(frozen=True, kw_only=True)
class WebhookConfig(HttpSinkConfig):
    """A generic webhook; `hmac_secret` turns request signing on, `alert_format` says which
    document the body is."""

    hmac_secret: Secret | None = None
    alert_format: AlertFormat = DEFAULT_FORMAT


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header value for a body sent at `timestamp`."""
    digest = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify_signature(
    secret: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> bool:
    """What a receiver does: fresh timestamp and a constant-time match of the signature."""
    try:
        sent = float(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookSink(HttpSink):
    """POSTs each alert as a JSON document to the configured URL."""

    config: WebhookConfig

    def __init__(self, config: WebhookConfig, metrics: Metrics) -> None:
        super().__init__(config, metrics)

    def _body(self, batch: list[Alert]) -> bytes:
        return encode_alert(batch[0], self.config.alert_format)

    def _headers(self, batch: list[Alert], body: bytes) -> dict[str, str]:
        headers = super()._headers(batch, body)
        headers[ALERT_ID_HEADER] = batch[0].id
        if self.config.hmac_secret is not None:
            timestamp = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(
                self.config.hmac_secret.reveal().encode(), timestamp, body
            )
        return headers
