"""The stream benchmarks' peers, each run as its own process like the worker:

    python -m bench.peers noop   a faust app whose agent does nothing with each message (the
                                 floor of any faust worker: faust's own per-event cost)
    python -m bench.peers loop   a plain aiokafka consumer that decodes every message (the
                                 floor of any Python Kafka consumer that reads CloudTrail)

Both read BENCH_BOOTSTRAP, BENCH_TOPIC, BENCH_GROUP, BENCH_COMMIT_INTERVAL (seconds) and
BENCH_DATA_DIR, and commit offsets like the worker does, so the harness measures all three
the same way: by watching the group's committed offsets. They run until SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from detector.events import decode


def _env(name: str) -> str:
    return os.environ[f"BENCH_{name}"]


def noop() -> None:
    import faust

    app = faust.App(
        _env("GROUP"),
        broker=f"kafka://{_env('BOOTSTRAP')}",
        autodiscover=False,
        datadir=_env("DATA_DIR"),
        store="memory://",
        processing_guarantee="at_least_once",
        broker_commit_interval=float(_env("COMMIT_INTERVAL")),
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
    )
    topic = app.topic(_env("TOPIC"), key_type=bytes, value_type=bytes,
                      key_serializer="raw", value_serializer="raw")

    @app.agent(topic, concurrency=1)
    async def consume(stream: faust.StreamT[bytes]) -> None:
        async for _event in stream.events():
            pass

    worker = faust.Worker(app, loglevel="WARNING", quiet=True)  # as detector.stream.worker,
    worker.spinner = None  # which turns the spinner off: it kept the root logger at DEBUG
    worker.execute_from_commandline()


async def _loop() -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        _env("TOPIC"),
        bootstrap_servers=_env("BOOTSTRAP"),
        group_id=_env("GROUP"),
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        auto_commit_interval_ms=int(float(_env("COMMIT_INTERVAL")) * 1000),
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=1000)
            for messages in batches.values():
                for message in messages:
                    decode(message.value or b"")
    finally:
        await consumer.stop()  # commits what was consumed


def main(argv: list[str]) -> int:
    if argv == ["noop"]:
        noop()
    elif argv == ["loop"]:
        asyncio.run(_loop())
    else:
        print("usage: python -m bench.peers noop|loop", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
