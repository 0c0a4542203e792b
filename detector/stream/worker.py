"""`detector worker`: load the rules, build the Faust app, run it until SIGTERM.

Rules are loaded before anything connects to Kafka: a worker with broken rules, a rules or
lists path that does not exist, or no rule at all (an empty folder) exits with status 2 and
the problem on stderr instead of joining the group and alerting on nothing.
On SIGTERM (or SIGINT) Faust stops the agent after its current event, flushes the producer,
commits the offsets and leaves the consumer group.
"""

from __future__ import annotations

import os
import sys

from detector.stream.config import ConfigError, option_name, settings_from

EXIT_OK, EXIT_USAGE = 0, 2


def main(argv: list[str]) -> int:
    try:
        settings = settings_from(argv)
    except ConfigError as error:
        print(f"detector worker: {error}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit:  # --help was printed
        return EXIT_OK
    missing = [f"no such {name} path: {path} ({option_name(name)})"
               for name in ("rules", "lists") for path in getattr(settings, name)
               if not os.path.exists(path)]
    if missing:
        for problem in missing:
            print(f"detector worker: {problem}", file=sys.stderr)
        return EXIT_USAGE
    from detector.engine.loader import RULE_SUFFIXES
    from detector.stream.rules import RuleSource

    rules = RuleSource(settings.rules, settings.lists, settings.enable_rules)
    loaded = rules.load()
    if loaded.errors:
        for message in rules.status.errors:
            print(message, file=sys.stderr)
        print(f"detector worker: refusing to start: {len(loaded.errors)} problem(s) in the "
              "rules (see `detector rules validate`)", file=sys.stderr)
        return EXIT_USAGE
    if not loaded.ruleset.rules and not loaded.ruleset.correlations:
        print(f"detector worker: no rules found under {', '.join(settings.rules)} "
              f"({option_name('rules')}): no rule file ({', '.join(RULE_SUFFIXES)}) in it",
              file=sys.stderr)
        return EXIT_USAGE

    import faust

    from detector.sinks.config import SinkConfigError
    from detector.stream.app import create_app
    from detector.stream.topics import ensure_topics, internal_topics

    try:
        detector = create_app(settings, rules, loaded)
        ensure_topics(settings, internal_topics(
            settings, [group.name for group in detector.processor.groups]))
    except (SinkConfigError, ConfigError) as error:  # ConfigError: a TLS file went away
        print(f"detector worker: {error}", file=sys.stderr)
        return EXIT_USAGE
    # stdout carries alerts only (the stdout sink): Faust's own output goes to stderr, and
    # its terminal spinner (escape codes even when not a terminal) is off
    worker = faust.Worker(detector.app, loglevel=settings.log_level.upper(), quiet=True,
                          stdout=sys.stderr)
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else EXIT_OK if code is None else 1
    return EXIT_OK
