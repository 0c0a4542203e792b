"""The `detector` command as a user runs it: scan, rules validate, rules test, --help."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import REPO, rule

from detector.cli import main

DELETE_RULE = rule("sel:\n  eventName: DeleteStream\ncondition: sel", extra="""
detector:
  tests:
    - name: fires on a deletion
      events: [{eventSource: kinesisvideo.amazonaws.com, eventName: DeleteStream}]
      expect: 1
    - name: silent on a describe
      events: [{eventSource: kinesisvideo.amazonaws.com, eventName: DescribeStream}]
      expect: 0
""")


def kvs_record(name: str, event_id: str) -> dict[str, object]:
    return {"eventVersion": "1.08", "eventSource": "kinesisvideo.amazonaws.com",
            "eventName": name, "eventTime": "2026-03-10T12:00:00Z", "eventID": event_id,
            "awsRegion": "us-east-1", "sourceIPAddress": "203.0.113.9",
            "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/op"},
            "requestParameters": {"streamName": "front-door"}}


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "rules"
    directory.mkdir()
    (directory / "delete.yml").write_text(DELETE_RULE)
    return directory


def test_scan_reports_bad_files_and_still_alerts_on_the_good_one(
    tmp_path: Path, rules_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    valid = json.dumps({"Records": [kvs_record("DeleteStream", "e-1"),
                                    kvs_record("DescribeStream", "e-2")]}).encode()
    (logs / "valid.json").write_bytes(valid)
    (logs / "truncated.json.gz").write_bytes(gzip.compress(valid)[:-20])
    (logs / "binary.json").write_bytes(bytes(range(256)) * 4)
    (logs / "empty.json").write_bytes(b"")

    assert main(["scan", "--rules", str(rules_dir), str(logs)]) == 0

    out, err = capsys.readouterr()
    alerts = [json.loads(line) for line in out.splitlines()]
    assert [alert["event_ids"] for alert in alerts] == [["e-1"]]
    assert "decode errors: 3" in err
    for reason in ("bad_gzip", "invalid_json", "empty"):
        assert f"{reason}: 1" in err
    assert "2 record(s)" in err


def test_fail_on_alert_exits_1_and_output_goes_to_a_file(tmp_path: Path, rules_dir: Path) -> None:
    log = tmp_path / "trail.json"
    log.write_text(json.dumps(kvs_record("DeleteStream", "e-9")))
    output = tmp_path / "alerts.jsonl"
    assert main(["scan", "--rules", str(rules_dir), "--fail-on-alert", "-o", str(output),
                 str(log)]) == 1
    assert json.loads(output.read_text())["event_ids"] == ["e-9"]


def test_scan_reads_stdin(tmp_path: Path, rules_dir: Path) -> None:
    lines = "\n".join(json.dumps(kvs_record("DeleteStream", f"e-{n}")) for n in range(3))
    result = subprocess.run(
        [sys.executable, "-m", "detector", "scan", "--rules", str(rules_dir), "-"],
        input=lines.encode(), capture_output=True, check=False, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3


def test_usage_errors_exit_2(tmp_path: Path, rules_dir: Path) -> None:
    assert main(["scan"]) == 2
    assert main(["scan", "--rules", str(rules_dir), str(tmp_path / "nothing-here")]) == 2


def test_scan_refuses_broken_rules(tmp_path: Path, rules_dir: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    (rules_dir / "broken.yml").write_text("title: broken\n")
    log = tmp_path / "trail.json"
    log.write_text(json.dumps(kvs_record("DeleteStream", "e-1")))
    assert main(["scan", "--rules", str(rules_dir), str(log)]) == 2
    assert "broken.yml:1" in capsys.readouterr().err


def test_rules_validate_prints_file_line_rule_message(
    rules_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rules", "validate", str(rules_dir)]) == 0
    (rules_dir / "bad.yml").write_text(textwrap.dedent("""\
        title: bad one
        id: 0b1c2d3e-0000-4000-8000-00000000000f
        logsource: {product: aws, service: cloudtrail}
        detection:
          sel:
            eventName: X
          condition: sel and missing
        """))
    assert main(["rules", "validate", str(rules_dir)]) == 1
    err = capsys.readouterr().err
    assert f"{rules_dir / 'bad.yml'}:4: bad one: unsupported detection" in err


def test_rules_test_passes_and_fails_with_a_diff(
    rules_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rules", "test", str(rules_dir)]) == 0
    assert "2 passed, 0 failed" in capsys.readouterr().out
    (rules_dir / "delete.yml").write_text(DELETE_RULE.replace("expect: 0", "expect: 1"))
    assert main(["rules", "test", str(rules_dir)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "silent on a describe" in out
    assert "expected 1 alert(s), got 0" in out
    assert "event #1: fired nothing" in out


@pytest.mark.parametrize("command", [[], ["scan"], ["rules"], ["rules", "validate"],
                                     ["rules", "test"]])
def test_every_command_has_help_with_an_example(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command, "--help"]) == 0
    assert "example" in capsys.readouterr().out


def test_shipped_rule_packs_validate() -> None:
    assert main(["rules", "validate", str(REPO / "rules")]) == 0
