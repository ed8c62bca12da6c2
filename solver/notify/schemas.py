"""The notification object of http-api.md §6 (position-state history and WebSocket pushes)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from solver.core.units import fmt, round_to_wei
from solver.db.models import Notification
from solver.web.fields import NonNegativeDecimal

_INT64_MAX = 2**63 - 1


def _money(value: Decimal | None) -> str | None:
    return None if value is None else fmt(round_to_wei(value))


class NotificationOut(BaseModel):
    id: str
    # Never null: the on-chain id once known, else the temp id (an InstantRFQ has only that).
    quote_id: int
    temp_quote_id: int | None
    create_time: int  # unix seconds
    modify_time: int
    counterparty_address: str
    filled_amount_open: str | None
    filled_amount_close: str | None
    avg_price_open: str | None
    avg_price_close: str | None
    last_seen_action: str
    action_status: str  # seen | success | failed
    state_type: str  # alert | report
    failure_type: str | None
    failure_message: str | None
    error_code: int | None
    order_type: int
    version: int

    @classmethod
    def of(cls, n: Notification) -> NotificationOut:
        quote_id = n.quote_id if n.quote_id is not None else n.temp_quote_id
        return cls(
            id=n.id,
            quote_id=quote_id if quote_id is not None else 0,
            temp_quote_id=n.temp_quote_id,
            create_time=int(n.create_time.timestamp()),
            modify_time=int(n.modify_time.timestamp()),
            counterparty_address=n.counterparty_address,
            filled_amount_open=_money(n.filled_amount_open),
            filled_amount_close=_money(n.filled_amount_close),
            avg_price_open=_money(n.avg_price_open),
            avg_price_close=_money(n.avg_price_close),
            last_seen_action=n.last_seen_action,
            action_status=n.action_status.value,
            state_type=n.state_type.value,
            failure_type=n.failure_type,
            failure_message=n.failure_message,
            error_code=n.error_code,
            order_type=n.order_type,
            version=n.version,
        )


class PositionStateBody(BaseModel):
    """POST /position-state/{start}/{size}. Times are unix seconds (milliseconds are detected)."""

    model_config = ConfigDict(extra="ignore")

    address: str = Field(max_length=64)
    quote_id: int | None = Field(default=None, ge=-_INT64_MAX, le=_INT64_MAX)
    create_time_gte: NonNegativeDecimal | None = None
    modify_time_gte: NonNegativeDecimal | None = None


class PositionStateOut(BaseModel):
    count: int
    position_state: list[NotificationOut]
