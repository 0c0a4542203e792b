"""What every settings class shares: how a field is named for an operator (variable and flag),
where its value comes from (flags > environment > defaults, `*_FILE` for secrets), how its
flags and its docs row are generated, and how a failed validation becomes named problems."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from detector.durations import format_duration, parse_duration
from detector.settings.types import Problem, SettingsError, describe_type, holds_secret, items

PREFIX = "DETECTOR_"
MAX_SECRET_BYTES = 64 * 1024  # a `_FILE` naming /dev/zero or a log file costs no more


@dataclass(frozen=True, slots=True)
class Named:
    """Field metadata for a variable or flag that is not DETECTOR_<FIELD> / --<field>."""

    env: str | None = None
    flag: str | None = None


@dataclass(frozen=True, slots=True)
class Naming:
    """How an operator sets one field. Secrets have no flag (a flag would show in `ps`), and a
    `<VARIABLE>_FILE` variable naming a file that holds the value (a mounted Secret)."""

    name: str
    env: str
    flag: str | None
    secret: bool
    multiple: bool
    field: FieldInfo

    @property
    def file_env(self) -> str:
        return f"{self.env}_FILE"

    def __str__(self) -> str:
        return f"{self.env} / {self.flag}" if self.flag else self.env


def naming(cls: type[BaseSettings], name: str) -> Naming:
    field = cls.model_fields[name]
    named = next((item for item in field.metadata if isinstance(item, Named)), Named())
    secret = holds_secret(field.annotation)
    multiple = any(getattr(item, "func", None) is items for item in field.metadata)
    return Naming(name, named.env or PREFIX + name.upper(),
                  None if secret else named.flag or "--" + name.replace("_", "-"),
                  secret, multiple, field)


def namings(cls: type[BaseSettings]) -> Iterator[Naming]:
    for name in cls.model_fields:
        yield naming(cls, name)


class Settings(BaseSettings):
    """Base of every settings class: frozen, unknown names refused, defaults validated.

    Built with keyword arguments it takes those and the defaults only (tests, benchmarks);
    `load` adds the flags and the environment.
    """

    model_config = SettingsConfigDict(frozen=True, extra="forbid", validate_default=True)

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)

    def check(self) -> list[tuple[str, str]]:
        """Problems between fields, or with the files they name: (field, reason) pairs."""
        return []


S = TypeVar("S", bound=Settings)


class _Source(PydanticBaseSettingsSource):
    """Values by field name, and where each came from (for the problems)."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self.values: dict[str, Any] = {}
        self.origin: dict[str, str] = {}
        self.problems: list[Problem] = []

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.values)


class _Flags(_Source):
    def __init__(self, settings_cls: type[BaseSettings], given: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        for option in namings(settings_cls):
            if option.flag and given.get(option.name) is not None:
                self.values[option.name] = given[option.name]
                self.origin[option.name] = option.flag


class _Environment(_Source):
    """DETECTOR_* variables; an empty one counts as unset (manifests template them all)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        for option in namings(settings_cls):
            value = environ.get(option.env, "")
            path = environ.get(option.file_env, "").strip() if option.secret else ""
            if value.strip() and path:
                self.problems.append(Problem(option.name, option.env,
                                             f"set {option.env} or {option.file_env}, not both"))
            elif value.strip():
                self.values[option.name] = value
                self.origin[option.name] = option.env
            elif path:
                text = read_secret_file(path, option.name, option.file_env, self.problems)
                if text is not None:
                    self.values[option.name] = text
                    self.origin[option.name] = f"{option.file_env} ({path})"


def read_secret_file(path: str, setting: str, source: str,
                     problems: list[Problem]) -> str | None:
    """The stripped text of a secret file, or None with the problem added."""
    try:
        with Path(path).open("rb") as file:
            data = file.read(MAX_SECRET_BYTES + 1)
        text = data.decode("utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        problems.append(Problem(setting, source, f"cannot read {path}: {reason}"))
        return None
    if len(data) > MAX_SECRET_BYTES:
        problems.append(Problem(setting, source, f"{path} is larger than {MAX_SECRET_BYTES} "
                                "bytes, too large for a secret (a wrong path?)"))
        return None
    if not text:
        problems.append(Problem(setting, source, f"{path} is empty"))
        return None
    return text


def load(cls: type[S], flags: Mapping[str, Any], environ: Mapping[str, str]) -> S | SettingsError:
    """Settings from flags (parsed, by field name), then `environ`, then the defaults."""
    flag_source, env_source = _Flags(cls, flags), _Environment(cls, environ)

    def where(name: str) -> str:
        return (flag_source.origin.get(name) or env_source.origin.get(name)
                or f"{naming(cls, name)} (default)")

    problems = list(env_source.problems)
    try:
        # (mypy sees the fields as the signature, pydantic's dataclass_transform)
        settings = cls(_build_sources=((flag_source, env_source), {}))  # type: ignore[call-arg]
    except ValidationError as error:
        return SettingsError(*problems, *problems_of(error, where, _secret_fields(cls)))
    problems += [Problem(name, where(name), reason) for name, reason in settings.check()]
    return SettingsError(*problems) if problems else settings


def _secret_fields(cls: type[BaseSettings]) -> frozenset[str]:
    return frozenset(option.name for option in namings(cls) if option.secret)


def problems_of(error: ValidationError, where: Callable[[str], str],
                secrets: frozenset[str] = frozenset()) -> list[Problem]:
    """Pydantic's errors as problems: the validator's own words, else pydantic's with the value
    given (never for a secret)."""
    problems = []
    for detail in error.errors(include_url=False):
        name = str(detail["loc"][0]) if detail["loc"] else ""
        cause = detail.get("ctx", {}).get("error")
        if isinstance(cause, ValueError):
            reason = str(cause)
        elif name in secrets:
            reason = detail["msg"]
        else:
            reason = f"{detail['msg']}, not {detail['input']!r}"
        problems.append(Problem(name, where(name) if name else "", reason))
    return problems


def default_text(field: FieldInfo) -> str | None:
    """The default as an operator writes it, None when there is none."""
    value = field.default
    if value is None or value == ():
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    if any(getattr(item, "func", None) is parse_duration for item in field.metadata):
        return format_duration(value)
    return str(value)


def plain(text: str) -> str:
    """Markdown of a description as --help shows it: links as their text, no backticks."""
    return re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", text).replace("`", "")


def describe(field: FieldInfo) -> str:
    """A field's description, with the names it takes when it is a choice."""
    text = field.description or ""
    choices = describe_type(field.metadata)
    return f"{text} (one of {choices})" if choices else text


def add_flags(parser: argparse.ArgumentParser, cls: type[BaseSettings],
              names: Sequence[str] | None = None) -> None:
    """A flag per field of `cls` (of `names` only, when given), each naming its variable and
    default; the environment-only secrets are listed after the flags."""
    chosen = [option for option in namings(cls) if names is None or option.name in names]
    for option in chosen:
        if not option.flag:
            continue
        default = default_text(option.field)
        parser.add_argument(
            option.flag, dest=option.name, action="append" if option.multiple else "store",
            default=None, metavar=_metavar(option.field),
            help=plain(f"{describe(option.field)} [{option.env}"
                       + (f", default {default}]" if default else "]")).replace("%", "%%"))
    secrets = [f"  {option.env} or {option.file_env}: {plain(describe(option.field))}"
               for option in chosen if option.secret]
    if secrets:
        told = "\n".join(["environment only (a flag would show in ps):", *secrets])
        parser.epilog = f"{parser.epilog}\n\n{told}" if parser.epilog else told


def _metavar(field: FieldInfo) -> str:
    choices = describe_type(field.metadata)
    if choices:
        return "{" + choices.replace(", ", ",") + "}"
    if any(getattr(item, "func", None) is parse_duration for item in field.metadata):
        return "DURATION"
    return "N" if field.annotation is int else "VALUE"


def flags_of(args: argparse.Namespace, cls: type[BaseSettings]) -> dict[str, Any]:
    """The flags of `cls` an argparse namespace holds (None: not given)."""
    return {name: getattr(args, name) for name in cls.model_fields if hasattr(args, name)}


def table(cls: type[BaseSettings], names: Sequence[str] | None = None) -> str:
    """The settings of `cls` as a Markdown table: variable, flag, default, meaning."""
    rows = ["| Variable | Flag | Default | Meaning |", "|---|---|---|---|"]
    for option in namings(cls):
        if names is not None and option.name not in names:
            continue
        default = default_text(option.field)
        only = "; environment only, a flag would show in `ps`" if option.secret else ""
        rows.append(f"| `{option.env}` | {f'`{option.flag}`' if option.flag else '—'} | "
                    f"{f'`{default}`' if default else '(none)'} | {describe(option.field)}{only} |")
        if option.secret:
            rows.append(f"| `{option.file_env}` | — | (none) | a file holding it (a mounted "
                        f"Secret); set this or `{option.env}`, not both |")
    return "\n".join(rows)
