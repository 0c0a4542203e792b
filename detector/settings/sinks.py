"""The sinks' settings, from DETECTOR_<SINK>_<KEY> variables and the YAML sinks file
(DETECTOR_SINKS_FILE), validated by one model per kind of sink with the worker's value types.

Secrets (URLs that embed credentials, tokens, HMAC keys, proxy URLs) come from a variable, a
`_FILE` variable, or in the sinks file from `<key>_env` / `<key>_file`; never inline in that
file (a ConfigMap) except the webhook and Alertmanager URLs and proxies. Keys every sink has
fall back to the file's `defaults`, then to DETECTOR_SINK_<KEY>.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from detector.alerts import LEVELS
from detector.engine.yamlfiles import documents, read_text
from detector.settings.model import Named, problems_of, read_secret_file
from detector.settings.types import (
    Boolean,
    Items,
    PositiveDuration,
    PositiveInt,
    Problem,
    Secret,
    SettingsError,
    Text,
    choice,
    holds_secret,
    parse_boolean,
)
from detector.sinks.alertmanager import AlertmanagerConfig
from detector.sinks.base import HttpSinkConfig, RetryPolicy, SinkConfig, tls_context
from detector.sinks.formats import ALERT_FORMATS, DEFAULT_FORMAT, AlertFormat
from detector.sinks.formats import alert_format as parse_alert_format
from detector.sinks.routing import Route
from detector.sinks.slack import SlackConfig
from detector.sinks.stdout import StdoutConfig
from detector.sinks.webhook import WebhookConfig

SINKS_FILE_VARIABLE = "DETECTOR_SINKS_FILE"
STDOUT_SWITCH = "DETECTOR_STDOUT_SINK"
SHARED_PREFIX = "DETECTOR_SINK"


def _default(config: type[Any], name: str) -> Any:
    """A default of the sink configs, so each number lives in one place."""
    return next(spec.default for spec in dataclasses.fields(config) if spec.name == name)


def _http_url(secret: Secret) -> Secret:
    try:
        parts = urlsplit(secret.reveal().strip())
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        valid = False
    if not valid:
        raise ValueError("must be an http:// or https:// URL with a host")
    return Secret(secret.reveal().strip())


def _ca_bundle(path: str | None) -> str | None:
    """A readable PEM bundle (loaded now, so a wrong path stops the worker at start-up)."""
    if path is not None:
        try:
            tls_context(path)
        except OSError as error:  # ssl.SSLError is one: not PEM, no certificate in it
            raise ValueError(f"cannot load CA bundle {path}: {error.strerror or error}") from None
    return path


class Inline:
    """A secret key the sinks file may also hold inline (a URL without credentials is common)."""


UrlSecret = Annotated[Secret, AfterValidator(_http_url)]
_INLINE = Inline()


class SinkKeys(BaseModel):
    """The keys every sink has; each also falls back to DETECTOR_SINK_<KEY>."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)
    kind: ClassVar[str]
    prefix: ClassVar[str]

    min_level: Annotated[str, choice(LEVELS)] = Field(LEVELS[0],
                                                       description="minimum alert level")
    tags: Items = Field((), description="include tag patterns, comma-separated (a list in the "
                        "file): only alerts with a matching rule tag pass")
    exclude_tags: Items = Field((), description="exclude tag patterns: an alert with a "
                                "matching tag never passes")
    timeout: PositiveDuration = Field(_default(RetryPolicy, "timeout"),
                                      description="time for one HTTP request")
    retry_base: PositiveDuration = Field(_default(RetryPolicy, "base_delay"),
                                         description="backoff base")
    retry_cap: PositiveDuration = Field(_default(RetryPolicy, "max_delay"),
                                        description="backoff cap")
    max_attempts: PositiveInt = Field(_default(RetryPolicy, "max_attempts"),
                                      description="attempts per alert, first one included")
    max_retry_after: PositiveDuration = Field(_default(RetryPolicy, "max_retry_after"),
                                              description="longest `Retry-After` honoured")
    queue_size: PositiveInt = Field(_default(SinkConfig, "queue_size"), description="alerts "
                                    "waiting per sink before new ones are dropped")

    def common(self, name: str) -> dict[str, Any]:
        return {"name": name, "queue_size": self.queue_size,
                "route": Route(min_level=self.min_level, include_tags=self.tags,
                               exclude_tags=self.exclude_tags),
                "retry": RetryPolicy(base_delay=self.retry_base, max_delay=self.retry_cap,
                                     max_attempts=self.max_attempts, timeout=self.timeout,
                                     max_retry_after=self.max_retry_after)}

    def config(self, name: str) -> SinkConfig:
        raise NotImplementedError


class _HttpKeys(SinkKeys):
    url: UrlSecret = Field(description="the receiver's URL")
    proxy: Annotated[UrlSecret | None, _INLINE] = Field(
        None, description="HTTP proxy URL, credentials allowed (see [Proxies and private "
        "CAs](#proxies-and-private-cas))")
    ca_file: Annotated[Text | None, AfterValidator(_ca_bundle)] = Field(
        None, description="PEM bundle of the CAs that may sign the receiver's certificate")

    def http(self, name: str) -> dict[str, Any]:
        return {**self.common(name), "url": self.url, "proxy": self.proxy,
                "ca_file": self.ca_file}


class _TokenKeys(_HttpKeys):
    token: Secret | None = Field(None, description="token for the auth header")
    auth_header: Text = Field(_default(HttpSinkConfig, "auth_header"), description="header for "
                              "the token (`Authorization` sends `Bearer <token>`)")

    def http(self, name: str) -> dict[str, Any]:
        return {**super().http(name), "token": self.token, "auth_header": self.auth_header}

    def conflict(self) -> str | None:
        """`user:password@` in the URL is sent as Basic authorization, and the token would go
        into the same header: aiohttp refuses the request, so every delivery would fail."""
        parts = urlsplit(self.url.reveal())
        if self.token is None or self.auth_header.lower() != "authorization":
            return None
        if parts.username is None and parts.password is None:
            return None
        return ("carries credentials (user:password@) and a token is set for the same "
                "Authorization header: keep one, or send the token in another header "
                "(auth_header)")


_Format = Annotated[AlertFormat, choice(ALERT_FORMATS, parse_alert_format)]


class WebhookKeys(_TokenKeys):
    kind, prefix = "webhook", "DETECTOR_WEBHOOK"
    url: Annotated[UrlSecret, _INLINE] = Field(description="generic webhook URL (sink name "
                                               "`webhook`)")
    secret: Secret | None = Field(None, description="HMAC-SHA256 signing key")
    format: _Format = Field(DEFAULT_FORMAT, description="body of each request")

    def config(self, name: str) -> SinkConfig:
        return WebhookConfig(**self.http(name), hmac_secret=self.secret,
                             alert_format=self.format)


class SlackKeys(_HttpKeys):
    kind, prefix = "slack", "DETECTOR_SLACK"
    url: Annotated[UrlSecret, Named(env="DETECTOR_SLACK_WEBHOOK_URL")] = Field(
        description="Slack incoming-webhook URL (sink name `slack`); itself the credential")

    def config(self, name: str) -> SinkConfig:
        return SlackConfig(**self.http(name))


class AlertmanagerKeys(_TokenKeys):
    kind, prefix = "alertmanager", "DETECTOR_ALERTMANAGER"
    url: Annotated[UrlSecret, _INLINE] = Field(description="Alertmanager base URL (sink name "
                                               "`alertmanager`)")
    resolve_timeout: PositiveDuration = Field(
        _default(AlertmanagerConfig, "resolve_timeout"), description="time until Alertmanager "
        "resolves an alert")
    generator_url: Text | None = Field(None, description="`generatorURL` template; "
                                       "`{alert_id}`, `{rule_id}` substituted")
    alert_id_label: Boolean = Field(_default(AlertmanagerConfig, "alert_id_label"),
                                    description="the alert id as a label")

    def config(self, name: str) -> SinkConfig:
        return AlertmanagerConfig(**self.http(name), resolve_timeout=self.resolve_timeout,
                                  generator_url=self.generator_url,
                                  alert_id_label=self.alert_id_label)


class StdoutKeys(SinkKeys):
    kind, prefix = "stdout", "DETECTOR_STDOUT"
    format: _Format = Field(DEFAULT_FORMAT, description="each line")

    def config(self, name: str) -> SinkConfig:
        return StdoutConfig(**self.common(name), alert_format=self.format)


KINDS: dict[str, type[SinkKeys]] = {keys.kind: keys for keys in (
    WebhookKeys, SlackKeys, AlertmanagerKeys, StdoutKeys)}
SHARED_KEYS = (*SinkKeys.model_fields, "proxy", "ca_file")  # DETECTOR_SINK_<KEY> for all
_FILE_DEFAULT_KEYS = (*SinkKeys.model_fields, "ca_file")


def is_secret(keys: type[SinkKeys], key: str) -> bool:
    return holds_secret(keys.model_fields[key].annotation)


def _inline(keys: type[SinkKeys], key: str) -> bool:
    return not is_secret(keys, key) or _INLINE in keys.model_fields[key].metadata


def variable(keys: type[SinkKeys], key: str) -> str:
    named = next((item for item in keys.model_fields[key].metadata if isinstance(item, Named)),
                 None)
    return named.env if named and named.env else f"{keys.prefix}_{key.upper()}"


def known_variables() -> frozenset[str]:
    """Every environment variable the sinks read."""
    names = {SINKS_FILE_VARIABLE, STDOUT_SWITCH}
    for keys in KINDS.values():
        for key in keys.model_fields:
            found = [variable(keys, key)]
            if key in SHARED_KEYS:
                found.append(f"{SHARED_PREFIX}_{key.upper()}")
            names.update(found)
            if is_secret(keys, key):
                names.update(f"{name}_FILE" for name in found)
    return frozenset(names)


def secret_variables() -> frozenset[str]:
    """The variables that hold a secret themselves (each has a `_FILE` variant, the one to use
    from a mounted Secret)."""
    return frozenset(name for name in known_variables()
                     if f"{name}_FILE" in known_variables())


class _Raw:
    """One sink's values by key, and where each came from."""

    def __init__(self, keys: type[SinkKeys], env: Mapping[str, str]) -> None:
        self.keys, self.env = keys, env
        self.values: dict[str, Any] = {}
        self.where: dict[str, str] = {}
        self.problems: list[Problem] = []

    def put(self, key: str, value: Any, where: str) -> None:
        self.values[key], self.where[key] = value, where

    def from_env(self, key: str, name: str) -> bool:
        """Take `key` from variable `name` (or `name`_FILE for a secret); True when set."""
        value, path = self.env.get(name, ""), ""
        if is_secret(self.keys, key):
            path = self.env.get(f"{name}_FILE", "").strip()
        if value.strip() and path:
            self.problems.append(Problem(key, name, f"set {name} or {name}_FILE, not both"))
        elif value.strip():
            self.put(key, value, name)
        elif path:
            text = read_secret_file(path, key, f"{name}_FILE", self.problems)
            if text is not None:
                self.put(key, text, f"{name}_FILE")
        return bool(value.strip() or path)

    def shared_from_env(self, key: str) -> None:
        if key in SHARED_KEYS and key in self.keys.model_fields and key not in self.values:
            self.from_env(key, f"{SHARED_PREFIX}_{key.upper()}")

    def build(self, name: str, described: str) -> SinkConfig | list[Problem]:
        secrets = frozenset(key for key in self.keys.model_fields if is_secret(self.keys, key))
        problems = list(self.problems)
        try:
            keys = self.keys.model_validate(self.values)
        except ValidationError as error:
            return problems + problems_of(
                error, lambda key: self.where.get(key, f"{described}: {key}"), secrets)
        conflict = keys.conflict() if isinstance(keys, _TokenKeys) else None
        if conflict:
            problems.append(Problem("url", self.where["url"], conflict))
        if problems:
            return problems
        try:
            return keys.config(name)
        except ValueError as error:
            return [Problem("name", described, str(error))]


def sink_configs(environ: Mapping[str, str]) -> list[SinkConfig] | SettingsError:
    """Every configured sink (what `repr` of a config shows is safe), or the problems."""
    problems = _unknown_variables(environ)
    configs: list[SinkConfig] = []
    for keys in KINDS.values():
        built = _from_env(keys, environ)
        if isinstance(built, list):
            problems += built
        elif built is not None:
            configs.append(built)
    path = environ.get(SINKS_FILE_VARIABLE, "").strip()
    if path:
        for built_from_file in _from_file(Path(path), environ):
            if isinstance(built_from_file, list):
                problems += built_from_file
            else:
                configs.append(built_from_file)
    names = [config.name for config in configs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        problems.append(Problem("name", "sinks", f"sink names must be unique: "
                                f"{', '.join(repeated)} repeated"))
    return SettingsError(*problems) if problems else configs


def _unknown_variables(env: Mapping[str, str]) -> list[Problem]:
    """A misspelt variable (DETECTOR_SLACK_MIN_LEVLE) must not silently widen a route."""
    prefixes = tuple(f"{prefix}_" for prefix in (*(k.prefix for k in KINDS.values()),
                                                 SHARED_PREFIX))
    known = known_variables()
    return [Problem(name, name, "unknown sink setting; see docs/sinks.md for the variables")
            for name, value in sorted(env.items())
            if value and name.startswith(prefixes) and name not in known]


def _from_env(keys: type[SinkKeys], env: Mapping[str, str]) -> SinkConfig | list[Problem] | None:
    raw = _Raw(keys, env)
    if keys is StdoutKeys:
        enabled = _switch(env)
        if isinstance(enabled, Problem):
            return [enabled]
        missing = f"{STDOUT_SWITCH} is not true"
    else:
        enabled = raw.from_env("url", variable(keys, "url"))
        missing = f"neither {variable(keys, 'url')} nor {variable(keys, 'url')}_FILE is"
    if not enabled:
        return [Problem(name, name, f"is set but {missing}")
                for key in keys.model_fields
                for name in (variable(keys, key), f"{variable(keys, key)}_FILE")
                if env.get(name, "").strip()]
    for key in keys.model_fields:
        if key != "url":
            raw.from_env(key, variable(keys, key))
        raw.shared_from_env(key)
    return raw.build(keys.kind, f"{keys.kind} sink")


def _switch(env: Mapping[str, str]) -> bool | Problem:
    """DETECTOR_STDOUT_SINK, read by the one boolean rule (empty counts as unset)."""
    text = env.get(STDOUT_SWITCH, "")
    try:
        return parse_boolean(text) if text.strip() else False
    except ValueError as error:
        return Problem(STDOUT_SWITCH, STDOUT_SWITCH, str(error))


def _from_file(path: Path, env: Mapping[str, str]) -> list[SinkConfig | list[Problem]]:
    where = f"{SINKS_FILE_VARIABLE} {path}"
    try:  # bounded like rule files: size, nesting, alias expansion
        document = next((data for _node, data in documents(read_text(path))), None)
    except OSError as error:
        return [[Problem("sinks", where, f"cannot read: {error.strerror}")]]
    except UnicodeDecodeError:
        return [[Problem("sinks", where, "not UTF-8 text")]]
    except yaml.YAMLError as error:
        return [[Problem("sinks", where, f"not valid YAML: {error}")]]
    if not isinstance(document, dict) or not isinstance(document.get("sinks"), list):
        return [[Problem("sinks", where, "expected a mapping with a 'sinks' list")]]
    unknown = sorted(set(document) - {"sinks", "defaults"})
    if unknown:
        return [[Problem("sinks", where, f"unknown top-level key {unknown[0]!r}")]]
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, dict) or set(defaults) - set(_FILE_DEFAULT_KEYS):
        return [[Problem("defaults", where, "defaults must be a mapping of "
                         f"{', '.join(_FILE_DEFAULT_KEYS)}")]]
    return [_file_entry(entry, index, path, defaults, env)
            for index, entry in enumerate(document["sinks"])]


def _file_entry(entry: object, index: int, path: Path, defaults: Mapping[str, Any],
                env: Mapping[str, str]) -> SinkConfig | list[Problem]:
    where = f"{path} sinks[{index}]"
    if not isinstance(entry, dict):
        return [Problem("sinks", where, "expected a mapping")]
    kind, name = entry.get("type"), entry.get("name")
    keys = KINDS.get(kind) if isinstance(kind, str) else None
    if keys is None:
        return [Problem("type", where, f"type must be one of {', '.join(KINDS)}")]
    if not isinstance(name, str):
        return [Problem("name", where, "every sink needs a name")]
    where = f"{path} sink {name!r}"
    allowed = {"type", "name"} | {key for key in keys.model_fields if _inline(keys, key)}
    allowed |= {f"{key}_{how}" for key in keys.model_fields if is_secret(keys, key)
                for how in ("env", "file")}
    written = [key for key in entry if key in keys.model_fields and not _inline(keys, key)]
    if written:
        return [Problem(written[0], f"{where}: {written[0]}", "must not be written in the sinks "
                        f"file; use {written[0]}_env (a variable name) or {written[0]}_file "
                        "(a path)")]
    unknown = sorted(set(entry) - allowed)
    if unknown:
        return [Problem(unknown[0], where, f"unknown key {unknown[0]!r} for a {kind} sink; "
                        f"allowed: {', '.join(sorted(allowed))}")]
    raw = _Raw(keys, env)
    for key in keys.model_fields:
        _file_value(raw, key, entry, where, defaults=defaults,
                    defaults_where=f"{path} defaults")
        raw.shared_from_env(key)
    return raw.build(name, f"sink {name!r}")


def _file_value(raw: _Raw, key: str, entry: Mapping[str, Any], where: str, *,
                defaults: Mapping[str, Any], defaults_where: str) -> None:
    reference, path = entry.get(f"{key}_env"), entry.get(f"{key}_file")
    if entry.get(key) is not None:
        raw.put(key, entry[key], f"{where}: {key}")
    elif reference and path:
        raw.problems.append(Problem(key, where, f"set {key}_env or {key}_file, not both"))
    elif reference:
        if not raw.env.get(str(reference), "").strip():
            raw.problems.append(Problem(key, f"{where}: {key}_env",
                                        f"names {reference}, which is not set"))
        else:
            raw.put(key, raw.env[str(reference)], f"{where}: {key}_env ({reference})")
    elif path:
        text = read_secret_file(str(path), key, f"{where}: {key}_file", raw.problems)
        if text is not None:
            raw.put(key, text, f"{where}: {key}_file")
    elif defaults.get(key) is not None:
        raw.put(key, defaults[key], f"{defaults_where}: {key}")
