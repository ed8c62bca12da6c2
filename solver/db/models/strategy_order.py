"""Strategy orders, LIMIT and DCA (http-api.md §5, trading-rules.md §3), and their sub-orders.

A `strategy_order` holds the order's terms, counters and amounts exactly as the API shows them.
Each attempt to open a slice of it is a `strategy_suborder`: written in the same transaction that
takes its margin out of `current_input_amount` and counts the invocation, then handed to the
instant open flow under a deterministic Idempotency-Key, so a restart between the two re-sends
the same request instead of a second one. The engine settles it from the instant open's outcome.
"""

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, CheckConstraint, DateTime, Index, SmallInteger, String, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from solver.db.models.base import EAGER_DEFAULTS, address_check, created_at, modified_at, version_field
from solver.db.types import Address, EnumText, Id, Money, in_check


class StrategyType(StrEnum):
    LIMIT = "limit"
    DCA = "dca"


class StrategyStatus(StrEnum):
    ACTIVE = "active"
    REQUESTED_CANCELLATION = "requested_cancellation"  # the user cancelled; sub-orders still in flight
    CANCELLED_BY_USER = "cancelled_by_user"
    CANCELLED_BY_SYSTEM = "cancelled_by_system"  # delegation lost, liquidated, symbol gone (status_reason)
    EXECUTED = "executed"  # every sub-order done
    MAX_RETRIES_EXCEEDED = "max_retries_exceeded"  # invocations used up, possibly partly filled


STRATEGY_LIVE = frozenset({StrategyStatus.ACTIVE, StrategyStatus.REQUESTED_CANCELLATION})
STRATEGY_TERMINAL = frozenset(StrategyStatus) - STRATEGY_LIVE
# Keep equal to STRATEGY_LIVE (a unit test checks it).
LIVE_STRATEGY_WHERE = "status IN ('active', 'requested_cancellation')"


class SubOrderStatus(StrEnum):
    SENDING = "sending"  # margin taken, invocation counted; the instant open is being created
    SENT = "sent"  # an instant open exists (instant_open_id): waiting for its outcome
    OPENED = "opened"  # its quote opened: counted in suborders_executed / current_output_amount
    FAILED = "failed"  # refused or failed: its margin went back to current_input_amount


SUBORDER_LIVE = frozenset({SubOrderStatus.SENDING, SubOrderStatus.SENT})


class StrategyOrder(SQLModel, table=True):
    __tablename__ = "strategy_order"
    __mapper_args__ = EAGER_DEFAULTS
    __table_args__ = (
        CheckConstraint(in_check("type", StrategyType), name="type"),
        CheckConstraint(in_check("status", StrategyStatus), name="status"),
        CheckConstraint("position_type IN (0, 1)", name="position_type"),
        CheckConstraint("leverage > 0", name="leverage_positive"),
        CheckConstraint(
            "initial_input_amount > 0 AND current_input_amount >= 0"
            " AND current_input_amount <= initial_input_amount AND current_output_amount >= 0",
            name="amounts",
        ),
        CheckConstraint("slippage > 0 AND slippage <= 1", name="slippage"),
        CheckConstraint(
            "max_suborders BETWEEN 1 AND 255 AND max_invocations BETWEEN max_suborders AND 255"
            " AND suborders_executed BETWEEN 0 AND max_suborders"
            " AND invocations_executed BETWEEN 0 AND max_invocations AND active_transactions >= 0",
            name="counters",
        ),
        CheckConstraint(
            "(type = 'limit' AND limit_price > 0 AND dca_delay_s IS NULL)"
            " OR (type = 'dca' AND limit_price IS NULL AND dca_delay_s > 0)",
            name="settings",
        ),
        CheckConstraint(
            "(band_from IS NULL OR band_from > 0) AND (band_to IS NULL OR band_to > 0)"
            " AND (band_from IS NULL OR band_to IS NULL OR band_from <= band_to)",
            name="band",
        ),
        CheckConstraint(f"(close_time IS NULL) = ({LIVE_STRATEGY_WHERE})", name="close_time_iff_terminal"),
        CheckConstraint("idempotency_key IS NULL OR request_hash IS NOT NULL", name="idempotency_has_hash"),
        CheckConstraint("version >= 1", name="version_positive"),
        address_check("account"),
        UniqueConstraint("account", "idempotency_key"),
        Index("ix_strategy_order_live", "symbol_id", postgresql_where=text(LIVE_STRATEGY_WHERE)),
        Index("ix_strategy_order_account_id", "account", text("id DESC")),
        Index("ix_strategy_order_modify_time", "modify_time"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=Id())
    account: str = Field(sa_type=Address())
    type: StrategyType = Field(sa_type=EnumText(StrategyType, 8))
    symbol_id: int
    position_type: int = Field(sa_type=SmallInteger())
    leverage: Decimal = Field(sa_type=Money())
    initial_input_amount: Decimal = Field(sa_type=Money())
    current_input_amount: Decimal = Field(sa_type=Money())
    current_output_amount: Decimal = Field(default=Decimal(0), sa_type=Money())
    max_suborders: int = Field(sa_type=SmallInteger())
    max_invocations: int = Field(sa_type=SmallInteger())
    suborders_executed: int = Field(default=0, sa_type=SmallInteger())
    invocations_executed: int = Field(default=0, sa_type=SmallInteger())
    active_transactions: int = Field(default=0, sa_type=SmallInteger())
    slippage: Decimal = Field(sa_type=Money())
    # settings: LIMIT {"price"}; DCA {"delay", "price_range_from"?, "price_range_to"?}
    limit_price: Decimal | None = Field(default=None, sa_type=Money())
    dca_delay_s: int | None = None
    band_from: Decimal | None = Field(default=None, sa_type=Money())
    band_to: Decimal | None = Field(default=None, sa_type=Money())
    next_due_time: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # DCA
    status: StrategyStatus = Field(
        default=StrategyStatus.ACTIVE,
        sa_type=EnumText(StrategyStatus, 24),
        sa_column_kwargs={"server_default": StrategyStatus.ACTIVE.value},
    )
    status_reason: str | None = Field(default=None, sa_type=Text())
    # The latest failed sub-order's error, for the user.
    error_code: int | None = None
    error_message: str | None = Field(default=None, sa_type=Text())
    idempotency_key: str | None = Field(default=None, sa_type=String(255))
    request_hash: str | None = Field(default=None, sa_type=String(64))
    version: int = version_field()
    create_time: datetime = created_at()
    modify_time: datetime = modified_at()
    close_time: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class StrategySubOrder(SQLModel, table=True):
    __tablename__ = "strategy_suborder"
    __mapper_args__ = EAGER_DEFAULTS
    __table_args__ = (
        CheckConstraint(in_check("status", SubOrderStatus), name="status"),
        CheckConstraint("invocation BETWEEN 1 AND 255 AND slots BETWEEN 1 AND 255", name="counters"),
        CheckConstraint("margin > 0 AND quantity > 0 AND price > 0 AND mark > 0", name="amounts"),
        CheckConstraint("status = 'sending' OR status = 'failed' OR instant_open_id IS NOT NULL", name="sent_has_open"),
        CheckConstraint("version >= 1", name="version_positive"),
        UniqueConstraint("order_id", "invocation"),
        UniqueConstraint("instant_open_id"),
        Index("ix_strategy_suborder_live", "order_id", postgresql_where=text("status IN ('sending', 'sent')")),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=Id())
    order_id: int = Field(sa_type=Id(), foreign_key="strategy_order.id")
    invocation: int = Field(sa_type=SmallInteger())  # 1-based: the order's n-th attempt
    slots: int = Field(default=1, sa_type=SmallInteger())  # sub-orders it counts for (merged small ones)
    status: SubOrderStatus = Field(
        default=SubOrderStatus.SENDING,
        sa_type=EnumText(SubOrderStatus, 16),
        sa_column_kwargs={"server_default": SubOrderStatus.SENDING.value},
    )
    margin: Decimal = Field(sa_type=Money())  # taken from current_input_amount
    quantity: Decimal = Field(sa_type=Money())
    price: Decimal = Field(sa_type=Money())  # the request price
    mark: Decimal = Field(sa_type=Money())  # the mark that made it eligible
    # The exact POST /instant_open body and key: a restart re-sends the identical request.
    body: dict[str, Any] = Field(sa_type=JSON())
    idempotency_key: str = Field(sa_type=String(255))
    instant_open_id: int | None = Field(default=None, sa_type=Id(), foreign_key="instant_open.id")
    quote_id: int | None = Field(default=None, sa_type=Id())
    error_code: int | None = None
    error_message: str | None = Field(default=None, sa_type=Text())
    version: int = version_field()
    create_time: datetime = created_at()
    modify_time: datetime = modified_at()


__all__ = [
    "LIVE_STRATEGY_WHERE",
    "STRATEGY_LIVE",
    "STRATEGY_TERMINAL",
    "SUBORDER_LIVE",
    "StrategyOrder",
    "StrategyStatus",
    "StrategySubOrder",
    "StrategyType",
    "SubOrderStatus",
]
