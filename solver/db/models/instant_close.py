"""Instant closes: a close request accepted by the API for an OPENED quote, run by the worker."""

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import CheckConstraint, Index, String, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from solver.db.models.base import EAGER_DEFAULTS, address_check, created_at, modified_at, version_field
from solver.db.types import Address, EnumText, Id, Money, in_check


class InstantCloseStatus(StrEnum):
    PENDING = "pending"  # persisted, not yet on chain
    SENT = "sent"  # requestToClosePosition in flight / CLOSE_PENDING on chain
    CANCEL_REQUESTED = "cancel_requested"  # requestToCancelCloseRequest in flight
    FILLED = "filled"
    FAILED = "failed"
    CANCELLED = "cancelled"


INSTANT_CLOSE_ACTIVE = frozenset(
    {InstantCloseStatus.PENDING, InstantCloseStatus.SENT, InstantCloseStatus.CANCEL_REQUESTED},
)
INSTANT_CLOSE_TERMINAL = frozenset(InstantCloseStatus) - INSTANT_CLOSE_ACTIVE

# The chain holds one close request per quote at a time; so does the solver. Keep this list
# equal to INSTANT_CLOSE_ACTIVE (a unit test checks it).
ACTIVE_CLOSE_WHERE = "status IN ('pending', 'sent', 'cancel_requested')"


class InstantClose(SQLModel, table=True):
    __tablename__ = "instant_close"
    __mapper_args__ = EAGER_DEFAULTS
    __table_args__ = (
        CheckConstraint("quote_id > 0", name="quote_id_positive"),
        CheckConstraint(in_check("status", InstantCloseStatus), name="status"),
        CheckConstraint("quantity_to_close > 0 AND close_price > 0", name="amounts"),
        CheckConstraint("close_id IS NULL OR close_id >= 0", name="close_id_non_negative"),
        CheckConstraint("idempotency_key IS NULL OR request_hash IS NOT NULL", name="idempotency_has_hash"),
        CheckConstraint("version >= 1", name="version_positive"),
        address_check("account"),
        UniqueConstraint("account", "idempotency_key"),
        Index(
            "uq_instant_close_active_quote_id",
            "quote_id",
            unique=True,
            postgresql_where=text(ACTIVE_CLOSE_WHERE),
        ),
        Index("ix_instant_close_account_create_time", "account", text("create_time DESC")),
        Index("ix_instant_close_status", "status"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=Id())
    # No foreign key to `quote`: the mirror is filled from chain events and may lag the API.
    quote_id: int = Field(sa_type=Id())
    account: str = Field(sa_type=Address())
    quantity_to_close: Decimal = Field(sa_type=Money())
    close_price: Decimal = Field(sa_type=Money())
    deadline: int = Field(sa_type=Id())  # unix seconds
    status: InstantCloseStatus = Field(
        default=InstantCloseStatus.PENDING,
        sa_type=EnumText(InstantCloseStatus),
        sa_column_kwargs={"server_default": InstantCloseStatus.PENDING.value},
    )
    close_id: int | None = Field(default=None, sa_type=Id())  # closeId from FillCloseRequest
    error_code: int | None = None
    error_message: str | None = Field(default=None, sa_type=Text())
    idempotency_key: str | None = Field(default=None, sa_type=String(255))
    request_hash: str | None = Field(default=None, sa_type=String(64))
    version: int = version_field()
    create_time: datetime = created_at()
    modify_time: datetime = modified_at()
