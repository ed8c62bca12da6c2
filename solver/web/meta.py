"""Service routes: error catalogue, liveness, readiness."""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from litestar.di import Provide

from solver.core.errors import ErrorCode, SolverError
from solver.web.health import Readiness


@get("/error_codes", summary="Every error code the server can emit", tags=["meta"])
async def error_codes() -> dict[str, str]:
    return {str(c.code): c.message for c in ErrorCode}


@get("/error_codes/{code:str}", summary="One error code", tags=["meta"])
async def error_code(code: str) -> dict[str, str]:
    found = ErrorCode.by_code(int(code)) if code.isdigit() and len(code) < 7 else None
    if found is None:
        raise SolverError(ErrorCode.NOT_FOUND, f"Unknown error code {code!r}.")
    return {str(found.code): found.message}


@get("/health", summary="Liveness", tags=["meta"])
async def health() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", summary="Readiness: database, Redis and chain reachable", tags=["meta"])
async def readyz(readiness: Readiness) -> Response[dict[str, Any]]:
    """`isReady`, each probe in `checks`, the failed ones in `failed`; reports (price freshness)
    beside them, failing readiness only when configured (observability.ready_requires_fresh_prices)."""
    state = await readiness.state()
    return Response(
        content={"isReady": state.ready, "checks": state.checks, "failed": state.failed, **state.reports},
        status_code=200 if state.ready else 503,
    )


def routes() -> list[Any]:
    return [error_codes, error_code, health, readyz]


def provide(value: object) -> Provide:
    """Provide a ready-made object as a dependency."""

    def _get() -> object:
        return value

    return Provide(_get, use_cache=True, sync_to_thread=False)
