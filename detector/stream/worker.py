"""`detector worker`: load the rules, build the Faust app, run it until SIGTERM.

Rules and sinks are checked before anything connects to Kafka: a worker with broken rules, a
rules or lists path that does not exist, no rule at all (an empty folder) or a bad sink setting
exits with status 2 and the problem on stderr instead of joining the group and alerting on
nothing. On SIGTERM (or SIGINT) Faust stops the agent after its current event, flushes the
producer, commits the offsets and leaves the consumer group.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

from detector.logs import SERVICE_FORMAT, configure
from detector.settings import SettingsError
from detector.settings.model import naming
from detector.settings.worker import WorkerSettings

EXIT_OK, EXIT_USAGE = 0, 2
log = logging.getLogger("detector.worker")


def _refuse(*problems: object) -> int:
    for problem in problems:
        log.error("detector worker: %s", problem)
    return EXIT_USAGE


def run(settings: WorkerSettings, environ: Mapping[str, str]) -> int:
    """Run a worker with `settings` and the sinks of `environ`; the exit status."""
    missing = [f"no such {name} path: {path} ({naming(WorkerSettings, name)})"
               for name in ("rules", "lists") for path in getattr(settings, name)
               if not os.path.exists(path)]
    if missing:
        return _refuse(*missing)
    from detector.engine.loader import RULE_SUFFIXES
    from detector.stream.rules import RuleSource

    rules = RuleSource(settings.rules, settings.lists, settings.enable_rules)
    loaded = rules.load()
    if loaded.errors:
        for message in rules.status.errors:
            log.error("%s", message)
        return _refuse(f"refusing to start: {len(loaded.errors)} problem(s) in the rules (see "
                       "`detector rules validate`)")
    if not loaded.ruleset.rules and not loaded.ruleset.correlations:
        return _refuse(f"no rules found under {', '.join(settings.rules)} "
                       f"({naming(WorkerSettings, 'rules')}): no rule file "
                       f"({', '.join(RULE_SUFFIXES)}) in it")
    from detector.settings.sinks import sink_configs

    sinks = sink_configs(environ)
    if isinstance(sinks, SettingsError):
        return _refuse(*sinks.problems)

    # from here on the worker is a service: its lines carry time, pid and level
    configure(settings.log_format, settings.log_level, text=SERVICE_FORMAT)
    import faust

    from detector.stream.app import create_app
    from detector.stream.topics import ensure_topics, internal_topics

    try:
        detector = create_app(settings, rules, loaded, environ=environ)
        ensure_topics(settings, internal_topics(
            settings, [group.name for group in detector.processor.groups]))
    except SettingsError as error:  # a TLS file went away, a topic too small, a busy data dir
        return _refuse(*error.problems)
    # stdout carries alerts only (the stdout sink): Faust's own output goes to stderr, and
    # its terminal spinner (escape codes even when not a terminal) is off; the logging is ours
    worker = faust.Worker(detector.app, loglevel=settings.log_level.upper(), quiet=True,
                          stdout=sys.stderr, override_logging=False)
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else EXIT_OK if code is None else 1
    return EXIT_OK
