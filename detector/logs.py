"""Log lines on stderr as text for people or as JSON for a log pipeline (`--log-format`).

JSON is one object a line: `timestamp` (UTC, ISO 8601), `level`, `logger`, `message`, and
`event_id`, `rule_id` when the call passed them (`log.error(..., extra={"event_id": ...})`),
`exception` with the traceback when there is one. Standard output stays for alerts.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import IO

import orjson

# Record attributes a log call may add with `extra=` that the JSON line carries.
FIELDS = ("event_id", "rule_id", "setting")
# The worker's text lines once it runs (as Faust's were); commands print bare messages.
SERVICE_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
MESSAGE_FORMAT = "%(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (a message's line breaks are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler `configure` installs, so a second call replaces it instead of adding one."""


def configure(log_format: str, level: str = "info", *, text: str = MESSAGE_FORMAT,
              stream: IO[str] | None = None) -> None:
    """Send the root logger's records to `stream` (stderr) as `log_format` ("text" or "json")."""
    handler = _Handler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(text))
    root = logging.getLogger()
    for old in [old for old in root.handlers if isinstance(old, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
