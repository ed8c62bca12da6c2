"""Response bodies of the market routes (http-api.md §2).

Money, prices and percentages go out as decimal strings (no exponent, at most 18 decimals);
ids, precisions, leverage caps and timestamps as JSON numbers. The `num` fields of
/contract-symbols are numbers: whole values as integers, others as the nearest float (they are
display limits, never used in money math by clients).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, Field

from solver.core.units import fmt, round_to_wei
from solver.market.balances import PartyABalance, Upnl
from solver.market.locked_params import LockedPercents, max_leverage
from solver.market.service import CapUsage, FundingInfo, MarketInfo, PriceRange
from solver.settings import SymbolConfig


def money(value: Decimal) -> str:
    return fmt(round_to_wei(value))


# A JSON number: an int when whole (1000000), else a float. Documented as one `number`: Litestar
# would write oneOf [integer, number], which a whole value matches twice (an invalid response).
Number = Annotated[int | float, Field(json_schema_extra={"type": "number", "oneOf": None})]


def number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


class SymbolOut(BaseModel):
    symbol_id: int
    name: str
    symbol: str
    asset: str
    price_precision: int
    quantity_precision: int
    is_valid: bool
    min_acceptable_quote_value: Number
    min_acceptable_portion_lf: str
    trading_fee: str
    max_leverage: int
    max_notional_value: Number
    max_funding_rate: str
    rfq_allowed: bool
    hedger_fee_open: str
    hedger_fee_close: str

    @classmethod
    def of(cls, s: SymbolConfig) -> SymbolOut:
        return cls(
            symbol_id=s.symbol_id,
            name=s.name,
            symbol=s.symbol,
            asset=s.asset,
            price_precision=s.price_precision,
            quantity_precision=s.quantity_precision,
            is_valid=s.is_valid,
            min_acceptable_quote_value=number(s.min_acceptable_quote_value),
            min_acceptable_portion_lf=fmt(s.min_acceptable_portion_lf),
            trading_fee=fmt(s.trading_fee),
            max_leverage=max_leverage(s),
            max_notional_value=number(s.max_notional_value),
            max_funding_rate=fmt(s.max_funding_rate),
            rfq_allowed=s.rfq_allowed,
            hedger_fee_open=fmt(s.hedger_fee_open),
            hedger_fee_close=fmt(s.hedger_fee_close),
        )


class ContractSymbolsOut(BaseModel):
    count: int
    symbols: list[SymbolOut]


class LockedParamsOut(BaseModel):
    """Percentages: cva, lf, partyAmm of the margin N / L; partyBmm of the notional."""

    cva: str
    lf: str
    partyAmm: str  # wire name
    partyBmm: str  # wire name
    leverage: str
    message: str = "Success"

    @classmethod
    def of(cls, p: LockedPercents) -> LockedParamsOut:
        return cls(**p.as_strings(), message="Success")


class CapOut(BaseModel):
    total_cap: str
    used: str

    @classmethod
    def of(cls, c: CapUsage) -> CapOut:
        return cls(total_cap=money(c.total_cap), used=money(c.used))


class PriceRangeOut(BaseModel):
    min_price: str
    max_price: str

    @classmethod
    def of(cls, r: PriceRange) -> PriceRangeOut:
        return cls(min_price=fmt(r.min_price), max_price=fmt(r.max_price))


class MarketInfoOut(BaseModel):
    price: str
    price_change_percent: str
    trade_volume: str
    notional_cap: str

    @classmethod
    def of(cls, m: MarketInfo) -> MarketInfoOut:
        return cls(
            price=fmt(m.price),
            price_change_percent=fmt(m.price_change_percent),
            trade_volume=money(m.trade_volume),
            notional_cap=money(m.notional_cap),
        )


class FundingInfoOut(BaseModel):
    next_funding_time: int  # unix milliseconds
    next_funding_rate_long: str
    next_funding_rate_short: str
    funding_rate_epoch_duration: int  # seconds

    @classmethod
    def of(cls, f: FundingInfo) -> FundingInfoOut:
        return cls(
            next_funding_time=f.next_funding_time_ms,
            next_funding_rate_long=fmt(f.rate_long),
            next_funding_rate_short=fmt(f.rate_short),
            funding_rate_epoch_duration=f.epoch_duration_s,
        )


class PartyAOut(BaseModel):
    allocated_balance: str
    available_balance: str
    cva: str
    lf: str
    notional: str
    party_a_mm: str
    pending_cva: str
    pending_lf: str
    pending_party_a_mm: str
    upnl: str
    timestamp: int  # unix seconds

    @classmethod
    def of(cls, b: PartyABalance) -> PartyAOut:
        return cls(
            allocated_balance=money(b.allocated),
            available_balance=money(b.available),
            cva=money(b.locked.cva),
            lf=money(b.locked.lf),
            notional=money(b.notional),
            party_a_mm=money(b.locked.party_amm),
            pending_cva=money(b.pending.cva),
            pending_lf=money(b.pending.lf),
            pending_party_a_mm=money(b.pending.party_amm),
            upnl=money(b.upnl),
            timestamp=b.timestamp,
        )


class BalanceInfoOut(BaseModel):
    party_a: PartyAOut


class UpnlOut(BaseModel):
    upnl: str
    timestamp: int  # unix seconds

    @classmethod
    def of(cls, u: Upnl) -> UpnlOut:
        return cls(upnl=money(u.upnl), timestamp=u.timestamp)
