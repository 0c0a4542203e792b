"""Hostile input through the whole detector: decode -> engine (every shipped pack, and
SigmaHQ's CloudTrail rules when present) -> alert JSON (native and OCSF) -> what each sink
sends (Slack, Alertmanager, webhook, stdout), without a network. Whatever arrives, nothing
raises, no rule fails on a record, and every document written is JSON within its bounds."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from detector.alerts import Alert
from detector.engine.factory import make_engine
from detector.engine.rule import RuleSet
from detector.events import DEFAULT_LIMITS, Limits, decode
from detector.metrics import Metrics
from detector.scan import format_summary, scan
from detector.settings.types import Secret
from detector.sinks.alertmanager import AlertmanagerConfig, AlertmanagerSink
from detector.sinks.base import HttpSink
from detector.sinks.formats import ALERT_FORMATS, encode_alert
from detector.sinks.slack import SlackConfig, SlackSink
from detector.sinks.text import visible
from detector.sinks.webhook import WebhookConfig, WebhookSink
from fuzz.strategies import NOW, hostile_records, log_file, payloads

FUZZ = settings(max_examples=120, deadline=timedelta(seconds=3),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# Small enough that hypothesis reaches the caps: a message, its inflated content, its records.
LIMITS = Limits(max_message_bytes=256 * 1024, max_decompressed_bytes=512 * 1024, max_records=50)
ALERT_BYTES = 2 * 1024 * 1024  # far above what the bounds let an alert's JSON reach


def _sinks() -> list[HttpSink]:
    metrics = Metrics(CollectorRegistry())
    url = Secret("http://127.0.0.1:9")
    return [
        SlackSink(SlackConfig(name="slack", url=url), metrics),
        AlertmanagerSink(AlertmanagerConfig(name="am", url=url), metrics),
        WebhookSink(WebhookConfig(name="hook", url=url, hmac_secret=Secret("s")), metrics),
        WebhookSink(WebhookConfig(name="ocsf", url=url, alert_format="ocsf"), metrics),
    ]


def _bases(ruleset: RuleSet) -> list[dict[str, Any]]:
    """Records that alert: the rules' own test events, and a call of each event name a rule
    is indexed by (SigmaHQ's rules have no tests)."""
    bases = [event for rule in ruleset.rules for test in rule.meta.tests for event in test.events]
    for rule in ruleset.rules:
        for name in sorted(rule.index_key.event_names or ()):
            source = sorted(rule.index_key.event_sources or {"iam.amazonaws.com"})[0]
            bases.append({"eventName": name, "eventSource": source,
                          "userIdentity": {"type": "IAMUser",
                                           "arn": "arn:aws:iam::111122223333:user/a"},
                          "sourceIPAddress": "203.0.113.7", "awsRegion": "eu-west-1"})
    return bases


def _through_the_detector(ruleset: RuleSet, messages: list[bytes]) -> list[Alert]:
    engine = make_engine(ruleset)
    alerts: list[Alert] = []
    for message in messages:
        decoded = decode(message, LIMITS, now=NOW.timestamp())
        assert len(decoded.records) <= LIMITS.max_records
        for record in decoded.records:
            alerts += engine.process(record)
    alerts += engine.flush()
    assert engine.take_failures() == []
    return alerts


def _rendered(alerts: list[Alert]) -> None:
    """Every document an alert is written as parses back, and headers are sendable."""
    sinks = _sinks()
    for alert in alerts:
        for alert_format in ALERT_FORMATS:  # the alerts topic, stdout and a webhook's body
            line = encode_alert(alert, alert_format)
            assert len(line) < ALERT_BYTES and b"\n" not in line
            orjson.loads(line)
        visible(alert.rule_title + (alert.text or ""))
        for sink in sinks:
            batch = [alert]
            body = sink._body(batch)
            orjson.loads(body)
            for name, value in sink._headers(batch, body).items():
                (name + value).encode("latin-1")
                assert "\r" not in value and "\n" not in value


def any_messages(bases: list[dict[str, Any]]) -> st.SearchStrategy[list[bytes]]:
    """A few messages of any kind: hostile records in any envelope, any bytes, gzip or not."""
    return st.lists(payloads(bases), min_size=1, max_size=3)


def readable_records(bases: list[dict[str, Any]]) -> st.SearchStrategy[list[bytes]]:
    """One log file of records the decoder accepts, hostile in content: most reach the rules
    and alert, so their values reach every sink."""
    return st.builds(lambda records, depth: [log_file(records, depth)],
                     st.lists(hostile_records(bases, readable=True), min_size=1, max_size=8),
                     st.sampled_from([1, 253, 1000]))


@pytest.mark.parametrize("rules", ["shipped_rules", "sigma_rules"])
@pytest.mark.parametrize("messages", [any_messages, readable_records])
@FUZZ
@given(data=st.data())
def test_hostile_input_alerts_or_is_counted_and_reaches_every_sink_without_raising(
        rules: str, messages: Callable[[list[dict[str, Any]]], st.SearchStrategy[list[bytes]]],
        request: pytest.FixtureRequest, data: st.DataObject) -> None:
    ruleset: RuleSet = request.getfixturevalue(rules)
    _rendered(_through_the_detector(ruleset, data.draw(messages(_bases(ruleset)))))



@FUZZ
@given(data=st.data())
def test_hostile_files_through_detector_scan_are_read_or_counted_never_raise(
        shipped_rules: RuleSet, data: st.DataObject) -> None:
    """Scan reads files its own way (JSON lines line by line, gzip inflated as it is read),
    not through `decode`: the same messages as files, in one scan with a small reorder heap."""
    messages = data.draw(any_messages(_bases(shipped_rules)))
    alerts: list[Alert] = []
    with tempfile.TemporaryDirectory() as directory:
        names = []
        for position, message in enumerate(messages):
            names.append(str(Path(directory) / f"{position}.jsonl"))
            Path(names[-1]).write_bytes(message)
        engine = make_engine(shipped_rules)
        summary = scan(names, engine, LIMITS, alerts.append, now=NOW.timestamp(),
                       sorted_below=data.draw(st.sampled_from([0, 10_000])), max_held=8)
    assert engine.take_failures() == [] and not summary.internal_errors
    format_summary(summary)
    _rendered(alerts)

def test_the_fuzzed_records_do_alert(shipped_rules: RuleSet) -> None:
    """The bases reach the sinks: a fuzz run that never alerted would test decode only."""
    messages = [orjson.dumps({"Records": [
        {**event, "eventTime": NOW.strftime("%Y-%m-%dT%H:%M:%SZ")}
        for event in _bases(shipped_rules)]})]
    limits = Limits(max_records=10_000)
    engine = make_engine(shipped_rules)
    alerts = [alert for message in messages
              for record in decode(message, limits, now=NOW.timestamp()).records
              for alert in engine.process(record)]
    assert len({alert.rule_id for alert in alerts}) >= len(shipped_rules.rules) // 2
    assert DEFAULT_LIMITS.max_records >= limits.max_records
