"""The `detector` command as a user runs it: scan, rules validate, rules test, --help."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import REPO, rule

from detector.cli import main
from detector.engine.template import Template
from detector.scan import SORTED

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

    assert main(["scan", "--rules", str(rules_dir), str(logs)]) == 3

    out, err = capsys.readouterr()
    alerts = [json.loads(line) for line in out.splitlines()]
    assert [alert["event_ids"] for alert in alerts] == [["e-1"]]
    assert "decode errors: 3" in err
    for reason in ("bad_gzip", "invalid_json", "empty"):
        assert f"{reason}: 1" in err
    assert "2 record(s)" in err
    assert "3 input error(s): exit 3" in err
    assert "contradicted" not in err
    assert main(["scan", "--rules", str(rules_dir), "--allow-input-errors", str(logs)]) == 0


def test_fail_on_alert_exits_1_and_output_goes_to_a_file(tmp_path: Path, rules_dir: Path) -> None:
    log = tmp_path / "trail.json"
    log.write_text(json.dumps(kvs_record("DeleteStream", "e-9")))
    output = tmp_path / "alerts.jsonl"
    assert main(["scan", "--rules", str(rules_dir), "--fail-on-alert", "-o", str(output),
                 str(log)]) == 1
    assert json.loads(output.read_text())["event_ids"] == ["e-9"]


NEW_ADDRESS_RULE = rule("sel:\n  eventSource: kinesisvideo.amazonaws.com\ncondition: sel",
                        rule_id="0b1c2d3e-0000-4000-8000-000000000003", extra="""
detector:
  first_seen: {key: [userIdentity.arn], value: [sourceIPAddress], learning: 1h, retention: 7d}
""")


def at_minute(record: dict[str, object], minutes: float, **fields: object) -> dict[str, object]:
    when = datetime(2026, 3, 10, 12, tzinfo=UTC) + timedelta(minutes=minutes)
    return {**record, "eventTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"), **fields}


def test_the_summary_counts_a_decision_an_earlier_event_read_later_contradicted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A new address alerts at 70 min (the learning hour is over); its use at 50 min, inside
    # the learning hour, is read after enough records (SORTED, later than the lateness) to
    # have released the first two to the engine, yet is not late for the engine's watermark.
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "new-address.yml").write_text(NEW_ADDRESS_RULE)
    describe = kvs_record("DescribeStream", "e-start")
    others = [at_minute(kvs_record("GetObject", f"e-{n}"), 86 + n / 60,
                        eventSource="s3.amazonaws.com") for n in range(SORTED)]
    records = [at_minute(describe, 0),
               at_minute(describe, 70, eventID="e-later", sourceIPAddress="198.51.100.7"),
               *others,
               at_minute(describe, 50, eventID="e-earlier", sourceIPAddress="198.51.100.7")]
    log = tmp_path / "trail.jsonl"
    log.write_text("".join(json.dumps(record) + "\n" for record in records))

    assert main(["scan", "--rules", str(rules), str(log)]) == 0

    out, err = capsys.readouterr()
    assert [json.loads(line)["event_ids"] for line in out.splitlines()] == [["e-later"]]
    assert "early decisions contradicted by earlier events read later: 1" in err


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
    log = tmp_path / "trail.json"
    log.write_text(json.dumps(kvs_record("DeleteStream", "e-1")))
    unwritable = str(tmp_path / "no-such-dir" / "alerts.jsonl")
    assert main(["scan", "--rules", str(rules_dir), "-o", unwritable, str(log)]) == 2
    assert main(["scan", "--rules", str(rules_dir), "--max-clock-skew", "soon", str(log)]) == 2


def test_a_scan_without_rules_refuses_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "trail.json"
    log.write_text(json.dumps(kvs_record("DeleteStream", "e-1")))
    empty = tmp_path / "empty-rules"
    empty.mkdir()
    (empty / "notes.txt").write_text("no rules here")

    assert main(["scan", "--rules", "/nonexistent", str(log)]) == 2
    assert "no such rules path: /nonexistent" in capsys.readouterr().err
    assert main(["scan", "--rules", str(empty), str(log)]) == 2
    assert "no rules found under" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)  # no rules/ here: the default path is missing
    assert main(["scan", str(log)]) == 2
    assert "no such rules path: rules" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["validate", "test"])
def test_rules_commands_without_rules_exit_2(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rules", command, "/nonexistent"]) == 2
    assert "no such rules path" in capsys.readouterr().err
    assert main(["rules", command, str(tmp_path)]) == 2
    assert "no rules found" in capsys.readouterr().err


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
    assert main(["rules", "validate", str(rules_dir)]) == 1  # problems found: not a usage error
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


# --- one record never aborts a scan -----------------------------------------------------------

STOP_RULE = rule("sel:\n  eventName: StopLogging\ncondition: sel",
                 rule_id="0b1c2d3e-0000-4000-8000-000000000002",
                 extra="detector:\n  output: 'trail {requestParameters.name} stopped'\n")


def stop_logging(event_id: str, name: object = "main-trail") -> dict[str, object]:
    return {**kvs_record("StopLogging", event_id), "eventSource": "cloudtrail.amazonaws.com",
            "requestParameters": {"name": name}}


def test_a_record_nested_a_thousand_levels_alerts_and_the_run_completes(
    tmp_path: Path, rules_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (rules_dir / "stop.yml").write_text(STOP_RULE)
    deep = b'{"a":' * 1000 + b'"x"' + b"}" * 1000
    log = tmp_path / "trail.jsonl"
    log.write_bytes(json.dumps(stop_logging("e-deep", "@")).encode().replace(b'"@"', deep)
                    + b"\n" + json.dumps(stop_logging("e-plain")).encode() + b"\n")
    state = tmp_path / "state.json"

    assert main(["scan", "--rules", str(rules_dir), "--state", str(state), str(log)]) == 0

    alerts = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(alert["event_ids"][0] for alert in alerts) == ["e-deep", "e-plain"]
    assert "truncated: nested deeper than 32 levels" in json.dumps(alerts)
    assert json.loads(state.read_text())["format"] == "detector-state"


def test_a_failed_root_login_dated_year_9999_is_an_input_error_not_a_crash(
    tmp_path: Path, rules_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    login = {**kvs_record("ConsoleLogin", "e-9999"), "eventSource": "signin.amazonaws.com",
             "eventTime": "9999-12-31T23:59:59Z", "errorMessage": "Failed authentication",
             "userIdentity": {"type": "Root", "arn": "arn:aws:iam::111122223333:root"},
             "responseElements": {"ConsoleLogin": "Failure"}}
    log = tmp_path / "logins.jsonl"
    log.write_text(json.dumps(login) + "\n" + json.dumps(kvs_record("DeleteStream", "e-1")) + "\n")

    code = main(["scan", "--rules", str(REPO / "rules"), "--rules", str(rules_dir), str(log)])

    out, err = capsys.readouterr()
    assert code == 3
    assert "event_time_out_of_range: 1" in err
    assert "9999-12-31T23:59:59Z" in err
    assert "e-1" in out


def test_a_broken_first_json_line_costs_that_line_only(
    tmp_path: Path, rules_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (rules_dir / "stop.yml").write_text(STOP_RULE)
    log = tmp_path / "trail.jsonl"
    log.write_text('{"eventName": broken\n' + json.dumps(stop_logging("e-stop")) + "\n")

    assert main(["scan", "--rules", str(rules_dir), str(log)]) == 3

    out, err = capsys.readouterr()
    assert [json.loads(line)["event_ids"] for line in out.splitlines()] == [["e-stop"]]
    assert f"{log}:1:" in err and "invalid_json: 1" in err


def fail_rendering(monkeypatch: pytest.MonkeyPatch, event_id: str) -> None:
    """Alert text of the record `event_id` raises, as a bug in our code would."""
    render = Template.render

    def failing(self: Template, data: dict[str, object]) -> str:
        if data.get("eventID") == event_id:
            raise MemoryError("out of memory")
        return render(self, data)

    monkeypatch.setattr(Template, "render", failing)


def test_a_record_the_engine_fails_on_is_an_input_error_counted_by_rule(
    tmp_path: Path, rules_dir: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    (rules_dir / "stop.yml").write_text(STOP_RULE)
    log = tmp_path / "trail.jsonl"
    log.write_text("".join(json.dumps(record) + "\n" for record in (
        stop_logging("e-stop"), kvs_record("DeleteStream", "e-delete"))))
    fail_rendering(monkeypatch, "e-stop")

    assert main(["scan", "--rules", str(rules_dir), str(log)]) == 3
    out, err = capsys.readouterr()
    assert [json.loads(line)["event_ids"] for line in out.splitlines()] == [["e-delete"]]
    assert ("detector scan: internal_error: rule 0b1c2d3e-0000-4000-8000-000000000002 on event "
            "e-stop: MemoryError: out of memory") in err
    assert "internal errors (by rule): 1" in err
    assert main(["scan", "--rules", str(rules_dir), "--allow-input-errors", str(log)]) == 0


def test_a_crash_of_the_scan_itself_is_exit_70_never_1(
    tmp_path: Path, rules_dir: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "trail.json"
    log.write_text(json.dumps(kvs_record("DeleteStream", "e-1")))

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("detector.scan.scan", broken)

    assert main(["scan", "--rules", str(rules_dir), "--fail-on-alert", str(log)]) == 70
    assert "RuntimeError: a bug" in capsys.readouterr().err


def test_fail_on_alert_wins_over_input_errors(tmp_path: Path, rules_dir: Path) -> None:
    log = tmp_path / "trail.jsonl"
    log.write_text("not json\n" + json.dumps(kvs_record("DeleteStream", "e-1")) + "\n")
    assert main(["scan", "--rules", str(rules_dir), "--fail-on-alert", str(log)]) == 1
    assert main(["scan", "--rules", str(rules_dir), str(log)]) == 3


# --- one argument tree, one settings model --------------------------------------------------

def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    from detector import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"detector {__version__}\n"


@pytest.mark.parametrize("command", ["worker", "replay"])
def test_worker_and_replay_help_list_every_setting_they_read(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from detector.settings.model import namings
    from detector.settings.worker import WorkerSettings

    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    read = [option for option in namings(WorkerSettings)
            if command == "worker" or option.name in (
                "bootstrap_servers", "security_protocol", "sasl_password", "max_message_bytes",
                "max_decompressed_bytes", "log_format")]
    assert read
    for option in read:
        assert option.env in out
        assert (option.flag in out) if option.flag else (option.file_env in out)
    assert "example" in out


def test_scan_and_rules_start_without_faust_or_the_sinks(tmp_path: Path, rules_dir: Path) -> None:
    """Start-up cost: rules commands load no settings model, scan only its own."""
    log = tmp_path / "trail.json"
    log.write_text(json.dumps(kvs_record("DeleteStream", "e-1")))
    probe = ("import sys; from detector.cli import main; code = main(sys.argv[1:]); "
             "heavy = ('faust', 'aiohttp', 'detector.sinks', 'pydantic'); "
             "print([m for m in heavy if m in sys.modules], file=sys.stderr); sys.exit(code)")
    for argv, loaded in ((["scan", "--rules", str(rules_dir), str(log)], "['pydantic']"),
                         (["rules", "test", str(rules_dir)], "[]"),
                         (["rules", "validate", str(rules_dir)], "[]")):
        result = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True,
                                text=True, check=False)
        assert result.returncode == 0, result.stderr
        assert result.stderr.splitlines()[-1] == loaded


def test_scan_reads_its_settings_from_the_environment_at_run_time_and_flags_win(
    tmp_path: Path, rules_dir: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "trail.json"
    log.write_text(json.dumps(kvs_record("DeleteStream", "e-1")))
    monkeypatch.setenv("DETECTOR_RULES_DIR", str(rules_dir))  # after detector.cli was imported
    assert main(["scan", str(log)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    monkeypatch.setenv("DETECTOR_MAX_CLOCK_SKEW", "soon")
    assert main(["scan", str(log)]) == 2
    assert capsys.readouterr().err == (
        "detector scan: DETECTOR_MAX_CLOCK_SKEW: 'soon' is not a duration; write e.g. 500ms, "
        "30s, 15m, 2h, 7d or plain seconds\n")
    assert main(["scan", "--max-clock-skew", "1h", str(log)]) == 0



@pytest.mark.parametrize(("flag", "why"), [
    ("--max-message-bytes=-1", "is not a positive whole number"),
    ("--max-message-bytes=0", "is not a positive whole number"),
    ("--max-decompressed-bytes=-8", "is not a positive whole number"),
    ("--max-records=0", "is not a positive whole number"),
    ("--max-clock-skew=-1m", "not negative"),
    ("--allowed-lateness=-1", "not negative"),
])
def test_scan_refuses_a_limit_that_cannot_work_before_reading_anything(
    tmp_path: Path, rules_dir: Path, capsys: pytest.CaptureFixture[str], flag: str, why: str,
) -> None:
    """A non-positive size made every input `too_large`, exit 3: a usage error is exit 2."""
    log = tmp_path / "trail.json"
    log.write_text(json.dumps(kvs_record("DeleteStream", "e-1")))
    assert main(["scan", "--rules", str(rules_dir), flag, str(log)]) == 2
    out, err = capsys.readouterr()
    name = flag.partition("=")[0]
    assert out == "" and err.startswith(f"detector scan: {name}: ") and why in err


def test_scan_logs_json_lines_with_the_ids_of_a_failed_record(
    tmp_path: Path, rules_dir: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    (rules_dir / "stop.yml").write_text(STOP_RULE)
    log = tmp_path / "trail.jsonl"
    log.write_text(json.dumps(stop_logging("e-stop")) + "\nnot json\n")
    fail_rendering(monkeypatch, "e-stop")

    assert main(["scan", "--log-format", "json", "--rules", str(rules_dir), str(log)]) == 3

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert all({"timestamp", "level", "logger", "message"} <= set(line) for line in lines)
    failed = [line for line in lines if "event_id" in line]
    assert [(line["event_id"], line["rule_id"], line["level"]) for line in failed] == [
        ("e-stop", "0b1c2d3e-0000-4000-8000-000000000002", "error")]
    assert any("invalid_json: 1" in line["message"] for line in lines)  # the summary


def test_a_bad_log_format_is_a_usage_error_told_as_text(
    tmp_path: Path, rules_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", "--log-format", "xml", "--rules", str(rules_dir), str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        "detector scan: --log-format: 'xml' is not one of text, json\n")
