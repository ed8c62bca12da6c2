"""Market data routes (http-api.md §2), no auth. Thin: validation and math live in the service.

Path parameters are plain `str` so that a bad value reaches the service and gets a clear error
body (a typed `{x:int}` would answer a bare framework 404).
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from solver.market.schemas import (
    BalanceInfoOut,
    CapOut,
    ContractSymbolsOut,
    FundingInfoOut,
    LockedParamsOut,
    MarketInfoOut,
    PartyAOut,
    PriceRangeOut,
    SymbolOut,
    UpnlOut,
)
from solver.market.service import MarketService

_TAGS = ["market"]
# The service comes from the app's `market` dependency (explicit: inferred dependencies go away
# in Litestar 3).
Market = NamedDependency[MarketService]


@get("/contract-symbols", summary="Markets this solver quotes, with their limits", tags=_TAGS)
async def contract_symbols(market: Market) -> ContractSymbolsOut:
    symbols = [SymbolOut.of(s) for s in market.symbols]
    return ContractSymbolsOut(count=len(symbols), symbols=symbols)


@get(
    "/get_locked_params/{symbol:str}",
    summary="Locked-value percentages (cva, lf, partyAmm of the margin; partyBmm of the notional) for a leverage",
    description="`symbol` is the market name (any case) or the numeric symbol id. Leverage out of range: 400.",
    tags=_TAGS,
)
async def get_locked_params(
    symbol: FromPath[str],
    market: Market,
    leverage: Annotated[str | None, QueryParameter(name="leverage", description="Leverage, e.g. 10")] = None,
) -> LockedParamsOut:
    return LockedParamsOut.of(market.locked_params(symbol, leverage))


@get("/open-interest", summary="Configured total notional cap and the notional in use (USD)", tags=_TAGS)
async def open_interest(market: Market) -> CapOut:
    return CapOut.of(await market.open_interest())


@get("/notional_cap/{symbol_id:str}", summary="Notional cap and notional in use for one symbol (USD)", tags=_TAGS)
async def notional_cap(symbol_id: FromPath[str], market: Market) -> CapOut:
    return CapOut.of(await market.notional_cap(symbol_id))


@get(
    "/price-range/{symbol:str}",
    summary="Price band the solver accepts for LIMIT requests now (503 when the price is stale)",
    tags=_TAGS,
)
async def price_range(symbol: FromPath[str], market: Market) -> PriceRangeOut:
    return PriceRangeOut.of(await market.price_range(symbol))


@get(
    "/get_market_info",
    summary="Price, 24 h change, 24 h volume and notional cap per market",
    description="Markets that never had a price are omitted; a stale price is shown as last known.",
    tags=_TAGS,
)
async def get_market_info(market: Market) -> dict[str, MarketInfoOut]:
    return {name: MarketInfoOut.of(info) for name, info in (await market.market_info()).items()}


@get(
    "/get_funding_info",
    summary="Next funding time (ms) and rates per market",
    description="Repeat `symbols=` (or comma-separate) to choose markets; all markets when omitted.",
    tags=_TAGS,
)
async def get_funding_info(
    market: Market,
    symbols: Annotated[list[str] | None, QueryParameter(name="symbols", description="Market names or ids")] = None,
) -> dict[str, FundingInfoOut]:
    return {name: FundingInfoOut.of(f) for name, f in (await market.funding_info(symbols)).items()}


@get(
    "/get_balance_info/{owner:str}/{multi_account:str}",
    summary="Balances of every sub-account of an owner",
    tags=_TAGS,
)
async def get_balance_info(
    owner: FromPath[str], multi_account: FromPath[str], market: Market
) -> dict[str, BalanceInfoOut]:
    balances = await market.balance_info(owner, multi_account)
    return {account: BalanceInfoOut(party_a=PartyAOut.of(b)) for account, b in balances.items()}


@get("/partyA_upnl/{account:str}", summary="Unrealised PnL of a sub-account at the current marks", tags=_TAGS)
async def party_a_upnl(account: FromPath[str], market: Market) -> UpnlOut:
    return UpnlOut.of(await market.party_a_upnl(account))


def market_routes() -> list[Any]:
    return [
        contract_symbols,
        get_locked_params,
        open_interest,
        notional_cap,
        price_range,
        get_market_info,
        get_funding_info,
        get_balance_info,
        party_a_upnl,
    ]
