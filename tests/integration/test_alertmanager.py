"""Our Alertmanager sink against a real Alertmanager (Debian package prometheus-alertmanager).

Alertmanager runs on loopback with a config that routes everything to a webhook receiver in
this test, so what arrives there is what Alertmanager made of our alerts.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kafka_broker import free_port
from prometheus_client import CollectorRegistry
from sinks.builders import make_alert
from sinks.http_receiver import Receiver

from detector.metrics import Metrics
from detector.sinks import AlertmanagerConfig, AlertmanagerSink, RetryPolicy, Secret, SinkSet

pytestmark = pytest.mark.alertmanager

BINARY = "prometheus-alertmanager"
PACKAGE = "prometheus-alertmanager"
CONFIG = """
route:
  receiver: test
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: test
    webhook_configs:
      - url: {url}
        send_resolved: false
"""


@pytest.fixture
async def webhook() -> AsyncIterator[Receiver]:
    server = await Receiver().start()
    yield server
    await server.close()


@pytest.fixture
async def alertmanager(tmp_path: Path, webhook: Receiver) -> AsyncIterator[str]:
    """A running Alertmanager's base URL; always stopped afterwards."""
    binary = shutil.which(BINARY)
    if binary is None:
        pytest.fail(
            f"{BINARY} not found: install the Debian package {PACKAGE} "
            f"(apt-get install -y {PACKAGE}) to run this test",
            pytrace=False,
        )
    config = tmp_path / "alertmanager.yml"
    config.write_text(CONFIG.format(url=webhook.url("/alertmanager")))
    port = free_port()
    log_path = tmp_path / "alertmanager.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        await _wait_ready(url, process, log_path)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    async with aiohttp.ClientSession() as session:
        while loop.time() < deadline:
            if process.poll() is not None:
                pytest.fail(f"alertmanager exited:\n{log_path.read_text()[-2000:]}")
            try:
                async with session.get(f"{url}/-/ready") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    pytest.fail(f"alertmanager not ready after 30s:\n{log_path.read_text()[-2000:]}")


async def _notified_alerts(webhook: Receiver, count: int, timeout: float = 30.0) -> list[Any]:
    """Alerts Alertmanager has notified so far, once at least `count` have arrived."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        alerts = [alert for request in webhook.requests for alert in request.json()["alerts"]]
        if len(alerts) >= count or loop.time() > deadline:
            return alerts
        await asyncio.sleep(0.2)


async def test_alertmanager_receives_our_alerts_with_our_labels(
    alertmanager: str, webhook: Receiver
) -> None:
    metrics = Metrics(CollectorRegistry())
    config = AlertmanagerConfig(
        name="alertmanager",
        url=Secret(alertmanager),
        retry=RetryPolicy(base_delay=0.1, max_delay=1.0, max_attempts=5, timeout=5.0),
    )
    sent = [
        make_alert(level="critical"),
        make_alert(level="high", region="us-east-1", account_id="444455556666"),
    ]
    async with SinkSet([AlertmanagerSink(config, metrics)]) as sinks:
        for alert in sent:
            assert sinks.submit(alert) == 1
        notified = await _notified_alerts(webhook, len(sent))
    assert metrics.registry.get_sample_value(
        "detector_sink_deliveries_total", {"sink": "alertmanager"}
    ) == len(sent)
    assert webhook.requests[0].path == "/alertmanager"
    by_id = {alert["labels"]["alert_id"]: alert for alert in notified}
    assert set(by_id) == {alert.id for alert in sent}
    for alert in sent:
        received = by_id[alert.id]
        event = alert.events[0]
        assert received["status"] == "firing"
        assert received["labels"] == {
            "alertname": "KinesisVideoStreamDeleted",
            "severity": alert.level,
            "category": "detection",
            "rule_id": alert.rule_id,
            "kind": "single",
            "alert_id": alert.id,
            "account_id": event.account_id,
            "region": event.region,
            "event_source": "kinesisvideo.amazonaws.com",
        }
        assert received["annotations"]["summary"] == alert.text
        assert received["annotations"]["principal"] == event.principal_arn
        assert received["annotations"]["source_ip"] == event.source_ip
        assert datetime.fromisoformat(received["startsAt"]) == datetime.fromisoformat(
            alert.event_time
        )
        assert received["generatorURL"].startswith(f"https://{event.region}.console.aws")
