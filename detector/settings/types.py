"""The value types every setting is made of, so a duration, a boolean, a list or a secret reads
the same in a flag, an environment variable and the sinks file, and fails with the same words."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, get_args, get_origin

from pydantic import AfterValidator, BeforeValidator, SecretStr

from detector.durations import parse_duration


@dataclass(frozen=True, slots=True)
class Problem:
    """One setting that cannot be used: which, where its value came from, what is wrong."""

    setting: str  # the field ("commit_interval"), or the sink key ("sink pager: timeout")
    source: str  # "--commit-interval", "DETECTOR_COMMIT_INTERVAL", "sinks.yaml sink 'pager': ..."
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}" if self.source else self.reason


class SettingsError(Exception):
    """Settings a command cannot run with, as a list of problems (never a secret value in them).

    The loaders return it; start-up code that finds a setting wrong only once it looks at the
    world (the dead-letter topic is too small, the data directory is taken) raises it, and the
    command prints the problems and exits 2 either way.
    """

    def __init__(self, *problems: Problem | str) -> None:
        self.problems = tuple(problem if isinstance(problem, Problem) else Problem("", "", problem)
                              for problem in problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


class Secret(SecretStr):
    """A string that shows as `***` in repr, str, logs and errors (`**********` in JSON);
    `reveal()` is the one way to the value. Read from `VARIABLE` or from the file that
    `VARIABLE_FILE` names."""

    def reveal(self) -> str:
        return self.get_secret_value()

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"


def _more_than_zero(value: float) -> float:
    if value == 0:
        raise ValueError("must be more than zero (a period or timeout of zero would spin or "
                         "fail at once)")
    return value


TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


def parse_boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ValueError(f"{value!r} is not true or false; write one of 1/0, true/false, yes/no, "
                     "on/off")


def _whole(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a whole number")
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a whole number") from None


def _positive(value: int) -> int:
    if value <= 0:
        raise ValueError(f"{value} is not a positive whole number (1 or more)")
    return value


def _port(value: int) -> int:
    if not 0 <= value <= 65535:
        raise ValueError(f"{value} is not a TCP port (0-65535)")
    return value


def _finite_number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{value!r} is not a number")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number


def items(value: object) -> object:
    """Comma-separated text, or a list of such texts (a repeated flag, a YAML list)."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list | tuple):
        return tuple(part.strip() for item in value for part in str(item).split(",")
                     if part.strip())
    return value


def _not_empty(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        raise ValueError("is empty")
    return value


def _text(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class Choice:
    """One of a few names, in any case; the docs and --help list `names`."""

    names: tuple[str, ...]
    normalise: Callable[[str], str] = str.lower

    def __call__(self, value: object) -> str:
        name = self.normalise(str(value).strip())
        if name not in self.names:
            raise ValueError(f"{value!r} is not one of {', '.join(self.names)}")
        return name


def choice(names: Iterable[str], normalise: Callable[[str], str] = str.lower) -> BeforeValidator:
    return BeforeValidator(Choice(tuple(names), normalise))


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds: `500ms`, `30s`, `15m`, `2h`, `7d`, `1w` or plain seconds; finite, not negative."""
PositiveDuration = Annotated[Duration, AfterValidator(_more_than_zero)]
Boolean = Annotated[bool, BeforeValidator(parse_boolean)]
PositiveInt = Annotated[int, BeforeValidator(_whole), AfterValidator(_positive)]
Port = Annotated[int, BeforeValidator(_whole), AfterValidator(_port)]
Number = Annotated[float, BeforeValidator(_finite_number)]
Items = Annotated[tuple[str, ...], BeforeValidator(items)]
"""Comma-separated in a variable; a flag may be repeated; a list in YAML."""
NonEmptyItems = Annotated[Items, AfterValidator(_not_empty)]
Text = Annotated[str, BeforeValidator(_text)]


def holds_secret(annotation: Any) -> bool:
    """Whether a field's type is a Secret (optional or not, with validators or not)."""
    if get_origin(annotation) is Annotated:
        return holds_secret(get_args(annotation)[0])
    return annotation is Secret or any(holds_secret(arg) for arg in get_args(annotation))


def describe_type(metadata: Iterable[Any]) -> str | None:
    """The choices a field takes, for --help and the docs (None when it is free text)."""
    for item in metadata:
        function = getattr(item, "func", None)
        if isinstance(function, Choice):
            return ", ".join(function.names)
    return None
