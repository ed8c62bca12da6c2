"""OpenAPI: the error body on every operation, and the Bearer token on authenticated ones.

Left alone, Litestar documents a 400 with its own `{status_code, detail, extra}` body and no other
error status, while every rejection really is the http-api.md error body
(solver.web.errors). `document_errors` states the truth on each route handler before the app is
built: the statuses an operation can answer with, each with the error body and the codes behind
it, and `security` on the routes that take the `principal` dependency (a Bearer token).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Components, SecurityScheme
from pydantic import BaseModel

from solver.core.errors import ErrorCode

BEARER = "BearerToken"
COMPONENTS = Components(
    security_schemes={
        BEARER: SecurityScheme(
            type="http",
            scheme="bearer",
            bearer_format="JWT",
            description="The access_token of POST /login (SIWE), issued for one sub-account",
        )
    }
)

_ALWAYS = (400, 404, 429, 500, 503)  # bad input, unknown thing, rate limit, our fault, a store down


class ErrorBody(BaseModel):
    """Every rejection (http-api.md): `error_message` is a sentence for the trader."""

    error_code: int
    error_message: str
    error_detail: list[str] | None


def _statuses(handler: HTTPRouteHandler, authenticated: bool) -> list[int]:
    methods = {m.upper() for m in handler.http_methods}
    out = set(_ALWAYS)
    if authenticated or "POST" in methods:
        out |= {401, 403}  # token refused or another account's; login refused; not delegated
    if methods & {"POST", "DELETE"}:
        out.add(409)  # idempotency key reused, too late to cancel
    if "POST" in methods:
        out.add(413)  # body over api.max_body_bytes
    return sorted(out)


def _spec(status: int) -> ResponseSpec:
    codes = [c for c in ErrorCode if c.status == status]
    return ResponseSpec(
        data_container=ErrorBody,
        generate_examples=False,
        description="The error body; error_code one of: " + ", ".join(f"{c.code} {c.name}" for c in codes),
    )


def document_errors(handlers: Iterable[Any]) -> None:
    """Set the error responses (and Bearer security) of every HTTP route handler, in place."""
    for handler in handlers:
        if not isinstance(handler, HTTPRouteHandler):
            continue
        authenticated = "principal" in inspect.signature(handler.fn).parameters
        errors: dict[int, ResponseSpec] = {s: _spec(s) for s in _statuses(handler, authenticated)}
        handler.responses = {**errors, **(handler.responses or {})}
        if authenticated and not handler.security:
            handler.security = [{BEARER: []}]
