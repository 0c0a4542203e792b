"""Rate baselines: alert when a key's matches per bucket rise far above its own history.

Per key (a principal), the rule's matches are counted per epoch-aligned bucket (or the
distinct values of one field). A closed bucket folds into the key's profile: one cell per
(period, slot), the busiest bucket of that slot in that period (a slot is an hour of the day,
a day of the week, or the whole day; a period is a day, or a week for day_of_week). A bucket
is compared with the same slot over the periods of the history window before its own:

    threshold = max(floor, floor(median + deviations x spread) + 1)
    spread = max(1.4826 x MAD, sqrt(median), 1)

Median and MAD (median absolute deviation) ignore a few busy days in the history (up to half
of them), which a high percentile of 14 samples (its maximum) does not; the spread never
falls below the noise of a count (sqrt: Poisson), so a flat history alerts only well above
it; `floor` keeps a key whose history is 0 or 1 from alerting on 2.

A bucket alerts at once when its count reaches the threshold, once its history is closed:
the watermark has passed the start of its period, so every bucket the profile holds for
earlier periods has folded. Counts only grow, so the decision is never retracted and its id
(rule, key, bucket start) does not depend on arrival order. A bucket whose period started
less than the allowed lateness ago waits for the watermark to pass that start.

Entry per rule and key (kind `fs`, like first seen, so the stream partitions it alike):
`[start, latest period folded, profile, open buckets]`. The profile is a string, one
character per cell (`chr(32 + count)`, counts capped below the surrogates): about 370 bytes
of memory for 15 x 24 cells, printable in JSON. An open bucket is `[start, count, state,
record or null, digests of its distinct values (optional)]`, state `UNTESTED`, a threshold
(tested, not reached), `FIRED` or `LEARNING`.
"""

from __future__ import annotations

import hashlib
import math
import statistics
import time
from collections.abc import Container
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from detector.alerts import format_time
from detector.engine.rule import SEASONALITIES, Baseline, Rule
from detector.engine.state import JSON, State
from detector.engine.stateful.keys import (
    FIRST_SEEN,
    bucket_start,
    is_count,
    is_number,
    key_prefix,
    parse_state_key,
    record_of,
    shared_fields,
    slim_for,
    window_alert_id,
)
from detector.events import Record

MAD_SCALE = 1.4826  # MAD x this estimates the standard deviation of normal data
MAX_DISTINCT = 1_000  # distinct values kept per open bucket (the count saturates there)
_OFFSET = 32  # cells are printable characters: JSON writes them as one byte each
_CAP = 0xD7FF - _OFFSET  # below the surrogates, which JSON cannot write alone
# Positions in an entry and in one of its open buckets.
START, PERIOD, PROFILE, BUCKETS = range(4)
BUCKET, COUNT, STATE, RECORD, DISTINCT = range(5)
UNTESTED, FIRED, LEARNING = 0, -1, -2
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True, slots=True)
class Verdict:
    """A bucket that reached its threshold: the record it is told by, id and evidence."""

    record: Record
    alert_id: str
    start: float  # of the bucket
    details: dict[str, Any]


class BaselineUnit:
    """The memory of one baseline rule."""

    def __init__(self, rule: Rule, spec: Baseline, state: State) -> None:
        self.rule = rule
        self.spec = spec
        self.state = state
        self.key_fields = shared_fields(spec.key)
        self.value_fields = shared_fields(spec.value) if spec.value else None
        self.prefix = key_prefix(FIRST_SEEN, rule.id)
        self.slim = slim_for((*spec.key, *spec.value,
                              *(rule.meta.output.fields() if rule.meta.output else ())))
        self.period, self.slots = SEASONALITIES[spec.seasonality]
        self.slot_length = self.period / self.slots
        self.periods = max(1, math.ceil(spec.window / self.period))  # of history
        self.rows = self.periods + 1  # the bucket's own period has a row too
        self.empty = chr(_OFFSET) * (self.rows * self.slots)

    @property
    def group_fields(self) -> tuple[str, ...]:
        return self.spec.key

    def offer(self, record: Record, watermark: float, scheduled: Container[str] = ()
              ) -> tuple[list[Verdict], str | None, float | None]:
        """Count a record the rule matched (not late): (alerts, entry key, when it next needs
        the watermark). `scheduled`: the entries already waiting for the watermark; for
        those, the time is worked out only when a bucket opens (counting or testing a bucket
        only moves its time later)."""
        data = record.data
        if None in self.key_fields.values(data):
            return [], None, None
        value = None
        if self.value_fields is not None:
            value = self.value_fields.values(data)[0]
            if value is None:
                return [], None, None
        skey = self.prefix + self.key_fields.key(data)
        event_time = record.event_time
        entry = self._entry(skey) or [event_time, -1, self.empty, []]
        if event_time < entry[START]:
            self._moved_start(entry, event_time)
        buckets: list[list[Any]] = entry[BUCKETS]
        span = self.spec.bucket
        verdicts = self._fold(skey, entry, watermark) if buckets and min(
            map(_START_OF, buckets)) + span <= watermark else []
        buckets = entry[BUCKETS]
        start = bucket_start(event_time, span)
        item = buckets[-1] if buckets and buckets[-1][BUCKET] == start else next(
            (item for item in buckets if item[BUCKET] == start), None)
        opened = item is None
        if item is None:
            item = [start, 0, UNTESTED, None] if value is None else [start, 0, UNTESTED, None, []]
            buckets.append(item)
        if value is not None:
            counted = (digest := _digest(value)) not in item[DISTINCT] and (
                len(item[DISTINCT]) < MAX_DISTINCT)
            if counted:
                item[DISTINCT].append(digest)
        if value is None or counted:
            item[COUNT] += 1
            if item[STATE] == UNTESTED and start - self._offset(start) > watermark:
                item[RECORD] = self.slim(data)  # its history is not closed: tested later
            elif item[STATE] not in (FIRED, LEARNING):
                verdict = self._test(skey, entry, item, record)
                if verdict is not None:
                    verdicts.append(verdict)
        self.state.put(skey, entry)
        return verdicts, skey, self.due(entry, watermark) if opened or (
            skey not in scheduled) else None

    def release(self, skey: str, watermark: float) -> tuple[list[Verdict], float | None]:
        """Test the buckets whose history closed, fold those that ended."""
        entry = self._entry(skey)
        if entry is None:
            return [], None
        verdicts = self._fold(skey, entry, watermark)
        for item in entry[BUCKETS]:
            if item[STATE] == UNTESTED and self._closed(item[BUCKET], watermark):
                verdict = self._test(skey, entry, item, None)
                if verdict is not None:
                    verdicts.append(verdict)
        self.state.put(skey, entry)
        return verdicts, self.due(entry, watermark)

    def due(self, entry: JSON, watermark: float) -> float | None:
        """When the entry next needs the watermark: a bucket's period start (its history
        closes) or its end (it folds)."""
        return min((item[BUCKET] - self._offset(item[BUCKET])
                    if item[STATE] == UNTESTED and not self._closed(item[BUCKET], watermark)
                    else item[BUCKET] + self.spec.bucket for item in entry[BUCKETS]),
                   default=None)

    def sweep(self, skey: str, entry: JSON, watermark: float) -> None:
        """Forget a key without events for the retention period (it learns again)."""
        if not entry[BUCKETS] and (entry[PERIOD] + 1) * self.period < (
                watermark - self.spec.retention):
            self.state.delete(skey)

    def _entry(self, skey: str) -> list[Any] | None:
        """The key's entry; a profile laid out for another window or seasonality (the rule
        changed) starts empty."""
        entry: list[Any] | None = self.state.get(skey)
        if entry is not None and len(entry[PROFILE]) != len(self.empty):
            entry[PERIOD], entry[PROFILE] = -1, self.empty
        return entry

    def _moved_start(self, entry: list[Any], earlier: float) -> None:
        """A late event moved the key's start earlier: open buckets it takes out of the
        learning period are tested again."""
        entry[START] = earlier
        for item in entry[BUCKETS]:
            if item[STATE] == LEARNING and item[BUCKET] >= earlier + self.spec.learning:
                item[STATE] = UNTESTED

    def _offset(self, when: float) -> float:
        """Seconds from the start of the period holding `when` to `when`."""
        return when - math.floor(when / self.period) * self.period

    def _closed(self, start: float, watermark: float) -> bool:
        return start - self._offset(start) <= watermark

    def _fold(self, skey: str, entry: list[Any], watermark: float) -> list[Verdict]:
        """Fold the buckets that ended by the watermark into the profile (tested first if
        they never were)."""
        verdicts: list[Verdict] = []
        span = self.spec.bucket
        kept = []
        for item in sorted(entry[BUCKETS], key=_START_OF):
            if item[BUCKET] + span > watermark:
                kept.append(item)
                continue
            if item[STATE] == UNTESTED:
                verdict = self._test(skey, entry, item, None)
                if verdict is not None:
                    verdicts.append(verdict)
            self._store(entry, item[BUCKET], item[COUNT])
        entry[BUCKETS] = kept
        return verdicts

    def _store(self, entry: list[Any], start: float, count: int) -> None:
        period = math.floor(start / self.period)
        slot = int(self._offset(start) // self.slot_length)
        profile: str = entry[PROFILE]
        latest: int = entry[PERIOD]
        if period <= latest - self.rows:
            return
        cells = list(profile)
        if period > latest:  # the rows of the periods since the latest start empty
            for skipped in range(max(latest + 1, period - self.rows + 1), period + 1):
                row = (skipped % self.rows) * self.slots
                cells[row:row + self.slots] = [chr(_OFFSET)] * self.slots
            entry[PERIOD] = period
        cell = (period % self.rows) * self.slots + slot
        cells[cell] = chr(_OFFSET + min(max(count, ord(cells[cell]) - _OFFSET), _CAP))
        entry[PROFILE] = "".join(cells)

    def history(self, entry: list[Any], start: float) -> tuple[list[int], int]:
        """The counts of the bucket's slot in the periods of the window before its own (0 for
        a period without events), and the first of those periods."""
        period = math.floor(start / self.period)
        offset = self._offset(start) // self.slot_length * self.slot_length
        slot = int(offset // self.slot_length)
        # the periods whose slot began once the key had started, within the window
        first = max(period - self.periods, math.ceil((entry[START] - offset) / self.period))
        profile: str = entry[PROFILE]
        latest: int = entry[PERIOD]
        return [ord(profile[(past % self.rows) * self.slots + slot]) - _OFFSET
                if past <= latest else 0 for past in range(first, period)], first

    def _test(self, skey: str, entry: list[Any], item: list[Any],
              record: Record | None) -> Verdict | None:
        """Whether the bucket reached its threshold (its history is closed)."""
        start = item[BUCKET]
        spec = self.spec
        if start < entry[START] + spec.learning:
            item[STATE], item[RECORD] = LEARNING, None
            return None
        threshold = item[STATE]
        if threshold <= 0:
            history, _first = self.history(entry, start)
            if not history:
                item[STATE], item[RECORD] = LEARNING, None
                return None
            threshold = item[STATE] = self.threshold(history)[0]
        if item[COUNT] < threshold:
            if record is None:
                item[RECORD] = None
            return None
        if record is None:
            record = record_of(start, item[RECORD] or {})
        item[STATE], item[RECORD] = FIRED, None
        group_key = self.key_fields.mapping(parse_state_key(skey)[2])
        return Verdict(record, window_alert_id(self.rule.id, group_key, "baseline", start),
                       start, {"anomaly": self.evidence(entry, item)})

    def threshold(self, history: list[int]) -> tuple[int, float, float, float]:
        """(threshold, median, MAD, spread) of a slot's history."""
        median = statistics.median(history)
        mad = statistics.median(abs(count - median) for count in history)
        spread = max(MAD_SCALE * mad, math.sqrt(median), 1.0)
        threshold = max(self.spec.floor, math.floor(median + self.spec.deviations * spread) + 1)
        return threshold, float(median), float(mad), spread

    def evidence(self, entry: list[Any], item: list[Any]) -> dict[str, Any]:
        """What the alert says about the bucket and the history it was compared with."""
        start = item[BUCKET]
        history, first = self.history(entry, start)
        threshold, median, mad, spread = self.threshold(history)
        return {
            "method": "rate",
            "field": "distinct " + self.spec.value[0] if self.spec.value else "events",
            "observed": item[COUNT],
            "expected": median,
            "threshold": threshold,
            "mad": mad,
            "spread": round(spread, 3),
            "deviations": self.spec.deviations,
            "floor": self.spec.floor,
            "score": round((item[COUNT] - median) / spread, 2),
            "bucket_start": format_time(start),
            "bucket_seconds": self.spec.bucket,
            "slot": self.slot_name(start),
            "counts": history,
            "history": {"start": format_time(first * self.period),
                        "end": format_time(math.floor(start / self.period) * self.period)},
            "learning": False,
        }

    def slot_name(self, start: float) -> str:
        """The slot a bucket is compared within, for people: '03:00-04:00 UTC', 'Tuesday'."""
        if self.spec.seasonality == "hour_of_day":
            hour = int(self._offset(start) // 3600)
            return f"{hour:02d}:00-{hour + 1:02d}:00 UTC"
        if self.spec.seasonality == "day_of_week":
            return _WEEKDAYS[time.gmtime(start).tm_wday]
        return "any"


_START_OF = itemgetter(BUCKET)


def _digest(value: str) -> str:
    """What an open bucket keeps of a distinct value: 16 hex digits, whatever its length
    (a bucket's distinct values then take at most 19 KB of its entry)."""
    return hashlib.blake2b(value.encode(errors="surrogatepass"), digest_size=8).hexdigest()


def check_entry(entry: list[Any]) -> str | None:
    """Why `entry` (a list whose third item is a string) is not a baseline entry."""
    if len(entry) != 4 or not is_number(entry[START]) or type(entry[PERIOD]) is not int:
        return "a baseline entry is [start, latest period, profile, open buckets]"
    if any(not _OFFSET <= ord(cell) <= _OFFSET + _CAP for cell in entry[PROFILE]):
        return "its profile holds characters that are not counts"
    if not isinstance(entry[BUCKETS], list):
        return "its open buckets are not a list"
    for item in entry[BUCKETS]:
        if not (isinstance(item, list) and len(item) in (4, 5) and is_number(item[BUCKET])
                and is_count(item[COUNT]) and type(item[STATE]) is int
                and item[STATE] >= LEARNING
                and (item[RECORD] is None or isinstance(item[RECORD], dict))
                and (len(item) == DISTINCT or (isinstance(item[DISTINCT], list) and all(
                    isinstance(value, str) for value in item[DISTINCT])))):
            return ("an open bucket is not [start, count, state, record or null, distinct "
                    "values (optional)]")
    return None
