"""The `detector` command: scan files, check rules, run the stream worker, replay files.

`scan` and `rules` never import faust, so they start fast; `worker` and `replay` hand their
arguments to the stream package.

Exit codes of `scan` (docs/scan.md): 0 every input read; 1 alerts fired and --fail-on-alert;
2 usage or configuration (no rules found, bad rules or lists, a bad, busy or unwritable state
file, an unwritable output), found before scanning; 3 some input could not be read, decoded
or evaluated (counted in the summary; --allow-input-errors makes that 0); 70 the scan itself
failed (a bug: the traceback is on stderr). `rules validate` and `rules test` exit 2 when no
rule is found.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path

from detector.alerts import Alert
from detector.engine import LoadResult, load_rules
from detector.engine.evaluator import Failure
from detector.engine.factory import make_engine
from detector.engine.ruletests import TestOutcome, run_tests
from detector.events import DEFAULT_LIMITS

EXIT_OK, EXIT_FOUND, EXIT_USAGE, EXIT_INPUT, EXIT_SOFTWARE = 0, 1, 2, 3, 70
DEFAULT_RULES = os.environ.get("DETECTOR_RULES_DIR", "rules")
_FAILURES_LOGGED = 100  # internal errors told one by one on stderr; the summary counts all


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="detector",
        description="Streaming anomaly detection for AWS CloudTrail with Sigma rules.",
        formatter_class=_Formatter,
        epilog="example:\n  detector scan --rules rules/ logs/2026/11/25/",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    scan = commands.add_parser(
        "scan", help="evaluate CloudTrail files against the rules (no broker needed)",
        description="Evaluate CloudTrail files against the rules; alerts as JSON lines.",
        formatter_class=_Formatter,
        epilog="example:\n  detector scan --rules rules/ --output alerts.jsonl logs/ trail.json.gz",
    )
    scan.add_argument("paths", nargs="+", metavar="PATH",
                      help="files, directories (recursive) or - for stdin")
    _rule_options(scan)
    scan.add_argument("-o", "--output", metavar="FILE", help="write alerts here, not stdout")
    scan.add_argument("--fail-on-alert", action="store_true", help="exit 1 when anything fired")
    scan.add_argument("--state", metavar="FILE",
                      help="load stateful baselines from FILE first and save them back after")
    scan.add_argument("--allowed-lateness", metavar="DURATION", default="15m",
                      help="how late an event may arrive and still count in windows (15m)")
    scan.add_argument("--max-message-bytes", type=int, default=DEFAULT_LIMITS.max_message_bytes,
                      metavar="N", help="longest JSON line, largest file read whole (not JSON "
                      f"lines) (default {DEFAULT_LIMITS.max_message_bytes})")
    scan.add_argument("--max-decompressed-bytes", type=int,
                      default=DEFAULT_LIMITS.max_decompressed_bytes, metavar="N",
                      help="largest gzip content read whole (not JSON lines) "
                           f"(default {DEFAULT_LIMITS.max_decompressed_bytes})")
    scan.add_argument("--max-clock-skew", metavar="DURATION", default="15m",
                      help="how far an eventTime may lie ahead of the wall clock (15m); later "
                           "records are decode errors (event_time_out_of_range)")
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
    validate.add_argument("paths", nargs="+", metavar="PATH")
    validate.add_argument("--lists", action="append", default=[], metavar="DIR",
                          help="more list files or directories")
    test = rule_commands.add_parser(
        "test", help="run the example events embedded in rules and compare the alerts",
        description="Run every embedded rule test; exit 1 on any failure.",
        formatter_class=_Formatter, epilog="example:\n  detector rules test rules/kinesisvideo",
    )
    test.add_argument("paths", nargs="+", metavar="PATH")
    test.add_argument("--lists", action="append", default=[], metavar="DIR",
                      help="more list files or directories")
    test.add_argument("-v", "--verbose", action="store_true", help="print passing tests too")

    for name, text in (("worker", "run the stream worker (Faust) on Kafka"),
                       ("replay", "produce CloudTrail files into a Kafka topic")):
        commands.add_parser(name, help=text, add_help=False, description=text)
    return parser


def _rule_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rules", action="append", metavar="DIR",
                        help=f"rule files or directories (default: {DEFAULT_RULES})")
    parser.add_argument("--lists", action="append", default=[], metavar="DIR",
                        help="more list files or directories (lists/ under rules is read anyway)")
    parser.add_argument("--enable", action="append", default=[], metavar="RULE_ID",
                        help="turn on a rule shipped disabled")


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in ("worker", "replay"):
        return _stream_command(args_list[0], args_list[1:])
    try:
        args = _parser().parse_args(args_list)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    if args.command == "scan":
        try:
            return _scan(args)
        except Exception:  # a bug in the scan itself: never 1, which means alerts
            traceback.print_exc()
            print("detector scan: internal error (see above); please report it",
                  file=sys.stderr)
            return EXIT_SOFTWARE
    if args.rules_command == "validate":
        return _validate(args)
    return _test(args)


def _stream_command(name: str, argv: list[str]) -> int:
    if name == "worker":
        from detector.stream.worker import main as worker_main

        return int(worker_main(argv))
    from detector.stream.replay import main as replay_main

    return int(replay_main(argv))


def _load(paths: Sequence[str], lists: Sequence[str], enable: Sequence[str] = ()) -> LoadResult:
    return load_rules([Path(p) for p in paths], [Path(p) for p in lists], enable=enable)


def _missing_rules(command: str, paths: Sequence[str], result: LoadResult | None) -> bool:
    """Say so and return True when the rule paths do not exist or hold no rule at all: a scan
    without rules would report "alerts: 0" for any input."""
    absent = [path for path in paths if not os.path.exists(path)]
    if absent:
        print(f"detector {command}: no such rules path: {', '.join(absent)}", file=sys.stderr)
        return True
    if result is not None and not result.errors and not (
            result.ruleset.rules or result.ruleset.correlations):
        print(f"detector {command}: no rules found under {', '.join(paths)}", file=sys.stderr)
        return True
    return False


def _report_errors(result: LoadResult) -> None:
    for error in result.errors:
        print(error, file=sys.stderr)


def _validate(args: argparse.Namespace) -> int:
    if _missing_rules("rules validate", args.paths, None):
        return EXIT_USAGE
    result = _load(args.paths, args.lists)
    _report_errors(result)
    ruleset = result.ruleset
    print(f"{result.files} file(s), {len(ruleset.rules)} rule(s), "
          f"{len(ruleset.correlations)} correlation(s), {len(ruleset.lists)} list(s), "
          f"{len(result.errors)} problem(s)", file=sys.stderr)
    if _missing_rules("rules validate", args.paths, result):
        return EXIT_USAGE
    return EXIT_FOUND if result.errors else EXIT_OK


def _test(args: argparse.Namespace) -> int:
    if _missing_rules("rules test", args.paths, None):
        return EXIT_USAGE
    result = _load(args.paths, args.lists)
    _report_errors(result)
    if result.errors:
        return EXIT_FOUND
    if _missing_rules("rules test", args.paths, result):
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


def _scan(args: argparse.Namespace) -> int:
    from detector.engine.factory import StateFileError, hold_state

    rules = args.rules or [DEFAULT_RULES]
    if _missing_rules("scan", rules, None):
        return EXIT_USAGE
    result = _load(rules, args.lists, args.enable)
    if result.errors:
        _report_errors(result)
        print(f"refusing to scan: {len(result.errors)} problem(s) in the rules "
              "(see `detector rules validate`)", file=sys.stderr)
        return EXIT_USAGE
    if _missing_rules("scan", rules, result):
        return EXIT_USAGE
    missing = [path for path in args.paths if path != "-" and not os.path.exists(path)]
    if missing:
        print(f"detector scan: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    from detector.scan import find_inputs

    inputs = find_inputs(args.paths)
    if not inputs:
        print("nothing to scan: no log files under the given paths", file=sys.stderr)
        return EXIT_USAGE
    state_file = Path(args.state) if args.state else None
    try:
        if state_file is None:
            return _scan_inputs(args, result, inputs, None)
        with hold_state(state_file):
            return _scan_inputs(args, result, inputs, state_file)
    except StateFileError as error:
        print(f"refusing to scan: {error}", file=sys.stderr)
        return EXIT_USAGE


def _scan_inputs(args: argparse.Namespace, result: LoadResult, inputs: list[str],
                 state_file: Path | None) -> int:
    """The scan proper, once the inputs are known and the state file (if any) is held."""
    from detector.durations import parse_duration
    from detector.engine.factory import StateFileError, load_state, save_state
    from detector.engine.stateful.suppression import format_suppressions
    from detector.events import Limits
    from detector.scan import format_summary, scan

    now = time.time()
    try:
        limits = Limits(max_message_bytes=args.max_message_bytes,
                        max_decompressed_bytes=args.max_decompressed_bytes,
                        max_clock_skew=parse_duration(args.max_clock_skew))
        engine = make_engine(result.ruleset, lateness=args.allowed_lateness)
        if state_file is not None:
            load_state(engine, state_file, now + limits.max_clock_skew)
    except ValueError as error:
        print(f"refusing to scan: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        out = open(args.output, "wb") if args.output else sys.stdout.buffer  # noqa: SIM115
    except OSError as error:
        print(f"refusing to scan: cannot write {args.output}: {error.strerror or error}",
              file=sys.stderr)
        return EXIT_USAGE
    failures = _FailureLog()
    fired = 0

    def emit(alert: Alert) -> None:
        nonlocal fired
        fired += 1
        out.write(alert.to_json() + b"\n")

    try:
        summary = scan(inputs, engine, limits, emit, _progress(args, inputs), now=now,
                       on_failure=failures, final=state_file is None)
    finally:
        if args.output:
            out.close()
        else:
            out.flush()
    stats = engine.stats()
    report = [format_summary(summary, late=stats["late"], duplicates=stats["duplicates"]),
              format_suppressions(engine.closed_suppressions())]
    print("\n".join(part for part in report if part), file=sys.stderr)
    if state_file is not None:
        try:
            save_state(engine, state_file)
        except StateFileError as error:
            print(f"detector scan: {error}", file=sys.stderr)
            return EXIT_USAGE
    if fired and args.fail_on_alert:
        return EXIT_FOUND
    if summary.input_errors and not args.allow_input_errors:
        print(f"detector scan: {summary.input_errors} input error(s): exit {EXIT_INPUT} "
              "(--allow-input-errors to accept them)", file=sys.stderr)
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
            print(f"detector scan: {describe_failure(failure)}", file=sys.stderr)
        elif self.told == _FAILURES_LOGGED + 1:
            print("detector scan: more internal errors are only counted (see the summary)",
                  file=sys.stderr)


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
