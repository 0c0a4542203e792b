"""Offline validation of the rendered manifests: API schemas, CRD schemas and checkov."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from deploy.deploy_support import CRD_MODELS, Rendered, checkov, crd_schema, run, tool

KUBERNETES_VERSION = "1.37.0"
CUSTOM_KINDS = tuple(CRD_MODELS)
# Every render has these; the autoscaled overlay also has KEDA's.
EVERYWHERE = ("ServiceMonitor", "PrometheusRule")


def test_every_builtin_resource_passes_strict_schema_validation(
    rendered: Rendered, tmp_path: Path
) -> None:
    builtin = [doc for doc in rendered.documents if doc["kind"] not in CUSTOM_KINDS]
    path = tmp_path / "builtin.yaml"
    path.write_text(yaml.safe_dump_all(builtin))
    result = run(
        [tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, str(path)],
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARN" not in output and "ERROR" not in output, output
    assert output.count("passed for resource") == len(builtin), output


@pytest.fixture(scope="module", params=EVERYWHERE)
def custom_kind(request: pytest.FixtureRequest) -> tuple[str, jsonschema.Draft202012Validator]:
    kind: str = request.param
    return kind, jsonschema.Draft202012Validator(crd_schema(kind))


def test_prometheus_operator_resources_match_their_crd_schema(
    rendered: Rendered, custom_kind: tuple[str, jsonschema.Draft202012Validator]
) -> None:
    kind, validator = custom_kind
    resources = [doc for doc in rendered.documents if doc["kind"] == kind]
    assert len(resources) == 1
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(resources[0])]
    assert errors == []


def test_the_crd_schema_check_rejects_a_misspelt_field(
    rendered: Rendered, custom_kind: tuple[str, jsonschema.Draft202012Validator]
) -> None:
    kind, validator = custom_kind
    (resource,) = [doc for doc in rendered.documents if doc["kind"] == kind]
    broken = {**resource, "spec": {**resource["spec"], "endpoint": []}}
    assert not validator.is_valid(broken)


def test_checkov_finds_no_failed_check_and_every_skip_is_explained(rendered: Rendered) -> None:
    report = checkov(rendered.path, "kubernetes")
    results = report["results"]
    failed = [(c["check_id"], c["check_name"], c["resource"]) for c in results["failed_checks"]]
    assert failed == []
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 50, "checkov did not read the manifests"
    for check in results.get("skipped_checks", []):
        reason = check["check_result"].get("suppress_comment") or ""
        assert len(reason) >= 40, f"{check['check_id']} is skipped without a real reason"


@pytest.mark.parametrize("kind", ["ScaledObject", "TriggerAuthentication"])
def test_keda_resources_match_their_crd_schema(autoscaled: Rendered, kind: str) -> None:
    validator = jsonschema.Draft202012Validator(crd_schema(kind))
    (resource,) = [doc for doc in autoscaled.documents if doc["kind"] == kind]
    assert [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(resource)] == []
    broken = {**resource, "spec": {**resource["spec"], "minReplicas": 2}}
    assert not validator.is_valid(broken)
