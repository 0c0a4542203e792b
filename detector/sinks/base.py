"""The delivery machinery every sink shares: a bounded queue, one consumer task, retries.

`Sink.submit` only puts the alert on the sink's own `asyncio.Queue` and returns at once; a
full queue drops the alert (counted in `detector_sink_dropped_total`). Each sink's consumer
task takes alerts off its queue and delivers them, so a dead or slow receiver only fills its
own queue and never stalls detection or the other sinks. `HttpSink` adds the HTTP attempt
loop: a per-request timeout, exponential backoff with full jitter, `Retry-After` on 429/503,
and no retry for 4xx answers other than 408/429 (the request itself is wrong; repeating it
cannot help). Each delivery of a batch, its retries included, is timed
(`detector_sink_delivery_seconds`), and each failed attempt counted
(`detector_sink_failures_total`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import ssl
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType

import aiohttp
from yarl import URL

from detector import __version__
from detector.alerts import Alert
from detector.metrics import Metrics
from detector.ocsf import PRODUCT_NAME
from detector.settings.types import Secret
from detector.sinks.routing import Route
from detector.sinks.secret import redact_url

log = logging.getLogger("detector.sinks")

USER_AGENT = f"{PRODUCT_NAME}/{__version__}"
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
_DROP_LOG_INTERVAL = 10.0
_RETRY_AFTER_STATUSES = frozenset({429, 503})
_RETRYABLE_CLIENT_STATUSES = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard a sink tries: attempts, backoff bounds, per-request timeout (all seconds)."""

    base_delay: float = 0.5
    max_delay: float = 30.0
    max_attempts: int = 5
    timeout: float = 10.0
    max_retry_after: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        for name in ("base_delay", "max_delay", "timeout", "max_retry_after"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Wait before the next attempt after `attempt` failed.

        A receiver's Retry-After wins (bounded by `max_retry_after`, so a broken header cannot
        park the sink for hours); otherwise full jitter, uniform in [0, min(cap, base * 2^n)),
        which spreads the retries of many workers instead of synchronising them.
        """
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        return rng.uniform(0.0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


@dataclass(frozen=True, kw_only=True)
class SinkConfig:
    """What every sink has: a metric-label-safe name, a route, a retry policy, a queue bound.

    Secrets in subclasses are `Secret` fields, so the generated repr shows `***`.
    """

    name: str
    route: Route = field(default_factory=Route)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    queue_size: int = 1000

    def __post_init__(self) -> None:
        if not NAME_PATTERN.fullmatch(self.name):
            raise ValueError(
                f"sink name {self.name!r} must be 1-63 characters of a-z, 0-9, '_', '.', '-'"
            )
        if self.queue_size < 1:
            raise ValueError(f"sink {self.name}: queue_size must be at least 1")

    def secret_values(self) -> list[str]:
        """The revealed secrets of this config, for scrubbing them out of log messages."""
        values = (getattr(self, spec.name) for spec in fields(self))
        return [value.reveal() for value in values if isinstance(value, Secret) and value.reveal()]


class Sink(ABC):
    """A queue plus a consumer task; subclasses say how one batch of alerts is delivered."""

    max_batch = 1

    def __init__(self, config: SinkConfig, metrics: Metrics) -> None:
        self.config = config
        self.name = config.name
        self._metrics = metrics
        self._queue: asyncio.Queue[Alert] = asyncio.Queue(maxsize=config.queue_size)
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._in_flight = 0
        self._unlogged_drops = 0
        self._last_drop_log: float | None = None
        self._secrets = sorted(filter(None, self._secret_forms(config)), key=len, reverse=True)
        for family in (metrics.sink_sent, metrics.sink_failures, metrics.sink_dropped,
                       metrics.sink_delivery_seconds):
            family.labels(self.name)
        metrics.sink_queue.labels(self.name).set(0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    def submit(self, alert: Alert) -> bool:
        """Queue the alert if the route accepts it; never blocks, never raises.

        Returns True when queued. A full queue or a closed sink drops the alert and counts it.
        """
        if not self.config.route.accepts(alert):
            return False
        if self._closed:
            self._drop(1, "sink is closed")
            return False
        try:
            self._queue.put_nowait(alert)
        except asyncio.QueueFull:
            self._drop(1, f"queue full ({self._queue.maxsize} alerts)")
            return False
        self._metrics.sink_queue.labels(self.name).set(self._queue.qsize())
        return True

    async def start(self) -> None:
        """Start the consumer task (idempotent; a closed sink stays closed)."""
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._consume(), name=f"sink-{self.name}")

    async def close(self, timeout: float = 5.0) -> None:
        """Stop accepting alerts, give the queue `timeout` seconds to drain, then stop.

        Whatever is still queued or in flight after that is counted as dropped.
        """
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout)
            lost = self._queue.qsize() + self._in_flight
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        else:
            lost = self._queue.qsize()
        if lost:
            self._drop(lost, "sink closed before delivery", force_log=True)
        self._metrics.sink_queue.labels(self.name).set(0)

    @abstractmethod
    async def _deliver(self, batch: list[Alert]) -> bool:
        """Deliver one batch, retrying as the sink sees fit; True when delivered."""

    async def _consume(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._in_flight = len(batch)
            self._metrics.sink_queue.labels(self.name).set(self._queue.qsize())
            started = time.monotonic()
            try:
                delivered = await self._deliver(batch)
            except Exception as exc:  # a sink bug must not kill its consumer
                log.error("sink %s: delivery raised %s", self.name, self._describe(exc))
                self._metrics.sink_failures.labels(self.name).inc()
                delivered = False
            finally:
                self._in_flight = 0
                for _ in batch:
                    self._queue.task_done()
            # Not reached when close() cancels a delivery: it neither succeeded nor failed.
            self._metrics.sink_delivery_seconds.labels(self.name).observe(
                time.monotonic() - started
            )
            if delivered:
                self._metrics.sink_sent.labels(self.name).inc(len(batch))
            else:
                self._metrics.sink_dropped.labels(self.name).inc(len(batch))

    def _drop(self, count: int, reason: str, *, force_log: bool = False) -> None:
        """Count dropped alerts and warn, at most once per interval so a dead sink cannot
        flood the log."""
        self._metrics.sink_dropped.labels(self.name).inc(count)
        self._unlogged_drops += count
        now = time.monotonic()
        last = self._last_drop_log
        if force_log or last is None or now - last >= _DROP_LOG_INTERVAL:
            log.warning(
                "sink %s: dropped %d alert(s): %s", self.name, self._unlogged_drops, reason
            )
            self._unlogged_drops = 0
            self._last_drop_log = now

    @staticmethod
    def _secret_forms(config: SinkConfig) -> set[str]:
        """Each secret as written and, for URLs, as aiohttp quotes them in its errors."""
        forms = set()
        for value in config.secret_values():
            forms.add(value)
            with contextlib.suppress(ValueError, TypeError):
                forms.add(str(URL(value)))
        return forms

    def _describe(self, exc: BaseException) -> str:
        return self._scrub(f"{type(exc).__name__}: {exc}")

    def _scrub(self, text: str) -> str:
        """Remove every secret of this sink from a message (exception texts quote URLs)."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


@dataclass(frozen=True, kw_only=True)
class HttpSinkConfig(SinkConfig):
    """An HTTP receiver. `token` goes into `auth_header`: `Authorization: Bearer <token>`
    (or the token as is when it already names a scheme, e.g. `Basic ...`), or the bare token
    in any other named header.

    `proxy` (a URL, credentials allowed) carries every request; without it the standard
    HTTPS_PROXY, HTTP_PROXY and NO_PROXY variables apply. `ca_file` (PEM) replaces the system
    CAs for verifying the receiver, for receivers whose certificates a private CA signed.
    """

    url: Secret
    token: Secret | None = None
    auth_header: str = "Authorization"
    proxy: Secret | None = None
    ca_file: str | None = None


def tls_context(ca_file: str | None) -> ssl.SSLContext | bool:
    """How receivers' certificates are verified: against `ca_file` alone when it is set,
    against the system CAs otherwise (True is aiohttp's default verification). Raises OSError
    (ssl.SSLError for a file that holds no PEM certificate)."""
    if ca_file is None:
        return True
    return ssl.create_default_context(cafile=ca_file)


@dataclass(frozen=True, slots=True)
class Attempt:
    """The outcome of one HTTP request."""

    delivered: bool
    retryable: bool
    reason: str
    retry_after: float | None = None


class HttpSink(Sink):
    """A sink that POSTs each batch to an HTTP endpoint, with retries."""

    config: HttpSinkConfig

    def __init__(self, config: HttpSinkConfig, metrics: Metrics) -> None:
        super().__init__(config, metrics)
        self._session: aiohttp.ClientSession | None = None
        self._rng = random.Random()

    @property
    def target(self) -> str:
        """The URL the requests go to (secret: never log it, log `redact_url(target)`)."""
        return self.config.url.reveal()

    @abstractmethod
    def _body(self, batch: list[Alert]) -> bytes:
        """The request body for a batch."""

    def _headers(self, batch: list[Alert], body: bytes) -> dict[str, str]:
        """Headers for one attempt (built per attempt so signatures carry a fresh timestamp)."""
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if self.config.token is not None:
            token = self.config.token.reveal()
            if self.config.auth_header.lower() == "authorization" and " " not in token:
                token = f"Bearer {token}"
            headers[self.config.auth_header] = token
        return headers

    async def start(self) -> None:
        """Open the HTTP session (it needs the running loop), then start consuming."""
        if self._session is None and not self._closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=tls_context(self.config.ca_file)),
                trust_env=True,
            )
        await super().start()

    async def close(self, timeout: float = 5.0) -> None:
        await super().close(timeout)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _deliver(self, batch: list[Alert]) -> bool:
        policy = self.config.retry
        body = self._body(batch)
        for attempt in range(1, policy.max_attempts + 1):
            outcome = await self._attempt(batch, body)
            if outcome.delivered:
                return True
            self._metrics.sink_failures.labels(self.name).inc()
            if not outcome.retryable or attempt == policy.max_attempts:
                log.warning(
                    "sink %s (%s): dropping %s after %d attempt(s): %s",
                    self.name,
                    redact_url(self.target),
                    _describe_batch(batch),
                    attempt,
                    outcome.reason,
                )
                return False
            delay = policy.delay(attempt, outcome.retry_after, self._rng)
            log.warning(
                "sink %s (%s): attempt %d/%d for %s failed: %s; retrying in %.2fs",
                self.name,
                redact_url(self.target),
                attempt,
                policy.max_attempts,
                _describe_batch(batch),
                outcome.reason,
                delay,
            )
            await asyncio.sleep(delay)
        return False

    async def _attempt(self, batch: list[Alert], body: bytes) -> Attempt:
        assert self._session is not None, "start() the sink before delivering"
        timeout = self.config.retry.timeout
        try:
            async with self._session.post(
                self.target,
                data=body,
                headers=self._headers(batch, body),
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout),
                proxy=self.config.proxy.reveal() if self.config.proxy else None,
            ) as response:
                await response.read()
                return classify(response.status, response.headers)
        except TimeoutError:
            return Attempt(False, True, f"no response within {timeout:g}s")
        except aiohttp.ClientError as exc:
            return Attempt(False, True, self._describe(exc))


def classify(status: int, headers: Mapping[str, str]) -> Attempt:
    """Success, retry (408, 429, 5xx; Retry-After read on 429/503) or give up (other codes)."""
    if 200 <= status < 300:
        return Attempt(True, False, f"HTTP {status}")
    retry_after = (
        parse_retry_after(headers.get("Retry-After")) if status in _RETRY_AFTER_STATUSES else None
    )
    retryable = status >= 500 or status in _RETRYABLE_CLIENT_STATUSES
    return Attempt(False, retryable, f"HTTP {status}", retry_after)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _describe_batch(batch: list[Alert]) -> str:
    if len(batch) == 1:
        return f"alert {batch[0].id} (rule {batch[0].rule_id})"
    return f"{len(batch)} alerts ({batch[0].id}, ...)"


class SinkSet:
    """All configured sinks behind one non-blocking `submit`; what the stream worker holds."""

    def __init__(self, sinks: Iterable[Sink] = ()) -> None:
        self._sinks = list(sinks)
        names = [sink.name for sink in self._sinks]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"duplicate sink names: {', '.join(duplicates)}")

    def __iter__(self) -> Iterator[Sink]:
        return iter(self._sinks)

    def __len__(self) -> int:
        return len(self._sinks)

    def __repr__(self) -> str:
        return f"SinkSet({self._sinks!r})"

    @property
    def names(self) -> list[str]:
        return [sink.name for sink in self._sinks]

    def submit(self, alert: Alert) -> int:
        """Offer the alert to every sink; returns how many queued it. Never blocks."""
        return sum(sink.submit(alert) for sink in self._sinks)

    async def start(self) -> None:
        for sink in self._sinks:
            await sink.start()

    async def close(self, timeout: float = 5.0) -> None:
        """Drain all sinks concurrently, each for at most `timeout` seconds."""
        await asyncio.gather(*(sink.close(timeout) for sink in self._sinks))

    async def __aenter__(self) -> SinkSet:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
