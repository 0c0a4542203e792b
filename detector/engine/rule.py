"""The engine's object model of a loaded rule set: what the loader produces from pySigma's
parse and what the evaluator runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from detector.engine.template import Template

if TYPE_CHECKING:  # the model is imported by what builds it (lists, loader): no cycle
    from detector.engine.index import IndexKey
    from detector.engine.matching import Predicate


@dataclass(frozen=True, slots=True)
class Location:
    path: str
    line: int  # 0: the file (or path) as a whole

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path


@dataclass(frozen=True, slots=True)
class LoadError:
    """A problem in a rule or list file, with where it is and how to fix it."""

    location: Location
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.rule}: {self.message}"


@dataclass(frozen=True, slots=True)
class RuleTest:
    """An example embedded in a rule: these events must raise `expect` alerts of the rule."""

    name: str
    events: tuple[dict[str, Any], ...]
    expect: int
    location: Location


@dataclass(frozen=True, slots=True)
class Suppression:
    """Fold repeats of a rule's alert for the same `by` values within `window` seconds."""

    window: float
    by: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FirstSeen:
    """Alert when the `value` fields take a value the `key` fields used fewer than `threshold`
    times within the last `window` seconds: first seen (threshold 1) or rare values."""

    key: tuple[str, ...]
    value: tuple[str, ...]
    learning: float
    retention: float  # a key without events this long is forgotten (it learns again)
    threshold: int = 1
    window: float | None = None  # the history a value's uses are counted in (None: retention)

    @property
    def history(self) -> float:
        return self.retention if self.window is None else self.window


DAY = 86400.0
# Baseline seasonality -> (period, slots per period): a slot is compared with the same slot
# of earlier periods (an hour of the day with the same hour of earlier days, ...).
SEASONALITIES = {"none": (DAY, 1), "hour_of_day": (DAY, 24), "day_of_week": (7 * DAY, 7)}
# Bounds that keep one key's entry small whatever a rule says (docs/stateful-rules.md):
MAX_PROFILE_CELLS = 4096  # a baseline profile: (periods of history + 1) x slots
MAX_RARE_THRESHOLD = 100  # uses a rare-value entry keeps per value


@dataclass(frozen=True, slots=True)
class Baseline:
    """Alert when a key's matches per bucket (or distinct `value`s) rise far above the key's
    own history of the same slot (hour of day, day of week, or any)."""

    key: tuple[str, ...]
    value: tuple[str, ...]  # (): count events; one field: count its distinct values
    bucket: float
    window: float
    seasonality: str  # one of SEASONALITIES
    deviations: float  # k in median + k x spread
    floor: int  # the fewest matches in a bucket that can alert
    learning: float
    retention: float


@dataclass(frozen=True, slots=True)
class Meta:
    """What every rule kind shares: identity, text and tests."""

    id: str
    name: str | None
    title: str
    description: str
    level: str
    tags: tuple[str, ...]
    location: Location
    output: Template | None
    enabled: bool
    suppression: Suppression | None
    tests: tuple[RuleTest, ...]


@dataclass(frozen=True, slots=True)
class Rule:
    """A single-event Sigma rule, compiled. `per_key` makes it stateful: the per-key memory
    of first-seen and rare values (`FirstSeen`) or of a rate baseline (`Baseline`)."""

    meta: Meta
    predicate: Predicate
    index_key: IndexKey
    per_key: FirstSeen | Baseline | None = None
    generates: bool = True  # False when it only feeds correlations (Sigma's generate: false)

    @property
    def id(self) -> str:
        return self.meta.id


@dataclass(frozen=True, slots=True)
class Threshold:
    """A correlation condition: every bound present must hold."""

    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None
    eq: float | None = None
    neq: float | None = None
    field: str | None = None  # value_count: its distinct values; value_*: its numbers
    percentile: float | None = None  # value_percentile: which percentile of the field

    def holds(self, count: float) -> bool:
        return (
            (self.gt is None or count > self.gt)
            and (self.gte is None or count >= self.gte)
            and (self.lt is None or count < self.lt)
            and (self.lte is None or count <= self.lte)
            and (self.eq is None or count == self.eq)
            and (self.neq is None or count != self.neq)
        )


@dataclass(frozen=True, slots=True)
class Correlation:
    """A Sigma correlation rule over the alerts of base rules, grouped and windowed."""

    meta: Meta
    type: str  # event_count | value_count | temporal | temporal_ordered
    rules: tuple[str, ...]  # base rule ids, in the order given
    group_by: tuple[str, ...]
    timespan: float
    condition: Threshold

    @property
    def id(self) -> str:
        return self.meta.id


@dataclass(frozen=True)
class RuleSet:
    """Everything loaded from rule and list files, valid as a whole."""

    rules: tuple[Rule, ...] = ()
    correlations: tuple[Correlation, ...] = ()
    lists: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rules) + len(self.correlations)
