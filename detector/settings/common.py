"""The settings `detector scan` and the worker share (rules, lateness, decoding limits, logs),
and `ScanSettings`. Field names are what the code reads (`settings.allowed_lateness`); the
variable is DETECTOR_<FIELD> and the flag --<field> unless a field says otherwise (`Named`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from detector.events import DEFAULT_LIMITS, Limits
from detector.settings.model import Named, Settings
from detector.settings.types import Duration, Items, NonEmptyItems, PositiveInt, choice

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


class LogSettings(Settings):
    log_level: Annotated[str, choice(LOG_LEVELS)] = Field("info", description="log level")
    log_format: Annotated[str, choice(LOG_FORMATS)] = Field(
        "text", description="`text` for people, `json` for a log pipeline: one object a line "
        "with `timestamp`, `level`, `logger`, `message`, and `event_id`, `rule_id` where the "
        "line is about one")


class RuleSettings(Settings):
    rules: Annotated[NonEmptyItems, Named(env="DETECTOR_RULES_DIR")] = Field(
        ("rules",), description="rule files or directories, comma-separated")
    lists: Annotated[Items, Named(env="DETECTOR_LISTS_DIR")] = Field(
        (), description="more list files or directories (`lists/` under the rules is read "
        "anyway)")
    enable_rules: Annotated[Items, Named(flag="--enable")] = Field(
        (), description="ids of rules shipped disabled to turn on, comma-separated")
    allowed_lateness: Duration = Field(
        900.0, description="how late (event time) an event may arrive and still count in "
        "windows")

    @property
    def lateness_seconds(self) -> float:
        return self.allowed_lateness


class LimitSettings(Settings):
    """What one input message (a file, for scan) may cost: `detector.events.Limits`."""

    max_message_bytes: PositiveInt = Field(
        DEFAULT_LIMITS.max_message_bytes, description="larger input messages (scan: JSON lines, "
        "and files read whole) are decode errors, `too_large`, sent to the dead-letter topic by "
        "the worker, which takes at most 64 MiB (a dead letter holds a whole input message, and "
        "brokers refuse requests over 100 MiB by default)")
    max_decompressed_bytes: PositiveInt = Field(
        DEFAULT_LIMITS.max_decompressed_bytes, description="gzip inflating beyond this is a "
        "decode error (`decompressed_too_large`)")
    max_records: PositiveInt = Field(
        DEFAULT_LIMITS.max_records, description="log files, arrays and JSON lines holding more "
        "records than this are decode errors (`too_many_records`)")
    max_clock_skew: Duration = Field(
        DEFAULT_LIMITS.max_clock_skew, description="how far an `eventTime` may lie ahead of the "
        "wall clock; later records (and those before November 2013) are decode errors "
        "(`event_time_out_of_range`)")

    @property
    def limits(self) -> Limits:
        """What one input message may cost and hold (`detector.events.Limits`)."""
        return Limits(max_message_bytes=self.max_message_bytes,
                      max_decompressed_bytes=self.max_decompressed_bytes,
                      max_records=self.max_records, max_clock_skew=self.max_clock_skew)


class ScanSettings(RuleSettings, LimitSettings, LogSettings):
    """`detector scan`: the rules, the lateness and the decoding limits, as the worker has them."""
