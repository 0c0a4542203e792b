"""A real HTTP server on loopback that records what it receives and answers from a script.

Sink tests and the Alertmanager integration test use it as the other end of the wire.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass(frozen=True)
class Reply:
    """What the receiver answers to one request, after `delay` seconds."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    body: bytes = b"ok"


@dataclass(frozen=True)
class Received:
    path: str
    url: str  # absolute; a request sent to a proxy names its real target here and in Host
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return orjson.loads(self.body)


class Receiver:
    """Answers requests with the scripted replies in order, then with `default`."""

    def __init__(
        self,
        replies: Iterable[Reply] = (),
        default: Reply | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.tls = tls
        self.replies = list(replies)
        self.default = default or Reply()
        self.requests: list[Received] = []
        self._arrived = asyncio.Condition()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._server = TestServer(app, host="127.0.0.1")

    async def start(self) -> Receiver:
        # No access log: it would print request paths, and the tests read the captured log.
        await self._server.start_server(access_log=None, ssl=self.tls)
        return self

    async def close(self) -> None:
        await self._server.close()

    def url(self, path: str = "/") -> str:
        return str(self._server.make_url(path))

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        """Wait until `count` requests have arrived; fail the test after `timeout`."""
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: len(self.requests) >= count), timeout
            )
        return self.requests

    async def _handle(self, request: web.Request) -> web.Response:
        received = Received(
            path=request.path_qs,
            url=str(request.url),
            headers=dict(request.headers),
            body=await request.read(),
            at=time.monotonic(),
        )
        async with self._arrived:
            self.requests.append(received)
            self._arrived.notify_all()
        reply = self.replies.pop(0) if self.replies else self.default
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return web.Response(status=reply.status, headers=reply.headers, body=reply.body)
