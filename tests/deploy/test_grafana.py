"""The Grafana dashboard and alert provisioning: valid PromQL over the worker's real metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.deploy_support import (
    REPO,
    grafana_to_promql,
    metric_names,
    promtool_parse_errors,
    run,
    tool,
)

GRAFANA_DIR = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "detector-dashboard.json"
ALERTING = GRAFANA_DIR / "provisioning" / "alerting" / "detector-alerts.yaml"
DASHBOARD_PROVIDER = GRAFANA_DIR / "provisioning" / "dashboards" / "detector.yaml"
EXPRESSION_DATASOURCE = "__expr__"


def _dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def _panels() -> list[dict[str, Any]]:
    return [panel for panel in _dashboard()["panels"] if panel["type"] != "row"]


def _dashboard_expressions() -> dict[str, str]:
    return {
        f"panel {panel['title']!r} {target['refId']}": target["expr"]
        for panel in _panels()
        for target in panel["targets"]
    }


def _alert_rules() -> list[dict[str, Any]]:
    provisioning = yaml.safe_load(ALERTING.read_text())
    return [rule for group in provisioning["groups"] for rule in group["rules"]]


def _alert_expressions() -> dict[str, str]:
    return {
        f"alert {rule['title']!r} {query['refId']}": query["model"]["expr"]
        for rule in _alert_rules()
        for query in rule["data"]
        if query["datasourceUid"] != EXPRESSION_DATASOURCE
    }


def _all_expressions() -> dict[str, str]:
    return {
        name: grafana_to_promql(expr)
        for name, expr in {**_dashboard_expressions(), **_alert_expressions()}.items()
    }


def test_the_dashboard_picks_its_prometheus_through_a_datasource_variable() -> None:
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in _panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"


def test_the_dashboard_has_a_stable_uid_and_unique_panel_ids() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "cloudtrail-detector"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(
    ("title_fragment", "must_contain"),
    [
        ("messages/s by outcome", "detector_messages_total"),
        ("Alerts by rule and level", "by (rule_id, level)"),
        ("Consumer lag", "detector_consumer_lag_messages"),
        ("Decode errors/s by reason", "by (reason)"),
        ("evaluation latency", "histogram_quantile(0.99"),
        ("evaluation latency", "histogram_quantile(0.5"),
        ("State entries", "detector_state_entries"),
        ("Rule reloads", "detector_rules_last_reload_success"),
        ("Sink deliveries", "detector_sink_dropped_total"),
        ("Event-time lag by state partition", "max by (partition)"),
        ("Event-time lag (max)", "max(detector_event_time_lag_seconds"),
        ("Produce-to-alert latency", "histogram_quantile(0.99"),
        ("Pending stateful decisions", "detector_pending_decisions"),
        ("Sink delivery time", "by (sink, le)"),
        ("Memory per worker", "process_resident_memory_bytes"),
        ("CPU per worker", "rate(process_cpu_seconds_total"),
        ("Versions", "detector_build_info"),
    ],
)
def test_the_dashboard_shows(title_fragment: str, must_contain: str) -> None:
    matching = [p for p in _panels() if title_fragment.lower() in p["title"].lower()]
    assert matching, f"no panel titled like {title_fragment!r}"
    assert any(must_contain in t["expr"] for p in matching for t in p["targets"])


def test_every_metric_the_worker_exports_is_on_the_dashboard(
    known_metric_names: frozenset[str],
) -> None:
    shown = set().union(*(metric_names(e) for e in _dashboard_expressions().values()))
    families = {re.sub(r"_(bucket|sum|count)$", "", name) for name in known_metric_names}
    shown_families = {re.sub(r"_(bucket|sum|count)$", "", name) for name in shown}
    assert families - shown_families == set()


def test_the_provisioning_files_are_grafana_provisioning_v1() -> None:
    for path in (ALERTING, DASHBOARD_PROVIDER):
        assert yaml.safe_load(path.read_text())["apiVersion"] == 1, path.name
    provider = yaml.safe_load(DASHBOARD_PROVIDER.read_text())["providers"][0]
    assert provider["type"] == "file"


def test_every_alert_rule_is_complete_and_its_condition_names_one_of_its_queries() -> None:
    rules = _alert_rules()
    assert rules
    assert len({rule["uid"] for rule in rules}) == len(rules)
    for rule in rules:
        ref_ids = [query["refId"] for query in rule["data"]]
        assert len(ref_ids) == len(set(ref_ids)), rule["title"]
        assert rule["condition"] in ref_ids, rule["title"]
        for query in rule["data"]:
            assert query["model"]["refId"] == query["refId"]
            if query["datasourceUid"] == EXPRESSION_DATASOURCE:
                assert query["model"]["expression"] in ref_ids, rule["title"]
            else:
                assert query["relativeTimeRange"]["from"] > 0
        assert rule["noDataState"] in {"OK", "NoData", "Alerting"}
        assert rule["execErrState"] in {"OK", "Error", "Alerting"}
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert rule["annotations"]["summary"]


def test_every_promql_expression_parses(tmp_path: Path) -> None:
    expressions = _all_expressions()
    assert len(expressions) > 20
    assert promtool_parse_errors(expressions, tmp_path) == ""


def test_expressions_select_only_metrics_the_worker_exports(
    known_metric_names: frozenset[str],
) -> None:
    for name, expr in _all_expressions().items():
        used = metric_names(expr)
        assert used, f"{name} selects no metric"
        assert used <= known_metric_names, (name, used - known_metric_names)


def test_the_job_variable_lists_jobs_of_a_real_metric(known_metric_names: frozenset[str]) -> None:
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    match = re.fullmatch(r"label_values\((\w+), job\)", variables["job"]["definition"])
    assert match is not None
    assert match.group(1) in known_metric_names


PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
COMPARISONS = {"gt": ">", "lt": "<"}


def _prometheus_rules() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS_DIR / "detector-rules.yml").read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def _as_prometheus_rule(rule: dict[str, Any], twin: dict[str, Any]) -> dict[str, Any]:
    """The Grafana rule's condition as a Prometheus alert under its twin's name, labels and
    annotations: what it fires on is then all that can differ."""
    (query,) = [q for q in rule["data"] if q["datasourceUid"] != EXPRESSION_DATASOURCE]
    threshold = next(q["model"] for q in rule["data"] if q["model"].get("type") == "threshold")
    assert threshold["refId"] == rule["condition"]
    (condition,) = threshold["conditions"]
    comparison = COMPARISONS[condition["evaluator"]["type"]]
    (limit,) = condition["evaluator"]["params"]
    converted = {
        "alert": twin["alert"],
        "expr": f"({grafana_to_promql(query['model']['expr'])}) {comparison} {limit}",
        "labels": twin["labels"],
        "annotations": twin["annotations"],
    }
    if rule["for"] not in ("0s", "0m", "0"):
        converted["for"] = rule["for"]
    return converted


def test_every_grafana_alert_names_its_prometheus_twin() -> None:
    twins = [rule["annotations"].get("prometheus_alert") for rule in _alert_rules()]
    assert None not in twins
    assert set(twins) <= set(_prometheus_rules())
    assert len(twins) == len(set(twins))


def test_each_twin_pair_is_compared_on_both_sides_of_its_threshold() -> None:
    """A threshold or pending period that differs between the twins shows only where a case
    sits between the two: so every twin has a case that fires and one that stays quiet."""
    twins = {rule["annotations"]["prometheus_alert"] for rule in _alert_rules()}
    firing, quiet = set(), set()
    for unit_test in sorted((PROMETHEUS_DIR / "tests").glob("*.yml")):
        for case in yaml.safe_load(unit_test.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert twins - firing == set(), "twins never seen firing"
    assert twins - quiet == set(), "twins never seen quiet"


def test_grafana_alerts_fire_when_their_prometheus_twins_do(tmp_path: Path) -> None:
    """The Prometheus rules' promtool tests, run against the Grafana queries, thresholds and
    pending periods: same firing times, same label sets, same values."""
    prometheus = _prometheus_rules()
    converted = [
        _as_prometheus_rule(rule, prometheus[rule["annotations"]["prometheus_alert"]])
        for rule in _alert_rules()
    ]
    names = {rule["alert"] for rule in converted}
    (tmp_path / "grafana.rules.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "grafana", "rules": converted}]})
    )
    cases = []
    for unit_test in sorted((PROMETHEUS_DIR / "tests").glob("*.yml")):
        for case in yaml.safe_load(unit_test.read_text())["tests"]:
            checks = [c for c in case.get("alert_rule_test", []) if c["alertname"] in names]
            if checks:
                cases.append({**case, "alert_rule_test": checks})
    assert {c["alertname"] for case in cases for c in case["alert_rule_test"]} == names
    (tmp_path / "grafana.test.yml").write_text(
        yaml.safe_dump(
            {"rule_files": ["grafana.rules.yml"], "evaluation_interval": "1m", "tests": cases}
        )
    )
    result = run([tool("promtool"), "test", "rules", "grafana.test.yml"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
