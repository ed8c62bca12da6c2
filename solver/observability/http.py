"""Request latency of the API, by route *template* (never the raw path), method and status class.

`HttpMetrics.measure(scope, receive, send, app)` wraps the whole ASGI app (SolverApp.__call__),
outside routing, rate limiting and exception handling, so 404s, 405s, 429s and 500s are counted
too; the route label is Litestar's `scope["path_template"]` (`/instant_open/{account}`), or
`unmatched` when no route matched (so a scanner cannot create a series per path). WebSockets are
not timed (their "latency" is the connection's lifetime).

Histograms live in the process that served the request. With `solver api --workers N` each
scrape reaches one worker process and shows only its share, unless PROMETHEUS_MULTIPROC_DIR is
set (to an empty directory, before the API starts, wiped at each start): then prometheus_client
keeps the values in files there and GET /metrics sums every worker's. The system-wide families
(solver.observability.collect) are read from Postgres and Redis and are whole in any case.
"""

from __future__ import annotations

import os
import time
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Gauge, Histogram, disable_created_metrics, generate_latest

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"})


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


class HttpMetrics:
    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` series (process-wide)
        self.registry = CollectorRegistry()
        self.duration = Histogram(
            "solver_http_request_duration_seconds",
            "API request latency by route template, method and status class (per API process unless "
            "PROMETHEUS_MULTIPROC_DIR is set)",
            ["route", "method", "status"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "solver_http_requests_in_flight",
            "API requests being served",
            registry=self.registry,
            multiprocess_mode="livesum",
        )

    async def measure(self, scope: Scope, receive: Receive, send: Send, app: ASGIApp) -> None:
        status = 500  # nothing sent: the app failed (or the client went away) before a response
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.in_flight.inc()
        try:
            await app(scope, receive, send_wrapper)
        finally:
            self.in_flight.dec()
            self.duration.labels(route_label(scope), method_label(scope), f"{status // 100}xx").observe(
                time.perf_counter() - started
            )

    def exposition(self) -> bytes:
        """This process's request metrics, or every API process's in multiprocess mode."""
        if multiprocess_mode():
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)


def route_label(scope: Any) -> str:
    template = scope.get("path_template")
    return str(template) if template else "unmatched"


def method_label(scope: Any) -> str:
    method = str(scope.get("method", "")).upper()
    return method if method in METHODS else "OTHER"
