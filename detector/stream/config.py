"""Worker settings: every option is a flag and an environment variable (flags win).

Environment variables suit Kubernetes (ConfigMap, Secret); flags suit a shell. The table in
docs/worker.md lists them all; `OPTIONS` below is the single source of both.
"""

from __future__ import annotations

import argparse
import os
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detector.durations import parse_duration
from detector.events import DEFAULT_LIMITS, Limits
from detector.sinks.formats import ALERT_FORMATS, DEFAULT_FORMAT, AlertFormat, alert_format

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
LOG_LEVELS = ("debug", "info", "warning", "error")
TLS_PROTOCOLS = ("SSL", "SASL_SSL")
# A dead letter holds up to a whole input message, and brokers refuse a request over 100 MiB
# by default (socket.request.max.bytes).
MAX_MESSAGE_BYTES_LIMIT = 64 * 1024 * 1024
SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the flag and the variable."""


@dataclass(frozen=True)
class Settings:
    """What one worker process runs with."""

    bootstrap_servers: tuple[str, ...] = ("localhost:9092",)
    input_topic: str = "cloudtrail-events"
    alerts_topic: str = "detector-alerts"
    dead_letter_topic: str = "detector-dead-letter"
    group_id: str = "detector"
    rules: tuple[str, ...] = ("rules",)
    lists: tuple[str, ...] = ()
    enable_rules: tuple[str, ...] = ()
    allowed_lateness: str = "15m"
    web_host: str = "0.0.0.0"
    web_port: int = 6066
    data_dir: str = "detector-data"
    max_message_bytes: int = DEFAULT_LIMITS.max_message_bytes
    max_decompressed_bytes: int = DEFAULT_LIMITS.max_decompressed_bytes
    max_records: int = DEFAULT_LIMITS.max_records
    max_clock_skew: float = DEFAULT_LIMITS.max_clock_skew
    alert_format: AlertFormat = DEFAULT_FORMAT
    max_attempts: int = 3
    state_partitions: int = 8
    replication_factor: int = 1
    auto_offset_reset: str = "earliest"
    commit_interval: float = 1.0
    fetch_max_wait: float = 0.1
    session_timeout: float = 10.0
    heartbeat_interval: float = 3.0
    lag_interval: float = 5.0
    stall_timeout: float = 120.0
    reload_interval: float = 10.0
    idle_timeout: float = 60.0
    log_level: str = "info"
    faust_metrics: bool = False
    security_protocol: str = "PLAINTEXT"
    ssl_ca_file: str | None = None
    ssl_cert_file: str | None = None
    ssl_key_file: str | None = None
    sasl_mechanism: str = "PLAIN"
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)

    @property
    def lateness_seconds(self) -> float:
        return parse_duration(self.allowed_lateness)

    @property
    def limits(self) -> Limits:
        """What one input message may cost and hold (`detector.events.Limits`)."""
        return Limits(max_message_bytes=self.max_message_bytes,
                      max_decompressed_bytes=self.max_decompressed_bytes,
                      max_records=self.max_records, max_clock_skew=self.max_clock_skew)


@dataclass(frozen=True)
class Option:
    """One setting: its flag, its variable, how to parse it and what it means."""

    name: str  # the Settings field
    flag: str
    env: str
    help: str
    parse: Callable[[str], Any] = str
    choices: tuple[str, ...] = ()
    multiple: bool = False  # comma-separated in the variable, repeatable as a flag
    secret: bool = False  # environment only: a flag would show in `ps`


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(f"{text!r} is not a positive integer")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"{text!r} is not a TCP port")
    return value


def _seconds(text: str) -> float:
    """A period or timeout: zero would mean a busy loop or an instant failure."""
    value = parse_duration(text)
    if value == 0:
        raise ValueError(f"{text!r}: this duration must be more than zero")
    return value


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not true or false")


def _lower(text: str) -> str:
    return text.strip().lower()


def _upper(text: str) -> str:
    return text.strip().upper()


OPTIONS: tuple[Option, ...] = (
    Option("bootstrap_servers", "--bootstrap-servers", "DETECTOR_BOOTSTRAP_SERVERS",
           "Kafka brokers, host:port, comma-separated", multiple=True),
    Option("input_topic", "--input-topic", "DETECTOR_INPUT_TOPIC",
           "topic of CloudTrail input messages"),
    Option("alerts_topic", "--alerts-topic", "DETECTOR_ALERTS_TOPIC",
           "topic the alerts are written to (JSON, keyed by group key or rule id)"),
    Option("dead_letter_topic", "--dead-letter-topic", "DETECTOR_DEAD_LETTER_TOPIC",
           "topic for input that cannot be decoded (original bytes, reason headers)"),
    Option("group_id", "--group-id", "DETECTOR_GROUP_ID",
           "consumer group and Faust app id; prefixes the internal topics"),
    Option("rules", "--rules", "DETECTOR_RULES_DIR",
           "rule files or directories, comma-separated", multiple=True),
    Option("lists", "--lists", "DETECTOR_LISTS_DIR",
           "more list files or directories (lists/ under the rules is read anyway)",
           multiple=True),
    Option("enable_rules", "--enable", "DETECTOR_ENABLE_RULES",
           "ids of rules shipped disabled to turn on, comma-separated", multiple=True),
    Option("alert_format", "--alert-format", "DETECTOR_ALERT_FORMAT",
           "document the alerts topic gets: native (docs/alert.schema.json) or ocsf (an OCSF "
           "Detection Finding)", alert_format, ALERT_FORMATS),
    Option("allowed_lateness", "--allowed-lateness", "DETECTOR_ALLOWED_LATENESS",
           "how late (event time) an event may arrive and still count in windows"),
    Option("web_host", "--web-host", "DETECTOR_WEB_HOST",
           "address of the HTTP server (/metrics, /healthz, /readyz, /status)"),
    Option("web_port", "--web-port", "DETECTOR_WEB_PORT", "port of the HTTP server", _port),
    Option("data_dir", "--data-dir", "DETECTOR_DATA_DIR",
           "Faust data directory (must be writable)"),
    Option("max_message_bytes", "--max-message-bytes", "DETECTOR_MAX_MESSAGE_BYTES",
           "input messages larger than this go to the dead-letter topic", _positive_int),
    Option("max_decompressed_bytes", "--max-decompressed-bytes",
           "DETECTOR_MAX_DECOMPRESSED_BYTES",
           "gzip messages inflating beyond this go to the dead-letter topic", _positive_int),
    Option("max_records", "--max-records", "DETECTOR_MAX_RECORDS",
           "log files, arrays and JSON lines holding more records than this go to the "
           "dead-letter topic", _positive_int),
    Option("max_clock_skew", "--max-clock-skew", "DETECTOR_MAX_CLOCK_SKEW",
           "how far (duration) an eventTime may lie ahead of the wall clock; later records go "
           "to the dead-letter topic", parse_duration),
    Option("max_attempts", "--max-attempts", "DETECTOR_MAX_ATTEMPTS",
           "times a message may kill the worker before it goes to the dead-letter topic "
           "unprocessed", _positive_int),
    Option("state_partitions", "--state-partitions", "DETECTOR_STATE_PARTITIONS",
           "partitions of the repartition and changelog topics (fixed once created)",
           _positive_int),
    Option("replication_factor", "--replication-factor", "DETECTOR_REPLICATION_FACTOR",
           "replication factor of the topics the worker creates", _positive_int),
    Option("auto_offset_reset", "--auto-offset-reset", "DETECTOR_AUTO_OFFSET_RESET",
           "where a new consumer group starts", _lower, ("earliest", "latest")),
    Option("commit_interval", "--commit-interval", "DETECTOR_COMMIT_INTERVAL",
           "seconds (or 500ms, 2s) between offset commits; alerts leave at commit",
           _seconds),
    Option("fetch_max_wait", "--fetch-max-wait", "DETECTOR_FETCH_MAX_WAIT",
           "longest a fetch waits at the broker for records (Faust's own: 1.5 s)", _seconds),
    Option("session_timeout", "--session-timeout", "DETECTOR_SESSION_TIMEOUT",
           "consumer session timeout: how soon a dead worker's partitions move", _seconds),
    Option("heartbeat_interval", "--heartbeat-interval", "DETECTOR_HEARTBEAT_INTERVAL",
           "consumer heartbeat interval (a third of the session timeout or less)", _seconds),
    Option("lag_interval", "--lag-interval", "DETECTOR_LAG_INTERVAL",
           "how often the consumer lag gauge is refreshed", _seconds),
    Option("stall_timeout", "--stall-timeout", "DETECTOR_STALL_TIMEOUT",
           "/readyz fails when a lagging partition made no progress for this long", _seconds),
    Option("reload_interval", "--reload-interval", "DETECTOR_RELOAD_INTERVAL",
           "how often the rule files are checked for changes; 0 turns reloading off",
           parse_duration),
    Option("idle_timeout", "--idle-timeout", "DETECTOR_IDLE_TIMEOUT",
           "an input partition silent this long (wall clock) stops holding event time back; "
           "a state partition without records or beats this long advances its event time "
           "with the wall clock", _seconds),
    Option("log_level", "--log-level", "DETECTOR_LOG_LEVEL", "log level", _lower, LOG_LEVELS),
    Option("faust_metrics", "--faust-metrics", "DETECTOR_FAUST_METRICS",
           "also expose Faust's own sensors on /metrics (true/false)", _boolean),
    Option("security_protocol", "--security-protocol", "DETECTOR_SECURITY_PROTOCOL",
           "how to talk to the brokers", _upper, SECURITY_PROTOCOLS),
    Option("ssl_ca_file", "--ssl-ca-file", "DETECTOR_SSL_CA_FILE",
           "CA bundle (PEM) to verify the brokers (SSL, SASL_SSL); system CAs otherwise"),
    Option("ssl_cert_file", "--ssl-cert-file", "DETECTOR_SSL_CERT_FILE",
           "client certificate (PEM) for mutual TLS"),
    Option("ssl_key_file", "--ssl-key-file", "DETECTOR_SSL_KEY_FILE",
           "private key (PEM) of the client certificate"),
    Option("sasl_mechanism", "--sasl-mechanism", "DETECTOR_SASL_MECHANISM",
           "SASL mechanism (SASL_PLAINTEXT, SASL_SSL)", _upper, SASL_MECHANISMS),
    Option("sasl_username", "--sasl-username", "DETECTOR_SASL_USERNAME", "SASL user name"),
    Option("sasl_password", "", "DETECTOR_SASL_PASSWORD",
           "SASL password (environment only)", secret=True),
)
PASSWORD_FILE_ENV = "DETECTOR_SASL_PASSWORD_FILE"


def parser() -> argparse.ArgumentParser:
    """The `detector worker` argument parser; defaults are resolved later from the env."""
    parser = argparse.ArgumentParser(
        prog="detector worker",
        description="Run the stream worker: consume CloudTrail events from Kafka, evaluate "
        "the rules, produce alerts. Every flag has an environment variable (docs/worker.md).",
    )
    for option in OPTIONS:
        if option.secret:
            continue
        parser.add_argument(
            option.flag,
            dest=option.name,
            action="append" if option.multiple else "store",
            default=None,
            choices=option.choices or None,
            type=option.parse if option.choices else str,
            help=f"{option.help} [{option.env}]",
        )
    return parser


def settings_from(argv: Sequence[str], env: Mapping[str, str] | None = None) -> Settings:
    """Settings from flags, then the environment, then the defaults. Raises ConfigError."""
    environ = os.environ if env is None else env
    try:
        args = parser().parse_args(list(argv))
    except SystemExit as exit_:
        if not exit_.code:
            raise  # --help
        raise ConfigError("invalid command line (see the message above)") from exit_
    values: dict[str, Any] = {}
    for option in OPTIONS:
        given = None if option.secret else getattr(args, option.name)
        source = option.flag
        if given is None and environ.get(option.env, "").strip():
            given = environ[option.env]
            source = option.env
        if given is None:
            continue
        values[option.name] = _parse(option, given, source)
    password_file = environ.get(PASSWORD_FILE_ENV, "").strip()
    if password_file and "sasl_password" not in values:
        try:
            values["sasl_password"] = Path(password_file).read_text().strip()
        except OSError as error:
            raise ConfigError(f"{PASSWORD_FILE_ENV}: cannot read {password_file}: "
                              f"{error.strerror or error}") from None
    settings = Settings(**values)
    _check(settings, set(values))
    return settings


def _parse(option: Option, given: str | list[str], source: str) -> Any:
    items = given if isinstance(given, list) else [given]
    if option.multiple:
        parts = [part.strip() for item in items for part in item.split(",") if part.strip()]
        return tuple(parts)
    text = items[-1]
    try:
        value = option.parse(text)
    except ValueError as error:
        raise ConfigError(f"{source}: {error}") from None
    if option.choices and value not in option.choices:
        raise ConfigError(f"{source}: {text!r} is not one of {', '.join(option.choices)}")
    return value


def _check(settings: Settings, given: set[str]) -> None:
    """Refuse what would fail later with a traceback, or be silently ignored."""
    if not settings.bootstrap_servers:
        raise ConfigError("DETECTOR_BOOTSTRAP_SERVERS / --bootstrap-servers is empty")
    if not settings.rules:
        raise ConfigError("DETECTOR_RULES_DIR / --rules is empty")
    try:
        settings.lateness_seconds  # noqa: B018 - validation by parsing
    except ValueError as error:
        raise ConfigError(f"DETECTOR_ALLOWED_LATENESS / --allowed-lateness: {error}") from None
    if settings.max_message_bytes > MAX_MESSAGE_BYTES_LIMIT:
        raise ConfigError(f"{option_name('max_message_bytes')}: at most {MAX_MESSAGE_BYTES_LIMIT} "
                          "(a dead letter holds a whole input message, and brokers refuse "
                          "requests over 100 MiB by default)")
    _check_data_dir(settings.data_dir)
    if settings.heartbeat_interval * 3 > settings.session_timeout:
        raise ConfigError("the heartbeat interval must be at most a third of the session timeout")
    sasl = settings.security_protocol.startswith("SASL")
    if sasl and not (settings.sasl_username and settings.sasl_password):
        raise ConfigError(
            f"{settings.security_protocol} needs DETECTOR_SASL_USERNAME and "
            f"DETECTOR_SASL_PASSWORD (or {PASSWORD_FILE_ENV})"
        )
    if bool(settings.ssl_cert_file) != bool(settings.ssl_key_file):
        raise ConfigError("DETECTOR_SSL_CERT_FILE and DETECTOR_SSL_KEY_FILE go together")
    _check_unused(settings, given)
    if settings.security_protocol in TLS_PROTOCOLS:
        ssl_context(settings)  # a missing or bad PEM file is a ConfigError now, not at connect


def _check_data_dir(path: str) -> None:
    """The data directory exists and is writable, or can be created (its parent does and is)."""
    directory = Path(path)
    where = option_name("data_dir")
    if directory.exists():
        if not directory.is_dir():
            raise ConfigError(f"{where}: {path} is not a directory")
        target = directory
    else:
        target = directory.parent
        if not target.is_dir():
            problem = "is not a directory" if target.exists() else "does not exist"
            raise ConfigError(f"{where}: cannot create {path}: {target} {problem}")
    if not os.access(target, os.W_OK | os.X_OK):
        raise ConfigError(f"{where}: {target} is not writable")


def _check_unused(settings: Settings, given: set[str]) -> None:
    """TLS and SASL options the security protocol ignores are a mistake: say so."""
    protocol = settings.security_protocol
    unused = []
    if protocol not in TLS_PROTOCOLS:
        unused += [name for name in ("ssl_ca_file", "ssl_cert_file", "ssl_key_file")
                   if getattr(settings, name)]
    if protocol not in SASL_PROTOCOLS:
        unused += [name for name in ("sasl_mechanism", "sasl_username", "sasl_password")
                   if name in given and getattr(settings, name)]
    if unused:
        names = ", ".join(option_name(name) for name in unused)
        raise ConfigError(f"{names}: not used with security protocol {protocol} (TLS options "
                          f"need {' or '.join(TLS_PROTOCOLS)}, SASL options "
                          f"{' or '.join(SASL_PROTOCOLS)})")


def option_name(name: str) -> str:
    """How an operator sets a field: `VARIABLE / --flag` (the variable alone for secrets)."""
    option = next(option for option in OPTIONS if option.name == name)
    return f"{option.env} / {option.flag}" if option.flag else option.env


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """A client TLS context verifying the brokers, with the client certificate if given.

    Raises ConfigError naming the file that cannot be read or is not valid PEM.
    """
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                             cafile=settings.ssl_ca_file)
    except OSError as error:  # ssl.SSLError is an OSError
        raise ConfigError(f"{option_name('ssl_ca_file')}: cannot load {settings.ssl_ca_file}: "
                          f"{error.strerror or error}") from None
    if settings.ssl_cert_file and settings.ssl_key_file:
        try:
            # an empty password: an encrypted key fails here instead of prompting on a tty
            context.load_cert_chain(settings.ssl_cert_file, settings.ssl_key_file, password="")
        except OSError as error:
            raise ConfigError(
                f"{option_name('ssl_cert_file')}, {option_name('ssl_key_file')}: cannot load "
                f"{settings.ssl_cert_file} with {settings.ssl_key_file}: "
                f"{error.strerror or error}") from None
    return context


def client_options(settings: Settings) -> dict[str, Any]:
    """aiokafka client options (brokers and security) for tools that do not go through Faust."""
    options: dict[str, Any] = {
        "bootstrap_servers": list(settings.bootstrap_servers),
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl_context(settings)
    if settings.security_protocol.startswith("SASL"):
        options.update(sasl_mechanism=settings.sasl_mechanism,
                       sasl_plain_username=settings.sasl_username,
                       sasl_plain_password=settings.sasl_password)
    return options


def broker_credentials(settings: Settings) -> Any:
    """Faust's `broker_credentials` for the security protocol, None for PLAINTEXT."""
    import faust

    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=settings.sasl_password,
        mechanism=settings.sasl_mechanism,
        ssl_context=ssl_context(settings) if protocol == "SASL_SSL" else None,
    )
