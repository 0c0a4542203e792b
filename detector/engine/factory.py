"""Building a ready engine for a rule set: the one place scan, rule tests and the worker
agree on how single-event and stateful evaluation are wired together; and the state file
`detector scan --state` keeps between runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from detector.alerts import Alert
from detector.durations import parse_duration
from detector.engine.evaluator import Engine, Failure, failure
from detector.engine.rule import RuleSet
from detector.engine.state import MemoryState, State
from detector.engine.stateful import Stateful, SuppressionSummary
from detector.engine.stateful.clock import CORROBORATION, Clock
from detector.events import Record

STATE_FORMAT = "detector-state"
# Version 2 entries may carry optional fields version 1 did not know (a held first-seen
# event's later use, a correlation window's bound): a detector that reads only version 1
# refuses such a file instead of failing on it; version 1 files load as they are.
STATE_VERSION = 2
READABLE_VERSIONS = (1, 2)


class StateFileError(Exception):
    """A state file that cannot be used as it is; it is never silently replaced."""


class StatefulEngine(Engine):
    """An engine whose stateful rules keep memory in `stateful`.

    A redelivered event (same eventID) is dropped before any rule sees it, single-event rules
    included, so it neither counts nor alerts twice.
    """

    stateful: Stateful

    def __init__(self, ruleset: RuleSet, stateful: Stateful) -> None:
        super().__init__(ruleset, stateful)

    def process(self, record: Record) -> list[Alert]:
        try:
            admitted = self.stateful.admit(record)
        except Exception as error:
            self.failures.append(failure(None, record, error))
            return []
        return super().process(record) if admitted else []

    def take_failures(self) -> list[Failure]:
        return super().take_failures() + self.stateful.take_failures()

    def flush(self, final: bool = True) -> list[Alert]:
        """End of input: the alerts still waiting for the watermark. Not `final` when the
        state is saved for a later run: windows not yet passed by the watermark stay open."""
        return self.stateful.flush(final)

    def closed_suppressions(self) -> list[SuppressionSummary]:
        return self.stateful.closed_suppressions()

    def stats(self) -> dict[str, int]:
        return self.stateful.stats()


def make_engine(
    ruleset: RuleSet, *, lateness: str | float = "15m", state: State | None = None,
    corroboration: int = CORROBORATION,
) -> StatefulEngine:
    """An engine for `ruleset`; its stateful rules keep memory in `state` (in memory by default).

    `corroboration`: how many records must reach an event time before the watermark follows it
    (1: the latest record moves it, as rule tests written by hand expect).
    """
    seconds = parse_duration(lateness)
    stateful = Stateful(ruleset, state if state is not None else MemoryState(),
                        lateness=seconds, clock=Clock(seconds, corroboration))
    return StatefulEngine(ruleset, stateful)


def save_state(engine: StatefulEngine, path: Path) -> None:
    """Write the engine's memory to `path` atomically (a temporary file renamed over it)."""
    state = engine.stateful.state
    if not isinstance(state, MemoryState):
        raise StateFileError("only in-memory state can be saved to a file")
    document = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "lateness_seconds": engine.stateful.clock.lateness,
        "engine": engine.stateful.dump(),
        "entries": state.snapshot(),
    }
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_bytes(orjson.dumps(document))
        os.replace(temporary, path)
    except OSError as error:
        raise StateFileError(f"{path}: cannot write the state file: {error}") from error


def load_state(engine: StatefulEngine, path: Path) -> bool:
    """Fill a fresh engine's memory from `path`; False when there is no such file yet.

    A file that is unreadable, not JSON, of another format or version, or malformed raises
    StateFileError: a baseline is never thrown away without the operator knowing.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return False
    except OSError as error:
        raise StateFileError(f"{path}: cannot read the state file: {error}") from error
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise StateFileError(f"{path}: not a state file (invalid JSON: {error}); move it "
                             "away to start from an empty state") from error
    _check(document, path)
    state = engine.stateful.state
    if len(state):
        raise StateFileError("state can only be loaded into a fresh engine")
    entries: dict[str, Any] = document["entries"]
    for key, value in entries.items():
        state.put(key, value)
    try:
        engine.stateful.restore(document["engine"])
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise StateFileError(f"{path}: malformed state file ({error!r}); move it away to "
                             "start from an empty state") from error
    return True


def _check(document: object, path: Path) -> None:
    if not isinstance(document, dict) or document.get("format") != STATE_FORMAT:
        raise StateFileError(f"{path}: not a detector state file (no "
                             f"\"format\": \"{STATE_FORMAT}\"); refusing to overwrite it")
    if document.get("version") not in READABLE_VERSIONS:
        raise StateFileError(f"{path}: state file version {document.get('version')!r} is not "
                             f"supported (this detector reads versions "
                             f"{', '.join(map(str, READABLE_VERSIONS))}); move it away to "
                             "start from an empty state")
    if not isinstance(document.get("entries"), dict) or not isinstance(
        document.get("engine"), dict
    ):
        raise StateFileError(f"{path}: malformed state file (entries or engine missing); "
                             "move it away to start from an empty state")
