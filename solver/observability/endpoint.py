"""GET /metrics: the Prometheus text exposition of the whole system (one scrape target).

The API process's request histograms (solver.observability.http) followed by the system-wide
families read from Postgres and Redis on each scrape (solver.observability.collect). With
`observability.metrics_token` set, the scrape must send `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hmac
from typing import Any

from litestar import Request, Response, get

from solver.core.errors import ErrorCode, SolverError
from solver.observability.collect import SystemMetrics, families_text
from solver.observability.http import HttpMetrics


class MetricsEndpoint:
    def __init__(self, http: HttpMetrics, system: SystemMetrics, *, token: str | None = None) -> None:
        self.http = http
        self.system = system
        self._token = token

    def allowed(self, authorization: str | None) -> bool:
        if not self._token:
            return True
        expected = f"Bearer {self._token}"
        return authorization is not None and hmac.compare_digest(authorization.encode(), expected.encode())

    async def render(self) -> bytes:
        families = await self.system.collect()
        return self.http.exposition() + families_text(families)


@get("/metrics", summary="Prometheus metrics", tags=["meta"], include_in_schema=False)
async def metrics(request: Request[Any, Any, Any], metrics_endpoint: MetricsEndpoint) -> Response[bytes]:
    if not metrics_endpoint.allowed(request.headers.get("authorization")):
        raise SolverError(ErrorCode.UNAUTHORIZED, "A metrics token is required.")
    # The classic text format every Prometheus understands (Litestar appends the charset).
    return Response(await metrics_endpoint.render(), media_type="text/plain; version=0.0.4")


def routes() -> list[Any]:
    return [metrics]
