"""Building a ready engine for a rule set: the one place scan, rule tests and the worker
agree on how single-event and stateful evaluation are wired together; and the state file
`detector scan --state` keeps between runs.

A state file is held by one run at a time (`hold_state`: an advisory lock beside it, taken
before scanning, which also proves the location writable), every entry is checked when it is
loaded, and it is replaced atomically and durably (written beside it, fsynced, renamed over
it, the directory fsynced).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from detector.alerts import Alert
from detector.bounded import bounded_text
from detector.durations import parse_duration
from detector.engine.evaluator import Engine, Failure, MatchJson, is_stateless
from detector.engine.rule import Rule, RuleSet
from detector.engine.state import MemoryState, State
from detector.engine.stateful import (
    Stateful,
    SuppressionSummary,
    correlation,
    first_seen,
    suppression,
)
from detector.engine.stateful.clock import CORROBORATION, Clock
from detector.engine.stateful.keys import (
    CORRELATION,
    FIRST_SEEN,
    SUPPRESSION,
    check_state_key,
)
from detector.events import Record

STATE_FORMAT = "detector-state"
# Version 2 entries may carry optional fields version 1 did not know (a held first-seen
# event's later use, a correlation window's bound): a detector that reads only version 1
# refuses such a file instead of failing on it; version 1 files load as they are.
STATE_VERSION = 2
READABLE_VERSIONS = (1, 2)
_CHECKS: dict[str, Callable[[Any], str | None]] = {
    FIRST_SEEN: first_seen.check_entry,
    CORRELATION: correlation.check_entry,
    SUPPRESSION: suppression.check_entry,
}
_START_AFRESH = "move it away to start from an empty state"


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
        # what `Stateful.observe` routes: rules with memory or suppression, and the base rules
        # of correlations (rules that only feed correlations are among the first)
        self.observed = frozenset(
            rule.id for rule in ruleset.rules if rule.meta.enabled
            and (not is_stateless(rule) or rule.id in stateful.feeds))
        self._json: dict[str, MatchJson] = {}

    def match_json(self, rule: Rule, record: Record) -> bytes:
        """`match_alert`'s alert as a JSON line (`MatchJson`), without building it."""
        writer = self._json.get(rule.meta.id)
        if writer is None:
            writer = self._json[rule.meta.id] = MatchJson(rule.meta)
        return writer(record)

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


@contextmanager
def hold_state(path: Path) -> Iterator[None]:
    """Hold the state file `path` for one run: a second run on it is refused, and a location
    the state cannot be written to is found now, not after the scan (StateFileError).

    The lock is `fcntl.flock` on `<file>.lock` beside it, released when the run ends or dies.
    """
    lock = path.with_name(f"{path.name}.lock")
    try:
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise StateFileError(f"{path}: the state file's location is not writable ({lock}: "
                             f"{error.strerror or error})") from error
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateFileError(f"{path}: in use by another run (it holds {lock}); wait for "
                                 "it to end, or give this run its own state file") from None
        _check_writable(path)
        yield
    finally:
        os.close(descriptor)


def save_state(engine: StatefulEngine, path: Path) -> None:
    """Write the engine's memory to `path` atomically and durably: a temporary file beside it,
    fsynced, renamed over it, then the directory fsynced (the rename itself survives a crash)."""
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
    temporary = _temporary(path)
    try:
        content = orjson.dumps(document)
        with open(temporary, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        _fsync_directory(path.parent)
    except (OSError, orjson.JSONEncodeError) as error:
        raise StateFileError(f"{path}: cannot write the state file: {error}") from error


def load_state(engine: StatefulEngine, path: Path, latest: float | None = None) -> bool:
    """Fill a fresh engine's memory from `path`; False when there is no such file yet.

    A file that is unreadable, not JSON, of another format or version, has an entry that is
    not what its kind keeps, or a clock beyond `latest` (the wall clock plus the allowed
    clock skew, when given) raises StateFileError naming the file and the entry: a baseline
    is never thrown away, nor used, without the operator knowing.
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
        raise StateFileError(f"{path}: not a state file (invalid JSON: {error}); "
                             f"{_START_AFRESH}") from error
    _check(document, path)
    problem = engine.stateful.check_saved(
        document["engine"], float("inf") if latest is None else latest)
    if problem is not None:
        raise StateFileError(f"{path}: engine: {problem}; {_START_AFRESH}")
    entries: dict[str, Any] = document["entries"]
    for key, value in entries.items():
        problem = check_state_key(key) or _CHECKS[key.split("|", 1)[0]](value)
        if problem is not None:
            raise StateFileError(f"{path}: entry {bounded_text(key, 200)!r}: {problem}; "
                                 f"{_START_AFRESH}")
    state = engine.stateful.state
    if len(state):
        raise StateFileError("state can only be loaded into a fresh engine")
    for key, value in entries.items():
        state.put(key, value)
    try:
        engine.stateful.restore(document["engine"])
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise StateFileError(f"{path}: malformed state file ({error!r}); "
                             f"{_START_AFRESH}") from error
    return True


def _check(document: object, path: Path) -> None:
    if not isinstance(document, dict) or document.get("format") != STATE_FORMAT:
        raise StateFileError(f"{path}: not a detector state file (no "
                             f"\"format\": \"{STATE_FORMAT}\"); refusing to overwrite it")
    if document.get("version") not in READABLE_VERSIONS:
        raise StateFileError(f"{path}: state file version {document.get('version')!r} is not "
                             f"supported (this detector reads versions "
                             f"{', '.join(map(str, READABLE_VERSIONS))}); {_START_AFRESH}")
    if not isinstance(document.get("entries"), dict) or not isinstance(
        document.get("engine"), dict
    ):
        raise StateFileError(f"{path}: malformed state file (entries or engine missing); "
                             f"{_START_AFRESH}")


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def _check_writable(path: Path) -> None:
    """Create and remove the temporary file a save writes: the location takes new files."""
    temporary = _temporary(path)
    try:
        with open(temporary, "wb"):
            pass
        temporary.unlink()
    except OSError as error:
        raise StateFileError(f"{path}: the state file's location is not writable "
                             f"({temporary}: {error.strerror or error})") from error
    if path.exists() and not os.access(path, os.R_OK):
        raise StateFileError(f"{path}: the state file is not readable")


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
