"""The worker's HTTP pages on Faust's web server: /metrics, /healthz, /readyz, /status.

Faust's own table, router and graph pages stay off: tables hold principals and IPs.
"""

from __future__ import annotations

from typing import Any

import faust
from faust import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from detector.stream.status import WorkerStatus

FAUST_METRICS_PREFIX = "faust"


def install_pages(app: faust.App, status: WorkerStatus, registry: CollectorRegistry,
                  *, faust_metrics: bool) -> None:
    """Add the pages to `app`; with `faust_metrics`, Faust's sensors join our registry."""
    if faust_metrics:
        from faust.sensors.prometheus import setup_prometheus_sensors

        setup_prometheus_sensors(app, registry=registry, name_prefix=FAUST_METRICS_PREFIX)
    else:
        async def metrics(self: web.View, request: web.Request) -> web.Response:
            response: web.Response = self.bytes(generate_latest(registry),
                                                headers={"Content-Type": CONTENT_TYPE_LATEST})
            return response

        app.page("/metrics")(metrics)

    async def healthz(self: web.View, request: web.Request) -> web.Response:
        alive, reason = status.liveness()
        return _json(self, {"alive": alive, "reason": reason}, 200 if alive else 503)

    async def readyz(self: web.View, request: web.Request) -> web.Response:
        ready, reason = status.readiness()
        return _json(self, {"ready": ready, "reason": reason}, 200 if ready else 503)

    async def status_page(self: web.View, request: web.Request) -> web.Response:
        return _json(self, status.snapshot(), 200)

    app.page("/healthz")(healthz)
    app.page("/readyz")(readyz)
    app.page("/status")(status_page)


def _json(view: web.View, body: dict[str, Any], code: int) -> web.Response:
    response: web.Response = view.json(body, status=code)
    return response
