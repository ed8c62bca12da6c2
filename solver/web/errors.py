"""The one place where exceptions become the http-api.md error body.

`{"error_code": int, "error_message": str, "error_detail": [str] | null}` for every rejection,
including the framework's own (validation, unknown route, wrong method, oversize body).
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from solver.core.errors import ErrorCode, SolverError

log = logging.getLogger("solver.api")

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


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, (UnicodeDecodeError, RecursionError)):
        # Raised by the JSON decoder on bodies with invalid UTF-8 or absurd nesting: bad input.
        return error_response(ErrorCode.VALIDATION, "The request body is not valid JSON.", [type(exc).__name__])
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
