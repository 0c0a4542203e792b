"""Worker settings: flags win over environment variables, which win over the defaults."""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
import pytest

from detector.stream.config import (
    OPTIONS,
    ConfigError,
    Settings,
    broker_credentials,
    parse_duration,
    settings_from,
)


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
        ({"DETECTOR_ALLOWED_LATENESS": "soon"}, "lateness"),
        ({"DETECTOR_SECURITY_PROTOCOL": "SASL_SSL"}, "DETECTOR_SASL_USERNAME"),
        ({"DETECTOR_SSL_CERT_FILE": "cert.pem"}, "DETECTOR_SSL_KEY_FILE"),
        ({"DETECTOR_HEARTBEAT_INTERVAL": "20s"}, "third of the session timeout"),
        ({"DETECTOR_FAUST_METRICS": "maybe"}, "DETECTOR_FAUST_METRICS"),
    ],
)
def test_invalid_settings_name_what_to_fix(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from([], env=env)


def test_the_password_comes_from_the_environment_or_a_file_never_a_flag(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    env = {"DETECTOR_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "DETECTOR_SASL_USERNAME": "det",
           "DETECTOR_SASL_PASSWORD_FILE": str(secret)}
    settings = settings_from([], env=env)
    assert settings.sasl_password == "s3cret"
    assert "s3cret" not in repr(settings)
    assert all(option.flag == "" for option in OPTIONS if option.secret)


def test_durations() -> None:
    assert parse_duration("90") == 90
    assert parse_duration("500ms") == 0.5
    assert parse_duration("15m") == 900
    assert parse_duration("2h") == 7200
    assert parse_duration("1d") == 86400
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("fortnight")


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
