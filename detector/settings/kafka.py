"""How the worker and `detector replay` reach the brokers: addresses, TLS and SASL."""

from __future__ import annotations

import ssl
from typing import Annotated, Any

from pydantic import Field

from detector.settings.model import Settings, naming
from detector.settings.types import NonEmptyItems, Problem, Secret, SettingsError, Text, choice

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
TLS_PROTOCOLS = ("SSL", "SASL_SSL")
SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_TLS_FIELDS = ("ssl_ca_file", "ssl_cert_file", "ssl_key_file")
_SASL_FIELDS = ("sasl_mechanism", "sasl_username", "sasl_password")


class KafkaSettings(Settings):
    """The brokers and how to talk to them."""

    bootstrap_servers: NonEmptyItems = Field(
        ("localhost:9092",), description="Kafka brokers, host:port, comma-separated")
    security_protocol: Annotated[str, choice(SECURITY_PROTOCOLS, str.upper)] = Field(
        "PLAINTEXT", description="how to talk to the brokers")
    ssl_ca_file: Text | None = Field(
        None, description="CA bundle (PEM) to verify the brokers (`SSL`, `SASL_SSL`); the "
        "system CAs otherwise")
    ssl_cert_file: Text | None = Field(
        None, description="client certificate (PEM) for mutual TLS")
    ssl_key_file: Text | None = Field(
        None, description="private key (PEM) of the client certificate")
    sasl_mechanism: Annotated[str, choice(SASL_MECHANISMS, str.upper)] = Field(
        "PLAIN", description="SASL mechanism (`SASL_PLAINTEXT`, `SASL_SSL`)")
    sasl_username: Text | None = Field(None, description="SASL user name")
    sasl_password: Secret | None = Field(None, description="SASL password")

    def check(self) -> list[tuple[str, str]]:
        protocol = self.security_protocol
        problems: list[tuple[str, str]] = []
        if protocol in SASL_PROTOCOLS:
            problems += [(name, f"{protocol} needs it") for name in ("sasl_username",
                                                                      "sasl_password")
                         if getattr(self, name) is None]
        if (self.ssl_cert_file is None) != (self.ssl_key_file is None):
            missing = "ssl_key_file" if self.ssl_key_file is None else "ssl_cert_file"
            present = "ssl_cert_file" if missing == "ssl_key_file" else "ssl_key_file"
            problems.append((present, f"goes with {naming(type(self), missing)}, which is unset"))
        unused = [name for name in _TLS_FIELDS
                  if protocol not in TLS_PROTOCOLS and getattr(self, name) is not None]
        unused += [name for name in _SASL_FIELDS if protocol not in SASL_PROTOCOLS
                   and name in self.model_fields_set and getattr(self, name) is not None]
        problems += [(name, f"not used with security protocol {protocol} (TLS options need "
                      f"{' or '.join(TLS_PROTOCOLS)}, SASL options {' or '.join(SASL_PROTOCOLS)})")
                     for name in unused]
        if not problems and protocol in TLS_PROTOCOLS:
            try:
                ssl_context(self)  # a missing or bad PEM file is a problem now, not at connect
            except SettingsError as error:
                problems += [(problem.setting, problem.reason) for problem in error.problems]
        return problems


def ssl_context(settings: KafkaSettings) -> ssl.SSLContext:
    """A client TLS context verifying the brokers, with the client certificate if given.

    Raises SettingsError naming the file that cannot be read or is not valid PEM (at start-up:
    the files were checked when the settings loaded, but a mounted Secret can go away).
    """
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                             cafile=settings.ssl_ca_file)
    except OSError as error:  # ssl.SSLError is an OSError
        raise SettingsError(_file_problem(settings, "ssl_ca_file", settings.ssl_ca_file,
                                          error)) from None
    if settings.ssl_cert_file and settings.ssl_key_file:
        try:
            # an empty password: an encrypted key fails here instead of prompting on a tty
            context.load_cert_chain(settings.ssl_cert_file, settings.ssl_key_file, password="")
        except OSError as error:
            raise SettingsError(_file_problem(
                settings, "ssl_key_file", f"{settings.ssl_cert_file} with {settings.ssl_key_file}",
                error)) from None
    return context


def _file_problem(settings: KafkaSettings, name: str, path: str | None,
                  error: OSError) -> Problem:
    return Problem(name, str(naming(type(settings), name)),
                   f"cannot load {path}: {error.strerror or error}")


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """aiokafka client options (brokers and security) for tools that do not go through Faust."""
    options: dict[str, Any] = {
        "bootstrap_servers": list(settings.bootstrap_servers),
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in TLS_PROTOCOLS:
        options["ssl_context"] = ssl_context(settings)
    if settings.security_protocol in SASL_PROTOCOLS:
        options.update(sasl_mechanism=settings.sasl_mechanism,
                       sasl_plain_username=settings.sasl_username,
                       sasl_plain_password=_revealed(settings.sasl_password))
    return options


def broker_credentials(settings: KafkaSettings) -> Any:
    """Faust's `broker_credentials` for the security protocol, None for PLAINTEXT."""
    import faust

    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=_revealed(settings.sasl_password),
        mechanism=settings.sasl_mechanism,
        ssl_context=ssl_context(settings) if protocol == "SASL_SSL" else None,
    )


def _revealed(secret: Secret | None) -> str | None:
    return secret.reveal() if secret is not None else None
