"""The service image: lint-clean, slim, non-root, rules baked in, and a small build context."""

from __future__ import annotations

import fnmatch
import re
import shlex
import tomllib

import pytest

from deploy.deploy_support import REPO, checkov, run, tool

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword, _, rest = stripped.partition(" ")
        pairs.append((keyword.upper(), rest.strip()))
    return pairs


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in _instructions():
        if keyword == "FROM":
            stages.append([])
        stages[-1].append((keyword, rest))
    return stages


def _runtime() -> list[tuple[str, str]]:
    return _stages()[-1]


def test_hadolint_reports_nothing() -> None:
    result = run([tool("hadolint"), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_checkov_finds_no_failed_check_and_every_skip_has_a_reason() -> None:
    report = checkov(DOCKERFILE, "dockerfile")
    failed = [(c["check_id"], c["check_name"]) for c in report["results"]["failed_checks"]]
    assert failed == []
    for check in report["results"].get("skipped_checks", []):
        assert len(check["check_result"].get("suppress_comment") or "") >= 20, check["check_id"]


def test_it_builds_in_two_stages_from_one_slim_bookworm_python_pinned_by_digest() -> None:
    images = [
        rest.split()[0] for stage in _stages() for keyword, rest in stage if keyword == "FROM"
    ]
    assert len(images) >= 2
    for image in images:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", image), image
    assert len(set(images)) == 1, "builder and runtime must use the same Python"


def test_the_builder_makes_wheels_under_the_constraints_file() -> None:
    builder = " ".join(rest for keyword, rest in _stages()[0] if keyword in {"RUN", "COPY"})
    assert "pip wheel" in builder
    assert "--constraint constraints.txt" in builder
    assert "constraints.txt" in builder.split("pip wheel")[0], "constraints.txt must be copied"


def test_the_runtime_installs_only_prebuilt_wheels_without_a_cache_or_compiler() -> None:
    runs = [rest for keyword, rest in _runtime() if keyword == "RUN"]
    installs = [command for command in runs if "pip install" in command]
    assert len(installs) == 1
    assert "--no-index" in installs[0]
    assert "--no-cache-dir" in installs[0]
    everything = " ".join(runs)
    for forbidden in ("apt-get install", "gcc", "build-essential", "pip wheel"):
        assert forbidden not in everything


def test_the_runtime_runs_as_uid_10001_and_starts_the_worker() -> None:
    runtime = _runtime()
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users == ["10001:10001"]
    assert any("--uid 10001" in rest for keyword, rest in runtime if keyword == "RUN")
    entrypoints = [rest for keyword, rest in runtime if keyword == "ENTRYPOINT"]
    assert entrypoints == ['["detector", "worker"]']
    assert ("EXPOSE", "6066") in runtime


def test_the_healthcheck_probes_healthz_with_python_because_slim_has_no_curl() -> None:
    (check,) = [rest for keyword, rest in _runtime() if keyword == "HEALTHCHECK"]
    assert "urllib.request" in check
    assert "127.0.0.1:" in check and "/healthz" in check
    assert "curl" not in check and "wget" not in check


def test_rules_are_baked_in_where_the_worker_looks_and_data_dir_is_set() -> None:
    runtime = _runtime()
    copies = [shlex.split(rest) for keyword, rest in runtime if keyword == "COPY"]
    assert any(args[-2:] == ["rules/", "/etc/detector/rules/"] for args in copies)
    env = " ".join(rest for keyword, rest in runtime if keyword == "ENV")
    assert "DETECTOR_DATA_DIR=/var/lib/detector" in env
    assert "DETECTOR_RULES_DIR=/etc/detector/rules" in env
    assert "DETECTOR_LISTS_DIR=/etc/detector/rules/lists" in env
    assert "DETECTOR_WEB_PORT=6066" in env


def _dockerignored(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; a match on a parent covers children."""
    ignored = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    for raw in DOCKERIGNORE.read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            ignored = not negated
    return ignored


@pytest.mark.parametrize(
    "path",
    [
        "tests/deploy/test_dockerfile.py",
        "bench/run.py",
        ".git/HEAD",
        ".venv/bin/python",
        ".venv-tools/bin/checkov",
        "docs/deploy.md",
        "deploy/k8s/base/kustomization.yaml",
        "rules/Kustomization",
        "detector/__pycache__/metrics.cpython-311.pyc",
    ],
)
def test_the_build_context_leaves_out(path: str) -> None:
    assert _dockerignored(path)


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "constraints.txt",
        "README.md",
        "detector/metrics.py",
        "rules/kinesisvideo/rule.yml",
        "rules/lists/trusted_cidrs.yml",
        "LICENSE",
    ],
)
def test_the_build_context_keeps(path: str) -> None:
    assert not _dockerignored(path)


def test_every_copied_source_is_in_the_build_context() -> None:
    for keyword, rest in _instructions():
        if keyword != "COPY" or "--from=" in rest:
            continue
        sources = [arg for arg in shlex.split(rest) if not arg.startswith("--")][:-1]
        for source in sources:
            assert not _dockerignored(source.rstrip("/")), source


def test_the_license_file_is_the_one_the_package_and_the_image_declare() -> None:
    words = (REPO / "LICENSE").read_text().split()
    assert words[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in " ".join(words)
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "Apache-2.0"
    labels = " ".join(rest for keyword, rest in _runtime() if keyword == "LABEL")
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in labels
