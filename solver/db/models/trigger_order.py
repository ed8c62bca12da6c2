"""Stop loss and take profit orders (http-api.md §4, trading-rules.md §4).

One row per trigger: a request with both a TP and an SL stores two rows, one-cancels-other by
`quote_id`. The API writes them (`waiting` until the quote is OPENED, then `armed`); the trigger
engine moves them with compare-and-set updates: `armed -> triggered` in the same transaction as
the instant close it creates (so the trigger fires at most once), then `filled` when that close
fills, or `failed` once its close attempts are used up.
"""

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import CheckConstraint, DateTime, Index, SmallInteger, String, Text, text
from sqlmodel import Field, SQLModel

from solver.db.models.base import EAGER_DEFAULTS, address_check, created_at, modified_at, version_field
from solver.db.types import Address, EnumText, Id, Money, in_check


class TriggerKind(StrEnum):
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"


class TriggerStatus(StrEnum):
    WAITING = "waiting"  # accepted; the quote is not OPENED yet (PENDING or LOCKED)
    ARMED = "armed"  # in the trigger books: fires when the mark crosses the trigger price
    TRIGGERED = "triggered"  # fired: its instant close (instant_close_id) is in progress
    FILLED = "filled"  # the close filled: the position is closed
    CANCELLED = "cancelled"  # by the user, replaced, one-cancels-other, or the position ended otherwise
    FAILED = "failed"  # every close attempt failed


TRIGGER_ACTIVE = frozenset({TriggerStatus.WAITING, TriggerStatus.ARMED, TriggerStatus.TRIGGERED})
TRIGGER_TERMINAL = frozenset(TriggerStatus) - TRIGGER_ACTIVE

# One active stop loss and one active take profit per position. Keep this list equal to
# TRIGGER_ACTIVE (a unit test checks it).
ACTIVE_TRIGGER_WHERE = "status IN ('waiting', 'armed', 'triggered')"


class TriggerOrder(SQLModel, table=True):
    __tablename__ = "trigger_order"
    __mapper_args__ = EAGER_DEFAULTS
    __table_args__ = (
        CheckConstraint("quote_id > 0", name="quote_id_positive"),
        CheckConstraint(in_check("kind", TriggerKind), name="kind"),
        CheckConstraint(in_check("status", TriggerStatus), name="status"),
        CheckConstraint("position_type IN (0, 1)", name="position_type"),
        CheckConstraint(
            "trigger_price > 0 AND (requested_price IS NULL OR requested_price >= 0)"
            " AND (quantity IS NULL OR quantity > 0) AND (close_price IS NULL OR close_price > 0)"
            " AND (fire_mark IS NULL OR fire_mark > 0)",
            name="amounts",
        ),
        CheckConstraint(
            "status NOT IN ('triggered', 'filled') OR (instant_close_id IS NOT NULL AND quantity IS NOT NULL)",
            name="fired_has_close",
        ),
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
        CheckConstraint("version >= 1", name="version_positive"),
        address_check("account"),
        Index(
            "uq_trigger_order_active_quote_id_kind",
            "quote_id",
            "kind",
            unique=True,
            postgresql_where=text(ACTIVE_TRIGGER_WHERE),
        ),
        # The engine loads and re-reads the active orders.
        Index("ix_trigger_order_active", "symbol_id", postgresql_where=text(ACTIVE_TRIGGER_WHERE)),
        Index("ix_trigger_order_account_create_time", "account", text("create_time DESC")),
        Index("ix_trigger_order_quote_id", "quote_id"),
        Index("ix_trigger_order_modify_time", "modify_time"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=Id())
    account: str = Field(sa_type=Address())
    # No foreign key to `quote`: the mirror is filled from chain events and may lag the API.
    quote_id: int = Field(sa_type=Id())
    kind: TriggerKind = Field(sa_type=EnumText(TriggerKind, 16))
    position_type: int = Field(sa_type=SmallInteger())
    symbol_id: int
    trigger_price: Decimal = Field(sa_type=Money())
    requested_price: Decimal | None = Field(default=None, sa_type=Money())  # the client's entry price, as sent
    status: TriggerStatus = Field(
        default=TriggerStatus.WAITING,
        sa_type=EnumText(TriggerStatus),
        sa_column_kwargs={"server_default": TriggerStatus.WAITING.value},
    )
    # Set when it fires (and again on each retry): the whole open quantity, the close price
    # asked, the mark that crossed, and the instant close carrying it.
    quantity: Decimal | None = Field(default=None, sa_type=Money())
    close_price: Decimal | None = Field(default=None, sa_type=Money())
    fire_mark: Decimal | None = Field(default=None, sa_type=Money())
    fire_time: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    instant_close_id: int | None = Field(default=None, sa_type=Id(), foreign_key="instant_close.id")
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": text("0")})
    error_code: int | None = None
    error_message: str | None = Field(default=None, sa_type=Text())
    # Who ended it and why, e.g. "replaced", "user", "oco", "position_closed", "not_opened".
    end_reason: str | None = Field(default=None, sa_type=String(32))
    version: int = version_field()
    create_time: datetime = created_at()
    modify_time: datetime = modified_at()


__all__ = [
    "ACTIVE_TRIGGER_WHERE",
    "TRIGGER_ACTIVE",
    "TRIGGER_TERMINAL",
    "TriggerKind",
    "TriggerOrder",
    "TriggerStatus",
]
