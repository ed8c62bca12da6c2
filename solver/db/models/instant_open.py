"""Instant opens (the seed's InstantRFQs): requests accepted by the API, sent by the worker.

The row is written before the API answers (a 200 means it is durable); the worker moves it
through the states below with compare-and-set updates (solver.quotes.repository).
"""

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import CheckConstraint, Index, SmallInteger, String, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from solver.db.models.base import EAGER_DEFAULTS, address_check, created_at, modified_at, version_field
from solver.db.types import Address, EnumText, Id, Money, in_check


class InstantOpenStatus(StrEnum):
    PENDING = "pending"  # persisted, not yet handed to the chain
    SENT = "sent"  # sendQuote transaction in flight or confirmed, not yet opened by PartyB
    CANCEL_REQUESTED = "cancel_requested"  # requestToCancelQuote in flight
    OPENED = "opened"
    FAILED = "failed"
    CANCELLED = "cancelled"


INSTANT_OPEN_TERMINAL = frozenset(
    {InstantOpenStatus.OPENED, InstantOpenStatus.FAILED, InstantOpenStatus.CANCELLED},
)


class InstantOpen(SQLModel, table=True):
    __tablename__ = "instant_open"
    __mapper_args__ = EAGER_DEFAULTS
    __table_args__ = (
        # Temp ids are negative so they can never be mistaken for an on-chain id (> 0).
        CheckConstraint("temp_quote_id < 0", name="temp_quote_id_negative"),
        CheckConstraint("quote_id IS NULL OR quote_id > 0", name="quote_id_positive"),
        CheckConstraint(in_check("status", InstantOpenStatus), name="status"),
        CheckConstraint("status <> 'opened' OR quote_id IS NOT NULL", name="opened_has_quote_id"),
        CheckConstraint("position_type IN (0, 1)", name="position_type"),
        CheckConstraint("order_type IN (0, 1)", name="order_type"),
        CheckConstraint(
            "quantity > 0 AND requested_open_price > 0 AND cva >= 0 AND lf >= 0"
            " AND party_amm >= 0 AND party_bmm >= 0 AND max_funding_rate >= 0",
            name="amounts",
        ),
        CheckConstraint("idempotency_key IS NULL OR request_hash IS NOT NULL", name="idempotency_has_hash"),
        CheckConstraint("version >= 1", name="version_positive"),
        address_check("account"),
        UniqueConstraint("account", "idempotency_key"),
        Index("ix_instant_open_account_create_time", "account", text("create_time DESC")),
        Index("ix_instant_open_status", "status"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=Id())
    # Final guard against a reused temp id: the allocator is best effort across Redis restarts.
    temp_quote_id: int = Field(sa_type=Id(), unique=True)
    account: str = Field(sa_type=Address())
    symbol_id: int
    position_type: int = Field(sa_type=SmallInteger())
    order_type: int = Field(sa_type=SmallInteger())
    requested_open_price: Decimal = Field(sa_type=Money())
    quantity: Decimal = Field(sa_type=Money())
    cva: Decimal = Field(sa_type=Money())
    lf: Decimal = Field(sa_type=Money())
    party_amm: Decimal = Field(sa_type=Money())
    party_bmm: Decimal = Field(sa_type=Money())
    max_funding_rate: Decimal = Field(sa_type=Money())
    deadline: int = Field(sa_type=Id())  # unix seconds
    status: InstantOpenStatus = Field(
        default=InstantOpenStatus.PENDING,
        sa_type=EnumText(InstantOpenStatus),
        sa_column_kwargs={"server_default": InstantOpenStatus.PENDING.value},
    )
    quote_id: int | None = Field(default=None, sa_type=Id(), unique=True)  # on-chain id once known
    error_code: int | None = None
    error_message: str | None = Field(default=None, sa_type=Text())
    idempotency_key: str | None = Field(default=None, sa_type=String(255))
    # sha256 hex of the canonical request body: same key + different body is a client bug (409).
    request_hash: str | None = Field(default=None, sa_type=String(64))
    version: int = version_field()
    create_time: datetime = created_at()
    modify_time: datetime = modified_at()
