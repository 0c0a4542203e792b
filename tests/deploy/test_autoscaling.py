"""The KEDA overlay: workers follow the consumer group's lag, between two and the number of
input partitions, scaling down slowly; KEDA watches the group and topic the workers use."""

from __future__ import annotations

from typing import Any

from deploy.deploy_support import Rendered, only
from detector.settings.worker import WorkerSettings as Settings

# KEDA 2.16's Kafka scaler: trigger metadata and TriggerAuthentication parameters
# (keda-docs content/docs/2.16/scalers/apache-kafka.md). Anything else is ignored by KEDA.
KAFKA_METADATA = {
    "bootstrapServers", "consumerGroup", "topic", "lagThreshold", "activationLagThreshold",
    "offsetResetPolicy", "allowIdleConsumers", "scaleToZeroOnInvalidOffset",
    "excludePersistentLag", "limitToPartitionsWithLag", "version", "partitionLimitation",
    "sasl", "saslTokenProvider", "tls", "unsafeSsl", "awsRegion",
}
KAFKA_AUTH_PARAMETERS = {
    "sasl", "saslTokenProvider", "username", "password", "keytab", "realm", "kerberosConfig",
    "kerberosServiceName", "kerberosDisableFAST", "oauthTokenEndpointUri", "scopes",
    "oauthExtensions", "tls", "ca", "cert", "key", "keyPassword", "awsRoleArn",
    "awsAccessKeyID", "awsSecretAccessKey",
}
# The worker's SASL mechanism as KEDA names it.
KEDA_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}


def _scaled(autoscaled: Rendered) -> dict[str, Any]:
    spec: dict[str, Any] = only(autoscaled.documents, "ScaledObject", "detector")["spec"]
    return spec


def _trigger(autoscaled: Rendered) -> dict[str, Any]:
    (trigger,) = _scaled(autoscaled)["triggers"]
    assert trigger["type"] == "kafka"
    return dict(trigger)


def _config(rendered: Rendered) -> dict[str, str]:
    data: dict[str, str] = only(rendered.documents, "ConfigMap", "detector-config")["data"]
    return data


def test_keda_watches_the_consumer_group_and_topic_of_the_workers(autoscaled: Rendered) -> None:
    metadata = _trigger(autoscaled)["metadata"]
    config = _config(autoscaled)
    assert set(metadata) <= KAFKA_METADATA, set(metadata) - KAFKA_METADATA
    assert metadata["bootstrapServers"] == config["DETECTOR_BOOTSTRAP_SERVERS"]
    assert metadata["consumerGroup"] == config["DETECTOR_GROUP_ID"]
    assert metadata["topic"] == config["DETECTOR_INPUT_TOPIC"]
    reset = config.get("DETECTOR_AUTO_OFFSET_RESET", Settings().auto_offset_reset)
    assert metadata["offsetResetPolicy"] == reset
    assert int(metadata["lagThreshold"]) > 0


def test_keda_talks_to_kafka_as_the_workers_do(autoscaled: Rendered) -> None:
    trigger, config = _trigger(autoscaled), _config(autoscaled)
    metadata = trigger["metadata"]
    assert config["DETECTOR_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert metadata["tls"] == "enable"
    assert metadata["sasl"] == KEDA_SASL[config["DETECTOR_SASL_MECHANISM"]]
    auth = only(autoscaled.documents, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    refs = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    assert set(refs) <= KAFKA_AUTH_PARAMETERS
    assert {"username", "password", "ca"} <= set(refs)
    # The same CA the workers trust; KEDA's own read-only user, not the workers' password.
    assert (refs["ca"]["name"], refs["ca"]["key"]) == ("detector-kafka-ca", "ca.crt")
    assert refs["password"]["name"] != "detector-secrets"


def test_workers_scale_between_two_and_the_partition_count(autoscaled: Rendered) -> None:
    spec, config = _scaled(autoscaled), _config(autoscaled)
    assert spec["scaleTargetRef"]["name"] == "detector"
    state_partitions = int(
        config.get("DETECTOR_STATE_PARTITIONS", Settings().state_partitions)
    )
    assert 2 <= spec["minReplicaCount"] < spec["maxReplicaCount"] <= state_partitions
    # KEDA itself never goes past the input topic's partitions unless idle consumers are on.
    assert _trigger(autoscaled)["metadata"]["allowIdleConsumers"] == "false"
    budget = only(autoscaled.documents, "PodDisruptionBudget", "detector")["spec"]
    assert spec["minReplicaCount"] > budget["maxUnavailable"]


def test_the_hpa_owns_the_replica_count(autoscaled: Rendered) -> None:
    assert "replicas" not in only(autoscaled.documents, "Deployment", "detector")["spec"]


def test_scale_down_is_slow_and_one_worker_at_a_time(autoscaled: Rendered) -> None:
    behavior = _scaled(autoscaled)["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    down, up = behavior["scaleDown"], behavior["scaleUp"]
    assert down["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 600}]
    assert down["stabilizationWindowSeconds"] >= 1800
    assert up["stabilizationWindowSeconds"] < down["stabilizationWindowSeconds"]
