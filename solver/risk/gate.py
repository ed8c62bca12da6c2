"""Pure pre-trade gate: every check a request that adds exposure must pass (trading-rules.md §2).

The same gate runs for instant opens and for LIMIT/DCA sub-orders. It takes a snapshot of
everything it needs (no I/O) and returns every violation, each with its own error code and a
sentence a trader understands; callers reject with the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Context, Decimal
from typing import Protocol

from solver.core.errors import ErrorCode
from solver.core.units import fmt, has_at_most_decimals, round_to_wei
from solver.market.locked_params import MarketRisk, Violation, check_locked_values
from solver.risk.account import Locked, available_balance

_CTX = Context(prec=120)
LONG, SHORT = 0, 1
LIMIT, MARKET = 0, 1


class GateMarket(MarketRisk, Protocol):
    """What the gate reads of a symbol's config (SymbolConfig satisfies it)."""

    name: str
    is_valid: bool
    rfq_allowed: bool
    quantity_precision: int
    trading_fee: Decimal
    max_notional_value: Decimal
    notional_cap: Decimal
    hedger_fee_open: Decimal
    max_price_deviation: Decimal


@dataclass(frozen=True, slots=True)
class OpenRequest:
    position_type: int
    order_type: int
    price: Decimal
    quantity: Decimal
    cva: Decimal
    lf: Decimal
    party_amm: Decimal
    deadline: int  # unix seconds


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    allocated: Decimal
    upnl: Decimal
    locked: Locked  # OPENED quotes
    pending: Locked  # PENDING/LOCKED quotes + accepted-not-confirmed instant opens
    pending_instant_opens: int
    open_positions: int
    delegated: bool  # sendQuote / sendQuoteWithAffiliate delegated to the solver
    reduce_only: bool  # flagged for liquidation


@dataclass(frozen=True, slots=True)
class Limits:
    max_pending_instant_opens: int
    max_open_positions: int
    total_notional_cap: Decimal
    used_notional_symbol: Decimal
    used_notional_total: Decimal


def _v(code: ErrorCode, message: str) -> Violation:
    return Violation(code, message)


def check_open(
    market: GateMarket,
    req: OpenRequest,
    *,
    mark: Decimal,
    now: int,
    account: AccountSnapshot,
    limits: Limits,
) -> list[Violation]:
    """All violations of `req` (empty: accept). `mark` must already be known fresh."""
    out: list[Violation] = []
    if not (market.is_valid and market.rfq_allowed):
        out.append(_v(ErrorCode.SYMBOL_NOT_TRADABLE, f"{market.name} is not open for instant trading."))
    if req.position_type not in (LONG, SHORT) or req.order_type not in (LIMIT, MARKET):
        out.append(_v(ErrorCode.INVALID_ORDER, "positionType must be 0 (LONG) or 1 (SHORT), orderType 0 or 1."))
        return out
    if account.reduce_only:
        out.append(_v(ErrorCode.REDUCE_ONLY, ErrorCode.REDUCE_ONLY.message))
    if not account.delegated:
        out.append(_v(ErrorCode.NOT_DELEGATED, "Delegate sendQuote and sendQuoteWithAffiliate to the solver first."))
    if req.deadline <= now:
        out.append(_v(ErrorCode.DEADLINE_PASSED, f"The deadline {req.deadline} is not after now ({now})."))
    if req.quantity <= 0 or req.price <= 0:
        out.append(_v(ErrorCode.VALIDATION, "price and quantity must be greater than zero."))
        return out
    if not has_at_most_decimals(req.quantity, market.quantity_precision):
        out.append(
            _v(
                ErrorCode.QUANTITY_PRECISION,
                f"{market.name} quantities have at most {market.quantity_precision} decimals, got {fmt(req.quantity)}.",
            )
        )
    out.extend(_price_checks(market, req, mark))

    check = check_locked_values(
        market, quantity=req.quantity, price=req.price, cva=req.cva, lf=req.lf, party_amm=req.party_amm
    )
    out.extend(check.violations)

    notional = round_to_wei(_CTX.multiply(req.quantity, req.price))
    if notional > market.max_notional_value:
        out.append(
            _v(
                ErrorCode.POSITION_TOO_LARGE,
                f"The notional {fmt(notional)} is above the {fmt(market.max_notional_value)} "
                f"a single {market.name} position may have.",
            )
        )
    if _CTX.add(limits.used_notional_symbol, notional) > market.notional_cap:
        room = max(Decimal(0), _CTX.subtract(market.notional_cap, limits.used_notional_symbol))
        out.append(_v(ErrorCode.SYMBOL_CAP_REACHED, f"{market.name} has room for {fmt(room)} of notional now."))
    if _CTX.add(limits.used_notional_total, notional) > limits.total_notional_cap:
        room = max(Decimal(0), _CTX.subtract(limits.total_notional_cap, limits.used_notional_total))
        out.append(_v(ErrorCode.TOTAL_CAP_REACHED, f"The solver has room for {fmt(room)} of notional now."))
    if account.pending_instant_opens >= limits.max_pending_instant_opens:
        out.append(
            _v(
                ErrorCode.TOO_MANY_PENDING,
                f"At most {limits.max_pending_instant_opens} instant opens may be pending at once.",
            )
        )
    if account.open_positions >= limits.max_open_positions:
        out.append(_v(ErrorCode.TOO_MANY_POSITIONS, f"At most {limits.max_open_positions} open positions."))

    available = available_balance(
        allocated=account.allocated, upnl=account.upnl, locked=account.locked, pending=account.pending
    )
    fee = _CTX.multiply(notional, market.trading_fee)
    needed = round_to_wei(_CTX.add(_CTX.add(_CTX.add(req.cva, req.lf), req.party_amm), fee))
    if available < needed:
        out.append(
            _v(
                ErrorCode.INSUFFICIENT_BALANCE,
                f"This position needs {fmt(needed)} (cva + lf + partyAmm + trading fee) "
                f"but your available balance is {fmt(round_to_wei(available))}.",
            )
        )
    return out


def _price_checks(market: GateMarket, req: OpenRequest, mark: Decimal) -> list[Violation]:
    out: list[Violation] = []
    deviation = abs(_CTX.divide(_CTX.subtract(req.price, mark), mark))
    if deviation > market.max_price_deviation:
        out.append(
            _v(
                ErrorCode.PRICE_OUT_OF_RANGE,
                f"The price {fmt(req.price)} is more than {fmt(market.max_price_deviation * 100)} % "
                f"from the mark price {fmt(mark)}.",
            )
        )
    if req.order_type == MARKET:
        # The solver fills a MARKET open at the mark plus its fee; the contract needs that fill to
        # be no worse for the user than the requested price (trading-rules.md §2b).
        one = Decimal(1)
        fee = market.hedger_fee_open
        if req.position_type == LONG:
            fill = _CTX.multiply(mark, _CTX.add(one, fee))
            if req.price < fill:
                out.append(
                    _v(ErrorCode.PRICE_OUT_OF_RANGE, f"A MARKET LONG must accept at least {fmt(fill)} (mark + fee).")
                )
        else:
            fill = _CTX.multiply(mark, _CTX.subtract(one, fee))
            if req.price > fill:
                out.append(
                    _v(ErrorCode.PRICE_OUT_OF_RANGE, f"A MARKET SHORT must accept at most {fmt(fill)} (mark − fee).")
                )
    return out
