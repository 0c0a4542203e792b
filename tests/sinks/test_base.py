"""Delivery shared by all sinks: retries, backoff, Retry-After, queues, isolation, shutdown."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from detector.alerts import Alert
from detector.metrics import Metrics
from detector.sinks import (
    RetryPolicy,
    Route,
    Secret,
    Sink,
    SinkConfig,
    SinkSet,
    WebhookConfig,
    WebhookSink,
)
from detector.sinks.base import classify, parse_retry_after
from sinks.builders import make_alert
from sinks.http_receiver import Reply
from sinks.support import FAST, ReceiverFactory, eventually, sample

SENT = "detector_sink_deliveries_total"
FAILED = "detector_sink_failures_total"
DROPPED = "detector_sink_dropped_total"
QUEUED = "detector_sink_queue_size"
DELIVERIES_TIMED = "detector_sink_delivery_seconds_count"


def webhook(
    name: str, url: str, metrics: Metrics, *, retry: RetryPolicy = FAST, **options: object
) -> WebhookSink:
    config = WebhookConfig(name=name, url=Secret(url), retry=retry, **options)  # type: ignore[arg-type]
    return WebhookSink(config, metrics)


async def test_a_server_error_is_retried_and_the_alert_delivered_once(
    receiver: ReceiverFactory, metrics: Metrics
) -> None:
    server = await receiver([Reply(500), Reply(200)])
    sinks = SinkSet([webhook("hook", server.url("/in"), metrics)])
    async with sinks:
        assert sinks.submit(make_alert()) == 1
        requests = await server.wait_for(2)
        await eventually(lambda: sample(metrics, SENT, "hook") == 1)
    assert requests[0].body == requests[1].body
    assert sample(metrics, FAILED, "hook") == 1
    assert sample(metrics, DROPPED, "hook") == 0


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_transient_statuses_are_retried(
    status: int, receiver: ReceiverFactory, metrics: Metrics
) -> None:
    server = await receiver([Reply(status)])
    async with SinkSet([webhook("hook", server.url(), metrics)]) as sinks:
        sinks.submit(make_alert())
        await eventually(lambda: sample(metrics, SENT, "hook") == 1)
    assert len(server.requests) == 2


@pytest.mark.parametrize("status", [301, 400, 401, 403, 404, 410, 413, 422])
async def test_other_answers_are_not_retried_but_counted_and_dropped(
    status: int, receiver: ReceiverFactory, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    server = await receiver(default=Reply(status, headers={"Location": "http://example.com/"}))
    async with SinkSet([webhook("hook", server.url(), metrics)]) as sinks:
        sinks.submit(make_alert())
        await eventually(lambda: sample(metrics, DROPPED, "hook") == 1)
        await asyncio.sleep(0.1)
    assert len(server.requests) == 1
    assert sample(metrics, FAILED, "hook") == 1
    assert sample(metrics, SENT, "hook") == 0
    assert f"HTTP {status}" in caplog.text


async def test_retries_stop_after_max_attempts(
    receiver: ReceiverFactory, metrics: Metrics
) -> None:
    server = await receiver(default=Reply(500))
    async with SinkSet([webhook("hook", server.url(), metrics)]) as sinks:
        sinks.submit(make_alert())
        await eventually(lambda: sample(metrics, DROPPED, "hook") == 1)
    assert len(server.requests) == FAST.max_attempts
    assert sample(metrics, FAILED, "hook") == FAST.max_attempts


async def test_each_delivery_is_timed_once_retries_included_delivered_or_not(
    receiver: ReceiverFactory, metrics: Metrics
) -> None:
    server = await receiver([Reply(500), Reply(200, delay=0.3), Reply(404)])
    sink = webhook("hook", server.url(), metrics)
    assert sample(metrics, DELIVERIES_TIMED, "hook") == 0  # exported before any delivery
    async with SinkSet([sink]) as sinks:
        sinks.submit(make_alert())
        await eventually(lambda: sample(metrics, SENT, "hook") == 1)
        sinks.submit(make_alert())
        await eventually(lambda: sample(metrics, DROPPED, "hook") == 1)
    assert sample(metrics, DELIVERIES_TIMED, "hook") == 2
    assert sample(metrics, FAILED, "hook") == 2  # the 500 and the 404
    assert sample(metrics, "detector_sink_delivery_seconds_sum", "hook") >= 0.3
    faster_than_the_slow_reply = metrics.registry.get_sample_value(
        "detector_sink_delivery_seconds_bucket", {"sink": "hook", "le": "0.25"})
    assert faster_than_the_slow_reply is not None and faster_than_the_slow_reply <= 1


async def test_retry_after_on_429_is_honoured(
    receiver: ReceiverFactory, metrics: Metrics
) -> None:
    server = await receiver([Reply(429, headers={"Retry-After": "1"})])
    async with SinkSet([webhook("hook", server.url(), metrics)]) as sinks:
        sinks.submit(make_alert())
        first, second = await server.wait_for(2)
    # Without the header the backoff would be at most FAST.max_delay (0.05 s).
    assert second.at - first.at >= 0.95
    assert sample(metrics, SENT, "hook") == 1


async def test_retry_after_is_bounded_by_max_retry_after(
    receiver: ReceiverFactory, metrics: Metrics
) -> None:
    server = await receiver([Reply(503, headers={"Retry-After": "86400"})])
    policy = RetryPolicy(base_delay=0.01, max_delay=0.05, max_attempts=2, max_retry_after=0.1)
    async with SinkSet([webhook("hook", server.url(), metrics, retry=policy)]) as sinks:
        sinks.submit(make_alert())
        await server.wait_for(2, timeout=5.0)
        await eventually(lambda: sample(metrics, SENT, "hook") == 1)


async def test_a_slow_sink_stalls_neither_submit_nor_the_other_sinks(
    receiver: ReceiverFactory, metrics: Metrics
) -> None:
    slow = await receiver(default=Reply(200, delay=3.0))
    fast = await receiver()
    policy = RetryPolicy(base_delay=0.01, max_delay=0.05, max_attempts=2, timeout=0.3)
    sinks = SinkSet(
        [
            webhook("slow", slow.url(), metrics, retry=policy),
            webhook("fast", fast.url(), metrics, retry=policy),
        ]
    )
    async with sinks:
        for _ in range(5):
            assert sinks.submit(make_alert()) == 2
        await fast.wait_for(5)
        await eventually(lambda: sample(metrics, SENT, "fast") == 5)
        # Each slow alert costs two 0.3 s timeouts: the fast sink finished long before.
        assert sample(metrics, DROPPED, "slow") < 5
        assert sample(metrics, QUEUED, "slow") >= 1
        # The slow sink times out each attempt: counted as failures, then dropped.
        await eventually(lambda: sample(metrics, DROPPED, "slow") >= 1)
        assert sample(metrics, FAILED, "slow") >= policy.max_attempts
    assert sample(metrics, SENT, "slow") == 0
    assert sample(metrics, DROPPED, "slow") == 5
    assert sample(metrics, DROPPED, "fast") == 0


async def test_an_unreachable_sink_is_retried_then_dropped(metrics: Metrics) -> None:
    sink = webhook("dead", "http://127.0.0.1:9/", metrics)
    async with SinkSet([sink]) as sinks:
        sinks.submit(make_alert())
        await eventually(lambda: sample(metrics, DROPPED, "dead") == 1)
    assert sample(metrics, FAILED, "dead") == FAST.max_attempts


async def test_a_full_queue_drops_counts_and_warns_without_blocking(
    receiver: ReceiverFactory, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    server = await receiver()
    sinks = SinkSet([webhook("hook", server.url(), metrics, queue_size=2)])
    results = [sinks.submit(make_alert()) for _ in range(5)]
    assert results == [1, 1, 0, 0, 0]
    assert sample(metrics, DROPPED, "hook") == 3
    assert sample(metrics, QUEUED, "hook") == 2
    assert "sink hook: dropped 1 alert(s): queue full (2 alerts)" in caplog.text
    # One warning per interval, not one per dropped alert.
    assert caplog.text.count("queue full") == 1
    async with sinks:
        await server.wait_for(2)
        await eventually(lambda: sample(metrics, SENT, "hook") == 2)
    assert sample(metrics, QUEUED, "hook") == 0


async def test_routing_decides_which_sinks_queue_an_alert(
    receiver: ReceiverFactory, metrics: Metrics
) -> None:
    pager_server, chat_server = await receiver(), await receiver()
    pager = webhook("pager", pager_server.url(), metrics, route=Route(min_level="critical"))
    chat = webhook("chat", chat_server.url(), metrics, route=Route(include_tags=("attack.*",)))
    async with SinkSet([pager, chat]) as sinks:
        assert sinks.submit(make_alert(level="high")) == 1
        assert sinks.submit(make_alert(level="critical", tags=())) == 1
        assert sinks.submit(make_alert(level="low", tags=("compliance",))) == 0
        await pager_server.wait_for(1)
        await chat_server.wait_for(1)
        await asyncio.sleep(0.1)
    assert pager_server.requests[0].json()["rule"]["level"] == "critical"
    assert chat_server.requests[0].json()["rule"]["level"] == "high"
    assert len(pager_server.requests) == len(chat_server.requests) == 1
    # Filtered alerts are not drops.
    assert sample(metrics, DROPPED, "pager") == sample(metrics, DROPPED, "chat") == 0


async def test_close_drains_the_queue_before_stopping(
    receiver: ReceiverFactory, metrics: Metrics
) -> None:
    server = await receiver(default=Reply(200, delay=0.05))
    sinks = SinkSet([webhook("hook", server.url(), metrics)])
    await sinks.start()
    for _ in range(4):
        sinks.submit(make_alert())
    await sinks.close(timeout=5.0)
    assert len(server.requests) == 4
    assert sample(metrics, SENT, "hook") == 4


async def test_close_gives_up_after_its_timeout_and_counts_what_is_left(
    receiver: ReceiverFactory, metrics: Metrics
) -> None:
    server = await receiver(default=Reply(500))
    slow_retries = RetryPolicy(base_delay=30, max_delay=30, max_attempts=5, timeout=1.0)
    sinks = SinkSet([webhook("hook", server.url(), metrics, retry=slow_retries)])
    await sinks.start()
    for _ in range(3):
        sinks.submit(make_alert())
    await server.wait_for(1)
    await asyncio.wait_for(sinks.close(timeout=0.2), 2.0)
    assert sample(metrics, DROPPED, "hook") == 3
    assert sample(metrics, DELIVERIES_TIMED, "hook") == 0  # cut short: neither done nor failed
    assert sinks.submit(make_alert()) == 0
    assert sample(metrics, DROPPED, "hook") == 4


async def test_alerts_queued_before_start_are_delivered_after_start(
    receiver: ReceiverFactory, metrics: Metrics
) -> None:
    server = await receiver()
    sinks = SinkSet([webhook("hook", server.url(), metrics)])
    sinks.submit(make_alert())
    await asyncio.sleep(0.05)
    assert server.requests == []
    async with sinks:
        await server.wait_for(1)


async def test_secrets_never_reach_the_log(
    receiver: ReceiverFactory, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await receiver(default=Reply(500))
    path_secret, token, key = "T000/B000/pathsecret123", "tok-abcdef-7890", "hmac-key-42"
    failing = WebhookConfig(
        name="failing",
        url=Secret(server.url(f"/hooks/{path_secret}?key=querysecret")),
        token=Secret(token),
        hmac_secret=Secret(key),
        retry=FAST,
        queue_size=1,
    )
    unreachable = WebhookConfig(
        name="unreachable", url=Secret(f"http://127.0.0.1:9/{path_secret}"), retry=FAST
    )
    sinks = SinkSet([WebhookSink(failing, metrics), WebhookSink(unreachable, metrics)])
    async with sinks:
        for _ in range(3):
            sinks.submit(make_alert())
        await eventually(lambda: sample(metrics, DROPPED, "failing") == 3)
        await eventually(lambda: sample(metrics, DROPPED, "unreachable") == 3)
    logged = caplog.text + repr(sinks) + repr(failing)
    assert "failing" in caplog.text and "HTTP 500" in caplog.text
    assert "unreachable" in caplog.text
    for secret in (path_secret, "pathsecret123", "querysecret", token, key):
        assert secret not in logged
    assert "Secret('***')" in repr(failing)


def test_full_jitter_backoff_stays_under_the_exponential_cap() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delays = [policy.delay(attempt, None, rng) for _ in range(200)]
        assert all(0.0 <= delay < ceiling for delay in delays)
        assert max(delays) > ceiling * 0.8  # jitter spans the whole range
    assert policy.delay(1, 42.0, rng) == 42.0
    assert policy.delay(1, 1000.0, rng) == policy.max_retry_after


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_classify_reads_retry_after_only_where_it_means_something() -> None:
    assert classify(204, {}).delivered
    assert classify(429, {"Retry-After": "3"}).retry_after == 3.0
    assert classify(503, {"Retry-After": "3"}).retry_after == 3.0
    assert classify(500, {"Retry-After": "3"}).retry_after is None
    assert not classify(404, {}).retryable


def test_sink_names_must_be_unique_and_label_safe(metrics: Metrics) -> None:
    with pytest.raises(ValueError, match="duplicate sink names: a"):
        SinkSet([webhook("a", "http://x/", metrics), webhook("a", "http://y/", metrics)])
    with pytest.raises(ValueError, match="sink name"):
        webhook("Has Space", "http://x/", metrics)


class FlakySink(Sink):
    """A sink whose first delivery hits a bug (raises); later ones succeed."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__(SinkConfig(name="flaky"), metrics)
        self.calls = 0
        self.delivered: list[Alert] = []

    async def _deliver(self, batch: list[Alert]) -> bool:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("bug in a sink")
        self.delivered.extend(batch)
        return True


async def test_a_sink_that_raises_keeps_consuming(
    metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    sink = FlakySink(metrics)
    first, second = make_alert(), make_alert()
    async with SinkSet([sink]) as sinks:
        sinks.submit(first)
        await eventually(lambda: sample(metrics, DROPPED, "flaky") == 1)
        sinks.submit(second)
        await eventually(lambda: sink.delivered == [second])
    assert "sink flaky: delivery raised RuntimeError: bug in a sink" in caplog.text
    assert sample(metrics, FAILED, "flaky") == 1
    assert sample(metrics, DELIVERIES_TIMED, "flaky") == 2
