"""Generic webhook: the alert as JSON, header auth, HMAC signature a receiver can verify."""

from __future__ import annotations

import hashlib
import hmac
import time

from detector.metrics import Metrics
from detector.sinks import Secret, SinkSet, WebhookConfig, WebhookSink, verify_signature
from detector.sinks.formats import encode_alert
from detector.sinks.webhook import sign
from sinks.builders import make_alert
from sinks.ocsf_schema import ocsf_errors
from sinks.support import FAST, ReceiverFactory

KEY = "hmac-key-for-tests"


async def post_one(
    receiver: ReceiverFactory, metrics: Metrics, **options: object
) -> tuple[dict[str, str], bytes]:
    server = await receiver()
    config = WebhookConfig(
        name="hook", url=Secret(server.url("/alerts")), retry=FAST, **options  # type: ignore[arg-type]
    )
    alert = make_alert()
    async with SinkSet([WebhookSink(config, metrics)]) as sinks:
        sinks.submit(alert)
        (request,) = await server.wait_for(1)
    assert request.path == "/alerts"
    assert request.json() == alert.to_dict()
    return request.headers, request.body


async def test_posts_the_alert_document_as_json(
    receiver: ReceiverFactory, metrics: Metrics
) -> None:
    headers, _ = await post_one(receiver, metrics)
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("cloudtrail-detector/")
    assert headers["X-Detector-Alert-Id"].startswith("alert-")
    assert "Authorization" not in headers
    assert "X-Detector-Signature" not in headers


async def test_a_token_is_sent_as_a_bearer_authorization(
    receiver: ReceiverFactory, metrics: Metrics
) -> None:
    headers, _ = await post_one(receiver, metrics, token=Secret("t0ken"))
    assert headers["Authorization"] == "Bearer t0ken"


async def test_a_token_with_a_scheme_is_sent_as_is(
    receiver: ReceiverFactory, metrics: Metrics
) -> None:
    headers, _ = await post_one(receiver, metrics, token=Secret("Basic dXNlcjpwdw=="))
    assert headers["Authorization"] == "Basic dXNlcjpwdw=="


async def test_a_token_can_go_into_a_named_header(
    receiver: ReceiverFactory, metrics: Metrics
) -> None:
    headers, _ = await post_one(
        receiver, metrics, token=Secret("t0ken"), auth_header="X-Api-Key"
    )
    assert headers["X-Api-Key"] == "t0ken"
    assert "Authorization" not in headers


async def test_the_signature_verifies_over_timestamp_and_body(
    receiver: ReceiverFactory, metrics: Metrics
) -> None:
    headers, body = await post_one(receiver, metrics, hmac_secret=Secret(KEY))
    timestamp, signature = headers["X-Detector-Timestamp"], headers["X-Detector-Signature"]
    assert signature.startswith("sha256=")
    assert abs(int(timestamp) - time.time()) < 60
    assert verify_signature(KEY.encode(), timestamp, body, signature)
    assert not verify_signature(b"another key", timestamp, body, signature)
    assert not verify_signature(KEY.encode(), timestamp, body + b" ", signature)
    # A replayed request with a new timestamp no longer matches the signature...
    assert not verify_signature(KEY.encode(), str(int(timestamp) + 1), body, signature)
    # ...and the old timestamp is refused once it is older than the tolerance.
    later = int(timestamp) + 301
    assert not verify_signature(KEY.encode(), timestamp, body, signature, now=later)


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = "sha256=" + hmac.new(b"k", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign(b"k", "1700000000", b"{}") == expected
    assert not verify_signature(b"k", "not-a-number", b"{}", expected)


async def test_hostile_event_values_arrive_as_exact_json_strings(
    receiver: ReceiverFactory, metrics: Metrics
) -> None:
    """The webhook renders nothing: values are JSON data, escaped by the encoder, and the
    only header built from the alert is its id (hex)."""
    server = await receiver()
    config = WebhookConfig(name="hook", url=Secret(server.url("/alerts")), retry=FAST)
    hostile = 'x"}, "level": "informational", "y": "\n<!channel> *b* \u202e\r\nX-Forged: 1'
    alert = make_alert(principal_arn=hostile, user_agent=hostile, text=hostile)
    async with SinkSet([WebhookSink(config, metrics)]) as sinks:
        sinks.submit(alert)
        (request,) = await server.wait_for(1)
    document = request.json()
    assert document["events"][0]["principal_arn"] == hostile
    assert document["rule"]["level"] == alert.level
    assert document["text"] == hostile
    assert "X-Forged" not in request.headers


async def test_the_body_can_be_an_ocsf_detection_finding(
    receiver: ReceiverFactory, metrics: Metrics
) -> None:
    server = await receiver()
    config = WebhookConfig(name="siem", url=Secret(server.url("/ocsf")), retry=FAST,
                           hmac_secret=Secret(KEY), alert_format="ocsf")
    alert = make_alert(user_agent='ua"\n*x*')
    async with SinkSet([WebhookSink(config, metrics)]) as sinks:
        sinks.submit(alert)
        (request,) = await server.wait_for(1)
    assert request.body == encode_alert(alert, "ocsf")
    document = request.json()
    assert ocsf_errors(document) == []
    assert document["finding_info"]["uid"] == request.headers["X-Detector-Alert-Id"] == alert.id
    assert document["evidences"][0]["http_request"]["user_agent"] == 'ua"\n*x*'
    headers = request.headers
    assert verify_signature(KEY.encode(), headers["X-Detector-Timestamp"], request.body,
                            headers["X-Detector-Signature"])
