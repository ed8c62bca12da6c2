"""Request and response bodies of the stop loss / take profit routes (http-api.md §4).

The request is camelCase as bots send it (the stop-loss seed). `tpPrice` / `slPrice` may be
`""` (or absent, null, 0): no trigger of that kind. Prices arrive as strings or numbers and are
read exactly (solver.web.body.exact_body).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from solver.core.units import fmt, round_to_wei
from solver.db.models import TriggerOrder
from solver.web.fields import Address, NonNegativeDecimal, WholeNumber

_INT64_MAX = 2**63 - 1


def _optional_price(value: Any) -> Any:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    return value


OptionalPrice = Annotated[NonNegativeDecimal | None, BeforeValidator(_optional_price)]


def _money(value: Decimal | None) -> str | None:
    return None if value is None else fmt(round_to_wei(value))


class StopLossBody(BaseModel):
    """POST /stop-loss (and /stop_loss)."""

    model_config = ConfigDict(extra="ignore")

    userAddress: Address = Field(description="The owner wallet that signed the login")
    accountAddress: Address = Field(description="The trading sub-account (partyA)")
    positionSide: WholeNumber = Field(ge=-128, le=127, description="0 LONG, 1 SHORT")
    symbolId: WholeNumber = Field(ge=-_INT64_MAX, le=_INT64_MAX)
    requestedPrice: OptionalPrice = Field(default=None, description="The entry price the client used (stored)")
    quoteId: WholeNumber = Field(ge=-_INT64_MAX, le=_INT64_MAX, description="The permanent (positive) quote id")
    tpPrice: OptionalPrice = Field(default=None, description='Take profit price; "" for none')
    slPrice: OptionalPrice = Field(default=None, description='Stop loss price; "" for none')
    timestamp: WholeNumber = Field(ge=0, le=_INT64_MAX, description="Client time in milliseconds")


class TriggerOrderItem(BaseModel):
    id: int
    quote_id: int
    kind: str  # stop_loss | take_profit
    position_type: int
    symbol_id: int
    trigger_price: str
    requested_price: str | None
    status: str  # waiting | armed | triggered | filled | cancelled | failed
    quantity: str | None  # the whole open quantity, once fired
    close_price: str | None  # the close price of the latest close attempt
    fire_mark: str | None  # the mark that crossed (or that priced the latest retry)
    fire_time: int | None  # unix seconds
    attempts: int
    instant_close_id: int | None
    end_reason: str | None
    error_code: int | None
    error_message: str | None
    create_time: int  # unix seconds
    modify_time: int
    version: int

    @classmethod
    def of(cls, row: TriggerOrder) -> TriggerOrderItem:
        assert row.id is not None
        return cls(
            id=row.id,
            quote_id=row.quote_id,
            kind=row.kind.value,
            position_type=row.position_type,
            symbol_id=row.symbol_id,
            trigger_price=fmt(row.trigger_price),
            requested_price=_money(row.requested_price),
            status=row.status.value,
            quantity=_money(row.quantity),
            close_price=_money(row.close_price),
            fire_mark=_money(row.fire_mark),
            fire_time=None if row.fire_time is None else int(row.fire_time.timestamp()),
            attempts=row.attempts,
            instant_close_id=row.instant_close_id,
            end_reason=row.end_reason,
            error_code=row.error_code,
            error_message=row.error_message,
            create_time=int(row.create_time.timestamp()),
            modify_time=int(row.modify_time.timestamp()),
            version=row.version,
        )


class StopLossOut(BaseModel):
    successful: bool
    message: str
    quote_id: int
    orders: list[TriggerOrderItem]  # the orders this request created


class StopLossCancelOut(BaseModel):
    successful: bool
    message: str
    cancelled: list[TriggerOrderItem]
