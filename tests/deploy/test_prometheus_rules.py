"""The Prometheus alerting rules: valid, unit-tested, and the same rules kube-prometheus-stack
gets through the PrometheusRule."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sinks.builders import make_alert

from deploy.deploy_support import REPO, Rendered, metric_names, only, run, tool
from detector.sinks import AlertmanagerConfig, Secret
from detector.sinks.alertmanager import alertmanager_alert

PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
RULES_FILE = PROMETHEUS_DIR / "detector-rules.yml"
UNIT_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
ALERTMANAGER_EXAMPLE = PROMETHEUS_DIR / "alertmanager-example.yml"


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_accepts_the_rules() -> None:
    result = run([tool("promtool"), "check", "rules", str(RULES_FILE)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


@pytest.mark.parametrize("unit_test", UNIT_TESTS, ids=lambda path: path.name)
def test_promtool_unit_tests_pass(unit_test: Path) -> None:
    result = run([tool("promtool"), "test", "rules", unit_test.name], cwd=unit_test.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_that_sees_it_fire() -> None:
    fired = set()
    for unit_test in UNIT_TESTS:
        for case in yaml.safe_load(unit_test.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    fired.add(check["alertname"])
    alerts = {rule["alert"] for rule in _rules()}
    assert alerts - fired == set(), "alerts without a firing promtool test"


def test_every_alert_has_a_severity_a_category_and_text() -> None:
    for rule in _rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["labels"]["category"] in {"detection", "health", "input", "sink"}
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert len(rule["annotations"]["description"]) > 40, rule["alert"]


def test_rules_select_only_metrics_the_worker_exports(known_metric_names: frozenset[str]) -> None:
    for rule in _rules():
        names = metric_names(rule["expr"])
        assert names, f"{rule['alert']} selects no metric"
        assert names <= known_metric_names, (rule["alert"], names - known_metric_names)


def test_the_prometheusrule_carries_exactly_these_rules(rendered: Rendered) -> None:
    resource = only(rendered.documents, "PrometheusRule", "detector")
    assert resource["spec"]["groups"] == yaml.safe_load(RULES_FILE.read_text())["groups"]


def test_the_example_alertmanager_config_is_valid() -> None:
    result = run([tool("amtool"), "check-config", str(ALERTMANAGER_EXAMPLE)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (
            ["alertname=DetectorCriticalDetection", "category=detection", "severity=critical"],
            "security-critical",
        ),
        (["alertname=DetectorHighDetection", "category=detection", "severity=warning"], "security"),
        (["alertname=DetectorDown", "category=health", "severity=critical"], "platform-page"),
        (["alertname=DetectorSinkFailing", "category=sink", "severity=warning"], "platform"),
    ],
)
def test_the_example_routes_detections_to_security_and_health_to_platform(
    labels: list[str], receiver: str
) -> None:
    assert _route(labels) == receiver


def _receiver_for(labels: dict[str, str]) -> str:
    """Where the example means to send an alert: detections to security (critical ones at
    once), the rest to the platform team (critical ones paging)."""
    critical = labels["severity"] == "critical"
    if labels["category"] == "detection":
        return "security-critical" if critical else "security"
    return "platform-page" if critical else "platform"


@pytest.mark.parametrize("rule", _rules(), ids=lambda rule: rule["alert"])
def test_the_example_routes_every_shipped_alert_by_its_labels(rule: dict[str, Any]) -> None:
    labels = {"alertname": rule["alert"], **rule["labels"]}
    assert _route([f"{name}={value}" for name, value in labels.items()]) == _receiver_for(labels)


@pytest.mark.parametrize(
    ("level", "receiver"),
    [
        ("critical", "security-critical"),
        ("high", "security"),
        ("medium", "security"),
        ("low", "security"),
        ("informational", "security"),
    ],
)
def test_the_example_routes_what_the_alertmanager_sink_sends(level: str, receiver: str) -> None:
    config = AlertmanagerConfig(name="am", url=Secret("http://alertmanager:9093"))
    posted = alertmanager_alert(make_alert(level=level), config, datetime.now(UTC))
    labels = [f"{name}={json.dumps(value)}" for name, value in posted["labels"].items()]
    assert _route(labels) == receiver


def _route(labels: list[str]) -> str:
    """The receiver the example config picks for an alert with these labels."""
    result = run(
        [
            tool("amtool"),
            "config",
            "routes",
            "test",
            f"--config.file={ALERTMANAGER_EXAMPLE}",
            *labels,
        ]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()
