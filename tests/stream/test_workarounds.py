"""The worker's consumer: a fetch waits at the broker at most DETECTOR_FETCH_MAX_WAIT (Faust's
own consumer waits 1.5 s, which starves the input while a repartition-only fetch is parked),
and the outbox and the stateful tables send their records and changes before every commit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from detector.settings.worker import WorkerSettings as Settings
from detector.stream import workarounds
from stream.support import build


async def test_the_worker_consumer_parks_a_fetch_for_at_most_the_short_wait(
    tmp_path: Path,
) -> None:
    for settings, waits_ms in ((Settings(data_dir=str(tmp_path)), 100),
                               (Settings(data_dir=str(tmp_path), fetch_max_wait=1.5), 1500)):
        app = build(settings).app
        thread = app.consumer._new_consumer_thread()
        consumer = thread._create_worker_consumer(app.transport)  # built, not started: no I/O
        assert consumer._fetch_max_wait_ms == waits_ms
        assert consumer._group_id == app.conf.id  # the rest is Faust's worker consumer


async def test_the_outbox_and_the_tables_send_before_the_consumer_commits(
    tmp_path: Path,
) -> None:
    detector = build(Settings(data_dir=str(tmp_path)))
    app = detector.app
    assert detector.evaluators
    assert all(evaluator.publish in app.before_commit
               for evaluator in detector.evaluators.values())
    assert len(app.before_commit) == len(detector.evaluators) + 1  # and the outbox's records


async def test_a_commit_waits_for_the_broker_to_take_what_it_sent_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = build(Settings(data_dir=str(tmp_path))).app
    loop = asyncio.get_running_loop()
    sent = loop.create_future()
    app.before_commit.append(lambda: [sent])
    # nothing acked, so nothing to commit: no I/O, but the sends are waited for all the same
    commit = asyncio.ensure_future(app.consumer._commit_tps([], start_new_transaction=False))
    await asyncio.sleep(0.05)
    assert not commit.done()
    sent.set_result(None)
    assert await commit is False
    stopped: list[BaseException] = []
    monkeypatch.setattr(workarounds, "stop_unsent", stopped.append)  # it exits the process
    refused = loop.create_future()
    refused.set_exception(RuntimeError("refused"))
    app.before_commit[-1] = lambda: [refused]
    await app.consumer._commit_tps([], start_new_transaction=False)
    assert [str(exc) for exc in stopped] == ["refused"]
