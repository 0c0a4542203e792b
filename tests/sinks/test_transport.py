"""How HTTP sinks reach their receivers: TLS verified against a private CA when one is
configured, through an explicit proxy or the standard proxy variables."""

from __future__ import annotations

import pytest

from detector.metrics import Metrics
from detector.sinks import Secret, SinkSet, WebhookConfig, WebhookSink
from sinks.builders import make_alert
from sinks.support import FAST, ReceiverFactory, eventually, sample
from sinks.tls import PrivateCA

# Names under .invalid never resolve (RFC 6761): a request that arrives went via the proxy.
UNRESOLVABLE = "http://receiver.invalid:8080/hook"


async def test_a_receiver_signed_by_the_configured_ca_is_trusted(
    receiver: ReceiverFactory, metrics: Metrics, private_ca: PrivateCA
) -> None:
    server = await receiver(tls=private_ca.server_context())
    assert server.url().startswith("https://127.0.0.1:")
    config = WebhookConfig(
        name="hook", url=Secret(server.url("/hook")), retry=FAST, ca_file=str(private_ca.ca_file)
    )
    async with SinkSet([WebhookSink(config, metrics)]) as sinks:
        sinks.submit(make_alert())
        (request,) = await server.wait_for(1)
    assert request.path == "/hook"


async def test_without_the_ca_the_certificate_is_refused(
    receiver: ReceiverFactory, metrics: Metrics, private_ca: PrivateCA,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = await receiver(tls=private_ca.server_context())
    config = WebhookConfig(name="hook", url=Secret(server.url("/hook")), retry=FAST)
    async with SinkSet([WebhookSink(config, metrics)]) as sinks:
        sinks.submit(make_alert())
        await eventually(lambda: sample(metrics, "detector_sink_dropped_total", "hook") == 1)
    assert server.requests == []
    assert sample(metrics, "detector_sink_failures_total", "hook") == FAST.max_attempts
    assert "certificate verify failed" in caplog.text


async def test_an_explicit_proxy_carries_the_request(
    receiver: ReceiverFactory, metrics: Metrics
) -> None:
    proxy = await receiver()
    config = WebhookConfig(
        name="hook", url=Secret(UNRESOLVABLE), retry=FAST, proxy=Secret(proxy.url())
    )
    async with SinkSet([WebhookSink(config, metrics)]) as sinks:
        sinks.submit(make_alert())
        (request,) = await proxy.wait_for(1)
    assert request.url == UNRESOLVABLE
    assert request.headers["Host"] == "receiver.invalid:8080"


async def test_the_standard_proxy_variables_apply_without_an_explicit_proxy(
    receiver: ReceiverFactory, metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = await receiver()
    monkeypatch.setenv("HTTP_PROXY", proxy.url())
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    config = WebhookConfig(name="hook", url=Secret(UNRESOLVABLE), retry=FAST)
    async with SinkSet([WebhookSink(config, metrics)]) as sinks:
        sinks.submit(make_alert())
        (request,) = await proxy.wait_for(1)
    assert request.url == UNRESOLVABLE


async def test_no_proxy_exempts_a_receiver(
    receiver: ReceiverFactory, metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, direct = await receiver(), await receiver()
    monkeypatch.setenv("HTTP_PROXY", proxy.url())
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    config = WebhookConfig(name="hook", url=Secret(direct.url("/hook")), retry=FAST)
    async with SinkSet([WebhookSink(config, metrics)]) as sinks:
        sinks.submit(make_alert())
        await direct.wait_for(1)
    assert proxy.requests == []
