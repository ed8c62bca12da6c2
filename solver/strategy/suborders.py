"""Pure: between the stored strategy order and the rules, and from a sized sub-order to the exact
POST /instant_open body the instant open flow receives (so each sub-order passes the same risk
gate as a trader's own open)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any

from solver.db.models import StrategyOrder, StrategyType
from solver.market.locked_params import locked_amounts, locked_percents
from solver.settings import SymbolConfig
from solver.strategy.book import Entry
from solver.strategy.rules import Market, Progress, Sizing, Terms

LIMIT_ORDER, MARKET_ORDER = 0, 1
_WEI = Decimal("1e-18")


def unix(dt: datetime | None) -> Decimal | None:
    return None if dt is None else Decimal(str(dt.timestamp()))


def terms_of(row: StrategyOrder) -> Terms:
    return Terms(
        type=StrategyType(row.type),
        position_type=row.position_type,
        leverage=row.leverage,
        initial_input=row.initial_input_amount,
        max_suborders=row.max_suborders,
        max_invocations=row.max_invocations,
        slippage=row.slippage,
        limit_price=row.limit_price,
        delay_s=row.dca_delay_s,
        band_from=row.band_from,
        band_to=row.band_to,
    )


def progress_of(row: StrategyOrder) -> Progress:
    return Progress(
        status=row.status,
        current_input=row.current_input_amount,
        current_output=row.current_output_amount,
        suborders_executed=row.suborders_executed,
        invocations_executed=row.invocations_executed,
        active_transactions=row.active_transactions,
        next_due=unix(row.next_due_time),
    )


def apply_progress(row: StrategyOrder, p: Progress) -> None:
    """Write the rules' result back onto the row (the caller bumps version and times)."""
    row.status = p.status
    row.current_input_amount = p.current_input
    row.current_output_amount = p.current_output
    row.suborders_executed = p.suborders_executed
    row.invocations_executed = p.invocations_executed
    row.active_transactions = p.active_transactions
    row.next_due_time = None if p.next_due is None else datetime.fromtimestamp(float(p.next_due), UTC)


def market_of(sym: SymbolConfig) -> Market:
    return Market(
        price_precision=sym.price_precision,
        quantity_precision=sym.quantity_precision,
        min_quote_value=sym.min_acceptable_quote_value,
    )


def entry_of(row: StrategyOrder) -> Entry:
    """Where the order waits in the book: its LIMIT threshold, or its DCA due time."""
    assert row.id is not None
    if row.type == StrategyType.LIMIT:
        assert row.limit_price is not None
        sign = -1 if row.position_type == 0 else 1
        threshold = row.limit_price * (1 + sign * row.slippage)
        return Entry(row.id, row.symbol_id, row.position_type, threshold=threshold)
    return Entry(row.id, row.symbol_id, row.position_type, due=unix(row.next_due_time) or Decimal(0))


def _wei(x: Decimal) -> str:
    return f"{x.quantize(_WEI, rounding=ROUND_CEILING):f}"  # the sum never falls under N / L


def open_body(
    row: StrategyOrder, sym: SymbolConfig, *, price: Decimal, sizing: Sizing, market_order: bool, deadline: int
) -> dict[str, Any]:
    """The instant open request of a sub-order, locked values as a client computes them at the
    order's leverage (trading-rules.md §1)."""
    percents = locked_percents(sym, row.leverage)
    cva, lf, amm = locked_amounts(percents, sizing.quantity * price)
    return {
        "symbolId": sym.symbol_id,
        "positionType": row.position_type,
        "orderType": MARKET_ORDER if market_order else LIMIT_ORDER,
        "price": f"{price.normalize():f}",
        "quantity": f"{sizing.quantity.normalize():f}",
        "cva": _wei(cva),
        "lf": _wei(lf),
        "partyAmm": _wei(amm),
        "deadline": deadline,
    }
