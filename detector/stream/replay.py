"""`detector replay`: produce CloudTrail files into a Kafka topic, for demos, tests and backfills.

One record per message by default (keyed by a field when asked), or one whole file per message
with --batch (as CloudTrail delivers to S3). Content the splitter cannot read as records (a line
that is not JSON, a file that is not JSON at all, gzip that is corrupt or inflates beyond
DETECTOR_MAX_DECOMPRESSED_BYTES) is still sent, as is: the worker's dead-letter topic is where
it should end up, with its reason, and a replay must not hide that. Gzip is inflated with the
decoder's bounded inflater, so a gzip bomb is reported, not inflated into memory.
Plain aiokafka: no Faust import, so it starts fast.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial

import orjson

from detector.events import DEFAULT_LIMITS, EVENTBRIDGE_DETAIL_TYPE, DecodeError, Limits, gunzip
from detector.scan import find_inputs, read_input
from detector.settings import SettingsError
from detector.settings.kafka import client_options
from detector.settings.worker import WorkerSettings
from detector.stream.messages import json_bounded
from detector.stream.topics import output_message_bytes

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
GZIP_MAGIC = b"\x1f\x8b"
log = logging.getLogger("detector.replay")


@dataclass
class Summary:
    messages: int = 0
    records: int = 0
    bytes: int = 0
    seconds: float = 0.0
    unreadable: int = 0
    bad_gzip: int = 0

    def __str__(self) -> str:
        rate = self.messages / self.seconds if self.seconds else 0.0
        text = (f"replayed {self.messages} message(s), {self.records} record(s), "
                f"{self.bytes} byte(s) in {self.seconds:.2f}s ({rate:.0f} messages/s)")
        if self.unreadable:
            text += f"; {self.unreadable} file(s) could not be read"
        if self.bad_gzip:
            text += f"; {self.bad_gzip} file(s) with unreadable gzip sent as they are"
        return text


@dataclass(frozen=True, slots=True)
class Message:
    key: bytes | None
    value: bytes
    records: int


def run(args: argparse.Namespace, settings: WorkerSettings) -> int:
    """Replay the files `args` (detector.cli) names, with the worker's brokers and limits."""
    if args.batch and (args.key_field or args.sort):
        return _refuse("--key-field and --sort need one record per message (drop --batch)")
    if args.rate < 0:
        return _refuse("--rate must be positive")
    inputs = find_inputs(args.paths)
    if not inputs:
        return _refuse("no log files under the given paths")
    try:
        summary = asyncio.run(_replay(args, settings, inputs))
    except SettingsError as error:  # a TLS file went away
        return _refuse(*error.problems)
    except Exception as error:  # report a broker failure as one line, not a traceback
        log.error("detector replay: %s: %s", type(error).__name__, error)
        return EXIT_FAILED
    log.info("%s", summary)
    return EXIT_FAILED if summary.unreadable else EXIT_OK


def _refuse(*problems: object) -> int:
    for problem in problems:
        log.error("detector replay: %s", problem)
    return EXIT_USAGE


def _producer_options(settings: WorkerSettings) -> dict[str, object]:
    return {
        **client_options(settings),
        "acks": "all",
        "linger_ms": 5,
        "max_request_size": output_message_bytes(settings),  # what the worker's producer takes
    }


async def _replay(args: argparse.Namespace, settings: WorkerSettings, inputs: list[str]) -> Summary:
    from aiokafka import AIOKafkaProducer

    summary = Summary()
    producer = AIOKafkaProducer(**_producer_options(settings))
    await producer.start()
    started = time.perf_counter()
    pending: list[asyncio.Future[object]] = []
    try:
        for message in _all_messages(args, inputs, summary, settings.limits):
            value = compress(message.value) if args.gzip else message.value
            if args.rate:
                delay = started + summary.messages / args.rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            pending.append(await producer.send(args.topic, value, key=message.key))
            summary.messages += 1
            summary.records += message.records
            summary.bytes += len(value)
            if len(pending) >= 1000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        await producer.flush()
    finally:
        await producer.stop()
    summary.seconds = time.perf_counter() - started
    return summary


def compress(value: bytes) -> bytes:
    """Gzip a message, unless it is gzip already (a CloudTrail .json.gz file with --batch):
    the worker inflates once, so gzip in gzip would end in its dead-letter topic."""
    return value if value[:2] == GZIP_MAGIC else gzip.compress(value, mtime=0)


def _all_messages(args: argparse.Namespace, inputs: list[str], summary: Summary,
                  limits: Limits) -> Iterator[Message]:
    """The messages of every input in order, or of all their records by eventTime (--sort)."""
    files = _payloads(_progress(inputs, args.no_progress), summary)
    if not args.sort:
        for name, payload in files:
            yield from messages(payload, batch=args.batch, key_field=args.key_field,
                                limits=limits, on_error=partial(_report, name, summary))
        return
    items = [item for name, payload in files
             for item in split_records(payload, limits, partial(_report, name, summary))]
    items.sort(key=lambda item: str(_field(item, "eventTime") or ""))
    yield from (_record_message(item, args.key_field, limits) for item in items)


def _payloads(names: Iterable[str], summary: Summary) -> Iterator[tuple[str, bytes]]:
    for name in names:
        payload = read_input(name)
        if isinstance(payload, str):
            log.error("detector replay: %s: %s", name, payload)
            summary.unreadable += 1
            continue
        yield name, payload


def _report(name: str, summary: Summary, error: DecodeError) -> None:
    log.warning("detector replay: %s: %s; sent as is (the worker dead-letters it as %s)", name,
                error.message, error.reason)
    summary.bad_gzip += 1


def messages(payload: bytes, *, batch: bool, key_field: str | None = None,
             limits: Limits = DEFAULT_LIMITS,
             on_error: Callable[[DecodeError], None] | None = None) -> Iterator[Message]:
    """The messages for one file: the file itself, or each record it holds."""
    items = split_records(payload, limits, on_error)
    if batch:
        yield Message(None, payload, sum(1 for item in items if not isinstance(item, bytes)))
        return
    for item in items:
        yield _record_message(item, key_field, limits)


def _record_message(item: object, key_field: str | None, limits: Limits) -> Message:
    """One record's message (raw bytes stay as they are), keyed by `key_field` if given; a
    record nested deeper than orjson writes goes cut (`json_bounded`)."""
    key = None
    if key_field and not isinstance(item, bytes):
        value = _field(item, key_field)
        key = value.encode() if isinstance(value, str) else None
    return Message(key, item if isinstance(item, bytes)
                   else json_bounded(item, limits.max_message_bytes), 1)


def split_records(payload: bytes, limits: Limits = DEFAULT_LIMITS,
                  on_error: Callable[[DecodeError], None] | None = None) -> Iterator[object]:
    """Each record of a file, parsed; what cannot be parsed comes back as raw bytes.

    Gzip that is corrupt or inflates beyond `limits` comes back whole, told to `on_error`.
    """
    if payload[:2] == GZIP_MAGIC:
        inflated = gunzip(payload, limits.max_decompressed_bytes)
        if isinstance(inflated, DecodeError):
            if on_error is not None:
                on_error(inflated)
            yield payload
            return
        payload = inflated
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        for line in payload.split(b"\n"):
            if not line.strip():
                continue
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError:
                yield line
        return
    if isinstance(value, dict) and isinstance(value.get("Records"), list):
        yield from value["Records"]
    elif isinstance(value, list):
        yield from value
    else:
        yield value


def _field(item: object, dotted: str) -> object:
    """A dotted field of a record (looking inside an EventBridge envelope too)."""
    if isinstance(item, dict) and item.get("detail-type") == EVENTBRIDGE_DETAIL_TYPE:
        item = item.get("detail")
    for part in dotted.split("."):
        if not isinstance(item, dict):
            return None
        item = item.get(part)
    return item


def _progress(inputs: list[str], disabled: bool) -> Iterable[str]:
    if disabled or len(inputs) < 2 or not sys.stderr.isatty():
        return inputs
    from tqdm import tqdm

    return iter(tqdm(inputs, unit="file", file=sys.stderr))
