"""The PromQL metric-name reader the other checks rely on."""

from __future__ import annotations

import pytest

from deploy.deploy_support import grafana_to_promql, metric_names


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("up == 0", {"up"}),
        (
            'sum by (rule_id, level) (increase(detector_alerts_total{level="x"}[5m]))',
            {"detector_alerts_total"},
        ),
        ("histogram_quantile(0.99, sum by (le) (rate(a_bucket[5m])))", {"a_bucket"}),
        ("a / clamp_min(b, 1e-9) > 0.05", {"a", "b"}),
        ('x unless x offset 5m or on (pod) group_left (node) y{job="j"}', {"x", "y"}),
        ('absent(up{job="detector", instance=~"a(b)"})', {"up"}),
        ("sum without (instance) (rate(c_total[$__rate_interval]))", {"c_total"}),
    ],
)
def test_metric_names_finds_selected_series_only(expr: str, expected: set[str]) -> None:
    assert metric_names(grafana_to_promql(expr)) == expected


def test_grafana_variables_become_plain_promql() -> None:
    expr = 'rate(x{job="$job"}[$__rate_interval])'
    assert grafana_to_promql(expr) == 'rate(x{job="detector"}[5m])'
