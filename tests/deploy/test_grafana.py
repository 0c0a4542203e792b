"""The Grafana dashboard and alert provisioning: valid PromQL over the worker's real metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.deploy_support import REPO, grafana_to_promql, metric_names, promtool_parse_errors

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
