"""Request and response bodies of the instant trading routes (http-api.md §3).

Numbers arrive as JSON strings or numbers (controllers read them exactly with
solver.web.body.exact_body). Money and prices go out as decimal strings, ids and times as numbers.

Our internal status `cancel_requested` is shown as `sent` (the spec's statuses are pending,
sent, opened/filled, failed, cancelled): the request is still on its way on chain.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from solver.core.units import fmt, round_to_wei
from solver.db.models import InstantClose, InstantOpen
from solver.web.fields import NonNegativeDecimal, WholeNumber

_INT64_MAX = 2**63 - 1


def money(value: Decimal) -> str:
    return fmt(round_to_wei(value))


def public_status(status: str) -> str:
    """The status a client sees: `cancel_requested` is still `sent` (on its way on chain)."""
    return "sent" if status == "cancel_requested" else status


# --- instant open --------------------------------------------------------------------------


class InstantOpenBody(BaseModel):
    """POST /instant_open, camelCase as frontends and bots send it. Amounts in human units."""

    model_config = ConfigDict(extra="ignore")

    symbolId: WholeNumber = Field(ge=-_INT64_MAX, le=_INT64_MAX)
    positionType: WholeNumber = Field(ge=-128, le=127, description="0 LONG, 1 SHORT")
    orderType: WholeNumber = Field(default=1, ge=-128, le=127, description="1 MARKET, 0 LIMIT")
    price: NonNegativeDecimal
    quantity: NonNegativeDecimal
    cva: NonNegativeDecimal
    lf: NonNegativeDecimal
    partyAmm: NonNegativeDecimal
    partyBmm: NonNegativeDecimal | None = Field(default=None, description="Ignored: the solver sets its own")
    maxFundingRate: NonNegativeDecimal | None = Field(default=None, description="Default: the market's maximum")
    deadline: WholeNumber = Field(ge=0, le=_INT64_MAX, description="unix seconds")


class InstantOpenOut(BaseModel):
    temp_quote_id: int
    quote_id: int  # repeats the temp id: older bots read only this key
    symbol_id: int
    position_type: int
    order_type: int
    requested_open_price: str
    quantity: str
    party_a_address: str
    cva: str
    lf: str
    partyAmm: str  # wire name
    partyBmm: str  # wire name

    @classmethod
    def of(cls, row: InstantOpen) -> InstantOpenOut:
        return cls(
            temp_quote_id=row.temp_quote_id,
            quote_id=row.temp_quote_id,
            symbol_id=row.symbol_id,
            position_type=row.position_type,
            order_type=row.order_type,
            requested_open_price=money(row.requested_open_price),
            quantity=money(row.quantity),
            party_a_address=row.account,
            cva=money(row.cva),
            lf=money(row.lf),
            partyAmm=money(row.party_amm),
            partyBmm=money(row.party_bmm),
        )


class InstantOpenItem(BaseModel):
    """One entry of GET /instant_open/{account}."""

    id: int
    temp_quote_id: int
    quote_id: int  # the on-chain id once known, else the temp id
    status: str
    position_type: int
    order_type: int
    symbol_id: int
    requested_open_price: str
    quantity: str
    party_a_address: str
    cva: str
    lf: str
    partyAmm: str  # wire name
    partyBmm: str  # wire name
    create_time: int  # unix seconds
    modify_time: int
    version: int
    error_code: int | None
    error_message: str | None

    @classmethod
    def of(cls, row: InstantOpen) -> InstantOpenItem:
        assert row.id is not None
        return cls(
            id=row.id,
            temp_quote_id=row.temp_quote_id,
            quote_id=row.quote_id if row.quote_id is not None else row.temp_quote_id,
            status=public_status(row.status.value),
            position_type=row.position_type,
            order_type=row.order_type,
            symbol_id=row.symbol_id,
            requested_open_price=money(row.requested_open_price),
            quantity=money(row.quantity),
            party_a_address=row.account,
            cva=money(row.cva),
            lf=money(row.lf),
            partyAmm=money(row.party_amm),
            partyBmm=money(row.party_bmm),
            create_time=int(row.create_time.timestamp()),
            modify_time=int(row.modify_time.timestamp()),
            version=row.version,
            error_code=row.error_code,
            error_message=row.error_message,
        )


class QuoteIdOut(BaseModel):
    quote_id: int | None
    status: str


class ActionOut(BaseModel):
    successful: bool
    message: str


# --- instant close -------------------------------------------------------------------------


class InstantCloseBody(BaseModel):
    """POST /instant_close. `order_type` is accepted and ignored: instant closes are MARKET."""

    model_config = ConfigDict(extra="ignore")

    quote_id: WholeNumber = Field(gt=0, le=_INT64_MAX, description="on-chain (positive) quote id")
    quantity_to_close: NonNegativeDecimal
    close_price: NonNegativeDecimal
    deadline: WholeNumber | None = Field(default=None, ge=0, le=_INT64_MAX, description="unix seconds")
    order_type: Any = None


class InstantCloseItem(BaseModel):
    """One entry of GET /instant_close/{account}."""

    quote_id: int
    quantity_to_close: str
    close_price: str
    status: str
    create_time: int  # unix seconds
    modify_time: int

    @classmethod
    def of(cls, row: InstantClose) -> InstantCloseItem:
        return cls(
            quote_id=row.quote_id,
            quantity_to_close=money(row.quantity_to_close),
            close_price=money(row.close_price),
            status=public_status(row.status.value),
            create_time=int(row.create_time.timestamp()),
            modify_time=int(row.modify_time.timestamp()),
        )
