"""Secret values (tokens, HMAC keys, webhook URLs) that must never reach a log or a repr."""

from __future__ import annotations

from urllib.parse import urlsplit


class Secret:
    """A string that shows as `***` everywhere except through `reveal()`.

    Config objects hold their secrets in this wrapper, so printing a config, logging it or
    letting it appear in a traceback's locals cannot leak the value.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def redact_url(url: str) -> str:
    """Scheme and host of a URL, enough to tell sinks apart in logs without its path or query.

    Slack and many webhook URLs carry their credential in the path, so the rest goes.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "***"
    return f"{parts.scheme}://{host}{port}/***"
