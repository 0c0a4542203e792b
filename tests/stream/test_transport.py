"""The worker's consumer: fetches wait at most FETCH_MAX_WAIT_MS at the broker (Faust's own
consumer waits 1.5 s, which starves the input while a repartition-only fetch is parked)."""

from __future__ import annotations

from pathlib import Path

from detector.stream.app import create_app
from detector.stream.config import Settings
from detector.stream.rules import RuleSource
from detector.stream.transport import FETCH_MAX_WAIT_MS
from stream.support import FIXTURES


async def test_the_worker_consumer_parks_a_fetch_for_at_most_the_short_wait(
    tmp_path: Path,
) -> None:
    rules = RuleSource([str(FIXTURES / "rules")])
    app = create_app(Settings(data_dir=str(tmp_path)), rules, rules.load(), environ={}).app
    thread = app.consumer._new_consumer_thread()
    consumer = thread._create_worker_consumer(app.transport)  # built, not started: no I/O
    assert consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS < 1500
    assert consumer._group_id == app.conf.id  # everything else is Faust's worker consumer
