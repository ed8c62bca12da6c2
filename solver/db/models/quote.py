"""Mirror of the on-chain quotes the solver is party to, kept current by the event follower.

The chain is the truth about quotes; this table is a cache of it that queries (risk, history,
liquidation) can index. `block_number` is the last event applied, so a replay after a restart
or reorg rewind can skip or redo events idempotently. Amounts are human units (wei / 1e18).
"""

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import CheckConstraint, Index, SmallInteger, text
from sqlmodel import Field, SQLModel

from solver.db.models.base import EAGER_DEFAULTS, address_check, created_at, modified_at, nullable_address_check
from solver.db.types import Address, Id, Money

_AMOUNTS = (
    "requested_open_price >= 0 AND (opened_price IS NULL OR opened_price >= 0) AND quantity >= 0"
    " AND closed_amount >= 0 AND closed_amount <= quantity"
    " AND (avg_closed_price IS NULL OR avg_closed_price >= 0) AND cva >= 0 AND lf >= 0"
    " AND party_amm >= 0 AND party_bmm >= 0 AND trading_fee >= 0 AND quantity_to_close >= 0"
    " AND requested_close_price >= 0"
)


def _zero() -> Any:
    return Field(default=Decimal(0), sa_type=Money(), sa_column_kwargs={"server_default": text("0")})


class Quote(SQLModel, table=True):
    __tablename__ = "quote"
    __mapper_args__ = EAGER_DEFAULTS
    __table_args__ = (
        CheckConstraint("quote_id > 0", name="quote_id_positive"),
        CheckConstraint("temp_quote_id IS NULL OR temp_quote_id < 0", name="temp_quote_id_negative"),
        # QuoteStatus numbering of chain.md §4 (PENDING 0 … LIQUIDATED_PENDING 10).
        CheckConstraint("status BETWEEN 0 AND 10", name="status"),
        CheckConstraint("position_type IN (0, 1)", name="position_type"),
        CheckConstraint("order_type IN (0, 1)", name="order_type"),
        CheckConstraint(_AMOUNTS, name="amounts"),
        CheckConstraint("parent_id >= 0", name="parent_id_non_negative"),
        address_check("party_a"),
        nullable_address_check("party_b"),
        Index("ix_quote_party_a_status", "party_a", "status"),
        Index("ix_quote_symbol_id_status", "symbol_id", "status"),
    )

    quote_id: int = Field(primary_key=True, sa_type=Id(), sa_column_kwargs={"autoincrement": False})
    party_a: str = Field(sa_type=Address())
    party_b: str | None = Field(default=None, sa_type=Address())  # set by LockQuote
    symbol_id: int
    position_type: int = Field(sa_type=SmallInteger())
    order_type: int = Field(sa_type=SmallInteger())
    status: int = Field(sa_type=SmallInteger())
    requested_open_price: Decimal = Field(sa_type=Money())
    opened_price: Decimal | None = Field(default=None, sa_type=Money())
    quantity: Decimal = Field(sa_type=Money())
    closed_amount: Decimal = _zero()
    avg_closed_price: Decimal | None = Field(default=None, sa_type=Money())
    # Locked values as they stand now (they shrink on partial closes).
    cva: Decimal = Field(sa_type=Money())
    lf: Decimal = Field(sa_type=Money())
    party_amm: Decimal = Field(sa_type=Money())
    party_bmm: Decimal = Field(sa_type=Money())
    trading_fee: Decimal = Field(sa_type=Money())
    deadline: int = Field(sa_type=Id())  # unix seconds
    quantity_to_close: Decimal = _zero()
    requested_close_price: Decimal = _zero()
    # 0 = no parent, as on chain (a partial LIMIT fill's remainder is a child quote).
    parent_id: int = Field(default=0, sa_type=Id(), sa_column_kwargs={"server_default": text("0")})
    # Set when the quote came from one of our instant opens (SendQuoteTransaction).
    temp_quote_id: int | None = Field(default=None, sa_type=Id(), unique=True)
    block_number: int = Field(sa_type=Id())
    create_time: datetime = created_at()
    modify_time: datetime = modified_at()
