"""Fresh mark prices (trading-rules.md §5): the only reader of PriceCache in the market domain.

A price is usable while its age from the *source* timestamp is at most risk.max_price_age_s. A
missing, non-positive or stale price raises a 503 SolverError; it is never read as 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from solver.core.clock import Clock
from solver.core.errors import ErrorCode, SolverError
from solver.core.units import fmt
from solver.pricing.cache import PriceCache, PricePoint
from solver.settings import Settings, SymbolConfig


class MarkPrices:
    def __init__(self, *, settings: Settings, prices: PriceCache, clock: Clock) -> None:
        self._settings = settings
        self._prices = prices
        self._clock = clock

    def is_fresh(self, point: PricePoint, now: float | None = None) -> bool:
        at = self._clock.time() if now is None else now
        return point.age(at) <= float(self._settings.risk.max_price_age_s)

    async def latest(self, symbols: Iterable[SymbolConfig]) -> dict[str, PricePoint]:
        """Last known prices by market name, fresh or not (display only); missing ones absent."""
        points = await self._prices.get_many([s.name for s in symbols])
        return {name: p for name, p in points.items() if p.price.is_finite() and p.price > 0}

    async def fresh(self, symbol: SymbolConfig) -> PricePoint:
        return self._check(symbol, await self._prices.get(symbol.name))

    async def fresh_marks(self, symbol_ids: Iterable[int]) -> dict[int, Decimal]:
        """Fresh marks by symbol id, for every id given; 503 if one is unknown, missing or stale."""
        syms: list[SymbolConfig] = []
        for sid in sorted(set(symbol_ids)):
            sym = self._settings.symbol(sid)
            if sym is None:
                raise SolverError(
                    ErrorCode.PRICE_UNAVAILABLE,
                    f"There is a position in symbol id {sid}, which this solver does not price, "
                    "so its uPnL cannot be computed.",
                )
            syms.append(sym)
        if not syms:
            return {}
        points = await self._prices.get_many([s.name for s in syms])
        return {s.symbol_id: self._check(s, points.get(s.name)).price for s in syms}

    def _check(self, symbol: SymbolConfig, point: PricePoint | None) -> PricePoint:
        if point is None or not point.price.is_finite() or point.price <= 0:
            raise SolverError(ErrorCode.PRICE_UNAVAILABLE, f"No price is available for {symbol.name} right now.")
        now = self._clock.time()
        if not self.is_fresh(point, now):
            limit = fmt(self._settings.risk.max_price_age_s)
            raise SolverError(
                ErrorCode.PRICE_STALE,
                f"The latest {symbol.name} price is {point.age(now):.0f} s old (limit {limit} s), "
                "so it cannot be used right now. Please retry shortly.",
            )
        return point
