"""Rules of a running worker: loaded at start, reloaded when their files change.

A Kubernetes ConfigMap mount swaps a symlink, so change detection compares the identity
(inode, size, mtime) of every rule and list file found, not the directory's mtime. A reload
is all or nothing: a rule set with any error is rejected and the running rules stay.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from detector.engine import LoadResult, load_rules
from detector.engine.loader import find_files

Fingerprint = tuple[tuple[str, int, int, int], ...]
MAX_REPORTED_ERRORS = 20


@dataclass
class ReloadStatus:
    """The outcome of the last load, for /status and the reload metrics."""

    ok: bool = True
    at: float = 0.0
    errors: list[str] = field(default_factory=list)


class RuleSource:
    """Where a worker's rules come from, and the last rule set that loaded cleanly."""

    def __init__(self, rules: Sequence[str], lists: Sequence[str] = (),
                 enable: Sequence[str] = ()) -> None:
        self.rule_paths = [Path(path) for path in rules]
        self.list_paths = [Path(path) for path in lists]
        self.enable = tuple(enable)
        self.fingerprint: Fingerprint = ()
        self.files = 0
        self.status = ReloadStatus()

    def load(self) -> LoadResult:
        """Load the rules now; the fingerprint is taken first so no change is missed."""
        self.fingerprint = self.current_fingerprint()
        result = load_rules(self.rule_paths, self.list_paths, enable=self.enable)
        self.status = ReloadStatus(
            ok=not result.errors,
            at=time.time(),
            errors=[str(error) for error in result.errors[:MAX_REPORTED_ERRORS]],
        )
        if not result.errors:
            self.files = result.files
        return result

    def changed(self) -> bool:
        return self.current_fingerprint() != self.fingerprint

    def current_fingerprint(self) -> Fingerprint:
        rules, lists = find_files([*self.rule_paths, *self.list_paths])
        identities = []
        for path in sorted(rules + lists):
            try:
                stat = os.stat(path)
            except OSError:
                continue
            identities.append((str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns))
        return tuple(identities)
