"""The worker's consumer: a fetch waits at the broker at most DETECTOR_FETCH_MAX_WAIT (Faust's
own consumer waits 1.5 s, which starves the input while a repartition-only fetch is parked),
and the outbox and the stateful tables send their records and changes before every commit."""

from __future__ import annotations

from pathlib import Path

from detector.stream.config import Settings
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


async def test_the_tables_send_their_changes_before_the_consumer_commits(
    tmp_path: Path,
) -> None:
    detector = build(Settings(data_dir=str(tmp_path)))
    app = detector.app
    assert detector.runners
    assert all(runner.changelog.publish in app.before_commit
               for runner in detector.runners.values())
    assert len(app.before_commit) == len(detector.runners) + 1  # and the outbox's records
    calls: list[str] = []
    app.before_commit.append(lambda: calls.append("before commit"))
    # nothing acked, so nothing to commit: no I/O, but the callbacks run all the same
    assert await app.consumer._commit_tps([], start_new_transaction=False) is False
    assert calls == ["before commit"]
