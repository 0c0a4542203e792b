"""The stdout sink: one JSON document per line, nothing else on the stream."""

from __future__ import annotations

import io

import orjson

from detector.metrics import Metrics
from detector.sinks import Route, SinkSet, StdoutConfig, StdoutSink
from sinks.builders import make_alert
from sinks.support import eventually, sample


async def test_alerts_are_written_as_json_lines(metrics: Metrics) -> None:
    stream = io.BytesIO()
    sink = StdoutSink(StdoutConfig(name="stdout"), metrics, stream=stream)
    alerts = [make_alert(), make_alert(level="critical")]
    async with SinkSet([sink]) as sinks:
        for alert in alerts:
            sinks.submit(alert)
        await eventually(lambda: sample(metrics, "detector_sink_deliveries_total", "stdout") == 2)
    lines = stream.getvalue().splitlines()
    assert [orjson.loads(line) for line in lines] == [alert.to_dict() for alert in alerts]


async def test_the_stdout_sink_routes_like_any_other(metrics: Metrics) -> None:
    stream = io.BytesIO()
    config = StdoutConfig(name="stdout", route=Route(min_level="critical"))
    async with SinkSet([StdoutSink(config, metrics, stream=stream)]) as sinks:
        sinks.submit(make_alert(level="high"))
        sinks.submit(make_alert(level="critical"))
    assert [orjson.loads(line)["rule"]["level"] for line in stream.getvalue().splitlines()] == [
        "critical"
    ]


async def test_a_closed_stream_counts_a_failure_and_a_drop(metrics: Metrics) -> None:
    stream = io.BytesIO()
    stream.close()
    async with SinkSet([StdoutSink(StdoutConfig(name="out"), metrics, stream=stream)]) as sinks:
        sinks.submit(make_alert())
        await eventually(lambda: sample(metrics, "detector_sink_dropped_total", "out") == 1)
    assert sample(metrics, "detector_sink_failures_total", "out") == 1
