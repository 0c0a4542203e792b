"""Alert text rendered from event fields: `Stream {requestParameters.streamName} deleted`."""

from __future__ import annotations

import re
from typing import Any

from detector.bounded import bounded_text
from detector.engine.fields import Many, getter, text_of

_FIELD = re.compile(r"\{([A-Za-z0-9_.\-]+)\}")


class Template:
    """A compiled output template; a missing field renders as `-`, and each field's text is
    bounded (`detector.bounded`), so the alert text is too."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._pieces: list[str] = []
        self._getters = []
        last = 0
        for match in _FIELD.finditer(source):
            self._pieces.append(source[last : match.start()])
            self._getters.append(getter(match.group(1)))
            last = match.end()
        self._tail = source[last:]

    def render(self, data: dict[str, Any]) -> str:
        out: list[str] = []
        for piece, read in zip(self._pieces, self._getters, strict=True):
            out.append(piece)
            out.append(_text(read(data)))
        out.append(self._tail)
        return "".join(out)

    def fields(self) -> list[str]:
        return _FIELD.findall(self.source)


def _text(value: Any) -> str:
    """A field as alert text: values reached through lists joined by commas, objects (and
    lists inside them) as JSON, a missing field as `-`."""
    if isinstance(value, Many | list):
        return bounded_text(",".join(_one(item) for item in value))
    return _one(value)


def _one(value: Any) -> str:
    text = text_of(value)
    return "-" if text is None else text
