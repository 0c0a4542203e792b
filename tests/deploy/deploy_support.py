"""Helpers for the static deployment checks: finding tools, rendering, reading PromQL.

The external tools (promtool, amtool, kubectl, hadolint, kubernetes-validate, checkov) are
installed by scripts/install-test-tools. They are required: a missing tool fails the test with
the command to run, it never skips.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TOOLS_BIN = REPO / ".venv-tools" / "bin"
TOOLS_PYTHON = TOOLS_BIN / "python"
INSTALL_HINT = "run scripts/install-test-tools (as root it also installs the Debian packages)"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# apimachinery's TotalAnnotationSizeLimitB: all annotations of one object together.
ANNOTATIONS_LIMIT = 256 * 1024

# Names that look like identifiers in PromQL but are not metric names.
PROMQL_KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "offset",
        "bool",
        "inf",
        "nan",
    }
)
# Grafana's template variables, replaced by values that make the expression plain PromQL.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "${job}": "detector",
    "$job": "detector",
}


def tool(name: str) -> str:
    """Path of a test tool: the tools venv first, then PATH; fails with the install hint."""
    candidate = TOOLS_BIN / name
    if candidate.is_file():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found in {TOOLS_BIN} or on PATH: {INSTALL_HINT}")
    return found


def tools_python() -> str:
    """The tools venv's interpreter (it holds the prometheus-operator models)."""
    if not TOOLS_PYTHON.is_file():
        pytest.fail(f"{TOOLS_PYTHON} not found: {INSTALL_HINT}")
    return str(TOOLS_PYTHON)


def run(
    args: Sequence[str], cwd: Path = REPO, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """Run a tool and capture its output (the caller asserts on the return code)."""
    return subprocess.run(
        list(args), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def kustomize(directory: Path) -> str:
    """Render a kustomization exactly as `kubectl apply -k` does: default load restrictor."""
    result = run([tool("kubectl"), "kustomize", str(directory)])
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return result.stdout


def go_json(value: Any) -> bytes:
    """What Go's encoding/json Encoder writes for a decoded YAML/JSON value: sorted keys, no
    spaces, UTF-8 kept, <, > and & (and U+2028/U+2029) escaped, a final newline."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return (text + "\n").encode()


def annotation_bytes_after_client_side_apply(resource: dict[str, Any]) -> int:
    """The size the API server checks (all annotation keys and values, at most
    ANNOTATIONS_LIMIT bytes) once client-side `kubectl apply` has added its
    last-applied-configuration annotation.

    kubectl (k8s.io/kubectl/pkg/util/apply.go, GetModifiedConfiguration) removes that
    annotation, sets the annotations to what is left (an empty map stays, as
    `"annotations":{}`), encodes the object with unstructured.UnstructuredJSONScheme (Go's
    json.Encoder) and stores the result as the annotation's value.
    """
    metadata = dict(resource.get("metadata") or {})
    annotations = dict(metadata.get("annotations") or {})
    annotations.pop(LAST_APPLIED, None)
    metadata["annotations"] = annotations
    config = go_json({**resource, "metadata": metadata})
    others = sum(len(key.encode()) + len(value.encode()) for key, value in annotations.items())
    return others + len(LAST_APPLIED.encode()) + len(config)


def load_documents(text: str) -> list[dict[str, Any]]:
    """All non-empty YAML documents of a multi-document stream."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def only(documents: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one document of a kind (and name prefix, for hash-suffixed ConfigMaps)."""
    matches = [
        doc
        for doc in documents
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"].startswith(name))
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


class Rendered:
    """One kustomize render: its text, its documents and the file checkov reads."""

    def __init__(self, text: str, path: Path) -> None:
        self.text = text
        self.path = path
        self.documents: list[dict[str, Any]] = load_documents(text)


def grafana_to_promql(expr: str) -> str:
    """Replace Grafana's template variables so promtool can parse the expression."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers that are not functions, keywords,
    labels (in braces or in by/without/on/ignoring lists), durations or numbers."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', " ", expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+-?[0-9a-z]+", " ", text)
    text = re.sub(r"(?<![A-Za-z0-9_:])[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        if text[match.end() :].lstrip().startswith("("):
            continue
        if match.group(0).lower() in PROMQL_KEYWORDS:
            continue
        names.add(match.group(0))
    return names


def promtool_parse_errors(expressions: dict[str, str], workdir: Path) -> str:
    """promtool's verdict on a set of PromQL expressions ('' when all parse)."""
    rules = [
        {"record": f"check:expression_{index}", "expr": expr}
        for index, expr in enumerate(expressions.values())
    ]
    path = workdir / "expressions.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "parse", "rules": rules}]}))
    result = run([tool("promtool"), "check", "rules", str(path)])
    if result.returncode == 0:
        return ""
    names = "\n".join(f"  expression_{i}: {key}" for i, key in enumerate(expressions))
    return f"{result.stdout}{result.stderr}\nexpressions:\n{names}"


# Custom resources and the cloudcoil model module (in .venv-tools) that holds their CRD schema.
CRD_MODELS = {
    "ServiceMonitor": "cloudcoil.models.prometheus_operator.v1",
    "PrometheusRule": "cloudcoil.models.prometheus_operator.v1",
    "ScaledObject": "cloudcoil.models.keda.v1alpha1",
    "TriggerAuthentication": "cloudcoil.models.keda.v1alpha1",
}


def crd_schema(kind: str) -> dict[str, Any]:
    """JSON schema of a custom resource (prometheus-operator, KEDA), from the cloudcoil
    models, made strict: objects with declared properties reject unknown ones, as the API
    server's pruning would silently drop them."""
    script = (
        "import importlib, json, sys\n"
        "model = getattr(importlib.import_module(sys.argv[1]), sys.argv[2])\n"
        "print(json.dumps(model.model_json_schema(by_alias=True)))\n"
    )
    result = run([tools_python(), "-c", script, CRD_MODELS[kind], kind])
    assert result.returncode == 0, f"cannot load the {kind} model: {result.stderr}\n{INSTALL_HINT}"
    schema: dict[str, Any] = json.loads(result.stdout)
    _forbid_unknown_properties(schema)
    return schema


def _forbid_unknown_properties(node: Any) -> None:
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _forbid_unknown_properties(value)
    elif isinstance(node, list):
        for value in node:
            _forbid_unknown_properties(value)


def checkov(path: Path, framework: str) -> dict[str, Any]:
    """checkov's JSON report for one file, offline."""
    result = run(
        [
            tool("checkov"),
            "--skip-download",
            "--compact",
            "-o",
            "json",
            "--framework",
            framework,
            "-f",
            str(path),
        ],
        cwd=Path(tempfile.gettempdir()),
    )
    assert result.stdout.strip(), f"checkov printed nothing:\n{result.stderr}"
    report = json.loads(result.stdout)
    if isinstance(report, list):
        (report,) = [item for item in report if item.get("check_type") == framework]
    assert isinstance(report, dict)
    return report
