"""Sinks from environment variables and an optional YAML file (see docs/sinks.md).

Secrets (webhook URLs that embed credentials, tokens, HMAC keys) are read from environment
variables or from files named by `*_FILE` variables (Kubernetes secret volumes), never from
rule files and never inline in the sinks file, which usually lives in a ConfigMap. Errors
name the variable or file key that is wrong and never echo a secret value.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml

from detector.metrics import Metrics
from detector.sinks.alertmanager import AlertmanagerConfig, AlertmanagerSink
from detector.sinks.base import RetryPolicy, Sink, SinkConfig, SinkSet, tls_context
from detector.sinks.formats import DEFAULT_FORMAT, AlertFormat, alert_format
from detector.sinks.routing import Route, parse_patterns
from detector.sinks.secret import Secret
from detector.sinks.slack import SlackConfig, SlackSink
from detector.sinks.stdout import StdoutConfig, StdoutSink
from detector.sinks.webhook import WebhookConfig, WebhookSink

KINDS = ("webhook", "slack", "alertmanager", "stdout")
SINKS_FILE_VARIABLE = "DETECTOR_SINKS_FILE"
DEFAULTS_PREFIX = "DETECTOR_SINK"
_ENV_PREFIXES = {
    "webhook": "DETECTOR_WEBHOOK",
    "slack": "DETECTOR_SLACK",
    "alertmanager": "DETECTOR_ALERTMANAGER",
    "stdout": "DETECTOR_STDOUT",
}
# Environment names that differ from PREFIX_KEY.
_ENV_NAMES = {("slack", "url"): "DETECTOR_SLACK_WEBHOOK_URL"}
_COMMON_KEYS = (
    "min_level",
    "tags",
    "exclude_tags",
    "timeout",
    "retry_base",
    "retry_cap",
    "max_attempts",
    "max_retry_after",
    "queue_size",
)
# For HTTP sinks only, falling back to DETECTOR_SINK_<KEY> and the sinks file's defaults.
_HTTP_COMMON_KEYS = ("ca_file",)
_SECRET_KEYS = {
    "webhook": ("url", "token", "secret", "proxy"),
    "slack": ("url", "proxy"),
    "alertmanager": ("url", "token", "proxy"),
    "stdout": (),
}
_PLAIN_KEYS = {
    "webhook": ("auth_header", "format"),
    "slack": (),
    "alertmanager": ("auth_header", "resolve_timeout", "generator_url", "alert_id_label"),
    "stdout": ("format",),
}
# Values that may be written inline in the sinks file although they can also be secrets.
_INLINE_ALLOWED = {
    ("webhook", "url"), ("alertmanager", "url"),
    ("webhook", "proxy"), ("slack", "proxy"), ("alertmanager", "proxy"),
}
# A proxy URL may carry credentials: like a secret it comes from a variable or a file, and
# DETECTOR_SINK_PROXY (or _FILE) is the fallback for every HTTP sink.
_DEFAULT_PROXY = f"{DEFAULTS_PREFIX}_PROXY"
_N = TypeVar("_N", int, float)
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


class SinkConfigError(ValueError):
    """A sink is misconfigured; the message names the variable or file key to fix."""


def load_sinks(metrics: Metrics, environ: Mapping[str, str] | None = None) -> SinkSet:
    """Every sink the environment (and DETECTOR_SINKS_FILE) configures, ready to start."""
    return SinkSet(build_sink(config, metrics) for config in sink_configs(environ))


def build_sink(config: SinkConfig, metrics: Metrics) -> Sink:
    if isinstance(config, WebhookConfig):
        return WebhookSink(config, metrics)
    if isinstance(config, SlackConfig):
        return SlackSink(config, metrics)
    if isinstance(config, AlertmanagerConfig):
        return AlertmanagerSink(config, metrics)
    if isinstance(config, StdoutConfig):
        return StdoutSink(config, metrics)
    raise TypeError(f"no sink for {type(config).__name__}")


def sink_configs(environ: Mapping[str, str] | None = None) -> list[SinkConfig]:
    """Parse the configuration without building sinks (what `repr` of a config shows is safe)."""
    env = os.environ if environ is None else environ
    configs: list[SinkConfig] = []
    _reject_unknown_variables(env)
    for kind in KINDS:
        source = _EnvSource(env, kind)
        if source.enabled():
            configs.append(_config(kind, kind, source))
        else:
            source.reject_orphans()
    path = env.get(SINKS_FILE_VARIABLE)
    if path:
        configs.extend(_file_configs(Path(path), env))
    names = [config.name for config in configs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise SinkConfigError(f"sink names must be unique: {', '.join(duplicates)} repeated")
    return configs


def known_variables() -> frozenset[str]:
    """Every environment variable the sinks read."""
    names = {SINKS_FILE_VARIABLE, "DETECTOR_STDOUT_SINK", _DEFAULT_PROXY, _DEFAULT_PROXY + "_FILE"}
    names.update(f"{DEFAULTS_PREFIX}_{key.upper()}" for key in (*_COMMON_KEYS, *_HTTP_COMMON_KEYS))
    for kind in _ENV_PREFIXES:
        source = _EnvSource({}, kind)
        names.update(source.variable(key) for key in (*_common_keys(kind), *_PLAIN_KEYS[kind]))
        for key in _SECRET_KEYS[kind]:
            names.update({source.variable(key), source.variable(key) + "_FILE"})
    return frozenset(names)


def _common_keys(kind: str) -> tuple[str, ...]:
    return _COMMON_KEYS if kind == "stdout" else (*_COMMON_KEYS, *_HTTP_COMMON_KEYS)


def secret_variables() -> frozenset[str]:
    """The variables that hold a secret themselves (each also has a `_FILE` variant, the one
    to use from a mounted Secret)."""
    return frozenset(
        _EnvSource({}, kind).variable(key) for kind in KINDS for key in _SECRET_KEYS[kind]
    ) | {_DEFAULT_PROXY}


def _reject_unknown_variables(env: Mapping[str, str]) -> None:
    """A misspelt variable (DETECTOR_SLACK_MIN_LEVLE) must not silently widen a route."""
    prefixes = tuple(f"{prefix}_" for prefix in (*_ENV_PREFIXES.values(), DEFAULTS_PREFIX))
    known = known_variables()
    unknown = sorted(
        name for name, value in env.items()
        if value and name.startswith(prefixes) and name not in known
    )
    if unknown:
        raise SinkConfigError(
            f"unknown sink setting {unknown[0]}; see docs/sinks.md for the variables"
        )


@dataclass(frozen=True)
class _Value:
    """A raw setting and where it came from, for error messages."""

    text: str
    where: str


class _Source:
    """Where one sink's settings come from; `where` strings go into error messages."""

    def __init__(self, kind: str, env: Mapping[str, str]) -> None:
        self.kind = kind
        self.env = env

    def plain(self, key: str) -> _Value | None:
        raise NotImplementedError

    def secret(self, key: str) -> _Value | None:
        raise NotImplementedError

    def common(self, key: str) -> _Value | None:
        """A common setting, falling back to DETECTOR_SINK_<KEY>."""
        value = self.plain(key)
        if value is not None:
            return value
        name = f"{DEFAULTS_PREFIX}_{key.upper()}"
        return _Value(self.env[name], name) if self.env.get(name) else None

    def read_secret(self, variable: str, file_variable: str) -> _Value | None:
        """From a variable, or a file a second variable names; both set is ambiguous."""
        direct, path = self.env.get(variable), self.env.get(file_variable)
        if direct and path:
            raise SinkConfigError(f"set {variable} or {file_variable}, not both")
        if direct:
            return _Value(direct, variable)
        if path:
            return _Value(_read_secret_file(path, file_variable), file_variable)
        return None


class _EnvSource(_Source):
    def __init__(self, env: Mapping[str, str], kind: str) -> None:
        super().__init__(kind, env)
        self.prefix = _ENV_PREFIXES[kind]

    def variable(self, key: str) -> str:
        return _ENV_NAMES.get((self.kind, key), f"{self.prefix}_{key.upper()}")

    def enabled(self) -> bool:
        if self.kind == "stdout":
            variable = "DETECTOR_STDOUT_SINK"
            return _boolean(_Value(self.env.get(variable, ""), variable))
        url = self.variable("url")
        return bool(self.env.get(url) or self.env.get(f"{url}_FILE"))

    def reject_orphans(self) -> None:
        """Settings for a sink that has no URL are a mistake, not something to ignore."""
        if self.kind == "stdout":
            return
        orphans = sorted(
            name for name, value in self.env.items() if value and name.startswith(self.prefix + "_")
        )
        if orphans:
            url = self.variable("url")
            raise SinkConfigError(f"{orphans[0]} is set but neither {url} nor {url}_FILE is")

    def plain(self, key: str) -> _Value | None:
        name = self.variable(key)
        return _Value(self.env[name], name) if self.env.get(name) else None

    def secret(self, key: str) -> _Value | None:
        name = self.variable(key)
        return self.read_secret(name, f"{name}_FILE")


class _FileSource(_Source):
    def __init__(
        self, entry: Mapping[str, Any], defaults: Mapping[str, Any], where: str, kind: str,
        env: Mapping[str, str],
    ) -> None:
        super().__init__(kind, env)
        self.entry = entry
        self.defaults = defaults
        self.where = where

    def plain(self, key: str) -> _Value | None:
        for mapping, where in ((self.entry, self.where), (self.defaults, "defaults")):
            if key in mapping and mapping[key] is not None:
                return _Value(_scalar_text(mapping[key]), f"{where}: {key}")
        return None

    def secret(self, key: str) -> _Value | None:
        if key in self.entry and (self.kind, key) not in _INLINE_ALLOWED:
            raise SinkConfigError(
                f"{self.where}: {key} must not be written in the sinks file; "
                f"use {key}_env (a variable name) or {key}_file (a path)"
            )
        if key in self.entry:
            return self.plain(key)
        variable, path = self.entry.get(f"{key}_env"), self.entry.get(f"{key}_file")
        if variable and path:
            raise SinkConfigError(f"{self.where}: set {key}_env or {key}_file, not both")
        if variable:
            if str(variable) not in self.env or not self.env[str(variable)]:
                raise SinkConfigError(
                    f"{self.where}: {key}_env names {variable}, which is not set"
                )
            return _Value(self.env[str(variable)], f"{self.where}: {key}_env ({variable})")
        if path:
            where = f"{self.where}: {key}_file"
            return _Value(_read_secret_file(str(path), where), where)
        return None


def _config(kind: str, name: str, source: _Source) -> SinkConfig:
    route = _route(source)
    retry = _retry(source)
    queue_size = _number(source.common("queue_size"), int, 1000)
    try:
        if kind == "stdout":
            return StdoutConfig(name=name, route=route, retry=retry, queue_size=queue_size,
                                alert_format=_alert_format(source))
        url = _url(source)
        token = source.secret("token") if kind in ("webhook", "alertmanager") else None
        auth = source.plain("auth_header") if kind != "slack" else None
        auth_header = auth.text if auth else "Authorization"
        if token is not None and auth_header.lower() == "authorization":
            _reject_url_credentials(url, token)
        http: dict[str, Any] = {
            "name": name,
            "route": route,
            "retry": retry,
            "queue_size": queue_size,
            "url": Secret(url.text),
            "token": _secret(token),
            "auth_header": auth_header,
            "proxy": _proxy(source),
            "ca_file": _ca_file(source.common("ca_file")),
        }
        if kind == "webhook":
            return WebhookConfig(**http, hmac_secret=_secret(source.secret("secret")),
                                 alert_format=_alert_format(source))
        if kind == "slack":
            return SlackConfig(**http)
        generator = source.plain("generator_url")
        return AlertmanagerConfig(
            **http,
            resolve_timeout=_number(source.plain("resolve_timeout"), float, 3600.0),
            generator_url=generator.text if generator else None,
            alert_id_label=_boolean(source.plain("alert_id_label"), default=True),
        )
    except ValueError as exc:
        if isinstance(exc, SinkConfigError):
            raise
        raise SinkConfigError(f"sink {name}: {exc}") from None


def _route(source: _Source) -> Route:
    level = source.common("min_level")
    try:
        return Route(
            min_level=level.text.strip().lower() if level else "informational",
            include_tags=parse_patterns(_text(source.common("tags"))),
            exclude_tags=parse_patterns(_text(source.common("exclude_tags"))),
        )
    except ValueError as exc:
        raise SinkConfigError(f"{level.where if level else 'min_level'}: {exc}") from None


def _retry(source: _Source) -> RetryPolicy:
    defaults = RetryPolicy()
    try:
        return RetryPolicy(
            base_delay=_number(source.common("retry_base"), float, defaults.base_delay),
            max_delay=_number(source.common("retry_cap"), float, defaults.max_delay),
            max_attempts=_number(source.common("max_attempts"), int, defaults.max_attempts),
            timeout=_number(source.common("timeout"), float, defaults.timeout),
            max_retry_after=_number(
                source.common("max_retry_after"), float, defaults.max_retry_after
            ),
        )
    except ValueError as exc:
        if isinstance(exc, SinkConfigError):
            raise
        raise SinkConfigError(f"sink {source.kind}: {exc}") from None


def _alert_format(source: _Source) -> AlertFormat:
    value = source.plain("format")
    if value is None:
        return DEFAULT_FORMAT
    try:
        return alert_format(value.text)
    except ValueError as exc:
        raise SinkConfigError(f"{value.where}: {exc}") from None


def _url(source: _Source) -> _Value:
    value = source.secret("url")
    if value is None:
        raise SinkConfigError(f"sink of type {source.kind} needs a url")
    return _http_url(value)


def _http_url(value: _Value) -> _Value:
    """The value stripped, when it is an http(s) URL with a host."""
    try:
        parts = urlsplit(value.text.strip())
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        valid = False
    if not valid:
        raise SinkConfigError(f"{value.where} must be an http:// or https:// URL with a host")
    return _Value(value.text.strip(), value.where)


def _reject_url_credentials(url: _Value, token: _Value) -> None:
    """`user:password@` in the URL is sent as Basic authorization, and the token would go
    into the same header: aiohttp refuses the request, so every delivery would fail."""
    parts = urlsplit(url.text)
    if parts.username is not None or parts.password is not None:
        raise SinkConfigError(
            f"{url.where} carries credentials (user:password@) and {token.where} sets a token "
            "for the same Authorization header: keep one, or send the token in another "
            "header (auth_header)"
        )


def _proxy(source: _Source) -> Secret | None:
    value = source.secret("proxy") or source.read_secret(_DEFAULT_PROXY, _DEFAULT_PROXY + "_FILE")
    return Secret(_http_url(value).text) if value is not None else None


def _ca_file(value: _Value | None) -> str | None:
    """A readable PEM bundle (loaded once here, so a wrong path stops the worker at startup)."""
    if value is None:
        return None
    path = value.text.strip()
    try:
        tls_context(path)
    except OSError as exc:  # ssl.SSLError is one: not PEM, no certificate in it
        reason = exc.strerror or str(exc)
        raise SinkConfigError(f"{value.where}: cannot load CA bundle {path}: {reason}") from None
    return path


def _secret(value: _Value | None) -> Secret | None:
    return Secret(value.text) if value is not None else None


def _text(value: _Value | None) -> str | None:
    return value.text if value is not None else None


def _number(value: _Value | None, kind: Callable[[str], _N], default: _N) -> _N:
    if value is None:
        return default
    try:
        return kind(value.text.strip())
    except ValueError:
        raise SinkConfigError(f"{value.where} must be a number, not {value.text!r}") from None


def _boolean(value: _Value | None, default: bool = False) -> bool:
    if value is None:
        return default
    text = value.text.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise SinkConfigError(f"{value.where} must be one of 1/0, true/false, yes/no, on/off")


def _read_secret_file(path: str, where: str) -> str:
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise SinkConfigError(f"{where}: cannot read {path}: {reason}") from None
    if not value:
        raise SinkConfigError(f"{where}: {path} is empty")
    return value


def _scalar_text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _file_configs(path: Path, env: Mapping[str, str]) -> list[SinkConfig]:
    where = f"{SINKS_FILE_VARIABLE} {path}"
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SinkConfigError(f"{where}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SinkConfigError(f"{where}: not valid YAML: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("sinks"), list):
        raise SinkConfigError(f"{where}: expected a mapping with a 'sinks' list")
    unknown = sorted(set(document) - {"sinks", "defaults"})
    if unknown:
        raise SinkConfigError(f"{where}: unknown top-level key {unknown[0]!r}")
    defaults = document.get("defaults") or {}
    default_keys = (*_COMMON_KEYS, *_HTTP_COMMON_KEYS)
    if not isinstance(defaults, dict) or set(defaults) - set(default_keys):
        raise SinkConfigError(
            f"{where}: defaults must be a mapping of {', '.join(default_keys)}"
        )
    configs = []
    for index, entry in enumerate(document["sinks"]):
        entry_where = f"{path} sinks[{index}]"
        if not isinstance(entry, dict):
            raise SinkConfigError(f"{entry_where}: expected a mapping")
        kind, name = entry.get("type"), entry.get("name")
        if kind not in KINDS:
            raise SinkConfigError(f"{entry_where}: type must be one of {', '.join(KINDS)}")
        if not isinstance(name, str):
            raise SinkConfigError(f"{entry_where}: every sink needs a name")
        entry_where = f"{path} sink {name!r}"
        allowed = {"type", "name", *_common_keys(kind), *_PLAIN_KEYS[kind]}
        for key in _SECRET_KEYS[kind]:
            allowed |= {f"{key}_env", f"{key}_file"}
            if (kind, key) in _INLINE_ALLOWED:
                allowed.add(key)
        unknown = sorted(set(entry) - allowed - set(_SECRET_KEYS[kind]))
        if unknown:
            raise SinkConfigError(
                f"{entry_where}: unknown key {unknown[0]!r} for a {kind} sink; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
        configs.append(_config(kind, name, _FileSource(entry, defaults, entry_where, kind, env)))
    return configs
