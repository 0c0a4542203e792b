"""Shared fixtures of the deployment checks: rendered manifests and the metric catalogue."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from deploy.deploy_support import REPO, Rendered, kustomize
from detector.metrics import Metrics

BASE_DIR = REPO / "deploy" / "k8s" / "base"
PRODUCTION_DIR = REPO / "deploy" / "k8s" / "overlays" / "production"
AUTOSCALED_DIR = REPO / "deploy" / "k8s" / "overlays" / "production-autoscaled"


def _render(directory: Path, tmp: Path) -> Rendered:
    text = kustomize(directory)
    path = tmp / f"{directory.name}.yaml"
    path.write_text(text)
    return Rendered(text, path)


@pytest.fixture(scope="session")
def base(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """The kustomize base, rendered."""
    return _render(BASE_DIR, tmp_path_factory.mktemp("render-base"))


@pytest.fixture(scope="session")
def production(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """The production overlay, rendered."""
    return _render(PRODUCTION_DIR, tmp_path_factory.mktemp("render-production"))


@pytest.fixture(scope="session")
def autoscaled(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """Production with the KEDA ScaledObject, rendered."""
    return _render(AUTOSCALED_DIR, tmp_path_factory.mktemp("render-autoscaled"))


@pytest.fixture(scope="session", params=["base", "production", "autoscaled"])
def rendered(request: pytest.FixtureRequest) -> Rendered:
    """Each render in turn, for checks that hold for every environment."""
    result: Rendered = request.getfixturevalue(request.param)
    return result


@pytest.fixture(scope="session")
def known_metric_names() -> frozenset[str]:
    """Every series name the worker exposes (as Prometheus stores it), plus `up`."""
    registry = CollectorRegistry()
    Metrics(registry)
    suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}
    names = {"up"}
    for family in registry.collect():
        names.update(family.name + suffix for suffix in suffixes[family.type])
    return frozenset(names)
