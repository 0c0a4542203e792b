"""The `detector` command: scan files, check rules, run the stream worker, replay files.

One argument tree for every command; the settings of scan, the worker and replay come from
`detector.settings` (flags > DETECTOR_* variables > defaults). `scan` and `rules` never import
faust or the sinks, so they start fast; `worker` and `replay` hand their settings to the
stream package.

Exit codes of `scan` (docs/scan.md): 0 every input read; 1 alerts fired and --fail-on-alert;
2 usage or configuration (no rules found, bad rules or lists, a bad, busy or unwritable state
file, an unwritable output), found before scanning; 3 some input could not be read, decoded
or evaluated (counted in the summary; --allow-input-errors makes that 0); 70 the scan itself
failed (a bug: the traceback is on stderr). `rules validate` and `rules test` exit 2 when no
rule is found.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from detector import __version__
from detector.engine import LoadResult, load_rules
from detector.engine.evaluator import Failure
from detector.engine.factory import make_engine
from detector.engine.ruletests import TestOutcome, run_tests
from detector.logs import configure

if TYPE_CHECKING:  # the settings import pydantic: only the commands that read settings load it
    from detector.settings.common import LogSettings, ScanSettings

EXIT_OK, EXIT_FOUND, EXIT_USAGE, EXIT_INPUT, EXIT_SOFTWARE = 0, 1, 2, 3, 70
_FAILURES_LOGGED = 100  # internal errors told one by one on stderr; the summary counts all
log = logging.getLogger("detector.scan")
C = TypeVar("C", bound="LogSettings")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The one argument tree of `detector`. Each command's flags are made from its settings
    class and added when that command runs: `rules` starts without the settings model, and
    `scan` without the worker's (which imports the sinks) and without Faust."""
    parser = argparse.ArgumentParser(
        prog="detector",
        description="Streaming anomaly detection for AWS CloudTrail with Sigma rules.",
        formatter_class=_Formatter,
        epilog="example:\n  detector scan --rules rules/ logs/2026/11/25/",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    scan = commands.add_parser(
        "scan", help="evaluate CloudTrail files against the rules (no broker needed)",
        description="Evaluate CloudTrail files against the rules; alerts as JSON lines. Every "
        "setting is a flag and an environment variable (flags win).",
        formatter_class=_Formatter,
        epilog="example:\n  detector scan --rules rules/ --output alerts.jsonl logs/ trail.json.gz",
    )
    scan.add_argument("paths", nargs="+", metavar="PATH",
                      help="files, directories (recursive) or - for stdin")
    scan.add_argument("-o", "--output", metavar="FILE", help="write alerts here, not stdout")
    scan.add_argument("--fail-on-alert", action="store_true", help="exit 1 when anything fired")
    scan.add_argument("--state", metavar="FILE",
                      help="load stateful baselines from FILE first and save them back after")
    scan.add_argument("--allow-input-errors", action="store_true",
                      help="exit 0, not 3, when some input could not be read or evaluated")
    scan.add_argument("--no-progress", action="store_true", help="never show a progress bar")

    rules = commands.add_parser(
        "rules", help="validate rules or run their embedded tests",
        description="Check rule files.", formatter_class=_Formatter,
        epilog="examples:\n  detector rules validate rules/\n  detector rules test rules/",
    )
    rule_commands = rules.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    validate = rule_commands.add_parser(
        "validate", help="load rules and lists, print every problem as file:line: rule: message",
        description="Load rules and lists; print each problem; exit 1 on any.",
        formatter_class=_Formatter, epilog="example:\n  detector rules validate rules/",
    )
    test = rule_commands.add_parser(
        "test", help="run the example events embedded in rules and compare the alerts",
        description="Run every embedded rule test; exit 1 on any failure.",
        formatter_class=_Formatter, epilog="example:\n  detector rules test rules/kinesisvideo",
    )
    for rule_command in (validate, test):
        rule_command.add_argument("paths", nargs="+", metavar="PATH")
        rule_command.add_argument("--lists", action="append", default=[], metavar="DIR",
                                  help="more list files or directories")
    test.add_argument("-v", "--verbose", action="store_true", help="print passing tests too")

    worker = commands.add_parser(
        "worker", help="run the stream worker (Faust) on Kafka", formatter_class=_Formatter,
        description="Run the stream worker: consume CloudTrail events from Kafka, evaluate "
        "the rules, produce alerts. Every flag has an environment variable (docs/worker.md); "
        "the sinks have variables only (docs/sinks.md).",
        epilog="example:\n  detector worker --bootstrap-servers kafka:9092 --rules rules/")
    replay = commands.add_parser(
        "replay", help="produce CloudTrail files into a Kafka topic", formatter_class=_Formatter,
        description="Produce CloudTrail files (log files, JSON lines, gzip or not) into a "
        "Kafka topic; a summary goes to stderr. Brokers, security and limits are the worker's "
        "settings (flags or variables).",
        epilog="example:\n  detector replay --topic cloudtrail-events --rate 500 logs/")
    if command == "scan":
        from detector.settings.common import ScanSettings
        from detector.settings.model import add_flags

        add_flags(scan, ScanSettings)
    elif command == "worker":
        from detector.settings.model import add_flags
        from detector.settings.worker import WorkerSettings

        add_flags(worker, WorkerSettings)
    elif command == "replay":
        _replay_options(replay)
    return parser


def _replay_options(parser: argparse.ArgumentParser) -> None:
    """Replay's own flags, and those of the worker's settings it reads: the brokers, the
    limits it splits and sizes messages by, and the logs."""
    from detector.settings.common import LimitSettings, LogSettings
    from detector.settings.kafka import KafkaSettings
    from detector.settings.model import add_flags
    from detector.settings.worker import WorkerSettings

    parser.add_argument("paths", nargs="+", metavar="FILE",
                        help="files or directories (recursive), - for stdin")
    parser.add_argument("--topic", required=True, help="topic to produce to")
    parser.add_argument("--batch", action="store_true",
                        help="one message per file (the file's bytes), not one per record")
    parser.add_argument("--rate", type=float, default=0.0, metavar="N",
                        help="at most N messages per second (default: as fast as possible)")
    parser.add_argument("--gzip", action="store_true",
                        help="gzip every message that is not gzip already")
    parser.add_argument("--key-field", default=None, metavar="FIELD",
                        help="key each record's message by this dotted field, e.g. "
                        "userIdentity.arn (records only, not with --batch)")
    parser.add_argument("--sort", action="store_true",
                        help="send the records of all files in eventTime order (reads them "
                        "all first; not with --batch)")
    parser.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    add_flags(parser, WorkerSettings, (*KafkaSettings.model_fields,
                                       *LimitSettings.model_fields, *LogSettings.model_fields))


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser(args_list[0] if args_list else None).parse_args(args_list)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    if args.command == "rules":
        return _validate(args) if args.rules_command == "validate" else _test(args)
    environ = os.environ
    if args.command == "scan":
        from detector.settings.common import ScanSettings

        scan_settings = _settings(ScanSettings, args, environ, "scan")
        if isinstance(scan_settings, int):
            return scan_settings
        try:
            return _scan(args, scan_settings)
        except Exception:  # a bug in the scan itself: never 1, which means alerts
            log.exception("detector scan: internal error; please report it")
            return EXIT_SOFTWARE
    from detector.settings.worker import WorkerSettings

    settings = _settings(WorkerSettings, args, environ, args.command)
    if isinstance(settings, int):
        return settings
    if args.command == "worker":
        from detector.stream.worker import run

        return run(settings, environ)
    from detector.stream.replay import run as replay

    return replay(args, settings)


def _settings(cls: type[C], args: argparse.Namespace, environ: Mapping[str, str],
              command: str) -> C | int:
    """The command's settings, logging set up as they say; or, when they are wrong, the
    problems logged and exit 2."""
    from detector.settings import SettingsError
    from detector.settings.common import LOG_FORMATS
    from detector.settings.model import flags_of, load

    flags = flags_of(args, cls)
    settings = load(cls, flags, environ)
    if isinstance(settings, SettingsError):
        given = str(flags.get("log_format") or environ.get("DETECTOR_LOG_FORMAT", ""))
        configure(given.strip().lower() if given.strip().lower() in LOG_FORMATS else "text")
        for problem in settings.problems:
            logging.getLogger(f"detector.{command}").error(
                "detector %s: %s", command, problem, extra={"setting": problem.setting})
        return EXIT_USAGE
    configure(settings.log_format, settings.log_level)
    return settings


def _load(paths: Sequence[str], lists: Sequence[str], enable: Sequence[str] = ()) -> LoadResult:
    return load_rules([Path(p) for p in paths], [Path(p) for p in lists], enable=enable)


def _missing_rules(command: str, paths: Sequence[str], result: LoadResult | None) -> str | None:
    """What is wrong when the rule paths do not exist or hold no rule at all: a scan without
    rules would report "alerts: 0" for any input."""
    absent = [path for path in paths if not os.path.exists(path)]
    if absent:
        return f"detector {command}: no such rules path: {', '.join(absent)}"
    if result is not None and not result.errors and not (
            result.ruleset.rules or result.ruleset.correlations):
        return f"detector {command}: no rules found under {', '.join(paths)}"
    return None


def _told(problem: str | None) -> bool:
    if problem:
        print(problem, file=sys.stderr)
    return problem is not None


def _report_errors(result: LoadResult) -> None:
    for error in result.errors:
        print(error, file=sys.stderr)


def _validate(args: argparse.Namespace) -> int:
    if _told(_missing_rules("rules validate", args.paths, None)):
        return EXIT_USAGE
    result = _load(args.paths, args.lists)
    _report_errors(result)
    ruleset = result.ruleset
    print(f"{result.files} file(s), {len(ruleset.rules)} rule(s), "
          f"{len(ruleset.correlations)} correlation(s), {len(ruleset.lists)} list(s), "
          f"{len(result.errors)} problem(s)", file=sys.stderr)
    if _told(_missing_rules("rules validate", args.paths, result)):
        return EXIT_USAGE
    return EXIT_FOUND if result.errors else EXIT_OK


def _test(args: argparse.Namespace) -> int:
    if _told(_missing_rules("rules test", args.paths, None)):
        return EXIT_USAGE
    result = _load(args.paths, args.lists)
    _report_errors(result)
    if result.errors:
        return EXIT_FOUND
    if _told(_missing_rules("rules test", args.paths, result)):
        return EXIT_USAGE
    passed = failed = 0
    # Rule tests are written by hand and end with one later event that moves the clock on:
    # their engine's watermark follows the latest record (no corroboration, see
    # docs/stateful-rules.md).
    for outcome in run_tests(result.ruleset, partial(make_engine, corroboration=1)):
        if outcome.passed:
            passed += 1
            if args.verbose:
                print(f"PASS {outcome.rule.title}: {outcome.test.name}")
        else:
            failed += 1
            print(_describe_failure(outcome))
    print(f"{passed} passed, {failed} failed")
    return EXIT_FOUND if failed or not passed else EXIT_OK


def _describe_failure(outcome: TestOutcome) -> str:
    lines = [f"FAIL {outcome.test.location}: {outcome.rule.title} ({outcome.rule.id}): "
             f"{outcome.test.name}"]
    if outcome.error:
        lines.append(f"  {outcome.error}")
    else:
        lines.append(f"  expected {outcome.test.expect} alert(s), got {outcome.alerts}")
    for index, fired in enumerate(outcome.fired):
        mark = "+" if outcome.rule.id in fired else " "
        lines.append(f"  {mark} event #{index + 1}: fired {', '.join(fired) or 'nothing'}")
    return "\n".join(lines)


def _refuse(message: str) -> int:
    log.error("%s", message)
    return EXIT_USAGE


def _scan(args: argparse.Namespace, settings: ScanSettings) -> int:
    """Scan's messages go through logging (`--log-format json` makes each a JSON line); the
    alerts go to stdout or --output."""
    from detector.engine.factory import StateFileError, hold_state

    problem = _missing_rules("scan", settings.rules, None)
    if problem:
        return _refuse(problem)
    result = _load(settings.rules, settings.lists, settings.enable_rules)
    if result.errors:
        for error in result.errors:
            log.error("%s", error)
        return _refuse(f"refusing to scan: {len(result.errors)} problem(s) in the rules "
                       "(see `detector rules validate`)")
    problem = _missing_rules("scan", settings.rules, result)
    if problem:
        return _refuse(problem)
    missing = [path for path in args.paths if path != "-" and not os.path.exists(path)]
    if missing:
        return _refuse(f"detector scan: no such file or directory: {', '.join(missing)}")
    from detector.scan import find_inputs

    inputs = find_inputs(args.paths)
    if not inputs:
        return _refuse("nothing to scan: no log files under the given paths")
    state_file = Path(args.state) if args.state else None
    try:
        if state_file is None:
            return _scan_inputs(args, settings, result, inputs, None)
        with hold_state(state_file):
            return _scan_inputs(args, settings, result, inputs, state_file)
    except StateFileError as error:
        return _refuse(f"refusing to scan: {error}")


def _scan_inputs(args: argparse.Namespace, settings: ScanSettings, result: LoadResult,
                 inputs: list[str], state_file: Path | None) -> int:
    """The scan proper, once the inputs are known and the state file (if any) is held."""
    from detector.engine.factory import StateFileError, load_state, save_state
    from detector.engine.state import MemoryState
    from detector.engine.stateful.suppression import format_suppressions
    from detector.scan import JsonLines, format_summary, scan

    now = time.time()
    limits = settings.limits
    try:
        memory = MemoryState()
        engine = make_engine(result.ruleset, lateness=settings.allowed_lateness, state=memory)
        if state_file is not None:
            load_state(engine, state_file, now + limits.max_clock_skew)
    except ValueError as error:
        return _refuse(f"refusing to scan: {error}")
    try:
        out = open(args.output, "wb") if args.output else sys.stdout.buffer  # noqa: SIM115
    except OSError as error:
        return _refuse(f"refusing to scan: cannot write {args.output}: "
                       f"{error.strerror or error}")
    failures = _FailureLog()
    try:
        summary = scan(inputs, engine, limits, JsonLines(out.write), _progress(args, inputs),
                       now=now, on_failure=failures, final=state_file is None)
    finally:
        if args.output:
            out.close()
        else:
            out.flush()
    stats = engine.stats()
    report = [format_summary(summary, late=stats["late"], duplicates=stats["duplicates"],
                             contradicted=stats["contradicted"], evicted=memory.evicted,
                             trimmed=stats["trimmed"]),
              format_suppressions(engine.closed_suppressions())]
    log.info("%s", "\n".join(part for part in report if part))
    if state_file is not None:
        try:
            save_state(engine, state_file)
        except StateFileError as error:
            return _refuse(f"detector scan: {error}")
    if summary.alerts and args.fail_on_alert:
        return EXIT_FOUND
    if summary.input_errors and not args.allow_input_errors:
        log.error("detector scan: %d input error(s): exit %d (--allow-input-errors to accept "
                  "them)", summary.input_errors, EXIT_INPUT)
        return EXIT_INPUT
    return EXIT_OK


class _FailureLog:
    """Each internal error on stderr as it happens, the first `_FAILURES_LOGGED` of them."""

    def __init__(self) -> None:
        self.told = 0

    def __call__(self, failure: Failure) -> None:
        from detector.scan import describe_failure

        self.told += 1
        if self.told <= _FAILURES_LOGGED:
            log.error("detector scan: %s", describe_failure(failure),
                      extra={"event_id": failure.event_id, "rule_id": failure.rule_id})
        elif self.told == _FAILURES_LOGGED + 1:
            log.error("detector scan: more internal errors are only counted (see the summary)")


def _progress(
    args: argparse.Namespace, inputs: list[str]
) -> Callable[[Iterable[str]], Iterable[str]]:
    large = len(inputs) > 20 or sum(
        os.path.getsize(name) for name in inputs if name != "-" and os.path.exists(name)
    ) > 50_000_000
    if args.no_progress or not large or not sys.stderr.isatty():
        return lambda names: names
    from tqdm import tqdm

    return lambda names: tqdm(names, unit="file", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
