"""The `detector` command: scan files, check rules, run the stream worker, replay files.

`scan` and `rules` never import faust, so they start fast; `worker` and `replay` hand their
arguments to the stream package.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path

from detector.alerts import Alert
from detector.engine import LoadResult, load_rules
from detector.engine.factory import make_engine
from detector.engine.ruletests import TestOutcome, run_tests

EXIT_OK, EXIT_FOUND, EXIT_USAGE = 0, 1, 2
DEFAULT_RULES = os.environ.get("DETECTOR_RULES_DIR", "rules")


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
    scan.add_argument("--max-message-bytes", type=int, default=None, metavar="N",
                      help="reject inputs larger than N bytes")
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
        return _scan(args)
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


def _report_errors(result: LoadResult) -> None:
    for error in result.errors:
        print(error, file=sys.stderr)


def _validate(args: argparse.Namespace) -> int:
    result = _load(args.paths, args.lists)
    _report_errors(result)
    ruleset = result.ruleset
    print(f"{result.files} file(s), {len(ruleset.rules)} rule(s), "
          f"{len(ruleset.correlations)} correlation(s), {len(ruleset.lists)} list(s), "
          f"{len(result.errors)} problem(s)", file=sys.stderr)
    return EXIT_FOUND if result.errors else EXIT_OK


def _test(args: argparse.Namespace) -> int:
    result = _load(args.paths, args.lists)
    _report_errors(result)
    if result.errors:
        return EXIT_FOUND
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
    from detector.engine.factory import StateFileError, load_state, save_state
    from detector.engine.stateful.suppression import format_suppressions
    from detector.events import DEFAULT_LIMITS, Limits
    from detector.scan import find_inputs, format_summary, scan

    rules = args.rules or [DEFAULT_RULES]
    result = _load(rules, args.lists, args.enable)
    if result.errors:
        _report_errors(result)
        print(f"refusing to scan: {len(result.errors)} problem(s) in the rules "
              "(see `detector rules validate`)", file=sys.stderr)
        return EXIT_USAGE
    missing = [path for path in args.paths if path != "-" and not os.path.exists(path)]
    if missing:
        print(f"detector scan: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    inputs = find_inputs(args.paths)
    if not inputs:
        print("nothing to scan: no log files under the given paths", file=sys.stderr)
        return EXIT_USAGE
    limits = DEFAULT_LIMITS
    if args.max_message_bytes:
        limits = Limits(max_message_bytes=args.max_message_bytes)
    state_file = Path(args.state) if args.state else None
    try:
        engine = make_engine(result.ruleset, lateness=args.allowed_lateness)
        if state_file is not None:
            load_state(engine, state_file)
    except (ValueError, StateFileError) as error:
        print(f"refusing to scan: {error}", file=sys.stderr)
        return EXIT_USAGE
    out = open(args.output, "wb") if args.output else sys.stdout.buffer  # noqa: SIM115
    fired = 0

    def emit(alert: Alert) -> None:
        nonlocal fired
        fired += 1
        out.write(alert.to_json() + b"\n")

    try:
        summary = scan(inputs, engine, limits, emit, _progress(args, inputs))
        # End of input: pending decisions are taken; windows close unless the state is saved,
        # in which case those the watermark has not passed carry over to the next run.
        for alert in engine.flush(final=state_file is None):
            summary.count(alert)
            emit(alert)
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
    return EXIT_FOUND if fired and args.fail_on_alert else EXIT_OK


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
