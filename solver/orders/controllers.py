"""Stop loss / take profit routes (http-api.md §4). Thin: parsing and answers.

Every route needs the Bearer token and acts on its account only. Paths are served with a dash
(the spec, documented) and with an underscore (the seed's bots post to `/stop_loss`; the same
handlers, left out of the OpenAPI schema, whose operation ids must be unique).
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from solver.auth.jwt import Principal
from solver.orders.schemas import StopLossBody, StopLossCancelOut, StopLossOut, TriggerOrderItem
from solver.orders.service import TriggerOrderService
from solver.web.body import exact_body

_TAGS = ["stop loss / take profit"]
Triggers = NamedDependency[TriggerOrderService]
Token = NamedDependency[Principal]
Kind = Annotated[str | None, QueryParameter(name="kind", description="Cancel only this one: stop_loss or take_profit")]

_SET: dict[str, Any] = {
    "status_code": 200,
    "summary": "Set a stop loss and/or take profit on a position (replaces the active one of the same kind)",
    "description": '`tpPrice` / `slPrice` = `""` for none; `timestamp` in milliseconds. The quote must be '
    "this account's permanent quote id, pending, locked or opened with this solver. Also at `/stop_loss`.",
    "tags": _TAGS,
}
_LIST: dict[str, Any] = {
    "summary": "The account's stop losses and take profits with their states, newest first",
    "tags": _TAGS,
}
_CANCEL: dict[str, Any] = {
    "status_code": 200,
    "summary": "Cancel the active stop loss and take profit of a position (or only `kind`)",
    "tags": _TAGS,
}


async def _set(request: Request[Any, Any, Any], principal: Principal, service: TriggerOrderService) -> StopLossOut:
    body = await exact_body(request, StopLossBody)  # `data` only documents and pre-validates
    message, rows = await service.place(principal, body)
    return StopLossOut(
        successful=True, message=message, quote_id=body.quoteId, orders=[TriggerOrderItem.of(r) for r in rows]
    )


async def _list(account: str, principal: Principal, service: TriggerOrderService) -> list[TriggerOrderItem]:
    return [TriggerOrderItem.of(r) for r in await service.of_account(principal, account)]


async def _cancel(
    quote_id: str, principal: Principal, service: TriggerOrderService, kind: str | None
) -> StopLossCancelOut:
    message, rows = await service.cancel(principal, quote_id, kind)
    return StopLossCancelOut(successful=True, message=message, cancelled=[TriggerOrderItem.of(r) for r in rows])


@post("/stop-loss", **_SET)
async def set_stop_loss(
    data: JSONBody[StopLossBody], request: Request[Any, Any, Any], principal: Token, trigger_orders: Triggers
) -> StopLossOut:
    return await _set(request, principal, trigger_orders)


@post("/stop_loss", include_in_schema=False, **_SET)
async def set_stop_loss_underscore(
    data: JSONBody[StopLossBody], request: Request[Any, Any, Any], principal: Token, trigger_orders: Triggers
) -> StopLossOut:
    return await _set(request, principal, trigger_orders)


@get("/stop-loss/{account:str}", **_LIST)
async def list_stop_losses(
    account: FromPath[str], principal: Token, trigger_orders: Triggers
) -> list[TriggerOrderItem]:
    return await _list(account, principal, trigger_orders)


@get("/stop_loss/{account:str}", include_in_schema=False, **_LIST)
async def list_stop_losses_underscore(
    account: FromPath[str], principal: Token, trigger_orders: Triggers
) -> list[TriggerOrderItem]:
    return await _list(account, principal, trigger_orders)


@delete("/stop-loss/{quote_id:str}", **_CANCEL)
async def cancel_stop_loss(
    quote_id: FromPath[str], principal: Token, trigger_orders: Triggers, kind: Kind = None
) -> StopLossCancelOut:
    return await _cancel(quote_id, principal, trigger_orders, kind)


@delete("/stop_loss/{quote_id:str}", include_in_schema=False, **_CANCEL)
async def cancel_stop_loss_underscore(
    quote_id: FromPath[str], principal: Token, trigger_orders: Triggers, kind: Kind = None
) -> StopLossCancelOut:
    return await _cancel(quote_id, principal, trigger_orders, kind)


def trigger_routes() -> list[Any]:
    return [
        set_stop_loss,
        set_stop_loss_underscore,
        list_stop_losses,
        list_stop_losses_underscore,
        cancel_stop_loss,
        cancel_stop_loss_underscore,
    ]
