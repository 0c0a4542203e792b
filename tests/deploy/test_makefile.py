"""`make unit` and `make integration` split the suite by marker: together everything, apart
nothing in common, and every test that starts a server on the integration side."""

from __future__ import annotations

import shlex
import shutil

import pytest

from deploy.deploy_support import REPO, run


def _marker_expression(target: str) -> str:
    """The `-m` expression of the pytest command `make <target>` would run."""
    make = shutil.which("make")
    if make is None:
        pytest.fail("make not found: install the Debian package make")
    result = run([make, "-s", "-n", target])
    assert result.returncode == 0, result.stderr
    (command,) = [line for line in result.stdout.splitlines() if "bin/pytest" in line]
    args = shlex.split(command)
    return args[args.index("-m") + 1]


def _collected(expression: str | None) -> set[str]:
    pytest_bin = str(REPO / ".venv" / "bin" / "pytest")
    args = [pytest_bin, "--collect-only", "-q", "-p", "no:cacheprovider"]
    if expression is not None:
        args += ["-m", expression]
    result = run(args)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    # Parameters are stripped: some ids are not stable from one collection to the next.
    return {line.split("[")[0] for line in result.stdout.splitlines() if "::" in line}


@pytest.fixture(scope="module")
def suites() -> dict[str, set[str]]:
    return {
        "unit": _collected(_marker_expression("unit")),
        "integration": _collected(_marker_expression("integration")),
        "all": _collected(None),
    }


def test_unit_and_integration_partition_the_suite(suites: dict[str, set[str]]) -> None:
    assert suites["unit"] and suites["integration"]
    assert suites["unit"] & suites["integration"] == set()
    assert suites["unit"] | suites["integration"] == suites["all"]


def test_every_test_that_starts_a_server_is_an_integration_test(
    suites: dict[str, set[str]],
) -> None:
    servers = {test for test in suites["all"] if test.startswith("tests/integration/")}
    assert any("test_alertmanager.py" in test for test in servers)
    assert servers <= suites["integration"]
    assert any(test.startswith("tests/deploy/") for test in suites["unit"])
