"""Instant trading routes (http-api.md §3). Thin: parsing and answers; rules live in the services.

Authenticated routes act on the token's account only. Lists and the temp-id lookup need no
auth (frontends call them without a token). Path parameters are plain `str`, so a bad value
gets a clear error body from the service instead of a bare framework 404.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, JSONBody

from solver.auth.jwt import Principal
from solver.db.types import checksum_address
from solver.quotes.close_service import InstantCloseService
from solver.quotes.open_service import InstantOpenService
from solver.quotes.schemas import (
    ActionOut,
    InstantCloseBody,
    InstantCloseItem,
    InstantOpenBody,
    InstantOpenItem,
    InstantOpenOut,
    QuoteIdOut,
    public_status,
)
from solver.quotes.service import InstantHistory, idempotency_key
from solver.web.body import exact_body

_TAGS = ["instant trading"]
Opens = NamedDependency[InstantOpenService]
Closes = NamedDependency[InstantCloseService]
History = NamedDependency[InstantHistory]
Token = NamedDependency[Principal]  # the `principal` dependency: 401 without a valid Bearer token
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(name="Idempotency-Key", description="A retry with the same key and body returns the same answer"),
]


@post(
    "/instant_open",
    status_code=200,
    summary="Request an instant open (persisted before the answer; the chain worker sends it)",
    tags=_TAGS,
)
async def instant_open(
    data: JSONBody[InstantOpenBody],
    request: Request[Any, Any, Any],
    principal: Token,
    instant_opens: Opens,
    key: IdempotencyKey = None,
) -> InstantOpenOut:
    body = await exact_body(request, InstantOpenBody)  # `data` only documents and pre-validates
    row = await instant_opens.open(checksum_address(principal.account), body, idempotency_key(key))
    return InstantOpenOut.of(row)


@get(
    "/instant_open/{account:str}",
    summary="An account's pending instant opens and those resolved in the last 5 minutes, newest first",
    description="`cancel_requested` is shown as `sent`: the request is still on its way on chain.",
    tags=_TAGS,
)
async def list_instant_opens(account: FromPath[str], instant_history: History) -> list[InstantOpenItem]:
    return [InstantOpenItem.of(r) for r in await instant_history.opens(account)]


@get("/instant_quote_id/{temp_quote_id:str}", summary="The on-chain quote id of a temp id, once known", tags=_TAGS)
async def instant_quote_id(temp_quote_id: FromPath[str], instant_history: History) -> QuoteIdOut:
    row = await instant_history.by_temp_id(temp_quote_id)
    return QuoteIdOut(quote_id=row.quote_id, status=public_status(row.status.value))


@delete(
    "/instant_open/{temp_quote_id:str}",
    status_code=200,
    summary="Cancel an instant open: dropped before it reaches the chain, requestToCancelQuote after",
    tags=_TAGS,
)
async def cancel_instant_open(temp_quote_id: FromPath[str], principal: Token, instant_opens: Opens) -> ActionOut:
    message = await instant_opens.cancel(checksum_address(principal.account), temp_quote_id)
    return ActionOut(successful=True, message=message)


@post("/instant_close", status_code=200, summary="Request an instant (MARKET) close of an open position", tags=_TAGS)
async def instant_close(
    data: JSONBody[InstantCloseBody],
    request: Request[Any, Any, Any],
    principal: Token,
    instant_closes: Closes,
    key: IdempotencyKey = None,
) -> ActionOut:
    body = await exact_body(request, InstantCloseBody)
    row = await instant_closes.close(checksum_address(principal.account), body, idempotency_key(key))
    return ActionOut(successful=True, message=f"Close request for quote {row.quote_id} accepted.")


@get(
    "/instant_close/{account:str}",
    summary="An account's pending instant closes and those finished in the last 5 minutes, newest first",
    tags=_TAGS,
)
async def list_instant_closes(account: FromPath[str], instant_history: History) -> list[InstantCloseItem]:
    return [InstantCloseItem.of(r) for r in await instant_history.closes(account)]


@delete(
    "/instant_close/{quote_id:str}",
    status_code=200,
    summary="Cancel the close in progress for a position (requestToCancelCloseRequest once on chain)",
    tags=_TAGS,
)
async def cancel_instant_close(quote_id: FromPath[str], principal: Token, instant_closes: Closes) -> ActionOut:
    message = await instant_closes.cancel(checksum_address(principal.account), quote_id)
    return ActionOut(successful=True, message=message)


def instant_routes() -> list[Any]:
    return [
        instant_open,
        list_instant_opens,
        instant_quote_id,
        cancel_instant_open,
        instant_close,
        list_instant_closes,
        cancel_instant_close,
    ]
