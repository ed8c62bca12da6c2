"""Plain data the chain reader returns (no web3 types leak out of solver/chain)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class QuoteStatus(IntEnum):
    PENDING = 0
    LOCKED = 1
    CANCEL_PENDING = 2
    CANCELED = 3
    OPENED = 4
    CLOSE_PENDING = 5
    CANCEL_CLOSE_PENDING = 6
    CLOSED = 7
    LIQUIDATED = 8
    EXPIRED = 9
    LIQUIDATED_PENDING = 10


class PositionType(IntEnum):
    LONG = 0
    SHORT = 1


class OrderType(IntEnum):
    LIMIT = 0
    MARKET = 1


@dataclass(frozen=True, slots=True)
class LockedValues:
    """18-decimal integers."""

    cva: int
    lf: int
    party_amm: int
    party_bmm: int

    @property
    def total_a(self) -> int:
        return self.cva + self.lf + self.party_amm


@dataclass(frozen=True, slots=True)
class PartyABalances:
    """What the diamond reports for a partyA, 18-decimal integers."""

    allocated: int
    locked: LockedValues
    pending_locked: LockedValues


@dataclass(frozen=True, slots=True)
class OnChainQuote:
    id: int
    party_a: str
    party_b: str
    symbol_id: int
    position_type: int
    order_type: int
    status: int
    opened_price: int
    requested_open_price: int
    market_price: int
    quantity: int
    closed_amount: int
    locked: LockedValues
    initial_locked: LockedValues
    max_funding_rate: int
    avg_closed_price: int
    requested_close_price: int
    quantity_to_close: int
    parent_id: int
    create_timestamp: int
    status_modify_timestamp: int
    deadline: int
    trading_fee: int
    affiliate: str

    @property
    def open_quantity(self) -> int:
        return self.quantity - self.closed_amount


@dataclass(frozen=True, slots=True)
class SubAccount:
    address: str
    name: str
