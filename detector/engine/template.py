"""Alert text rendered from event fields: `Stream {requestParameters.streamName} deleted`."""

from __future__ import annotations

import re
from typing import Any

from detector.engine.fields import MISSING, Many, as_text, getter

_FIELD = re.compile(r"\{([A-Za-z0-9_.\-]+)\}")


class Template:
    """A compiled output template; a missing field renders as `-`."""

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
    if value is MISSING or value is None:
        return "-"
    if isinstance(value, Many | list):
        return ",".join(_text(item) for item in value)
    text = as_text(value)
    return text if text is not None else str(value)
