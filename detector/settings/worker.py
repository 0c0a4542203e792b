"""`detector worker`'s settings (and the part `detector replay` shares): the brokers, the
topics, the rules and limits it shares with scan, and how it runs. docs/worker.md's table is
made from this class (`python -m detector.settings.docs`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import Field

from detector.settings.common import LimitSettings, LogSettings, RuleSettings
from detector.settings.kafka import KafkaSettings
from detector.settings.model import naming
from detector.settings.types import (
    Boolean,
    Duration,
    Port,
    PositiveDuration,
    PositiveInt,
    Text,
    choice,
)
from detector.sinks.formats import ALERT_FORMATS, DEFAULT_FORMAT, AlertFormat
from detector.sinks.formats import alert_format as parse_alert_format

# A dead letter holds up to a whole input message, and brokers refuse a request over 100 MiB
# by default (socket.request.max.bytes).
MAX_MESSAGE_BYTES_LIMIT = 64 * 1024 * 1024


class WorkerSettings(LogSettings, LimitSettings, RuleSettings, KafkaSettings):
    """What one worker process runs with (docs/worker.md has the table made from it)."""

    input_topic: Text = Field("cloudtrail-events",
                              description="topic of CloudTrail input messages")
    alerts_topic: Text = Field(
        "detector-alerts", description="topic the alerts are written to, keyed by group key or "
        "rule id")
    dead_letter_topic: Text = Field(
        "detector-dead-letter", description="topic for input that cannot be decoded or "
        "processed (original bytes, reason headers)")
    group_id: Text = Field("detector", description="consumer group and Faust app id; prefixes "
                           "the internal topics")
    alert_format: Annotated[AlertFormat, choice(ALERT_FORMATS, parse_alert_format)] = Field(
        DEFAULT_FORMAT, description="the document the alerts topic gets: `native` "
        "([alert.schema.json](alert.schema.json)) or `ocsf` (an OCSF Detection Finding, "
        "[sinks.md](sinks.md#alert-formats-native-and-ocsf)); the sinks have their own")
    web_host: Text = Field("0.0.0.0", description="address of the HTTP server (`/metrics`, "
                           "`/healthz`, `/readyz`, `/status`)")
    web_port: Port = Field(6066, description="port of the HTTP server")
    data_dir: Text = Field(
        "detector-data", description="Faust data directory, and the worker's attempts file "
        "(see [Messages that cannot be processed](#messages-that-cannot-be-processed)); created "
        "if missing, its parent must exist; an `emptyDir` in Kubernetes")
    max_attempts: PositiveInt = Field(
        3, description="times a message may kill the worker (out-of-memory kill, failed "
        "liveness probe, SIGKILL) before it goes to the dead-letter topic unprocessed "
        "(`attempts_exhausted`)")
    state_partitions: PositiveInt = Field(
        8, description="partitions of the repartition and changelog topics; fixed once the "
        "topics exist, and the most workers that share stateful work")
    replication_factor: PositiveInt = Field(
        1, description="replication factor of the topics the worker creates (use 3 in "
        "production: they then get `min.insync.replicas=2`)")
    auto_offset_reset: Annotated[str, choice(("earliest", "latest"))] = Field(
        "earliest", description="where a new consumer group starts")
    commit_interval: PositiveDuration = Field(
        1.0, description="time between offset commits; alerts and state changes are flushed "
        "at each commit")
    producer_linger: Duration = Field(
        0.01, description="how long the producer gathers messages into one request; each "
        "record changes a few table entries, and sending each change in a request of its own "
        "cost more than evaluating the record (docs/BENCHMARKS.md, benchmark 5)")
    fetch_max_wait: PositiveDuration = Field(
        0.1, description="longest a fetch waits at the broker for records; Faust's own consumer "
        "waits 1.5 s, which left the input waiting (see [Stateful rules across "
        "workers](#stateful-rules-across-workers))")
    session_timeout: PositiveDuration = Field(
        10.0, description="consumer session timeout: how soon a dead worker's partitions move "
        "(a worker whose event loop stalls longer loses its partitions)")
    heartbeat_interval: PositiveDuration = Field(
        3.0, description="consumer heartbeat interval (at most a third of the session timeout)")
    lag_interval: PositiveDuration = Field(
        5.0, description="how often the consumer lag and state size gauges are refreshed")
    stall_timeout: PositiveDuration = Field(
        120.0, description="`/readyz` fails when a partition with waiting messages made no "
        "progress for this long")
    reload_interval: Duration = Field(
        10.0, description="how often the rule files are checked for changes; `0` turns "
        "reloading off")
    idle_timeout: PositiveDuration = Field(
        60.0, description="an input partition silent this long (wall clock) stops holding "
        "event time back; a state partition without records or beats this long advances its "
        "event time with the wall clock, so pending first-seen decisions are taken")
    faust_metrics: Boolean = Field(False, description="also expose Faust's own sensors on "
                                   "`/metrics` (see below)")

    def check(self) -> list[tuple[str, str]]:
        problems = super().check()
        if self.max_message_bytes > MAX_MESSAGE_BYTES_LIMIT:
            problems.append(("max_message_bytes", f"at most {MAX_MESSAGE_BYTES_LIMIT} (a dead "
                             "letter holds a whole input message, and brokers refuse requests "
                             "over 100 MiB by default)"))
        if self.heartbeat_interval * 3 > self.session_timeout:
            problems.append(("heartbeat_interval", "must be at most a third of the session "
                             f"timeout ({naming(WorkerSettings, 'session_timeout')})"))
        data_dir = _data_dir_problem(self.data_dir)
        if data_dir:
            problems.append(("data_dir", data_dir))
        return problems


def _data_dir_problem(path: str) -> str | None:
    """The data directory exists and is writable, or can be created (its parent does and is)."""
    directory = Path(path)
    if directory.exists():
        if not directory.is_dir():
            return f"{path} is not a directory"
        target = directory
    else:
        target = directory.parent
        if not target.is_dir():
            problem = "is not a directory" if target.exists() else "does not exist"
            return f"cannot create {path}: {target} {problem}"
    if not os.access(target, os.W_OK | os.X_OK):
        return f"{target} is not writable"
    return None
