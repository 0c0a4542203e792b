"""Rule sets the benchmarks load: the shipped packs, SigmaHQ's CloudTrail rules, generated
rules for the scaling benchmark and a few stateful rules of our own.

Everything goes through `load_rules`, the loader the product uses, from YAML files on disk.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

from bench.data import CATALOG
from detector.engine import RuleSet, load_rules

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "rules"
SIGMA_DIR = REPO.parent / "shared" / "data" / "sigma" / "aws-cloudtrail"
STATEFUL_DIR = Path(__file__).resolve().parent / "stateful_rules"
_NAMESPACE = uuid.UUID("6f1d8a52-3c1e-4d5b-9d0e-2b7f4a0c9e11")

# SigmaHQ's suspicious-location rule expands these placeholders; any values will do here.
SIGMA_LISTS = """\
Legitimate_Countries:
  - US
  - DE
Legitimate_IP_Ranges:
  - 10.0.0.0/8
  - 192.168.0.0/16
"""


class RulesError(RuntimeError):
    """A benchmark rule set did not load cleanly."""


def load(paths: Sequence[Path], lists: Sequence[Path] = ()) -> RuleSet:
    """Load rules or fail loudly: a benchmark over half a rule set would mislead."""
    result = load_rules(list(paths), list(lists))
    if result.errors:
        problems = "\n".join(str(error) for error in result.errors[:10])
        raise RulesError(f"{len(result.errors)} rule error(s):\n{problems}")
    return result.ruleset


def write_sigma_lists(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sigma_lists.yml").write_text(SIGMA_LISTS, encoding="utf-8")
    return directory


def product_paths(work: Path) -> tuple[list[Path], list[Path], list[str]]:
    """Rule and list paths for 'every shipped pack + SigmaHQ', and notes on what is missing."""
    paths, lists, notes = [SHIPPED], [], []
    if SIGMA_DIR.is_dir():
        paths.append(SIGMA_DIR)
        lists.append(write_sigma_lists(work / "sigma-lists"))
    else:
        notes.append(f"SigmaHQ rules absent ({SIGMA_DIR}): shipped packs only")
    return paths, lists, notes


def scaling_event_names(count: int) -> list[tuple[str, str]]:
    """`count` distinct (eventSource, eventName) pairs: the mix's, most frequent first, then
    made-up names on the same services, so bigger rule sets cover every event of the mix."""
    real = [(source, name) for _, source, name, *_ in sorted(CATALOG, key=lambda e: -e[0])]
    sources = sorted({source for source, _ in real})
    made_up = ((sources[n % len(sources)], f"BenchAction{n:04d}") for n in range(count))
    return (real + list(made_up))[:count]


def write_scaling_rules(directory: Path, count: int) -> Path:
    """`count` Sigma rules, one per distinct event name, each with a selection on the event
    and a filter that needs the record's fields (user agent, source network)."""
    directory.mkdir(parents=True, exist_ok=True)
    for n, (source, name) in enumerate(scaling_event_names(count)):
        rule_id = uuid.uuid5(_NAMESPACE, f"scaling-{n}")
        (directory / f"rule_{n:04d}.yml").write_text(f"""\
title: Generated rule {n} for {name}
id: {rule_id}
status: experimental
logsource:
  product: aws
  service: cloudtrail
detection:
  selection:
    eventSource: {source}
    eventName: {name}
  unusual_tool:
    userAgent|contains: 'bench-tool-{n}/'
  outside:
    sourceIPAddress|cidr: 203.0.113.0/24
  condition: selection and (unusual_tool or outside)
level: low
""", encoding="utf-8")
    return directory


def first_seen_rule(directory: Path, learning: str = "1h") -> Path:
    """One first-seen rule (new source IP for a principal), for the state memory benchmark."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "first_seen_only.yml"
    path.write_text(f"""\
title: Principal calls from a source address it never used
id: {uuid.uuid5(_NAMESPACE, "first-seen-memory")}
status: experimental
logsource:
  product: aws
  service: cloudtrail
detection:
  selection:
    eventSource: kinesisvideo.amazonaws.com
  condition: selection
level: medium
detector:
  first_seen:
    key: userIdentity.arn
    value: sourceIPAddress
    learning: {learning}
    retention: 30d
""", encoding="utf-8")
    return directory
