"""Strategy order routes (http-api.md §5). Thin: parsing and answers; rules live in the service.

Every route needs the Bearer token and acts on its account only: another account's order is
answered as missing (404), never as forbidden, so ids tell nothing. Query and path parameters are
plain strings, so a bad value gets the strategy error body naming the bound instead of a bare
framework error.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter

from solver.auth.jwt import Principal
from solver.quotes.service import idempotency_key
from solver.strategy.schemas import StrategyOrderBody, StrategyOrderItem
from solver.strategy.service import StrategyOrderService
from solver.strategy.validation import LIST_DEFAULT_SIZE, LIST_MAX_SIZE
from solver.web.body import exact_body

_TAGS = ["strategy orders (LIMIT and DCA)"]
Strategies = NamedDependency[StrategyOrderService]
Token = NamedDependency[Principal]
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(name="Idempotency-Key", description="A retry with the same key and body returns the stored order"),
]
TypeFilter = Annotated[str | None, QueryParameter(name="type", description="limit or dca (default: both)")]
IncludeFinished = Annotated[
    str | None,
    QueryParameter(
        name="include_finished",
        description="true: every order; default false: only active and requested_cancellation ones",
    ),
]
Size = Annotated[
    str | None, QueryParameter(name="size", description=f"1 to {LIST_MAX_SIZE} (default {LIST_DEFAULT_SIZE})")
]
BeforeId = Annotated[
    str | None,
    QueryParameter(name="before_id", description="Cursor: only orders with a smaller id (the last id of a page)"),
]


@post(
    "/strategy-orders",
    status_code=200,
    summary="Create a LIMIT or DCA strategy order (the engine sends its sub-orders)",
    description="Every violation is listed in `error_detail`; `error_message` names the first one's field "
    "and bound. `initial_input_amount` is accepted for `input_amount`.",
    tags=_TAGS,
)
async def create_strategy_order(
    data: JSONBody[StrategyOrderBody],
    request: Request[Any, Any, Any],
    principal: Token,
    strategy_orders: Strategies,
    key: IdempotencyKey = None,
) -> StrategyOrderItem:
    body = await exact_body(request, StrategyOrderBody)  # `data` only documents it
    return await strategy_orders.create(principal, body.raw(), idempotency_key(key))


@get("/strategy-orders/{order_id:str}", summary="One of the account's strategy orders", tags=_TAGS)
async def get_strategy_order(
    order_id: FromPath[str], principal: Token, strategy_orders: Strategies
) -> StrategyOrderItem:
    return await strategy_orders.get(principal, order_id)


@get(
    "/strategy-orders",
    summary="The account's strategy orders, newest first (cursor: before_id)",
    tags=_TAGS,
)
async def list_strategy_orders(
    *,
    principal: Token,
    strategy_orders: Strategies,
    type: TypeFilter = None,
    include_finished: IncludeFinished = None,
    size: Size = None,
    before_id: BeforeId = None,
) -> list[StrategyOrderItem]:
    return await strategy_orders.of_account(
        principal, type=type, include_finished=include_finished, size=size, before_id=before_id
    )


@delete(
    "/strategy-orders/{order_id:str}",
    status_code=200,
    summary="Cancel a strategy order (requested_cancellation while sub-orders are in flight)",
    tags=_TAGS,
)
async def cancel_strategy_order(
    order_id: FromPath[str], principal: Token, strategy_orders: Strategies
) -> StrategyOrderItem:
    return await strategy_orders.cancel(principal, order_id)


def strategy_routes() -> list[Any]:
    return [create_strategy_order, get_strategy_order, list_strategy_orders, cancel_strategy_order]
