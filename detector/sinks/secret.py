"""What of a receiver's URL a log line may show (the value itself is a `Secret`)."""

from __future__ import annotations

from urllib.parse import urlsplit


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
