"""Sinks from environment variables, `*_FILE` secrets and a YAML sinks file, read by the same
settings model and value types as the worker's."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import pytest

from detector.metrics import Metrics
from detector.settings import SettingsError
from detector.settings.sinks import sink_configs as configs_or_problems
from detector.sinks import (
    AlertmanagerConfig,
    AlertmanagerSink,
    RetryPolicy,
    Route,
    Secret,
    SinkConfig,
    SlackConfig,
    SlackSink,
    StdoutConfig,
    StdoutSink,
    WebhookConfig,
    load_sinks,
)
from sinks.builders import make_alert
from sinks.tls import PrivateCA

SLACK_URL = "https://hooks.slack.com/services/T0/B0/slacksecret"


def sink_configs(environ: Mapping[str, str]) -> list[SinkConfig]:
    """The configs, or the SettingsError raised (so a test can match its text)."""
    configs = configs_or_problems(environ)
    if isinstance(configs, SettingsError):
        raise configs
    return configs


def only(configs: list[SinkConfig]) -> SinkConfig:
    assert len(configs) == 1, configs
    return configs[0]


def test_nothing_configured_means_no_sinks(metrics: Metrics) -> None:
    sinks = load_sinks(metrics, {})
    assert len(sinks) == 0
    assert sinks.submit(make_alert()) == 0


def test_the_webhook_from_environment_variables() -> None:
    config = only(
        sink_configs(
            {
                "DETECTOR_WEBHOOK_URL": "https://soar.example/hook",
                "DETECTOR_WEBHOOK_TOKEN": "tok",
                "DETECTOR_WEBHOOK_SECRET": "key",
                "DETECTOR_WEBHOOK_AUTH_HEADER": "X-Api-Key",
                "DETECTOR_WEBHOOK_MIN_LEVEL": "High",
                "DETECTOR_WEBHOOK_TAGS": "attack.impact, attack.t1485",
                "DETECTOR_WEBHOOK_EXCLUDE_TAGS": "test",
                "DETECTOR_WEBHOOK_MAX_ATTEMPTS": "7",
                "DETECTOR_WEBHOOK_TIMEOUT": "2.5",
            }
        )
    )
    assert config == WebhookConfig(
        name="webhook",
        url=Secret("https://soar.example/hook"),
        token=Secret("tok"),
        hmac_secret=Secret("key"),
        auth_header="X-Api-Key",
        route=Route(
            min_level="high",
            include_tags=("attack.impact", "attack.t1485"),
            exclude_tags=("test",),
        ),
        retry=RetryPolicy(max_attempts=7, timeout=2.5),
    )


def test_secrets_can_come_from_files(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("file-token\n")
    (tmp_path / "slack").write_text(SLACK_URL + "\n")
    configs = sink_configs(
        {
            "DETECTOR_WEBHOOK_URL": "https://soar.example/hook",
            "DETECTOR_WEBHOOK_TOKEN_FILE": str(tmp_path / "token"),
            "DETECTOR_SLACK_WEBHOOK_URL_FILE": str(tmp_path / "slack"),
        }
    )
    webhook, slack = configs
    assert isinstance(webhook, WebhookConfig) and isinstance(slack, SlackConfig)
    assert webhook.token == Secret("file-token")
    assert slack.url == Secret(SLACK_URL)


def test_each_kind_and_the_common_defaults(metrics: Metrics) -> None:
    environ = {
        "DETECTOR_SLACK_WEBHOOK_URL": SLACK_URL,
        "DETECTOR_SLACK_MIN_LEVEL": "medium",
        "DETECTOR_ALERTMANAGER_URL": "http://alertmanager:9093",
        "DETECTOR_ALERTMANAGER_RESOLVE_TIMEOUT": "7200",
        "DETECTOR_ALERTMANAGER_ALERT_ID_LABEL": "false",
        "DETECTOR_STDOUT_SINK": "1",
        "DETECTOR_SINK_QUEUE_SIZE": "50",
        "DETECTOR_SINK_RETRY_CAP": "5",
        "DETECTOR_STDOUT_QUEUE_SIZE": "10",
    }
    sinks = load_sinks(metrics, environ)
    assert sinks.names == ["slack", "alertmanager", "stdout"]
    slack, alertmanager, stdout = sinks
    assert isinstance(slack, SlackSink) and isinstance(alertmanager, AlertmanagerSink)
    assert isinstance(stdout, StdoutSink)
    assert slack.config.route.min_level == "medium"
    assert isinstance(alertmanager.config, AlertmanagerConfig)
    assert alertmanager.config.resolve_timeout == 7200
    assert alertmanager.config.alert_id_label is False
    assert alertmanager.config.retry.max_delay == 5
    assert alertmanager.config.queue_size == 50
    assert stdout.config.queue_size == 10


def test_webhook_and_stdout_write_native_documents_unless_told_ocsf(tmp_path: Path) -> None:
    sinks_file = tmp_path / "sinks.yaml"
    sinks_file.write_text(
        "sinks:\n"
        "  - {name: siem, type: webhook, url: https://siem.example/in, format: ocsf}\n"
        "  - {name: archive, type: webhook, url: https://archive.example/in}\n"
        "  - {name: lines, type: stdout, format: Native}\n"
    )
    environ = {
        "DETECTOR_WEBHOOK_URL": "https://soar.example/hook",
        "DETECTOR_WEBHOOK_FORMAT": "OCSF",
        "DETECTOR_STDOUT_SINK": "1",
        "DETECTOR_STDOUT_FORMAT": "ocsf",
        "DETECTOR_SINKS_FILE": str(sinks_file),
    }
    formats = {config.name: getattr(config, "alert_format", None)
               for config in sink_configs(environ)}
    assert formats == {"webhook": "ocsf", "stdout": "ocsf", "siem": "ocsf",
                       "archive": "native", "lines": "native"}
    defaults = sink_configs({"DETECTOR_WEBHOOK_URL": "https://w/", "DETECTOR_STDOUT_SINK": "1"})
    assert [getattr(config, "alert_format", None) for config in defaults] == ["native", "native"]


def test_empty_variables_count_as_unset() -> None:
    """Manifests often template every variable and leave the unused ones empty."""
    environ = dict.fromkeys(
        ["DETECTOR_WEBHOOK_URL", "DETECTOR_WEBHOOK_TOKEN", "DETECTOR_SINK_TIMEOUT"], ""
    )
    environ |= {"DETECTOR_ALERTMANAGER_URL": "http://am", "DETECTOR_ALERTMANAGER_TAGS": ""}
    config = only(sink_configs(environ))
    assert isinstance(config, AlertmanagerConfig)
    assert config.route == Route()
    assert config.retry == RetryPolicy()


def test_times_are_durations_as_for_the_worker() -> None:
    config = only(sink_configs({"DETECTOR_ALERTMANAGER_URL": "http://am",
                                "DETECTOR_SINK_TIMEOUT": "2s", "DETECTOR_SINK_RETRY_BASE": "250ms",
                                "DETECTOR_ALERTMANAGER_RESOLVE_TIMEOUT": "2h",
                                "DETECTOR_ALERTMANAGER_MAX_RETRY_AFTER": "90"}))
    assert isinstance(config, AlertmanagerConfig)
    assert (config.retry.timeout, config.retry.base_delay) == (2.0, 0.25)
    assert (config.resolve_timeout, config.retry.max_retry_after) == (7200.0, 90.0)


def test_every_problem_is_reported_at_once_naming_where_it_came_from() -> None:
    problems = configs_or_problems({
        "DETECTOR_WEBHOOK_URL": "https://x/", "DETECTOR_WEBHOOK_TIMEOUT": "-1s",
        "DETECTOR_SINK_MAX_ATTEMPTS": "many", "DETECTOR_STDOUT_FORMAT": "ocsf"})
    assert isinstance(problems, SettingsError)
    assert sorted(problem.source for problem in problems.problems) == [
        "DETECTOR_SINK_MAX_ATTEMPTS", "DETECTOR_STDOUT_FORMAT", "DETECTOR_WEBHOOK_TIMEOUT"]


def test_stdout_sink_off_by_default_and_for_false_values() -> None:
    assert sink_configs({"DETECTOR_STDOUT_SINK": "0"}) == []
    assert sink_configs({"DETECTOR_STDOUT_SINK": ""}) == []  # empty counts as unset
    assert isinstance(only(sink_configs({"DETECTOR_STDOUT_SINK": "yes"})), StdoutConfig)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"DETECTOR_WEBHOOK_TOKEN": "tok"},
            "DETECTOR_WEBHOOK_TOKEN: is set but neither DETECTOR_WEBHOOK_URL nor",
        ),
        (
            {"DETECTOR_WEBHOOK_URL": "https://x/", "DETECTOR_WEBHOOK_TOKEN": "a",
             "DETECTOR_WEBHOOK_TOKEN_FILE": "/b"},
            "DETECTOR_WEBHOOK_TOKEN: set DETECTOR_WEBHOOK_TOKEN or DETECTOR_WEBHOOK_TOKEN_FILE, "
            "not both",
        ),
        (
            {"DETECTOR_WEBHOOK_URL": "https://x/", "DETECTOR_WEBHOOK_TOKEN_FILE": "/nonexistent"},
            "DETECTOR_WEBHOOK_TOKEN_FILE: cannot read /nonexistent: No such file",
        ),
        (
            {"DETECTOR_SLACK_WEBHOOK_URL": "hooks.slack.com/services/T0/B0/slacksecret"},
            "DETECTOR_SLACK_WEBHOOK_URL: must be an http:// or https:// URL",
        ),
        (
            {"DETECTOR_ALERTMANAGER_URL": "http://am", "DETECTOR_ALERTMANAGER_MIN_LEVEL": "warn"},
            "DETECTOR_ALERTMANAGER_MIN_LEVEL: 'warn' is not one of informational, low",
        ),
        (
            {"DETECTOR_ALERTMANAGER_URL": "http://am", "DETECTOR_SINK_TIMEOUT": "soon"},
            "DETECTOR_SINK_TIMEOUT: 'soon' is not a duration",
        ),
        (
            {"DETECTOR_ALERTMANAGER_URL": "http://am", "DETECTOR_ALERTMANAGER_MAX_ATTEMPTS": "0"},
            "DETECTOR_ALERTMANAGER_MAX_ATTEMPTS: 0 is not a positive whole number",
        ),
        (
            {"DETECTOR_SLACK_WEBHOOK_URL": SLACK_URL, "DETECTOR_SLACK_MIN_LEVLE": "high"},
            "DETECTOR_SLACK_MIN_LEVLE: unknown sink setting",
        ),
        (
            {"DETECTOR_SLACK_WEBHOOK_URL": SLACK_URL, "DETECTOR_SLACK_TOKEN": "x"},
            "DETECTOR_SLACK_TOKEN: unknown sink setting",
        ),
        (
            {"DETECTOR_STDOUT_SINK": "maybe"},
            "DETECTOR_STDOUT_SINK: 'maybe' is not true or false",
        ),
        (
            {"DETECTOR_WEBHOOK_URL": "https://bot:slacksecret@hooks.example.com/x",
             "DETECTOR_WEBHOOK_TOKEN": "tok"},
            "DETECTOR_WEBHOOK_URL: carries credentials .* a token is set for the same",
        ),
        (
            {"DETECTOR_ALERTMANAGER_URL": "https://am:slacksecret@am.example.com",
             "DETECTOR_ALERTMANAGER_TOKEN": "Basic eDp5"},
            "DETECTOR_ALERTMANAGER_URL: carries credentials",
        ),
        (
            {"DETECTOR_WEBHOOK_URL": "https://x/", "DETECTOR_SINK_PROXY": "proxy:3128"},
            "DETECTOR_SINK_PROXY: must be an http:// or https:// URL",
        ),
        (
            {"DETECTOR_SLACK_WEBHOOK_URL": SLACK_URL, "DETECTOR_SLACK_CA_FILE": "/nonexistent"},
            "DETECTOR_SLACK_CA_FILE: cannot load CA bundle /nonexistent",
        ),
        (
            {"DETECTOR_STDOUT_SINK": "1", "DETECTOR_STDOUT_CA_FILE": "/etc/ssl/ca.pem"},
            "DETECTOR_STDOUT_CA_FILE: unknown sink setting",
        ),
        (
            {"DETECTOR_WEBHOOK_PROXY": "http://proxy:3128"},
            "DETECTOR_WEBHOOK_PROXY: is set but neither DETECTOR_WEBHOOK_URL",
        ),
        (
            {"DETECTOR_WEBHOOK_URL": "https://x/", "DETECTOR_WEBHOOK_FORMAT": "cef"},
            "DETECTOR_WEBHOOK_FORMAT: 'cef' is not an alert format; use one of native, ocsf",
        ),
        (
            {"DETECTOR_STDOUT_SINK": "1", "DETECTOR_STDOUT_FORMAT": "ocsf-1.5"},
            "DETECTOR_STDOUT_FORMAT: 'ocsf-1.5' is not an alert format",
        ),
        (
            {"DETECTOR_SLACK_WEBHOOK_URL": SLACK_URL, "DETECTOR_SLACK_FORMAT": "ocsf"},
            "DETECTOR_SLACK_FORMAT: unknown sink setting",
        ),
        (
            {"DETECTOR_ALERTMANAGER_URL": "http://am", "DETECTOR_SINK_FORMAT": "ocsf"},
            "DETECTOR_SINK_FORMAT: unknown sink setting",
        ),
    ],
)
def test_mistakes_name_the_variable_to_fix(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message) as caught:
        sink_configs(environ)
    assert "slacksecret" not in str(caught.value)


def test_several_sinks_of_one_kind_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "pager-token").write_text("pager-tok")
    sinks_file = tmp_path / "sinks.yaml"
    sinks_file.write_text(
        f"""
defaults:
  timeout: 3
  retry_cap: 10
sinks:
  - name: pager
    type: webhook
    url: https://pager.example/hook
    token_file: {tmp_path / "pager-token"}
    secret_env: PAGER_HMAC
    min_level: critical
  - name: soar
    type: webhook
    url_env: SOAR_URL
    tags: [attack.impact, "attack.t14*"]
    exclude_tags: [test]
    timeout: 8
  - name: secops-chat
    type: slack
    url_env: SECOPS_SLACK
    min_level: high
"""
    )
    environ = {
        "DETECTOR_SINKS_FILE": str(sinks_file),
        "PAGER_HMAC": "pager-key",
        "SOAR_URL": "https://soar.example/in",
        "SECOPS_SLACK": SLACK_URL,
        "DETECTOR_STDOUT_SINK": "1",
    }
    stdout, pager, soar, chat = sink_configs(environ)
    assert isinstance(stdout, StdoutConfig)
    assert pager == WebhookConfig(
        name="pager",
        url=Secret("https://pager.example/hook"),
        token=Secret("pager-tok"),
        hmac_secret=Secret("pager-key"),
        route=Route(min_level="critical"),
        retry=RetryPolicy(timeout=3, max_delay=10),
    )
    assert isinstance(soar, WebhookConfig)
    assert soar.url == Secret("https://soar.example/in")
    assert soar.route == Route(
        include_tags=("attack.impact", "attack.t14*"), exclude_tags=("test",)
    )
    assert soar.retry.timeout == 8
    assert isinstance(chat, SlackConfig)
    assert chat.url == Secret(SLACK_URL)
    assert chat.route.min_level == "high"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("name: a\n    type: webhook\n    url: https://x/\n    token: inline",
         "token: must not be written in the sinks file; use token_env"),
        (f"name: a\n    type: slack\n    url: {SLACK_URL}",
         "url: must not be written in the sinks file"),
        ("name: a\n    type: webhook\n    url: https://x/\n    min_levle: high",
         "unknown key 'min_levle' for a webhook sink"),
        ("name: a\n    type: pagerduty\n    url: https://x/", "type must be one of webhook"),
        ("type: webhook\n    url: https://x/", "every sink needs a name"),
        ("name: a\n    type: webhook\n    url_env: UNSET_VARIABLE",
         "url_env: names UNSET_VARIABLE, which is not set"),
        ("name: Bad Name\n    type: stdout", "sink name 'Bad Name' must be"),
        ("name: webhook\n    type: stdout", "sink names must be unique: webhook repeated"),
        ("name: a\n    type: alertmanager\n    url: http://am\n    format: ocsf",
         "unknown key 'format' for a alertmanager sink"),
        ("name: a\n    type: stdout\n    format: xml",
         "sink 'a': format: 'xml' is not an alert format"),
        ("name: a\n    type: webhook\n    url: https://x/\n    timeout: 0",
         "sink 'a': timeout: must be more than zero"),
        ("name: a\n    type: webhook\n    url: https://x/\n    timeout: 2s\n    retry_cap: soon",
         "sink 'a': retry_cap: 'soon' is not a duration"),
    ],
)
def test_sinks_file_mistakes_are_explained(tmp_path: Path, entry: str, message: str) -> None:
    sinks_file = tmp_path / "sinks.yaml"
    sinks_file.write_text(f"sinks:\n  - {entry}\n")
    environ = {"DETECTOR_SINKS_FILE": str(sinks_file), "DETECTOR_WEBHOOK_URL": "https://w/"}
    with pytest.raises(SettingsError, match=message) as caught:
        sink_configs(environ)
    assert "slacksecret" not in str(caught.value)


def test_a_sinks_file_that_is_not_a_sink_list_is_rejected(tmp_path: Path) -> None:
    sinks_file = tmp_path / "sinks.yaml"
    sinks_file.write_text("- name: a\n")
    with pytest.raises(SettingsError, match="expected a mapping with a 'sinks' list"):
        sink_configs({"DETECTOR_SINKS_FILE": str(sinks_file)})


def test_configs_and_sinks_show_no_secret_in_repr_or_logs(
    metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    environ = {
        "DETECTOR_WEBHOOK_URL": "https://soar.example/hook?key=urlsecret",
        "DETECTOR_WEBHOOK_TOKEN": "tokensecret",
        "DETECTOR_WEBHOOK_SECRET": "hmacsecret",
        "DETECTOR_SLACK_WEBHOOK_URL": SLACK_URL,
    }
    sinks = load_sinks(metrics, environ)
    logging.getLogger("test").warning("configured %r", sinks)
    shown = repr(sinks) + repr(sink_configs(environ)) + caplog.text
    assert "Secret('***')" in shown
    for secret in ("urlsecret", "tokensecret", "hmacsecret", "slacksecret"):
        assert secret not in shown


def test_url_credentials_go_with_a_token_in_another_header() -> None:
    config = only(sink_configs({
        "DETECTOR_WEBHOOK_URL": "https://bot:pw@hooks.example.com/x",
        "DETECTOR_WEBHOOK_TOKEN": "key",
        "DETECTOR_WEBHOOK_AUTH_HEADER": "X-Api-Key",
    }))
    assert isinstance(config, WebhookConfig)
    assert config.auth_header == "X-Api-Key"


def test_url_credentials_and_a_token_fail_when_the_sinks_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "sinks.yaml"
    path.write_text(
        "sinks:\n"
        "  - {name: pager, type: webhook, url: 'https://u:p@pager.example.com/',"
        " token_env: PAGER_TOKEN}\n"
    )
    environ = {"DETECTOR_SINKS_FILE": str(path), "PAGER_TOKEN": "t"}
    with pytest.raises(SettingsError, match="sink 'pager': url: carries credentials") as caught:
        sink_configs(environ)
    assert ":p@" not in str(caught.value)


def test_proxy_for_every_http_sink_with_a_per_sink_override(tmp_path: Path) -> None:
    proxy_file = tmp_path / "proxy"
    proxy_file.write_text("http://user:proxysecret@proxy.internal:3128\n")
    configs = {
        config.name: config
        for config in sink_configs({
            "DETECTOR_WEBHOOK_URL": "https://hooks.example.com/x",
            "DETECTOR_SLACK_WEBHOOK_URL": SLACK_URL,
            "DETECTOR_STDOUT_SINK": "1",
            "DETECTOR_SINK_PROXY_FILE": str(proxy_file),
            "DETECTOR_SLACK_PROXY": "http://egress.internal:8080",
        })
    }
    webhook, slack = configs["webhook"], configs["slack"]
    assert isinstance(webhook, WebhookConfig) and isinstance(slack, SlackConfig)
    assert webhook.proxy == Secret("http://user:proxysecret@proxy.internal:3128")
    assert slack.proxy == Secret("http://egress.internal:8080")
    assert "proxysecret" not in repr(configs)


def test_a_ca_bundle_for_every_http_sink(tmp_path: Path, private_ca: PrivateCA) -> None:
    (config,) = sink_configs({
        "DETECTOR_ALERTMANAGER_URL": "https://alertmanager.monitoring:9093",
        "DETECTOR_SINK_CA_FILE": str(private_ca.ca_file),
    })
    assert isinstance(config, AlertmanagerConfig)
    assert config.ca_file == str(private_ca.ca_file)
    garbage = tmp_path / "not-a-ca.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(SettingsError, match=f"cannot load CA bundle {garbage}"):
        sink_configs({
            "DETECTOR_ALERTMANAGER_URL": "https://alertmanager.monitoring:9093",
            "DETECTOR_ALERTMANAGER_CA_FILE": str(garbage),
        })


def test_proxy_and_ca_file_in_the_sinks_file(tmp_path: Path, private_ca: PrivateCA) -> None:
    path = tmp_path / "sinks.yaml"
    path.write_text(
        f"defaults: {{ca_file: {private_ca.ca_file}}}\n"
        "sinks:\n"
        "  - {name: soar, type: webhook, url: 'https://soar.example.com/',"
        " proxy_env: SOAR_PROXY}\n"
    )
    (config,) = sink_configs({"DETECTOR_SINKS_FILE": str(path), "SOAR_PROXY": "http://p:3128"})
    assert isinstance(config, WebhookConfig)
    assert config.proxy == Secret("http://p:3128")
    assert config.ca_file == str(private_ca.ca_file)


def test_a_secret_file_or_sinks_file_beyond_its_bound_is_refused_not_read_whole(
    tmp_path: Path
) -> None:
    huge = tmp_path / "huge"
    huge.write_bytes(b"x" * (64 * 1024 + 1))
    with pytest.raises(SettingsError, match=r"DETECTOR_WEBHOOK_TOKEN_FILE: .* is larger than "
                                            r"65536 bytes"):
        sink_configs({"DETECTOR_WEBHOOK_URL": "https://x/",
                      "DETECTOR_WEBHOOK_TOKEN_FILE": str(huge)})
    laughs = tmp_path / "sinks.yaml"
    laughs.write_text("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8)) + "sinks: []\n")
    with pytest.raises(SettingsError, match="not valid YAML"):
        sink_configs({"DETECTOR_SINKS_FILE": str(laughs)})
