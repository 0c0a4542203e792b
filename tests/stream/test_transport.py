"""The worker's consumer: a fetch waits at the broker at most DETECTOR_FETCH_MAX_WAIT (Faust's
own consumer waits 1.5 s, which starves the input while a repartition-only fetch is parked)."""

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
