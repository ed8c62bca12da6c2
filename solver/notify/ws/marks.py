"""Mark prices for the Binance-protocol stream and GET /fapi/v1/ticker/bookTicker.

Only fresh prices (age from the *source* time at most risk.max_price_age_s) are shown, dated by
their source time (`E`, `time`): a stale price is left out, never re-stamped as new. One
snapshot per process serves every client for a fraction of the push period.

bookTicker quotes what a taker gets from the solver right now for a new position, with the
same rounding as the fills (solver.risk.fills.open_fill_price): the ask is a LONG open,
`mark × (1 + hedger_fee_open)` rounded down to the price precision; the bid a SHORT open,
`mark × (1 − hedger_fee_open)` rounded up. (Closes use hedger_fee_close, published in
/contract-symbols.) The quantity on each side is the largest single position the solver takes,
`max_notional_value / mark`, rounded down to the quantity precision.
"""

from __future__ import annotations

import asyncio
import time
from decimal import ROUND_DOWN, Context, Decimal

from pydantic import BaseModel

from solver.core.errors import ErrorCode, SolverError
from solver.market.service import MarketService
from solver.notify.ws.frames import MarkItem
from solver.risk.fills import LONG, MARKET, SHORT, open_fill_price
from solver.settings import SymbolConfig

_CTX = Context(prec=120)
_INF = Decimal("Infinity")


class BookTickerOut(BaseModel):
    symbol: str
    bidPrice: str  # wire names (Binance)
    bidQty: str
    askPrice: str
    askQty: str
    time: int  # unix ms of the mark's source time


class MarkFeed:
    def __init__(self, *, market: MarketService, reuse_s: float) -> None:
        self._market = market
        self._reuse_s = reuse_s
        self._lock = asyncio.Lock()
        self._at = -1e18
        self._items: dict[str, MarkItem] = {}

    async def snapshot(self) -> dict[str, MarkItem]:
        """Fresh marks by market name (config order) with the funding rate and next funding time."""
        async with self._lock:
            if time.monotonic() - self._at > self._reuse_s:
                self._items = await self._load()
                self._at = time.monotonic()
            return self._items

    async def _load(self) -> dict[str, MarkItem]:
        marks = self._market.marks
        points = await marks.latest(self._market.symbols)
        fresh = {name: p for name, p in points.items() if marks.is_fresh(p)}
        if not fresh:
            return {}
        funding = await self._market.funding_info(list(fresh))
        return {
            name: MarkItem(
                symbol=name,
                price=p.price,
                ts_ms=int(p.ts * 1000),
                funding_rate=funding[name].rate_long,
                next_funding_ms=funding[name].next_funding_time_ms,
            )
            for name, p in fresh.items()
        }

    async def book_tickers(self) -> list[BookTickerOut]:
        """Every market with a fresh price."""
        items = await self.snapshot()
        books = (
            book_ticker(sym, item.price, item.ts_ms) for sym in self._market.symbols if (item := items.get(sym.name))
        )
        return [b for b in books if b is not None]

    async def book_ticker(self, symbol: str) -> BookTickerOut:
        """One market; the 404 / 503 with the reason when it is unknown or its price is stale."""
        sym = self._market.resolve_symbol(symbol)
        point = await self._market.fresh_price(sym)
        book = book_ticker(sym, point.price, int(point.ts * 1000))
        if book is None:
            raise SolverError(ErrorCode.PRICE_UNAVAILABLE, f"No price can be quoted for {sym.name} right now.")
        return book


def book_ticker(sym: SymbolConfig, mark: Decimal, ts_ms: int) -> BookTickerOut | None:
    fee = sym.hedger_fee_open
    ask = open_fill_price(
        mark=mark, position_type=LONG, order_type=MARKET, requested=_INF, fee=fee, precision=sym.price_precision
    )
    bid = open_fill_price(
        mark=mark, position_type=SHORT, order_type=MARKET, requested=Decimal(0), fee=fee, precision=sym.price_precision
    )
    if ask is None or bid is None:
        return None
    qty = _CTX.divide(sym.max_notional_value, mark).quantize(
        Decimal(1).scaleb(-sym.quantity_precision), rounding=ROUND_DOWN, context=_CTX
    )
    return BookTickerOut(
        symbol=sym.name,
        bidPrice=_fixed(bid, sym.price_precision),
        bidQty=_fixed(qty, sym.quantity_precision),
        askPrice=_fixed(ask, sym.price_precision),
        askQty=_fixed(qty, sym.quantity_precision),
        time=ts_ms,
    )


def _fixed(value: Decimal, places: int) -> str:
    """Exactly `places` decimals, as Binance writes them ("60036.10")."""
    return format(value.quantize(Decimal(1).scaleb(-places), context=_CTX), "f")
