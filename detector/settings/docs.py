"""The settings tables of docs/worker.md and docs/sinks.md, made from the settings classes.

`python -m detector.settings.docs` rewrites them in place; `--check` exits 1 when a page is
out of date (tests/stream/test_docs.py and tests/sinks/test_docs.py run the same check).
Each table sits between `<!-- settings: NAME -->` and `<!-- end settings -->`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from detector.settings.model import default_text, describe, table
from detector.settings.sinks import (
    KINDS,
    SHARED_KEYS,
    SHARED_PREFIX,
    STDOUT_SWITCH,
    SinkKeys,
    StdoutKeys,
    is_secret,
    variable,
)

DOCS = Path(__file__).resolve().parents[2] / "docs"
END = "<!-- end settings -->"


def _worker() -> str:
    from detector.settings.worker import WorkerSettings

    return table(WorkerSettings)


def _sink_variables() -> str:
    """docs/sinks.md: the variables of each sink."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|",
            f"| `{STDOUT_SWITCH}` | `false` | `true` (or 1, yes, on) enables the stdout sink "
            "(sink name `stdout`) |"]
    for keys in KINDS.values():
        for key, field in keys.model_fields.items():
            if key in SHARED_KEYS:
                continue
            name = variable(keys, key)
            shown = f"`{name}` / `_FILE`" if is_secret(keys, key) else f"`{name}`"
            rows.append(f"| {shown} | {_default_text(keys, key)} | {describe(field)} |")
    return "\n".join(rows)


def _sink_keys() -> str:
    """docs/sinks.md: the keys every sink has (DETECTOR_<SINK>_<KEY>, DETECTOR_SINK_<KEY>)."""
    rows = ["| Key | Variables | Default | Meaning |", "|---|---|---|---|"]
    for key in SHARED_KEYS:
        keys = next(keys for keys in KINDS.values() if key in keys.model_fields)
        field = keys.model_fields[key]
        secret = " (and `_FILE`)" if is_secret(keys, key) else ""
        http = " (HTTP sinks)" if keys is not StdoutKeys and key not in SinkKeys.model_fields \
            else ""
        rows.append(f"| `{key}` | `DETECTOR_<SINK>_{key.upper()}`, "
                    f"`{SHARED_PREFIX}_{key.upper()}`{secret}{http} | "
                    f"{_default_text(keys, key)} | {describe(field)} |")
    return "\n".join(rows)


def _default_text(keys: type[SinkKeys], key: str) -> str:
    field = keys.model_fields[key]
    if field.is_required():
        return "(required)"
    text = default_text(field)
    return f"`{text}`" if text else "(none)"


TABLES: dict[str, tuple[str, Callable[[], str]]] = {
    "worker": ("worker.md", _worker),
    "sink-variables": ("sinks.md", _sink_variables),
    "sink-keys": ("sinks.md", _sink_keys),
}


def rendered(text: str, name: str, made: str) -> str:
    """`text` with the table `name` replaced by `made`; ValueError when it has no such table."""
    pattern = re.compile(rf"(<!-- settings: {re.escape(name)} -->\n).*?(\n{re.escape(END)})",
                         re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"no <!-- settings: {name} --> ... {END} block")
    return pattern.sub(lambda match: match.group(1) + made + match.group(2), text)


def stale(docs: Path = DOCS) -> list[str]:
    """The tables whose page differs from what the classes make."""
    return [name for name, (page, make) in TABLES.items()
            if rendered((docs / page).read_text(), name, make()) != (docs / page).read_text()]


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        names = stale()
        for name in names:
            print(f"docs/{TABLES[name][0]}: the {name} table is out of date; run "
                  "python -m detector.settings.docs", file=sys.stderr)
        return 1 if names else 0
    for name, (page, make) in TABLES.items():
        path = DOCS / page
        path.write_text(rendered(path.read_text(), name, make()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
