"""Benchmark results: the model, the JSON file and the Markdown table in docs/BENCHMARKS.md."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

START_MARKER = "<!-- bench:results:start -->"
END_MARKER = "<!-- bench:results:end -->"
OK, NOT_AVAILABLE, SKIPPED, FAILED = "ok", "not available", "skipped", "failed"
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt,
}


@dataclass
class Measurement:
    """One contender's repetitions in one unit, and their median."""

    unit: str
    runs: list[float]
    median: float


@dataclass
class Target:
    """What must hold: `value <op> limit`, e.g. total/decode-only cost <= 2."""

    text: str
    op: str
    limit: float

    def met(self, value: float) -> bool:
        return _OPERATORS[self.op](value, self.limit)


@dataclass
class Result:
    id: str
    number: int
    title: str
    target: Target
    status: str = OK
    reason: str = ""
    measurements: dict[str, Measurement] = field(default_factory=dict)
    ratios: dict[str, float] = field(default_factory=dict)
    value: float | None = None  # the quantity the target is checked against
    value_label: str = ""
    met: bool | None = None
    notes: list[str] = field(default_factory=list)
    profile: dict[str, Any] | None = None

    def measure(self, name: str, unit: str, runs: list[float], median: float) -> None:
        self.measurements[name] = Measurement(unit, [round(run, 6) for run in runs],
                                              round(median, 6))

    def conclude(self, value: float, label: str) -> None:
        self.value = round(value, 4)
        self.value_label = label
        self.met = self.target.met(value)

    def unavailable(self, reason: str, status: str = NOT_AVAILABLE) -> Result:
        self.status, self.reason = status, reason
        return self


SPECS: dict[int, tuple[str, str, Target]] = {
    1: ("engine_stateless",
        "Engine, stateless: decode + every shipped pack + SigmaHQ vs decode only",
        Target("total cost per record <= 2x decode-only", "<=", 2.0)),
    2: ("rule_scaling", "Rule scaling: engine cost per event at 10, 100, 1,000 rules",
        Target("cost at 1,000 rules <= 1.5x cost at 10", "<=", 1.5)),
    3: ("engine_stateful", "Engine, stateful: first seen, suppression, correlations on vs off",
        Target("cost with stateful evaluation <= 1.5x without", "<=", 1.5)),
    4: ("state_memory", "State memory: bytes per tracked first-seen value",
        Target("<= 200 bytes per tracked value", "<=", 200.0)),
    5: ("stream_single", "Stream, single-record messages: worker vs no-op faust agent "
        "vs plain aiokafka loop", Target("worker >= 50% of the no-op agent", ">=", 0.5)),
    6: ("stream_log_files", "Stream, log-file messages (100 records each): worker vs "
        "plain aiokafka loop", Target("worker >= 20% of the aiokafka loop", ">=", 0.2)),
    7: ("latency", "Latency: produce-to-alert at a fixed 2,000 events/s",
        Target("p99 < 250 ms", "<", 250.0)),
    8: ("recovery", "Recovery: worker SIGKILLed to alerts flowing again from its partner",
        Target("< 30 s", "<", 30.0)),
    9: ("hostile_patterns", "Hostile patterns: nested-quantifier regex, 10,000 contains "
        "values, many-star wildcard vs plain ones", Target(
            "10,000 contains values <= 3x 10,000 equality values", "<=", 3.0)),
    10: ("message_memory", "Memory: peak RSS of the worst messages the decoding limits let "
         "through", Target("<= 512 MiB, half the pod's 1 GiB limit", "<=", 512.0)),
    11: ("scan_memory", "Memory: peak RSS of detector scan over 1 GB against a tenth of it",
         Target("<= 1.5x: memory follows the lateness, not the input", "<=", 1.5)),
    12: ("scan_alerting", "Scan, nearly every record alerts: detector scan vs decode only",
         Target("scan cost per record <= 5x decode-only", "<=", 5.0)),
    13: ("rule_startup", "Rule start-up: load_rules + make_engine at 570 rules",
         Target("< 0.5 s", "<", 0.5)),
    14: ("anomaly_memory", "Memory per baseline key and per rare value at 100,000 keys",
         Target("<= 1 KiB per baseline key (24-slot daily profile)", "<=", 1024.0)),
    15: ("anomaly_cost", "Cost per record: shipped packs with their baseline and rare-value "
         "rules vs without them", Target("with/without cost <= 1.5x", "<=", 1.5)),
    16: ("stateful_latency", "Latency of stateful alerts: deciding event to alert at 2,000 "
         "events/s, per kind (first seen, rare, event count, baseline)",
         Target("p99 < 1 s for every kind", "<", 1000.0)),
}


def new_result(number: int, title: str | None = None) -> Result:
    """An empty result for benchmark `number`, with its id, title and target."""
    identifier, default_title, target = SPECS[number]
    return Result(identifier, number, title or default_title, target)


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)


def as_dict(results: list[Result]) -> list[dict[str, Any]]:
    return [asdict(result) for result in results]


def _number(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _measured(result: Result) -> str:
    if result.status != OK:
        reason = " ".join(result.reason.split())  # one table row: no newlines
        return f"{result.status}: {reason[:300]}{'...' if len(reason) > 300 else ''}"
    return "; ".join(f"{name} {_number(m.median)} {m.unit}"
                     for name, m in result.measurements.items())


def _verdict(result: Result) -> str:
    if result.status != OK or result.met is None:
        return "n/a"
    return "**met**" if result.met else "**missed**"


def table(results: list[Result]) -> str:
    lines = ["| # | Benchmark | Measured (medians) | Checked value | Target | Met |",
             "|---|---|---|---|---|---|"]
    for result in results:
        value = (f"{result.value_label} = {_number(result.value)}"
                 if result.value is not None else "")
        lines.append(f"| {result.number} | {result.title} | {_measured(result)} | {value} | "
                     f"{result.target.text} | {_verdict(result)} |")
    return "\n".join(lines)


def _profile_lines(result: Result, top: int) -> list[str]:
    profile = result.profile
    if not profile:
        return []
    lines = [f"Profile of benchmark {result.number} ({result.title}; "
             f"{profile.get('subject', 'one pass')}), total {profile['total_s']} s, "
             f"top {top} by own time:", "",
             "| function | calls | own s | share | cumulative s |", "|---|---|---|---|---|"]
    for row in profile["by_tottime"][:top]:
        lines.append(f"| `{row['function']}` | {row['calls']} | {row['tottime_s']} | "
                     f"{row['tottime_share']:.0%} | {row['cumtime_s']} |")
    packages = ", ".join(f"{row['package']} {row['tottime_share']:.0%}"
                         for row in profile.get("by_package", [])[:8])
    return [*lines, "", f"Own time by package: {packages}.", ""]


def markdown(document: dict[str, Any], results: list[Result]) -> str:
    machine = document["machine"]
    lines = [
        f"Run {document['finished']} with `{document['command']}`"
        f"{' (quick mode: tiny inputs, not for quoting)' if document['quick'] else ''}, "
        f"{document['duration_s']:.0f} s.",
        "",
        f"Machine: {machine['cpu_model']}, {machine['cores']} cores "
        f"({machine['usable_cores']} usable), Python {machine['python']} "
        f"({machine['implementation']}), {machine['platform']}, load average at start "
        f"{machine['load_average']}.",
        "",
        table(results),
        "",
    ]
    for result in results:
        for note in result.notes:
            lines.append(f"- {result.number}: {note}")
    lines.append("")
    for result in results:
        lines.extend(_profile_lines(result, 10))
    return "\n".join(lines).rstrip() + "\n"


def update_docs(path: Path, block: str) -> None:
    """Replace what sits between the markers (append the markers when absent)."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    generated = f"{START_MARKER}\n{block}{END_MARKER}"
    if START_MARKER in text and END_MARKER in text:
        head, rest = text.split(START_MARKER, 1)
        tail = rest.split(END_MARKER, 1)[1]
        text = head + generated + tail
    else:
        text = text.rstrip() + "\n\n" + generated + "\n"
    path.write_text(text, encoding="utf-8")
