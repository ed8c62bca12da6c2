"""Market use cases: symbols, locked params, caps, prices, funding, partyA balances.

Every input arrives as the raw string the client sent and is validated here, so each bad value
gets a SolverError with a sentence a trader understands (never a framework 500). Lookups the
pre-trade gate will reuse: `resolve_symbol`, `fresh_price`, `used_notional`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Context, Decimal

from eth_utils.address import to_checksum_address

from solver.chain.reader import ChainReader
from solver.core.clock import Clock
from solver.core.errors import ErrorCode, SolverError
from solver.core.units import NumberFormatError, parse_decimal
from solver.market.balances import AccountBalances, PartyABalance, Upnl, checksum
from solver.market.feeds import MarketFeeds
from solver.market.locked_params import LeverageError, LockedPercents, locked_percents, max_leverage, min_leverage
from solver.market.marks import MarkPrices
from solver.market.repository import MarketStats
from solver.pricing.cache import PriceCache, PricePoint
from solver.settings import Settings, SymbolConfig

log = logging.getLogger("solver.market")

_MAX_KEY_LEN = 64
_PCT_QUANTUM = Decimal("0.01")
_CTX = Context(prec=120)  # exact products of 18-decimal values, never the default 28 digits

__all__ = ["CapUsage", "FundingInfo", "MarketInfo", "MarketService", "PartyABalance", "PriceRange", "Upnl"]


@dataclass(frozen=True, slots=True)
class CapUsage:
    total_cap: Decimal
    used: Decimal


@dataclass(frozen=True, slots=True)
class PriceRange:
    min_price: Decimal
    max_price: Decimal


@dataclass(frozen=True, slots=True)
class MarketInfo:
    price: Decimal
    price_change_percent: Decimal
    trade_volume: Decimal
    notional_cap: Decimal


@dataclass(frozen=True, slots=True)
class FundingInfo:
    next_funding_time_ms: int
    rate_long: Decimal
    rate_short: Decimal
    epoch_duration_s: int


class MarketService:
    def __init__(
        self,
        *,
        settings: Settings,
        prices: PriceCache,
        chain: ChainReader,
        stats: MarketStats,
        clock: Clock,
        feeds: MarketFeeds | None = None,
    ) -> None:
        self._settings = settings
        self._stats = stats
        self._clock = clock
        self._feeds = feeds
        self.marks = MarkPrices(settings=settings, prices=prices, clock=clock)
        self._balances = AccountBalances(chain=chain, stats=stats, marks=self.marks, clock=clock)
        if feeds is None:
            log.warning("MarketService without MarketFeeds: price_change_percent and funding rates read as 0")

    # -- lookups (also for the pre-trade gate) ---------------------------------------------

    @property
    def symbols(self) -> list[SymbolConfig]:
        return list(self._settings.symbols)

    def resolve_symbol(self, key: str) -> SymbolConfig:
        """A market by name (any case) or numeric id; UNKNOWN_SYMBOL otherwise."""
        text = key.strip()
        found: SymbolConfig | None = None
        if 0 < len(text) <= _MAX_KEY_LEN:
            if text.isascii() and text.isdigit():
                found = self._settings.symbol(int(text)) if len(text) <= 18 else None
            elif text.isascii() and text.isalnum():
                found = self._settings.symbol(text)
        if found is None:
            shown = text if len(text) <= _MAX_KEY_LEN else text[:_MAX_KEY_LEN] + "…"
            raise SolverError(
                ErrorCode.UNKNOWN_SYMBOL,
                f"Unknown symbol {shown!r}. Use a market name such as {self._example_name()} or a numeric symbol id.",
            )
        return found

    async def fresh_price(self, symbol: SymbolConfig) -> PricePoint:
        """The latest mark if it is younger than risk.max_price_age_s; 503 otherwise (never 0)."""
        return await self.marks.fresh(symbol)

    async def used_notional(self) -> dict[int, Decimal]:
        return await self._stats.used_notional_by_symbol()

    # -- endpoints ----------------------------------------------------------------------------

    def locked_params(self, symbol: str, leverage: str | None) -> LockedPercents:
        sym = self.resolve_symbol(symbol)
        lo, hi = min_leverage(sym), max_leverage(sym)
        allowed = f"Allowed leverage for {sym.name}: {lo} to {hi}."
        if leverage is None or not leverage.strip():
            raise SolverError(ErrorCode.INVALID_LEVERAGE, f"The leverage query parameter is required. {allowed}")
        try:
            value = parse_decimal(leverage, field="leverage")
        except NumberFormatError as exc:
            raise SolverError(
                ErrorCode.INVALID_LEVERAGE, f"Leverage must be a number from {lo} to {hi}.", [str(exc)]
            ) from exc
        try:
            return locked_percents(sym, value)
        except LeverageError as exc:
            raise SolverError(ErrorCode.INVALID_LEVERAGE, str(exc), [allowed]) from exc

    async def open_interest(self) -> CapUsage:
        used = await self.used_notional()
        return CapUsage(total_cap=self._settings.risk.total_notional_cap, used=sum(used.values(), Decimal(0)))

    async def notional_cap(self, symbol: str) -> CapUsage:
        sym = self.resolve_symbol(symbol)
        used = await self.used_notional()
        return CapUsage(total_cap=sym.notional_cap, used=used.get(sym.symbol_id, Decimal(0)))

    async def price_range(self, symbol: str) -> PriceRange:
        """mark × (1 ∓ max_price_deviation), rounded inwards to the price precision."""
        sym = self.resolve_symbol(symbol)
        mark = (await self.fresh_price(sym)).price
        quantum = Decimal(1).scaleb(-sym.price_precision)
        dev = sym.max_price_deviation
        low = _CTX.multiply(mark, 1 - dev).quantize(quantum, rounding=ROUND_CEILING, context=_CTX)
        high = _CTX.multiply(mark, 1 + dev).quantize(quantum, rounding=ROUND_FLOOR, context=_CTX)
        return PriceRange(min_price=low, max_price=high)

    async def market_info(self) -> dict[str, MarketInfo]:
        """Symbols that have ever had a price. The price shown is the last one known even when it
        is stale (display only: trading endpoints refuse stale prices); a symbol that never had
        a price is left out rather than shown as 0. Change: vs. the price 24 h ago
        (MarketFeeds), 0 when unknown. Volume: open-side notional of quotes created in the last
        24 h that were filled."""
        now = self._clock.time()
        points = await self.marks.latest(self._settings.symbols)
        volume = await self._stats.trade_volume_by_symbol(self._clock.now() - timedelta(days=1))
        out: dict[str, MarketInfo] = {}
        for sym in self._settings.symbols:
            point = points.get(sym.name)
            if point is None:
                continue
            change = Decimal(0)
            if self._feeds is not None:
                if self.marks.is_fresh(point, now):
                    await self._feeds.record_price(point)
                ref = await self._feeds.reference_price(sym.name, now)
                if ref is not None:
                    ratio = _CTX.divide(_CTX.multiply(point.price - ref, Decimal(100)), ref)
                    change = ratio.quantize(_PCT_QUANTUM, rounding=ROUND_HALF_EVEN, context=_CTX)
            out[sym.name] = MarketInfo(
                price=point.price,
                price_change_percent=change,
                trade_volume=volume.get(sym.symbol_id, Decimal(0)),
                notional_cap=sym.notional_cap,
            )
        return out

    async def funding_info(self, symbols: list[str] | None) -> dict[str, FundingInfo]:
        """Requested symbols (repeated `symbols=` and/or comma separated), all when none given."""
        keys = [k for raw in symbols or [] for k in raw.split(",") if k.strip()]
        if keys:
            chosen: dict[str, SymbolConfig] = {}
            unknown: list[str] = []
            for key in keys:
                try:
                    sym = self.resolve_symbol(key)
                except SolverError:
                    unknown.append(key.strip()[:_MAX_KEY_LEN])
                    continue
                chosen[sym.name] = sym
            if unknown:
                raise SolverError(
                    ErrorCode.UNKNOWN_SYMBOL,
                    f"Unknown symbol(s): {', '.join(unknown[:10])}.",
                    [f"known symbols: {', '.join(s.name for s in self._settings.symbols)}"],
                )
            selected = list(chosen.values())
        else:
            selected = self.symbols
        now = self._clock.time()
        out: dict[str, FundingInfo] = {}
        for sym in selected:
            epoch = sym.funding_rate_epoch_duration
            long, short = (Decimal(0), Decimal(0))
            if self._feeds is not None:
                long, short = await self._feeds.funding_rates(sym.name)
            out[sym.name] = FundingInfo(
                next_funding_time_ms=(int(now) // epoch + 1) * epoch * 1000,
                rate_long=long,
                rate_short=short,
                epoch_duration_s=epoch,
            )
        return out

    async def balance_info(self, owner: str, multi_account: str) -> dict[str, PartyABalance]:
        """Every sub-account of `owner`, keyed by its checksummed address."""
        owner_addr = checksum(owner, "owner")
        multi = checksum(multi_account, "multiAccount")
        if multi.lower() != self._settings.chain.multi_account_address.lower():
            served = to_checksum_address(self._settings.chain.multi_account_address)
            raise SolverError(
                ErrorCode.UNKNOWN_MULTI_ACCOUNT, f"This solver serves the MultiAccount {served}, not {multi}."
            )
        return await self._balances.of_owner(owner_addr)

    async def account_balance(self, account: str) -> PartyABalance:
        """Balances and uPnL of one sub-account (upnl-ws); 503 on a stale price, never zeros."""
        return await self._balances.of_account(checksum(account, "account"))

    async def party_a_upnl(self, account: str) -> Upnl:
        return await self._balances.upnl(checksum(account, "account"))

    # -- internals ------------------------------------------------------------------------------

    def _example_name(self) -> str:
        return self._settings.symbols[0].name if self._settings.symbols else "BTCUSDT"
