"""Worker settings: flags win over environment variables, which win over the defaults; every
problem names the setting's flag or variable (or the file it was read from)."""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path

import faust
import pytest

from detector.cli import _parser
from detector.cli import main as cli_main
from detector.events import DEFAULT_LIMITS, Limits
from detector.settings import SettingsError
from detector.settings.kafka import broker_credentials
from detector.settings.model import flags_of, load, namings
from detector.settings.worker import MAX_MESSAGE_BYTES_LIMIT
from detector.settings.worker import WorkerSettings as Settings
from detector.stream.worker import EXIT_USAGE
from stream.support import FIXTURES

VARIABLES = [name for option in namings(Settings) for name in (option.env, option.file_env)]


def settings_from(argv: Sequence[str], env: Mapping[str, str]) -> Settings:
    """Settings as `detector worker ARGV` gets them with `env`; SettingsError raised."""
    loaded = load(Settings, flags_of(_parser("worker").parse_args(["worker", *argv]), Settings),
                  env)
    if isinstance(loaded, SettingsError):
        raise loaded
    return loaded


def worker_main(argv: list[str]) -> int:
    return cli_main(["worker", *argv])


def test_defaults_are_the_documented_ones() -> None:
    settings = settings_from([], env={})
    assert settings == Settings()
    assert settings.input_topic == "cloudtrail-events"
    assert settings.alerts_topic == "detector-alerts"
    assert settings.dead_letter_topic == "detector-dead-letter"
    assert settings.group_id == "detector"
    assert settings.rules == ("rules",)
    assert settings.lateness_seconds == 900
    assert (settings.web_host, settings.web_port) == ("0.0.0.0", 6066)


def test_environment_sets_and_flags_override() -> None:
    env = {
        "DETECTOR_BOOTSTRAP_SERVERS": "k1:9092, k2:9092",
        "DETECTOR_INPUT_TOPIC": "from-env",
        "DETECTOR_WEB_PORT": "7000",
        "DETECTOR_ENABLE_RULES": "a,b",
        "DETECTOR_COMMIT_INTERVAL": "500ms",
    }
    settings = settings_from(["--input-topic", "from-flag", "--enable", "c"], env=env)
    assert settings.bootstrap_servers == ("k1:9092", "k2:9092")
    assert settings.input_topic == "from-flag"
    assert settings.web_port == 7000
    assert settings.enable_rules == ("c",)
    assert settings.commit_interval == 0.5


def test_repeated_flags_accumulate() -> None:
    settings = settings_from(["--rules", "a", "--rules", "b,c"], env={})
    assert settings.rules == ("a", "b", "c")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DETECTOR_WEB_PORT": "70000"}, "DETECTOR_WEB_PORT"),
        ({"DETECTOR_SECURITY_PROTOCOL": "TLS"}, "DETECTOR_SECURITY_PROTOCOL"),
        ({"DETECTOR_ALLOWED_LATENESS": "soon"},
         "DETECTOR_ALLOWED_LATENESS: .soon. is not a duration"),
        ({"DETECTOR_SECURITY_PROTOCOL": "SASL_SSL"}, "DETECTOR_SASL_USERNAME"),
        ({"DETECTOR_SSL_CERT_FILE": "cert.pem"}, "DETECTOR_SSL_KEY_FILE"),
        ({"DETECTOR_HEARTBEAT_INTERVAL": "20s"}, "third of the session timeout"),
        ({"DETECTOR_FAUST_METRICS": "maybe"}, "DETECTOR_FAUST_METRICS"),
    ],
)
def test_invalid_settings_name_what_to_fix(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        settings_from([], env=env)


def test_the_password_comes_from_the_environment_or_a_file_never_a_flag(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    env = {"DETECTOR_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "DETECTOR_SASL_USERNAME": "det",
           "DETECTOR_SASL_PASSWORD_FILE": str(secret)}
    settings = settings_from([], env=env)
    assert settings.sasl_password is not None
    assert settings.sasl_password.reveal() == "s3cret"
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert "s3cret" not in shown
    assert [option.flag for option in namings(Settings) if option.secret] == [None]
    with pytest.raises(SystemExit):
        _parser("worker").parse_args(["worker", "--sasl-password", "s3cret"])


def test_a_secret_set_twice_or_unreadable_is_refused_without_showing_it(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    env = {"DETECTOR_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "DETECTOR_SASL_USERNAME": "det",
           "DETECTOR_SASL_PASSWORD_FILE": str(secret), "DETECTOR_SASL_PASSWORD": "s3cret"}
    with pytest.raises(SettingsError, match="set DETECTOR_SASL_PASSWORD or "
                                            "DETECTOR_SASL_PASSWORD_FILE, not both") as raised:
        settings_from([], env=env)
    assert "s3cret" not in str(raised.value)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SettingsError, match=r"DETECTOR_SASL_PASSWORD_FILE: .*empty is empty"):
        settings_from([], env={**env, "DETECTOR_SASL_PASSWORD": "",
                               "DETECTOR_SASL_PASSWORD_FILE": str(tmp_path / "empty")})


def test_every_problem_is_reported_at_once_with_where_it_came_from() -> None:
    with pytest.raises(SettingsError) as raised:
        settings_from(["--web-port", "70000"], env={"DETECTOR_COMMIT_INTERVAL": "soon",
                                                    "DETECTOR_MAX_RECORDS": "many"})
    found = {(problem.setting, problem.source) for problem in raised.value.problems}
    assert found == {("web_port", "--web-port"), ("commit_interval", "DETECTOR_COMMIT_INTERVAL"),
                     ("max_records", "DETECTOR_MAX_RECORDS")}
    assert "70000 is not a TCP port" in str(raised.value)
    assert "'soon' is not a duration" in str(raised.value)
    assert "'many' is not a whole number" in str(raised.value)


@pytest.mark.parametrize(("value", "expected"), [
    ("1", True), ("TRUE", True), (" yes ", True), ("on", True),
    ("0", False), ("false", False), ("No", False), ("off", False), ("", False),
])
def test_booleans_are_read_one_way_and_empty_is_unset(value: str, expected: bool) -> None:
    assert settings_from([], env={"DETECTOR_FAUST_METRICS": value}).faust_metrics is expected


def test_plaintext_has_no_credentials() -> None:
    assert broker_credentials(Settings()) is None


def test_ssl_maps_to_faust_ssl_credentials() -> None:
    credentials = broker_credentials(Settings(security_protocol="SSL"))
    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials.context.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize(
    ("protocol", "mechanism", "with_tls"),
    [("SASL_PLAINTEXT", "PLAIN", False), ("SASL_SSL", "SCRAM-SHA-512", True)],
)
def test_sasl_maps_to_faust_sasl_credentials(protocol: str, mechanism: str,
                                             with_tls: bool) -> None:
    settings = Settings(security_protocol=protocol, sasl_mechanism=mechanism,
                        sasl_username="det", sasl_password="pw")
    credentials = broker_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == protocol
    assert credentials.mechanism.value == mechanism
    assert (credentials.username, credentials.password) == ("det", "pw")
    assert (credentials.ssl_context is not None) == with_tls


@pytest.mark.parametrize("lateness", ["-15m", "nan", "inf", "-1"])
def test_the_allowed_lateness_is_a_finite_duration_not_negative(lateness: str) -> None:
    with pytest.raises(SettingsError, match=r"^DETECTOR_ALLOWED_LATENESS: .* not negative"):
        settings_from([], env={"DETECTOR_ALLOWED_LATENESS": lateness})


def test_no_allowed_lateness_at_all_is_allowed() -> None:
    assert settings_from(["--allowed-lateness", "0"], env={}).lateness_seconds == 0


@pytest.mark.parametrize(
    "flag",
    ["--commit-interval", "--session-timeout", "--heartbeat-interval", "--lag-interval",
     "--stall-timeout", "--idle-timeout", "--reload-interval"],
)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1s", "NaNs"])
def test_durations_must_be_finite_and_not_negative(flag: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^{flag}: ") as raised:
        settings_from([f"{flag}={value}"], env={})
    assert "duration" in str(raised.value)


@pytest.mark.parametrize(
    "flag",
    ["--commit-interval", "--session-timeout", "--heartbeat-interval", "--lag-interval",
     "--stall-timeout", "--idle-timeout"],
)
@pytest.mark.parametrize("value", ["0", "0s", "0ms"])
def test_periods_and_timeouts_must_be_more_than_zero(flag: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^{flag}: must be more than zero"):
        settings_from([flag, value], env={})


def test_a_reload_interval_of_zero_turns_reloading_off_and_is_allowed() -> None:
    assert settings_from(["--reload-interval", "0"], env={}).reload_interval == 0


def test_milliseconds_are_accepted() -> None:
    settings = settings_from(["--commit-interval", "500ms", "--heartbeat-interval", "250ms"],
                             env={})
    assert (settings.commit_interval, settings.heartbeat_interval) == (0.5, 0.25)


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        (["--ssl-ca-file", "ca.pem"], {}, ["--ssl-ca-file"]),
        (["--ssl-cert-file", "c.pem", "--ssl-key-file", "k.pem"], {},
         ["--ssl-cert-file", "--ssl-key-file"]),
        (["--sasl-username", "det"], {}, ["--sasl-username"]),
        ([], {"DETECTOR_SASL_PASSWORD": "pw"}, ["DETECTOR_SASL_PASSWORD"]),
        (["--sasl-mechanism", "SCRAM-SHA-512"], {}, ["--sasl-mechanism"]),
        (["--security-protocol", "SSL", "--sasl-username", "det"],
         {"DETECTOR_SASL_PASSWORD": "pw"}, ["--sasl-username", "DETECTOR_SASL_PASSWORD"]),
        (["--security-protocol", "SASL_PLAINTEXT", "--sasl-username", "det",
          "--ssl-ca-file", "ca.pem"], {"DETECTOR_SASL_PASSWORD": "pw"}, ["--ssl-ca-file"]),
    ],
)
def test_tls_and_sasl_options_the_protocol_does_not_use_are_refused(
    argv: list[str], env: dict[str, str], named: list[str]
) -> None:
    with pytest.raises(SettingsError) as raised:
        settings_from(argv, env=env)
    assert [problem.source for problem in raised.value.problems] == named
    assert all("not used with security protocol" in problem.reason
               for problem in raised.value.problems)


def test_a_missing_ca_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pem"
    with pytest.raises(SettingsError,
                       match=f"--ssl-ca-file: cannot load {missing}: No such file"):
        settings_from(["--security-protocol", "SSL", "--ssl-ca-file", str(missing)], env={})


def test_a_ca_file_that_is_not_pem_is_a_config_error(tmp_path: Path) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(SettingsError, match="--ssl-ca-file: cannot load"):
        settings_from(["--security-protocol", "SSL", "--ssl-ca-file", str(garbage)], env={})


def test_an_unreadable_client_certificate_or_key_is_a_config_error(tmp_path: Path) -> None:
    garbage = tmp_path / "client.pem"
    garbage.write_text("not a certificate\n")
    argv = ["--security-protocol", "SSL", "--ssl-cert-file", str(garbage),
            "--ssl-key-file", str(tmp_path / "missing.key")]
    with pytest.raises(SettingsError, match="--ssl-key-file: cannot load"):
        settings_from(argv, env={})


def test_a_readable_ca_file_is_accepted() -> None:
    certifi = pytest.importorskip("certifi")
    settings = settings_from(["--security-protocol", "SSL", "--ssl-ca-file", certifi.where()],
                             env={})
    assert isinstance(broker_credentials(settings), faust.SSLCredentials)


def test_the_worker_exits_2_with_a_message_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    missing = tmp_path / "ca.pem"
    code = worker_main(["--security-protocol", "SSL", "--ssl-ca-file", str(missing)])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert err.startswith("detector worker: --ssl-ca-file: cannot load")
    assert "Traceback" not in err


def test_a_data_dir_that_cannot_be_created_is_a_config_error(tmp_path: Path) -> None:
    missing_parent = tmp_path / "no" / "data"
    with pytest.raises(SettingsError, match=f"--data-dir: cannot create {missing_parent}: "
                                            f"{missing_parent.parent} does not exist"):
        settings_from(["--data-dir", str(missing_parent)], env={})
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(SettingsError, match="is not a directory"):
        settings_from(["--data-dir", str(a_file)], env={})
    with pytest.raises(SettingsError, match=f"cannot create {a_file / 'data'}: {a_file} is not"):
        settings_from(["--data-dir", str(a_file / "data")], env={})


def test_a_data_dir_that_exists_or_whose_parent_does_is_accepted(tmp_path: Path) -> None:
    assert settings_from(["--data-dir", str(tmp_path)], env={}).data_dir == str(tmp_path)
    assert settings_from(["--data-dir", str(tmp_path / "new")], env={}).data_dir == str(
        tmp_path / "new")


def test_an_unreadable_password_file_is_a_config_error(tmp_path: Path) -> None:
    env = {"DETECTOR_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "DETECTOR_SASL_USERNAME": "det",
           "DETECTOR_SASL_PASSWORD_FILE": str(tmp_path)}  # a directory: cannot be read
    with pytest.raises(SettingsError,
                       match=f"DETECTOR_SASL_PASSWORD_FILE: cannot read {tmp_path}"):
        settings_from([], env=env)


def test_a_ca_file_that_cannot_be_read_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=f"--ssl-ca-file: cannot load {tmp_path}"):
        settings_from(["--security-protocol", "SSL", "--ssl-ca-file", str(tmp_path)], env={})


def test_input_messages_are_limited_to_what_a_broker_takes_as_a_dead_letter() -> None:
    assert settings_from(["--max-message-bytes", str(MAX_MESSAGE_BYTES_LIMIT)],
                         env={}).max_message_bytes == MAX_MESSAGE_BYTES_LIMIT
    with pytest.raises(SettingsError, match="--max-message-bytes: at most"):
        settings_from(["--max-message-bytes", str(MAX_MESSAGE_BYTES_LIMIT + 1)], env={})


def test_decoding_limits_default_to_the_decoders_and_are_all_settings() -> None:
    assert settings_from([], env={}).limits == DEFAULT_LIMITS  # one place for each number
    settings = settings_from(["--max-records", "500"], env={
        "DETECTOR_MAX_MESSAGE_BYTES": "1000000", "DETECTOR_MAX_DECOMPRESSED_BYTES": "4000000",
        "DETECTOR_MAX_RECORDS": "7", "DETECTOR_MAX_CLOCK_SKEW": "2m"})
    assert settings.limits == Limits(max_message_bytes=1_000_000,
                                     max_decompressed_bytes=4_000_000, max_records=500,
                                     max_clock_skew=120.0)
    assert settings_from([], env={"DETECTOR_MAX_CLOCK_SKEW": "0"}).max_clock_skew == 0
    with pytest.raises(SettingsError, match="DETECTOR_MAX_CLOCK_SKEW"):
        settings_from([], env={"DETECTOR_MAX_CLOCK_SKEW": "-5m"})
    with pytest.raises(SettingsError, match="--max-records"):
        settings_from(["--max-records", "0"], env={})


def test_the_alerts_topic_takes_native_or_ocsf_documents() -> None:
    assert settings_from([], env={}).alert_format == "native"
    assert settings_from([], env={"DETECTOR_ALERT_FORMAT": " OCSF "}).alert_format == "ocsf"
    assert settings_from(["--alert-format", "ocsf"],
                         env={"DETECTOR_ALERT_FORMAT": "native"}).alert_format == "ocsf"
    with pytest.raises(SettingsError, match="DETECTOR_ALERT_FORMAT: 'xml' is not an alert "
                                            "format; use one of native, ocsf"):
        settings_from([], env={"DETECTOR_ALERT_FORMAT": "xml"})
    with pytest.raises(SettingsError):
        settings_from(["--alert-format", "xml"], env={})


def test_attempts_at_a_message_are_a_positive_number() -> None:
    assert settings_from([], env={"DETECTOR_MAX_ATTEMPTS": "5"}).max_attempts == 5
    with pytest.raises(SettingsError, match="--max-attempts"):
        settings_from(["--max-attempts", "0"], env={})


@pytest.mark.parametrize(("given", "message"), [
    ("--rules empty", "no rules found under {path} (DETECTOR_RULES_DIR / --rules): no rule "
                      "file (.yml, .yaml) in it"),
    ("--rules missing", "no such rules path: {path} (DETECTOR_RULES_DIR / --rules)"),
    ("--lists missing", "no such lists path: {path} (DETECTOR_LISTS_DIR / --lists)"),
])
def test_a_worker_without_rules_exits_2_before_it_connects(
    tmp_path: Path, given: str, message: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "empty").mkdir()
    flag, name = given.split()
    rules = [] if flag == "--rules" else ["--rules", str(FIXTURES / "rules")]
    code = worker_main([*rules, flag, str(tmp_path / name), "--data-dir", str(tmp_path / "data"),
                        "--bootstrap-servers", "127.0.0.1:9"])
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err == f"detector worker: {message.format(path=tmp_path / name)}\n"
    assert not (tmp_path / "data").exists()  # nothing was started
