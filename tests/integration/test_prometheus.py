"""A real Prometheus scrapes a worker fed with the Kinesis Video intruder scenario, evaluates
deploy/prometheus/detector-rules.yml, and the detection alerts fire; every PromQL expression
we ship (alert rules, dashboard, Grafana alerting) selects only series the worker exposes."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from deploy.deploy_support import grafana_to_promql, metric_names
from kafka_broker import KafkaBroker
from prometheus_server import PrometheusServer, running_prometheus

from integration.worker_support import REPO, WorkerProcess, read_topic, replay, unique

pytestmark = [pytest.mark.integration, pytest.mark.prometheus]

SCENARIO = REPO / "examples" / "scenarios" / "kinesisvideo-intruder.jsonl"
ALERT_RULES = REPO / "deploy" / "prometheus" / "detector-rules.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "detector-dashboard.json"
GRAFANA_ALERTS = REPO / "deploy" / "grafana" / "provisioning" / "alerting" / "detector-alerts.yaml"
FROM_PROMETHEUS = {"up", "ALERTS"}


def exposed_names(metrics_text: str) -> set[str]:
    """Every sample name a scrape can carry, from the families the worker declares."""
    names = set()
    for match in re.finditer(r"^# TYPE (\S+) (\S+)$", metrics_text, re.MULTILINE):
        family, kind = match.groups()
        names.add(family)
        if kind == "histogram":
            names |= {f"{family}_bucket", f"{family}_sum", f"{family}_count"}
        if kind == "counter":
            names |= {f"{family}_total", f"{family}_created"}
    return names


def shipped_expressions() -> dict[str, str]:
    expressions: dict[str, str] = {}
    for group in yaml.safe_load(ALERT_RULES.read_text())["groups"]:
        for rule in group["rules"]:
            expressions[f"prometheus rule {rule['alert']}"] = rule["expr"]
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            expressions[f"panel {panel['title']} {target.get('refId')}"] = target["expr"]
    for group in yaml.safe_load(GRAFANA_ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            for query in rule["data"]:
                expr = query.get("model", {}).get("expr")
                if expr:
                    expressions[f"grafana rule {rule['title']} {query['refId']}"] = expr
    return {name: grafana_to_promql(expr) for name, expr in expressions.items()}


@pytest.fixture
def fed_worker(kafka_broker: KafkaBroker,
               workers: Callable[..., WorkerProcess]) -> WorkerProcess:
    topic = unique("prom-in")
    kafka_broker.create_topic(topic, partitions=2)
    worker = workers(kafka_broker, group=unique("prom"), input_topic=topic,
                     rules=(REPO / "rules",), extra=["--state-partitions", "2"])
    worker.wait_ready()
    replay(kafka_broker, topic, SCENARIO, options=["--sort"])
    read_topic(kafka_broker, worker.alerts_topic, lambda found: len(found) >= 10, settle=2.0)
    return worker


@pytest.fixture
def prometheus(tmp_path: Path, fed_worker: WorkerProcess) -> Iterator[PrometheusServer]:
    with running_prometheus(tmp_path / "prometheus", f"127.0.0.1:{fed_worker.port}",
                            [ALERT_RULES]) as server:
        yield server


def test_prometheus_scrapes_the_worker_and_the_detection_alert_fires(
    fed_worker: WorkerProcess, prometheus: PrometheusServer
) -> None:
    prometheus.wait_for("the worker to be scraped",
                        lambda: prometheus.query('up{job="detector"} == 1'))
    firing = prometheus.wait_for(
        "a detection alert to fire",
        lambda: [a for a in prometheus.firing()
                 if a["labels"]["alertname"] in ("DetectorCriticalDetection",
                                                 "DetectorHighDetection")],
    )
    rule_ids = {alert["labels"]["rule_id"] for alert in firing}
    alerted = prometheus.query("sum by (rule_id) (detector_alerts_total)")
    assert rule_ids <= {series["metric"]["rule_id"] for series in alerted}
    health = {a["labels"]["alertname"] for a in prometheus.firing()
              if a["labels"].get("category") == "health"}
    assert health == set(), f"health alerts firing on a healthy worker: {health}"


def test_every_shipped_expression_selects_series_the_worker_exposes(
    fed_worker: WorkerProcess,
) -> None:
    code, body = fed_worker.get("/metrics")
    assert code == 200
    exposed = exposed_names(body.decode()) | FROM_PROMETHEUS
    expressions = shipped_expressions()
    assert len(expressions) > 20
    for name, expr in expressions.items():
        missing = metric_names(expr) - exposed
        assert not missing, f"{name} selects {sorted(missing)}, which the worker does not expose"
