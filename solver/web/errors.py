"""The one place where exceptions become the http-api.md error body.

`{"error_code": int, "error_message": str, "error_detail": [str] | null}` for every rejection,
including the framework's own (validation, unknown route, wrong method, oversize body).
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import redis.exceptions
import sqlalchemy.exc
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from solver.core.errors import ErrorCode, SolverError

log = logging.getLogger("solver.api")

# A store that cannot be reached right now: the request is answered 503 UNAVAILABLE (retry
# shortly), never 500. Redis refused or dropped the connection or timed out; PostgreSQL refused
# the connection, cut the session (restart, failover, admin shutdown) or the pool had no
# connection to give within its timeout. psycopg's OperationalError also covers serialization
# failures, deadlocks and statement timeouts: all worth a retry, none the client's fault.
_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
_DATABASE_DOWN = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,  # QueuePool: no connection within pool_timeout
    psycopg.OperationalError,
    psycopg.InterfaceError,
)
RETRY_AFTER_S = 1

_STATUS_TO_CODE = {
    400: ErrorCode.VALIDATION,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN_ACCOUNT,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    429: ErrorCode.RATE_LIMITED,
    503: ErrorCode.UNAVAILABLE,
}


def error_response(code: ErrorCode, message: str | None = None, detail: list[str] | None = None) -> Response[Any]:
    err = SolverError(code, message, detail)
    return Response(content=err.body(), status_code=code.status, media_type="application/json")


def _validation_detail(exc: ValidationException) -> list[str]:
    extra = exc.extra
    out: list[str] = []
    if isinstance(extra, list):
        for item in extra:
            if isinstance(item, dict):
                key = item.get("key") or item.get("source") or ""
                msg = item.get("message") or ""
                out.append(f"{key}: {msg}".strip(": "))
            else:
                out.append(str(item))
    elif isinstance(extra, dict):
        out.extend(f"{k}: {v}" for k, v in extra.items())
    return out or [str(exc.detail)]


def solver_error_handler(_: Request[Any, Any, Any], exc: SolverError) -> Response[Any]:
    return Response(content=exc.body(), status_code=exc.code.status, media_type="application/json")


def validation_handler(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    detail = _validation_detail(exc)
    message = "The request is not valid: " + "; ".join(detail)
    return error_response(ErrorCode.VALIDATION, message[:500], detail)


def http_exception_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    code = _STATUS_TO_CODE.get(exc.status_code)
    if code is None:
        code = ErrorCode.VALIDATION if 400 <= exc.status_code < 500 else ErrorCode.INTERNAL
    message = code.message
    if isinstance(exc, NotFoundException) and exc.detail and exc.detail != "Not Found":
        message = str(exc.detail)
    resp = error_response(code, message)
    resp.status_code = exc.status_code
    if exc.headers:
        resp.headers.update(exc.headers)
    return resp


def unavailable_store(exc: BaseException) -> str | None:
    """The store ("redis" or "database") that `exc`, an exception it was raised from (`raise ...
    from`, as SQLAlchemy wraps psycopg) or a member of its exception group says cannot be reached
    now; None for anything else. (Not `__context__`: a bug raised while handling a store error is
    still a bug, a 500 with its traceback.)"""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending and len(seen) < 32:
        e = pending.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, _REDIS_DOWN):
            return "redis"
        if isinstance(e, _DATABASE_DOWN) or (isinstance(e, sqlalchemy.exc.DBAPIError) and e.connection_invalidated):
            return "database"
        if isinstance(e, BaseExceptionGroup):
            pending.extend(e.exceptions)
        if e.__cause__ is not None:
            pending.append(e.__cause__)
    return None


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, (UnicodeDecodeError, RecursionError)):
        # Raised by the JSON decoder on bodies with invalid UTF-8 or absurd nesting: bad input.
        return error_response(ErrorCode.VALIDATION, "The request body is not valid JSON.", [type(exc).__name__])
    store = unavailable_store(exc)
    if store is not None:
        why = repr(exc)[:300]
        log.warning("%s unavailable on %s %s: %s", store, request.method, request.url.path, why, extra={"store": store})
        resp = error_response(ErrorCode.UNAVAILABLE, detail=[f"{store} unavailable"])
        resp.headers["Retry-After"] = str(RETRY_AFTER_S)
        return resp
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    resp = error_response(ErrorCode.INTERNAL)
    resp.status_code = HTTP_500_INTERNAL_SERVER_ERROR
    return resp


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    SolverError: solver_error_handler,
    ValidationException: validation_handler,
    HTTPException: http_exception_handler,
    Exception: internal_error_handler,
}
