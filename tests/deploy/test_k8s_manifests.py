"""What the kustomize base and the production overlay put in a cluster."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import detector.settings.sinks as sink_settings
from deploy.deploy_support import (
    ANNOTATIONS_LIMIT,
    REPO,
    Rendered,
    annotation_bytes_after_client_side_apply,
    only,
    run,
)
from detector.settings.model import namings
from detector.settings.worker import WorkerSettings

RULE_FOLDERS = sorted(path.name for path in (REPO / "rules").iterdir() if path.is_dir())
# The worker's configuration surface, from the code that reads it: a ConfigMap key outside it
# is a typo, and a secret value in it would be readable by anyone who can read ConfigMaps.
KNOWN_SETTINGS = (
    {name for option in namings(WorkerSettings)
     for name in ((option.env, option.file_env) if option.secret else (option.env,))}
    | sink_settings.known_variables()
)
SECRET_SETTINGS = {
    option.env for option in namings(WorkerSettings) if option.secret
} | sink_settings.secret_variables()
SECRETS_DIR = "/etc/detector/secrets"
POD_LABELS = {"app.kubernetes.io/name": "detector", "app.kubernetes.io/component": "worker"}


def _pod(rendered: Rendered) -> dict[str, Any]:
    spec: dict[str, Any] = only(rendered.documents, "Deployment", "detector")["spec"]["template"]
    return spec


def _container(rendered: Rendered) -> dict[str, Any]:
    (container,) = _pod(rendered)["spec"]["containers"]
    return dict(container)


def _config(rendered: Rendered) -> dict[str, str]:
    data: dict[str, str] = only(rendered.documents, "ConfigMap", "detector-config")["data"]
    return data


def _mounts(rendered: Rendered) -> dict[str, dict[str, Any]]:
    return {mount["mountPath"]: mount for mount in _container(rendered)["volumeMounts"]}


def _volumes(rendered: Rendered) -> dict[str, dict[str, Any]]:
    return {volume["name"]: volume for volume in _pod(rendered)["spec"]["volumes"]}


def _quantity(value: str | int) -> float:
    """CPU cores or bytes of a Kubernetes quantity (the suffixes these manifests use)."""
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def test_the_generated_manifests_are_up_to_date() -> None:
    result = run([str(REPO / ".venv" / "bin" / "python"), "scripts/gen-prometheusrule", "--check"])
    assert result.returncode == 0, result.stderr


def test_every_resource_lives_in_the_detector_namespace(rendered: Rendered) -> None:
    for doc in rendered.documents:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "detector", doc["metadata"]["name"]
    namespace = only(rendered.documents, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_the_base_runs_two_workers_of_the_pinned_image(base: Rendered) -> None:
    deployment = only(base.documents, "Deployment", "detector")
    assert deployment["spec"]["replicas"] == 2
    container = _container(base)
    assert container["command"] == ["detector", "worker"]


def test_the_image_is_pinned_by_tag_and_digest(rendered: Rendered) -> None:
    image = _container(rendered)["image"]
    assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", image), image
    assert ":latest@" not in image
    assert _container(rendered)["imagePullPolicy"] == "IfNotPresent"


def test_settings_come_from_the_configmap_and_secrets_only_from_files(rendered: Rendered) -> None:
    container = _container(rendered)
    config_name = only(rendered.documents, "ConfigMap", "detector-config")["metadata"]["name"]
    assert container["envFrom"] == [{"configMapRef": {"name": config_name}}]
    assert "env" not in container, "secrets as environment variables leak into /proc and dumps"
    mount = _mounts(rendered)[SECRETS_DIR]
    assert mount["readOnly"] is True
    secret = _volumes(rendered)[mount["name"]]["secret"]
    assert secret["secretName"] == "detector-secrets"
    assert secret["defaultMode"] == 0o440


def test_every_file_setting_names_a_file_in_a_mounted_secret(rendered: Rendered) -> None:
    mounts, volumes = _mounts(rendered), _volumes(rendered)
    for key, value in _config(rendered).items():
        if not key.endswith("_FILE"):
            continue
        directory = str(Path(value).parent)
        assert directory in mounts, f"{key}={value} is in no mounted directory"
        assert "secret" in volumes[mounts[directory]["name"]], f"{key} must come from a Secret"


def test_the_base_runs_without_a_secret_and_production_requires_it(
    base: Rendered, production: Rendered
) -> None:
    def optional(rendered: Rendered) -> bool:
        volume = _volumes(rendered)[_mounts(rendered)[SECRETS_DIR]["name"]]
        return bool(volume["secret"].get("optional", False))

    assert optional(base) is True
    assert optional(production) is False


def test_the_configmap_sets_only_known_non_secret_settings(rendered: Rendered) -> None:
    config = _config(rendered)
    assert set(config) <= KNOWN_SETTINGS, set(config) - KNOWN_SETTINGS
    assert not set(config) & SECRET_SETTINGS
    assert config["DETECTOR_DATA_DIR"] == "/var/lib/detector"
    assert config["DETECTOR_RULES_DIR"] == "/etc/detector/rules"
    assert config["DETECTOR_LISTS_DIR"] == "/etc/detector/rules/lists"
    assert config["DETECTOR_WEB_PORT"] == "6066"


def test_probes_mean_alive_and_ready_on_the_named_web_port(rendered: Rendered) -> None:
    container = _container(rendered)
    assert container["ports"] == [{"name": "web", "containerPort": 6066, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "web"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "web"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "web"}


def test_the_pod_is_locked_down(rendered: Rendered) -> None:
    pod = _pod(rendered)["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = _container(rendered)["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == 10001
    assert context["capabilities"] == {"drop": ["ALL"]}
    account = only(rendered.documents, "ServiceAccount", "detector")
    assert account["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "detector"


def test_writable_paths_are_emptydirs(rendered: Rendered) -> None:
    mounts, volumes = _mounts(rendered), _volumes(rendered)
    for path in ("/var/lib/detector", "/tmp"):
        assert "emptyDir" in volumes[mounts[path]["name"]], path
        assert not mounts[path].get("readOnly", False)


def test_workers_spread_over_zones_and_nodes_and_stop_gracefully(rendered: Rendered) -> None:
    pod = _pod(rendered)["spec"]
    assert pod["terminationGracePeriodSeconds"] == 60
    spreads = {spread["topologyKey"]: spread for spread in pod["topologySpreadConstraints"]}
    assert set(spreads) == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    for spread in spreads.values():
        assert spread["labelSelector"]["matchLabels"] == POD_LABELS
        assert spread["maxSkew"] == 1
        # A lost zone or a cluster without zone labels must never block scheduling.
        assert spread["whenUnsatisfiable"] == "ScheduleAnyway"
    assert _pod(rendered)["metadata"]["labels"] == POD_LABELS
    resources = _container(rendered)["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind])


def _shipped_files(folder: str) -> dict[str, str]:
    return {
        path.name: path.read_text()
        for path in sorted((REPO / "rules" / folder).iterdir())
        if path.is_file() and not path.name.startswith(".")
    }


@pytest.mark.parametrize("folder", RULE_FOLDERS)
def test_each_rule_folder_is_mounted_as_one_directory_of_its_configmaps(
    rendered: Rendered, folder: str
) -> None:
    configmaps = [
        doc
        for doc in rendered.documents
        if doc["kind"] == "ConfigMap"
        and doc["metadata"]["labels"].get("detector.io/rules") == folder
    ]
    assert configmaps, f"no ConfigMap for rules/{folder}: run scripts/gen-prometheusrule"
    keys = [key for configmap in configmaps for key in configmap.get("data", {})]
    assert len(keys) == len(set(keys)), "a rule file is in two ConfigMaps of its folder"
    data = {key: value for configmap in configmaps for key, value in configmap["data"].items()}
    assert data == _shipped_files(folder), "rules/ changed: run scripts/gen-prometheusrule"
    mount = _mounts(rendered)[f"/etc/detector/rules/{folder}"]
    assert "subPath" not in mount, "subPath mounts never see ConfigMap updates"
    assert mount["readOnly"] is True
    sources = _volumes(rendered)[mount["name"]]["projected"]["sources"]
    # Stable names (no hash suffix): updated in place, they reach pods by the symlink swap.
    assert [source["configMap"]["name"] for source in sources] == [
        configmap["metadata"]["name"] for configmap in configmaps
    ]


def test_no_rule_folder_has_subfolders() -> None:
    for folder in RULE_FOLDERS:
        nested = [path for path in (REPO / "rules" / folder).iterdir() if path.is_dir()]
        assert nested == [], f"a ConfigMap cannot hold subfolders: {nested}"


def test_every_object_survives_client_side_apply(rendered: Rendered) -> None:
    """`kubectl apply` (and Argo CD's default sync) stores each object in an annotation, and
    all annotations of an object share one size limit."""
    for doc in rendered.documents:
        size = annotation_bytes_after_client_side_apply(doc)
        assert size <= ANNOTATIONS_LIMIT, f"{doc['kind']} {doc['metadata']['name']}: {size}"


def test_the_annotation_size_check_catches_an_oversized_configmap() -> None:
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "big", "namespace": "detector"},
        "data": {"rules.yml": "x" * (ANNOTATIONS_LIMIT - 1000) + "<" * 200},
    }
    assert annotation_bytes_after_client_side_apply(configmap) > ANNOTATIONS_LIMIT
    configmap["data"]["rules.yml"] = "<" * 50_000
    assert annotation_bytes_after_client_side_apply(configmap) > 6 * 50_000


def test_every_configmap_fits_the_one_mebibyte_limit(rendered: Rendered) -> None:
    for doc in rendered.documents:
        if doc["kind"] == "ConfigMap":
            size = len(yaml.safe_dump(doc).encode())
            assert size < 1_000_000, f"{doc['metadata']['name']} is {size} bytes"


def test_the_service_and_servicemonitor_expose_metrics_on_port_web(rendered: Rendered) -> None:
    service = only(rendered.documents, "Service", "detector")
    assert service["spec"]["selector"] == POD_LABELS
    assert service["spec"]["ports"] == [
        {"name": "web", "port": 6066, "targetPort": "web", "protocol": "TCP"}
    ]
    monitor = only(rendered.documents, "ServiceMonitor", "detector")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert [(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]] == [("web", "/metrics")]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rule = only(rendered.documents, "PrometheusRule", "detector")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_disruptions_take_one_worker_at_a_time(rendered: Rendered) -> None:
    budget = only(rendered.documents, "PodDisruptionBudget", "detector")["spec"]
    assert budget["maxUnavailable"] == 1
    assert "minAvailable" not in budget
    assert budget["selector"]["matchLabels"] == POD_LABELS


def test_the_network_policy_admits_only_scrapes_and_the_needed_egress(rendered: Rendered) -> None:
    policy = only(rendered.documents, "NetworkPolicy", "detector")["spec"]
    assert policy["podSelector"]["matchLabels"] == POD_LABELS
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"protocol": "TCP", "port": "web"}]
    assert all(set(peer) == {"namespaceSelector"} for peer in ingress["from"])
    egress = {
        (port["protocol"], port["port"]) for rule in policy["egress"] for port in rule["ports"]
    }
    assert egress == {("TCP", 9092), ("TCP", 9093), ("TCP", 443), ("UDP", 53), ("TCP", 53)}


def test_production_runs_four_bigger_workers(base: Rendered, production: Rendered) -> None:
    assert only(production.documents, "Deployment", "detector")["spec"]["replicas"] == 4
    small, big = _container(base)["resources"], _container(production)["resources"]
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            assert _quantity(big[kind][resource]) > _quantity(small[kind][resource])


def test_production_replicates_the_topics_it_creates_three_times(production: Rendered) -> None:
    assert _config(production)["DETECTOR_REPLICATION_FACTOR"] == "3"


def test_production_talks_sasl_ssl_with_a_mounted_ca(production: Rendered) -> None:
    config = _config(production)
    assert config["DETECTOR_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["DETECTOR_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert config["DETECTOR_SASL_PASSWORD_FILE"].startswith(SECRETS_DIR + "/")
    ca_file = Path(config["DETECTOR_SSL_CA_FILE"])
    mount = _mounts(production)[str(ca_file.parent)]
    assert mount["readOnly"] is True
    secret = _volumes(production)[mount["name"]]["secret"]
    assert secret["secretName"] == "detector-kafka-ca"
    assert ca_file.name in {item["path"] for item in secret["items"]}


def test_production_keeps_the_base_settings_it_does_not_override(
    base: Rendered, production: Rendered
) -> None:
    overridden = {"DETECTOR_BOOTSTRAP_SERVERS", "DETECTOR_SECURITY_PROTOCOL"}
    for key, value in _config(base).items():
        if key not in overridden:
            assert _config(production)[key] == value, key
