"""Rule and list files -> a validated RuleSet, or errors naming file, line, rule and fix.

pySigma parses each YAML document (Sigma rule or Sigma correlation rule); we check what this
engine needs on top (CloudTrail logsource, ids, our `detector:` extension block) and compile
the detection into predicates. The set is valid as a whole or not at all: callers keep
running their previous rules when a reload fails.
"""

from __future__ import annotations

import datetime
import math
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from sigma.conditions import ConditionOR
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError, SigmaRegularExpressionError
from sigma.policy import SigmaPolicy
from sigma.rule import SigmaRule

from detector.durations import parse_duration
from detector.engine.index import IndexKey
from detector.engine.lists import load_lists
from detector.engine.matching import Unsupported, compile_condition
from detector.engine.patterns import PatternError, SigmaRegexValidator, compile_regex
from detector.engine.rule import (
    DAY,
    MAX_PROFILE_CELLS,
    MAX_RARE_THRESHOLD,
    SEASONALITIES,
    Baseline,
    Correlation,
    FirstSeen,
    LoadError,
    Location,
    Meta,
    Rule,
    RuleSet,
    RuleTest,
    Suppression,
    Threshold,
)
from detector.engine.template import Template
from detector.engine.yamlfiles import LimitError, documents, read_text

RULE_SUFFIXES = (".yml", ".yaml")
LISTS_DIRECTORY = "lists"
CORRELATION_TYPES = ("event_count", "value_count", "temporal", "temporal_ordered", "value_sum",
                     "value_avg", "value_median", "value_percentile")
_PER_KEY = ("first_seen", "rare", "baseline")  # extensions keeping a memory per key
_EXTENSION_KEYS = {"enabled", "output", "suppress", "tests", *_PER_KEY}
_BOUNDS = ("gt", "gte", "lt", "lte", "eq", "neq")
_SIGMA_POLICY = SigmaPolicy(regex_engine=SigmaRegexValidator())


@dataclass
class LoadResult:
    ruleset: RuleSet
    errors: list[LoadError] = field(default_factory=list)
    files: int = 0


def find_files(paths: Iterable[Path]) -> tuple[list[Path], list[Path]]:
    """Rule files and list files under the given paths; YAML under a `lists/` folder is lists."""
    rules: list[Path] = []
    lists: list[Path] = []
    for path in paths:
        candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
        for candidate in candidates:
            if candidate.suffix not in RULE_SUFFIXES or not candidate.is_file():
                continue
            relative = candidate.relative_to(path).parts[:-1] if path.is_dir() else ()
            if any(part.startswith("..") for part in relative):
                continue  # Kubernetes ConfigMap mounts keep the real files in ..data dirs
            (lists if LISTS_DIRECTORY in relative else rules).append(candidate)
    return rules, lists


def load_rules(
    paths: Sequence[Path],
    list_paths: Sequence[Path] = (),
    *,
    enable: Iterable[str] = (),
) -> LoadResult:
    """Load every rule under `paths`, with lists from `list_paths` and `lists/` folders."""
    missing = [LoadError(Location(str(path), 0), "(path)", "no such file or directory")
               for path in (*paths, *list_paths) if not path.exists()]
    rule_files, list_files = find_files(paths)
    extra_rules, extra_lists = find_files(list_paths)
    # The same folder may arrive both as rules/lists and as --lists: read each file once.
    list_files = list(dict.fromkeys(path.resolve() for path in
                                    list_files + extra_rules + extra_lists))
    lists, list_errors = load_lists(list_files)
    loader = _Loader(lists, frozenset(enable))
    for path in rule_files:
        loader.load_file(path)
    ruleset = loader.finish()
    errors = sorted(missing + list_errors + loader.errors, key=_error_order)
    return LoadResult(ruleset, errors, len(rule_files))


def _error_order(error: LoadError) -> tuple[str, int, str]:
    return (error.location.path, error.location.line, error.message)


@dataclass
class _Document:
    data: dict[str, Any]
    node: yaml.MappingNode
    path: Path

    def line(self, *keys: str) -> int:
        """Line of the deepest key path found, else of the document."""
        node: yaml.Node = self.node
        line = node.start_mark.line + 1
        for key in keys:
            if not isinstance(node, yaml.MappingNode):
                break
            for key_node, value_node in node.value:
                if key_node.value == key:
                    line = key_node.start_mark.line + 1
                    node = value_node
                    break
            else:
                break
        return line

    def detection_items(self) -> Iterator[tuple[str, yaml.Node]]:
        """Every `field|modifiers: value` under `detection:`, as written, in file order."""
        stack: list[yaml.Node] = [value for key, value in self.node.value
                                  if key.value == "detection"]
        while stack:
            node = stack.pop()
            if isinstance(node, yaml.MappingNode):
                for key, value in reversed(node.value):
                    if isinstance(key, yaml.ScalarNode) and key.value != "condition":
                        yield str(key.value), value
                    stack.append(value)
            elif isinstance(node, yaml.SequenceNode):
                stack.extend(reversed(node.value))

    def field_line(self, field_name: str) -> int:
        """Line of the first detection item on `field_name`, else of `detection:`."""
        for key, value in self.detection_items():
            if key.split("|")[0] == field_name:
                return value.start_mark.line + 1
        return self.line("detection")


class _Loader:
    def __init__(self, lists: dict[str, tuple[str, ...]], enable: frozenset[str]) -> None:
        self.lists = lists
        self.enable = frozenset(rule_id.lower() for rule_id in enable)
        self.errors: list[LoadError] = []
        self.rules: list[Rule] = []
        self.pending: list[tuple[_Document, SigmaCorrelationRule, Meta, Threshold]] = []
        self.seen_names: dict[str, Location] = {}
        self.seen_ids: dict[str, Location] = {}

    def fail(self, doc: _Document, rule: str, message: str, *keys: str) -> None:
        self.errors.append(LoadError(Location(str(doc.path), doc.line(*keys)), rule, message))

    def load_file(self, path: Path) -> None:
        try:
            for node, data in documents(read_text(path)):
                if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
                    self.errors.append(LoadError(
                        Location(str(path), node.start_mark.line + 1), "(document)",
                        "a rule is a YAML mapping with title, id, logsource and detection",
                    ))
                    continue
                self.load_guarded(_Document(data, node, path))
        except LimitError as error:
            line = error.problem_mark.line + 1 if error.problem_mark is not None else 0
            self.errors.append(LoadError(Location(str(path), line), "(file)",
                                         f"rule file refused: {error.problem}"))
        except (OSError, UnicodeDecodeError) as error:
            self.errors.append(LoadError(Location(str(path), 1), "(file)",
                                         f"cannot read rule file: {error}"))
        except yaml.YAMLError as problem:
            mark = getattr(problem, "problem_mark", None)
            line = mark.line + 1 if mark is not None else 1
            self.errors.append(LoadError(Location(str(path), line), "(file)",
                                         f"invalid YAML: {problem}"))

    def load_guarded(self, doc: _Document) -> None:
        """Load one document; whatever a check missed is this document's error, not a crash
        of `detector scan`, the worker's reload or `rules validate`."""
        try:
            self.load_document(doc)
        except Exception as error:  # the document is the boundary of a failure
            self.fail(doc, _label(doc.data), "cannot load this rule "
                      f"({type(error).__name__}: {str(error)[:200]}); please report it")

    def load_document(self, doc: _Document) -> None:
        label = _label(doc.data)
        problem = _shape_problem(doc.data)
        if problem is not None:
            message, keys = problem
            self.fail(doc, label, message, *keys)
            return
        extension = doc.data.get("detector") or {}
        unknown = set(extension) - _EXTENSION_KEYS
        if unknown:
            self.fail(doc, label, f"unknown key(s) {sorted(unknown)} in `detector:`; "
                      f"allowed: {sorted(_EXTENSION_KEYS)}", "detector")
            return
        if "correlation" in doc.data:
            self.load_correlation(doc, label, extension)
        else:
            self.load_rule(doc, label, extension)

    def load_rule(self, doc: _Document, label: str, extension: dict[str, Any]) -> None:
        try:
            sigma_rule = SigmaRule.from_dict(doc.data, collect_errors=True, policy=_SIGMA_POLICY)
        except SigmaError as error:
            self.fail(doc, label, f"not a valid Sigma rule: {error}", "detection")
            return
        if sigma_rule.errors:
            located = any(isinstance(problem, SigmaRegularExpressionError)
                          for problem in sigma_rule.errors) and self.refused_regexes(doc, label)
            for problem in sigma_rule.errors:
                if not (located and isinstance(problem, SigmaRegularExpressionError)):
                    self.fail(doc, label, f"not a valid Sigma rule: {problem}", "detection")
            return
        logsource = sigma_rule.logsource
        if (logsource.product or "").lower() != "aws" or (logsource.service or "").lower() != (
            "cloudtrail"
        ):
            self.fail(doc, label, "this engine evaluates CloudTrail rules only: set "
                      "`logsource: {product: aws, service: cloudtrail}`", "logsource")
            return
        meta = self.meta(doc, label, sigma_rule, extension)
        if meta is None:
            return
        try:
            conditions = [condition.parsed for condition in sigma_rule.detection.parsed_condition]
            tree = conditions[0] if len(conditions) == 1 else ConditionOR(conditions)
            predicate = compile_condition(tree, self.lists)
        except SigmaError as error:
            self.fail(doc, label, f"unsupported detection: {error}", "detection")
            return
        except Unsupported as error:
            where = doc.field_line(error.field) if error.field else doc.line("detection")
            about = f"{error.field}: " if error.field else ""
            self.errors.append(LoadError(Location(str(doc.path), where), label,
                                         f"unsupported detection: {about}{error}"))
            return
        failures = len(self.errors)
        first_seen = self.per_key(doc, label, extension)
        if len(self.errors) == failures:
            self.rules.append(Rule(meta, predicate, IndexKey.of(tree, self.lists), first_seen))

    def refused_regexes(self, doc: _Document, label: str) -> bool:
        """Report each `|re` value RE2 refuses at its own line; False if none is found."""
        found = False
        for key, node in doc.detection_items():
            if "re" not in key.split("|")[1:]:
                continue
            values = node.value if isinstance(node, yaml.SequenceNode) else [node]
            for value in values:
                if not isinstance(value, yaml.ScalarNode):
                    continue
                try:
                    compile_regex(str(value.value))
                except PatternError as error:
                    found = True
                    self.errors.append(LoadError(
                        Location(str(doc.path), value.start_mark.line + 1), label,
                        f"{key}: {error}; see docs/rules.md#regular-expressions"))
        return found

    def load_correlation(self, doc: _Document, label: str, extension: dict[str, Any]) -> None:
        spec = doc.data.get("correlation")
        if not isinstance(spec, dict):
            self.fail(doc, label, "`correlation:` must be a mapping", "correlation")
            return
        if spec.get("type") not in CORRELATION_TYPES:
            self.fail(doc, label, f"correlation type {spec.get('type')!r} is not supported; "
                      f"use one of {', '.join(CORRELATION_TYPES)}", "correlation", "type")
            return
        threshold = self.threshold(doc, label, spec)
        if threshold is None:
            return
        single = dict(spec)
        if isinstance(spec.get("condition"), dict):
            # pySigma takes one bound; ranges (gte + lte) are ours: it validates the first.
            bounds = {k: v for k, v in spec["condition"].items() if k in _BOUNDS}
            first = dict(list(bounds.items())[:1])
            single["condition"] = {
                **first, **({"field": threshold.field} if threshold.field else {}),
                **({"percentile": int(threshold.percentile)} if threshold.percentile else {})}
        try:
            sigma_rule = SigmaCorrelationRule.from_dict({**doc.data, "correlation": single})
        except SigmaError as error:
            self.fail(doc, label, f"not a valid Sigma correlation: {error}", "correlation")
            return
        meta = self.meta(doc, label, sigma_rule, extension)
        if meta is not None:
            self.pending.append((doc, sigma_rule, meta, threshold))

    def threshold(self, doc: _Document, label: str, spec: dict[str, Any]) -> Threshold | None:
        condition = spec.get("condition")
        if condition is None and spec.get("type") in ("temporal", "temporal_ordered"):
            return Threshold()
        if not isinstance(condition, dict):
            self.fail(doc, label, "correlation `condition:` must map gt/gte/lt/lte/eq/neq to "
                      "numbers, e.g. `condition: {gte: 5}`", "correlation", "condition")
            return None
        bounds: dict[str, float] = {}
        for key, value in condition.items():
            if key in ("field", "percentile"):
                continue
            if key not in _BOUNDS or isinstance(value, bool) or not isinstance(value, int | float):
                self.fail(doc, label, f"correlation condition {key}: {value!r} is not supported; "
                          "use gt/gte/lt/lte/eq/neq with a number", "correlation", "condition")
                return None
            bounds[key] = float(value)
        if not bounds:
            self.fail(doc, label, "correlation condition needs at least one bound",
                      "correlation", "condition")
            return None
        field_name = condition.get("field")
        kind = str(spec.get("type"))
        if kind.startswith("value_") and not isinstance(field_name, str):
            self.fail(doc, label, f"{kind} needs `condition: {{field: NAME, ...}}`",
                      "correlation", "condition")
            return None
        percentile = condition.get("percentile")
        wrong = percentile is not None and (type(percentile) is not int
                                            or not 1 <= percentile <= 100)
        if (kind == "value_percentile") != (percentile is not None) or wrong:
            self.fail(doc, label, "value_percentile (and only it) needs `condition: {field: "
                      "NAME, percentile: 1 to 100, ...}`", "correlation", "condition")
            return None
        return Threshold(field=field_name if isinstance(field_name, str) else None,
                         percentile=None if percentile is None else float(percentile), **bounds)

    def meta(
        self,
        doc: _Document,
        label: str,
        sigma_rule: SigmaRule | SigmaCorrelationRule,
        extension: dict[str, Any],
    ) -> Meta | None:
        rule_id = doc.data.get("id")
        if sigma_rule.id is None or not isinstance(rule_id, str):
            self.fail(doc, label, f"every rule needs an `id` (a UUID), e.g. id: {uuid.uuid4()}")
            return None
        rule_id = str(sigma_rule.id)
        location = Location(str(doc.path), doc.line())
        if rule_id in self.seen_ids:
            self.fail(doc, label, f"duplicate rule id {rule_id}, also at "
                      f"{self.seen_ids[rule_id]}: give each rule its own id", "id")
            return None
        self.seen_ids[rule_id] = location
        name = sigma_rule.name
        if name is not None and name in self.seen_names:
            self.fail(doc, label, f"duplicate rule name {name!r}, also at "
                      f"{self.seen_names[name]}: correlations refer to rules by name, so "
                      "each name must be unique", "name")
            return None
        if name is not None:
            self.seen_names[name] = location
        output = extension.get("output")
        if output is not None and not isinstance(output, str):
            self.fail(doc, label, "`detector.output` must be a string template such as "
                      "'{eventName} by {userIdentity.arn}'", "detector", "output")
            return None
        enabled = extension.get("enabled", True)
        if not isinstance(enabled, bool):
            self.fail(doc, label, "`detector.enabled` must be true or false",
                      "detector", "enabled")
            return None
        failures = len(self.errors)
        suppression = self.suppression(doc, label, extension.get("suppress"))
        tests = self.tests(doc, label, extension.get("tests"))
        if len(self.errors) > failures or tests is None:
            return None
        level = sigma_rule.level.name.lower() if sigma_rule.level is not None else "medium"
        return Meta(
            id=rule_id,
            name=sigma_rule.name,
            title=sigma_rule.title,
            description=(sigma_rule.description or "").strip(),
            level=level,
            tags=tuple(str(tag) for tag in sigma_rule.tags),
            location=location,
            output=Template(output) if output else None,
            enabled=enabled or rule_id in self.enable,
            suppression=suppression,
            tests=tests,
        )

    def duration(self, doc: _Document, label: str, value: Any, *keys: str) -> float | None:
        try:
            return parse_duration(value)
        except ValueError as error:
            self.fail(doc, label, f"{'.'.join(keys)}: {error}", *keys)
            return None

    def suppression(self, doc: _Document, label: str, spec: Any) -> Suppression | None:
        if spec is None:
            return None
        keys = ("detector", "suppress")
        if not isinstance(spec, dict) or "window" not in spec:
            self.fail(doc, label, "`detector.suppress` needs `window:` (e.g. 1h) and optional "
                      "`by:` (fields)", *keys)
            return None
        if not self.known_keys(doc, label, spec, {"window", "by"}, *keys):
            return None
        window = self.duration(doc, label, spec["window"], *keys, "window")
        by = _field_list(spec.get("by", []))
        if by is None:
            self.fail(doc, label, "`detector.suppress.by` must be a list of field names",
                      *keys, "by")
        elif window == 0:
            self.fail(doc, label, "`detector.suppress.window` must be longer than 0s",
                      *keys, "window")
        elif window is not None:
            return Suppression(window, by)
        return None

    def known_keys(self, doc: _Document, label: str, spec: dict[str, Any], allowed: set[str],
                   *keys: str) -> bool:
        """Typos in extension blocks are errors: `learnig: 7d` must not silently mean 0s."""
        unknown = sorted(str(key) for key in set(spec) - allowed)
        if unknown:
            self.fail(doc, label, f"unknown key(s) {unknown} in `{'.'.join(keys)}`; allowed: "
                      f"{sorted(allowed)}", *keys)
        return not unknown

    def per_key(self, doc: _Document, label: str,
                extension: dict[str, Any]) -> FirstSeen | Baseline | None:
        """The rule's memory per key: first seen, rare values or a baseline (one of them)."""
        given = [name for name in _PER_KEY if extension.get(name) is not None]
        if len(given) > 1:
            self.fail(doc, label, f"a rule keeps one memory per key: {' and '.join(given)} "
                      "cannot be combined (write two rules)", "detector", given[1])
            return None
        if not given:
            return None
        name = given[0]
        spec = extension[name]
        keys = ("detector", name)
        if not isinstance(spec, dict):
            self.fail(doc, label, f"`detector.{name}` must be a mapping", *keys)
            return None
        if name == "baseline":
            return self.baseline(doc, label, spec)
        allowed = {"key", "value", "learning", "retention"}
        if name == "rare":
            allowed |= {"threshold", "window"}
        if not self.known_keys(doc, label, spec, allowed, *keys):
            return None
        key, value = _field_list(spec.get("key")), _field_list(spec.get("value"))
        if not key or not value:
            self.fail(doc, label, f"`detector.{name}` needs `key:` and `value:`, each a field "
                      "name or a list of field names", *keys)
            return None
        learning = self.duration(doc, label, spec.get("learning", "0s"), *keys, "learning")
        if name == "first_seen":
            retention = self.duration(doc, label, spec.get("retention", "30d"), *keys,
                                      "retention")
            if learning is None or retention is None:
                return None
            return FirstSeen(key, value, learning, retention)
        threshold = spec.get("threshold", 2)
        if type(threshold) is not int or not 1 <= threshold <= MAX_RARE_THRESHOLD:
            self.fail(doc, label, f"`detector.rare.threshold` must be a whole number from 1 to "
                      f"{MAX_RARE_THRESHOLD} (uses within the window below which a value is "
                      "rare)", *keys, "threshold")
            return None
        window = self.duration(doc, label, spec.get("window", "14d"), *keys, "window")
        if learning is None or window is None:
            return None
        retention = self.duration(doc, label, spec.get("retention", window), *keys, "retention")
        if retention is None:
            return None
        if window <= 0 or retention < window:
            self.fail(doc, label, "`detector.rare` needs a window longer than 0s and a "
                      "retention no shorter than it", *keys)
            return None
        return FirstSeen(key, value, learning, retention, threshold, window)

    def baseline(self, doc: _Document, label: str, spec: dict[str, Any]) -> Baseline | None:
        keys = ("detector", "baseline")
        if not self.known_keys(doc, label, spec, {
                "key", "distinct", "bucket", "window", "seasonality", "deviations", "floor",
                "learning", "retention"}, *keys):
            return None
        key = _field_list(spec.get("key"))
        distinct = spec.get("distinct")
        if not key or not (distinct is None or isinstance(distinct, str)):
            self.fail(doc, label, "`detector.baseline` needs `key:` (a field name or a list of "
                      "them) and an optional `distinct:` (one field name)", *keys)
            return None
        seasonality = spec.get("seasonality", "hour_of_day")
        if seasonality not in SEASONALITIES:
            self.fail(doc, label, f"`detector.baseline.seasonality` must be one of "
                      f"{', '.join(SEASONALITIES)}", *keys, "seasonality")
            return None
        durations = {name: self.duration(doc, label, spec.get(name, default), *keys, name)
                     for name, default in (("bucket", "5m"), ("window", "14d"),
                                           ("learning", "7d"))}
        bucket, window, learning = durations["bucket"], durations["window"], durations["learning"]
        if bucket is None or window is None or learning is None:
            return None
        retention = self.duration(doc, label, spec.get("retention", window), *keys, "retention")
        if retention is None:
            return None
        period, slots = SEASONALITIES[seasonality]
        if not 0 < bucket <= period / slots or (period / slots) % bucket:
            self.fail(doc, label, f"`detector.baseline.bucket` must divide the {seasonality} "
                      f"slot ({period / slots:g} s) into whole buckets", *keys, "bucket")
            return None
        cells = (math.ceil(window / period) + 1) * slots
        if window < period or cells > MAX_PROFILE_CELLS:
            self.fail(doc, label, f"`detector.baseline.window` must hold at least one "
                      f"{period / DAY:g}-day period and at most {MAX_PROFILE_CELLS} cells of "
                      f"history ({seasonality}: {slots} per period)", *keys, "window")
            return None
        deviations, floor = spec.get("deviations", 4), spec.get("floor", 10)
        if (isinstance(deviations, bool) or not isinstance(deviations, int | float)
                or not 0 < deviations < math.inf or type(floor) is not int or floor < 1):
            self.fail(doc, label, "`detector.baseline` needs `deviations:` a number above 0 "
                      "and `floor:` a whole number of at least 1", *keys)
            return None
        if retention < window:
            self.fail(doc, label, "`detector.baseline.retention` must be no shorter than its "
                      "window", *keys, "retention")
            return None
        return Baseline(key, () if distinct is None else (distinct,), bucket, window,
                        seasonality, float(deviations), floor, learning, retention)

    def tests(self, doc: _Document, label: str, spec: Any) -> tuple[RuleTest, ...] | None:
        if spec is None:
            return ()
        keys = ("detector", "tests")
        if not isinstance(spec, list):
            self.fail(doc, label, "`detector.tests` must be a list of {name, events, expect}",
                      *keys)
            return None
        tests: list[RuleTest] = []
        for position, test in enumerate(spec):
            events = test.get("events") if isinstance(test, dict) else None
            expect = test.get("expect") if isinstance(test, dict) else None
            name = test.get("name") if isinstance(test, dict) else None
            if (
                not isinstance(events, list)
                or not all(isinstance(event, dict) and _is_json(event) for event in events)
                or isinstance(expect, bool)
                or not isinstance(expect, int)
                or expect < 0
                or not isinstance(name, str | None)
            ):
                self.fail(doc, label, f"test #{position + 1} needs `events:` (a list of "
                          "CloudTrail records: JSON values only, no dates or binary), "
                          "`expect:` (the number of alerts) and an optional text `name:`",
                          *keys)
                return None
            name = name or f"test {position + 1}"
            tests.append(RuleTest(name, tuple(events), expect,
                                  Location(str(doc.path), doc.line(*keys))))
        return tuple(tests)

    def finish(self) -> RuleSet:
        by_reference = {rule.meta.name: rule for rule in self.rules if rule.meta.name}
        by_reference.update({rule.id: rule for rule in self.rules})
        correlations: list[Correlation] = []
        silenced: set[str] = set()
        generated: set[str] = set()
        for doc, sigma_rule, meta, threshold in self.pending:
            spec = doc.data["correlation"]
            references: list[str] = []
            for reference in sigma_rule.rules or ():
                target = by_reference.get(str(reference.reference)) or by_reference.get(
                    str(reference.reference).lower())
                if target is None:
                    self.fail(doc, meta.title, f"correlation refers to rule "
                              f"{reference.reference!r}, which is not loaded (give the base "
                              "rule that `name:` or id, or load its file)", "correlation",
                              "rules")
                    break
                references.append(target.id)
            else:
                group_by = _field_list(spec.get("group-by", [])) or ()
                correlations.append(Correlation(
                    meta, str(spec["type"]), tuple(references), group_by,
                    float(sigma_rule.timespan.seconds), threshold,
                ))
                (generated if sigma_rule.generate else silenced).update(references)
        rules = tuple(
            replace(rule, generates=False) if rule.id in silenced - generated
            else rule for rule in self.rules
        )
        return RuleSet(rules, tuple(correlations), dict(self.lists))


def _label(data: dict[Any, Any]) -> str:
    """How errors name a rule: its title, else its id, when they are text."""
    for key in ("title", "id"):
        if isinstance(data.get(key), str) and data[key]:
            return str(data[key])
    return "(untitled)"


Shape = tuple[Callable[[Any], bool], str]


def _is_text(value: Any) -> bool:
    return isinstance(value, str)


def _is_texts(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _is_text_or_texts(value: Any) -> bool:
    return isinstance(value, str) or _is_texts(value)


def _is_mapping(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(key, str) for key in value)


def _is_scalar(value: Any) -> bool:
    """What Sigma compares a field with: text, a number, true/false or null."""
    return value is None or isinstance(value, str | int | float)


def _is_json(value: Any) -> bool:
    """A value a decoded CloudTrail record can hold (the YAML depth limit bounds the walk)."""
    if isinstance(value, dict):
        return all(isinstance(key, str) and _is_json(item) for key, item in value.items())
    if isinstance(value, list):
        return all(_is_json(item) for item in value)
    return _is_scalar(value) and not (isinstance(value, float) and not math.isfinite(value))


_TEXT: Shape = (_is_text, "a string")
_TEXTS: Shape = (_is_texts, "a list of strings")
_TEXT_OR_TEXTS: Shape = (_is_text_or_texts, "a string or a list of strings")
_DATE: Shape = (lambda value: isinstance(value, str | datetime.date), "a date, e.g. 2024-05-31")
# The types Sigma's own fields must have; None is "absent" and left to the checks that follow.
_SHAPES: dict[str, Shape] = {
    **dict.fromkeys(("title", "id", "name", "description", "author", "status", "level",
                     "license"), _TEXT),
    **dict.fromkeys(("references", "tags", "falsepositives", "fields"), _TEXTS),
    **dict.fromkeys(("date", "modified"), _DATE),
    "logsource": (lambda value: _is_mapping(value) and all(
        item is None or isinstance(item, str) for item in value.values()),
        "a mapping of strings, e.g. {product: aws, service: cloudtrail}"),
    "detection": (lambda value: isinstance(value, dict),
                  "a mapping of named selections and a `condition:`"),
    "correlation": (_is_mapping, "a mapping with type, rules, timespan and condition"),
    "detector": (_is_mapping, "a mapping of extension keys"),
    "related": (lambda value: isinstance(value, list) and all(
        _is_mapping(item) for item in value), "a list of {id, type} mappings"),
}
_CORRELATION_SHAPES: dict[str, Shape] = {
    "type": _TEXT,
    "rules": _TEXT_OR_TEXTS,
    "group-by": _TEXT_OR_TEXTS,
    "timespan": (lambda value: isinstance(value, str | int) and not isinstance(value, bool),
                 "a duration such as 5m"),
    "generate": (lambda value: isinstance(value, bool), "true or false"),
    "condition": (_is_mapping, "a mapping such as {gte: 5}"),
}
_CONDITION: Shape = (lambda value: _is_text(value) or (_is_texts(value) and bool(value)),
                     "a condition such as `sel and not filter`, or a list of them")
_VALUES = "text, a number, true/false, null or a list of these"


def _shape_problem(data: dict[Any, Any]) -> tuple[str, tuple[str, ...]] | None:
    """The first field of a document whose YAML type the rule cannot have, as (message, key
    path): found before pySigma, which raises arbitrary exceptions on wrong types."""
    for shapes, keys in ((_SHAPES, ()), (_CORRELATION_SHAPES, ("correlation",))):
        spec = data.get(keys[0]) if keys else data
        if not isinstance(spec, dict):
            continue
        for key, (fits, what) in shapes.items():
            if spec.get(key) is not None and not fits(spec[key]):
                return f"`{'.'.join((*keys, key))}` must be {what}", (*keys, key)
    detection = data.get("detection")
    if isinstance(detection, dict):
        for name, selection in detection.items():
            if not isinstance(name, str):
                return (f"`detection`: selection names are text; quote {name!r}",
                        ("detection", str(name)))
            problem = _detection_problem(name, selection)
            if problem is not None:
                return problem[0], ("detection", *problem[1])
    return None


def _detection_problem(name: str, selection: Any) -> tuple[str, tuple[str, ...]] | None:
    if name == "condition":
        fits, what = _CONDITION
        return None if fits(selection) else (f"`detection.condition` must be {what}", (name,))
    items = selection if isinstance(selection, list) else [selection]
    for item in items:
        if isinstance(item, dict):
            for field_name, values in item.items():
                if not isinstance(field_name, str):
                    return (f"`detection.{name}`: field names are text; quote {field_name!r}",
                            (name, str(field_name)))
                texts = "re" in field_name.split("|")[1:]
                if not all(isinstance(value, str) if texts else _is_scalar(value)
                           for value in (values if isinstance(values, list) else [values])):
                    what = "a regular expression or a list of them" if texts else _VALUES
                    return (f"`detection.{name}.{field_name}` must be {what}",
                            (name, field_name))
        elif not _is_scalar(item) or (item is not selection and isinstance(item, list)):
            return (f"`detection.{name}` must map field names to values, or be {_VALUES}",
                    (name,))
    return None


def _field_list(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    return None
