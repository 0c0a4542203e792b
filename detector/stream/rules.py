"""Rules of a running worker: loaded at start, reloaded when their files change.

A Kubernetes ConfigMap mount swaps a symlink, so change detection compares the identity
(inode, size, mtime) of every rule and list file found, not the directory's mtime. A reload
is all or nothing: a rule set with any error is rejected and the running rules stay.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from detector.engine import LoadResult, load_rules
from detector.engine.loader import find_files
from detector.metrics import Metrics
from detector.stream.evaluation import GroupEvaluator
from detector.stream.processor import Processor

log = logging.getLogger(__name__)

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


class Reloader:
    """Swaps new rules into a running worker when their files changed (or when forced, on
    SIGHUP) and they load cleanly; else the running rules stay, and the failure shows in
    `detector_rule_reloads_total{result="failure"}`, `detector_last_reload_success` and the
    status page's `last_reload`."""

    def __init__(self, rules: RuleSource, processor: Processor,
                 evaluators: Mapping[str, GroupEvaluator], metrics: Metrics) -> None:
        self.rules = rules
        self.processor = processor
        self.evaluators = evaluators
        self.metrics = metrics
        metrics.last_reload_success.set(1 if rules.status.ok else 0)

    def reload(self, force: bool = False) -> None:
        rules = self.rules
        try:
            if not force and not rules.changed():
                return
            result = rules.load()
            if result.errors:
                log.error("rule reload failed, keeping the running rules:\n%s",
                          "\n".join(rules.status.errors))
                self._record(ok=False)
                return
            ruleset = result.ruleset
            if ruleset.rules or ruleset.correlations:
                problem = self.processor.swap(ruleset)
            else:
                problem = ("no rule found (an empty folder, or a ConfigMap mounted without "
                           "its files?)")
        except Exception as error:  # a file gone while read, our bug: never the worker
            log.exception("rule reload failed, keeping the running rules")
            problem = f"{type(error).__name__}: {error}"
        if problem is not None:
            rules.status.ok = False
            rules.status.errors = [problem]
            log.error("rule reload refused, keeping the running rules: %s", problem)
            self._record(ok=False)
            return
        for group in self.processor.groups:
            self.evaluators[group.name].swap(group)
        log.info("rules reloaded: %d active", self.processor.engine.rule_count)
        self._record(ok=True)

    def _record(self, *, ok: bool) -> None:
        self.metrics.reloads.labels("success" if ok else "failure").inc()
        self.metrics.last_reload_success.set(1 if ok else 0)
