"""The stdout sink: one JSON document per line, nothing else on the stream."""

from __future__ import annotations

import asyncio
import io
import os
import threading

import orjson
import pytest

from detector.metrics import Metrics
from detector.sinks import RetryPolicy, Route, SinkSet, StdoutConfig, StdoutSink
from detector.sinks.formats import encode_alert
from sinks.builders import make_alert
from sinks.ocsf_schema import ocsf_errors
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


async def test_lines_can_be_ocsf_detection_findings(metrics: Metrics) -> None:
    stream = io.BytesIO()
    sink = StdoutSink(StdoutConfig(name="stdout", alert_format="ocsf"), metrics, stream=stream)
    alerts = [make_alert(), make_alert(level="low", user_agent="a\nb")]
    async with SinkSet([sink]) as sinks:
        for alert in alerts:
            sinks.submit(alert)
        await eventually(lambda: sample(metrics, "detector_sink_deliveries_total", "stdout") == 2)
    lines = stream.getvalue().splitlines()
    assert lines == [encode_alert(alert, "ocsf") for alert in alerts]
    documents = [orjson.loads(line) for line in lines]
    assert [ocsf_errors(document) for document in documents] == [[], []]
    assert [document["metadata"]["uid"] for document in documents] == [a.id for a in alerts]


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


async def test_a_reader_that_stops_reading_blocks_neither_the_loop_nor_the_sink(
    metrics: Metrics,
) -> None:
    read_end, write_end = os.pipe()  # nobody reads: the pipe fills and write() blocks
    config = StdoutConfig(name="out", retry=RetryPolicy(timeout=0.2), queue_size=5000)
    submitted = 3000  # far more than a pipe buffer holds
    gaps: list[float] = []

    async def tick() -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(0.01)
            gaps.append(loop.time() - last)
            last = loop.time()

    with open(write_end, "wb", buffering=0) as stream:
        sink = StdoutSink(config, metrics, stream=stream)
        ticker = asyncio.create_task(tick())
        try:
            async with SinkSet([sink]) as sinks:
                for _ in range(submitted):
                    sinks.submit(make_alert())
                await eventually(
                    lambda: sample(metrics, "detector_sink_deliveries_total", "out")
                    + sample(metrics, "detector_sink_dropped_total", "out")
                    == submitted
                )
        finally:
            ticker.cancel()
            os.close(read_end)  # the blocked write fails with EPIPE and its thread ends
            await eventually(_no_writer_threads)
    assert sample(metrics, "detector_sink_dropped_total", "out") > 0
    assert sample(metrics, "detector_sink_failures_total", "out") >= 1
    assert len(gaps) > 10
    assert max(gaps) < 0.15, "the event loop stalled while stdout was blocked"


async def test_a_blocked_write_times_out_and_the_next_batches_are_dropped_without_waiting(
    metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    read_end, write_end = os.pipe()
    _fill(write_end)  # full before the sink starts
    config = StdoutConfig(name="out", retry=RetryPolicy(timeout=0.1))
    with open(write_end, "wb", buffering=0) as stream:
        sink = StdoutSink(config, metrics, stream=stream)
        try:
            async with SinkSet([sink]) as sinks:
                sinks.submit(make_alert())
                await eventually(lambda: sample(metrics, "detector_sink_dropped_total", "out") == 1)
                loop = asyncio.get_running_loop()
                started = loop.time()
                sinks.submit(make_alert())
                await eventually(lambda: sample(metrics, "detector_sink_dropped_total", "out") == 2)
                assert loop.time() - started < 0.1  # no second thread waiting on the same pipe
        finally:
            os.close(read_end)
            await eventually(_no_writer_threads)
    assert sample(metrics, "detector_sink_failures_total", "out") == 2
    assert sample(metrics, "detector_sink_deliveries_total", "out") == 0
    warnings = [r.getMessage() for r in caplog.records if "cannot write" in r.getMessage()]
    assert len(warnings) == 1, "one warning for the blocked write, not one per dropped batch"
    assert "blocked for more than 0.1s" in warnings[0]


async def test_writes_resume_once_the_reader_catches_up(metrics: Metrics) -> None:
    read_end, write_end = os.pipe()
    capacity = _fill(write_end)
    config = StdoutConfig(name="out", retry=RetryPolicy(timeout=0.1))
    with open(write_end, "wb", buffering=0) as stream, open(read_end, "rb", buffering=0) as reader:
        async with SinkSet([StdoutSink(config, metrics, stream=stream)]) as sinks:
            sinks.submit(make_alert())
            await eventually(lambda: sample(metrics, "detector_sink_dropped_total", "out") == 1)
            drained = await asyncio.to_thread(reader.read, capacity)  # the reader wakes up
            assert len(drained) == capacity
            await asyncio.sleep(0.05)  # the late write of the dropped batch completes
            alert = make_alert(level="critical")
            sinks.submit(alert)
            await eventually(lambda: sample(metrics, "detector_sink_deliveries_total", "out") == 1)
        lines = os.read(read_end, capacity).splitlines()
    await eventually(_no_writer_threads)
    assert orjson.loads(lines[-1]) == alert.to_dict()


def _no_writer_threads() -> bool:
    return not any(thread.name == "stdout-sink-write" for thread in threading.enumerate())


def _fill(write_end: int) -> int:
    """Fill the pipe until write() would block; returns how many bytes it took."""
    os.set_blocking(write_end, False)
    total = 0
    try:
        while True:
            total += os.write(write_end, b"\0" * 4096)
    except BlockingIOError:
        pass
    finally:
        os.set_blocking(write_end, True)
    return total
