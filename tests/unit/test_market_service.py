"""MarketService input handling that needs no I/O: symbol lookup, leverage parsing, addresses."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

import pytest

from solver.core.clock import FixedClock
from solver.core.errors import ErrorCode, SolverError
from solver.market.service import MarketService
from solver.settings import load_settings

pytestmark = pytest.mark.unit

MULTI = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


@pytest.fixture
def market() -> MarketService:
    settings = load_settings(chain={"multi_account_address": MULTI})
    # No I/O is reached by the calls under test: the collaborators are never touched.
    unused = cast(Any, object())
    return MarketService(
        settings=settings, prices=unused, chain=unused, stats=unused, clock=FixedClock(0), feeds=unused
    )


@pytest.mark.parametrize(
    ("key", "name"), [("BTCUSDT", "BTCUSDT"), ("ethusdt", "ETHUSDT"), (" 3 ", "XRPUSDT"), ("1", "BTCUSDT")]
)
def test_resolve_symbol(market: MarketService, key: str, name: str) -> None:
    assert market.resolve_symbol(key).name == name


@pytest.mark.parametrize(
    "key", ["", "0", "-1", "4", "1.0", "1e0", "BTC-USDT", "²", "Ⅻ", "x" * 1000, "9" * 40, "BTCUSDT\x00"]
)
def test_unknown_symbol(market: MarketService, key: str) -> None:
    with pytest.raises(SolverError) as exc:
        market.resolve_symbol(key)
    assert exc.value.code is ErrorCode.UNKNOWN_SYMBOL
    assert len(exc.value.message) < 200  # a huge key is not echoed back whole


def test_locked_params_ok(market: MarketService) -> None:
    p = market.locked_params("btcusdt", "1E+1")
    assert p.leverage == 10
    assert p.as_strings()["leverage"] == "10"


@pytest.mark.parametrize(
    "leverage", [None, "", " ", "abc", "NaN", "-Infinity", "-3", "0", "51", "1e999", "0x10", "1,5"]
)
def test_locked_params_bad_leverage(market: MarketService, leverage: str | None) -> None:
    with pytest.raises(SolverError) as exc:
        market.locked_params("BTCUSDT", leverage)
    assert exc.value.code is ErrorCode.INVALID_LEVERAGE
    assert exc.value.code.status == 400
    said = exc.value.message + " ".join(exc.value.detail or [])
    assert "1" in said and "50" in said  # the allowed range is always stated


def test_locked_params_unknown_symbol_first(market: MarketService) -> None:
    with pytest.raises(SolverError) as exc:
        market.locked_params("NOPE", "abc")
    assert exc.value.code is ErrorCode.UNKNOWN_SYMBOL


async def test_bad_addresses(market: MarketService) -> None:
    for bad in ("0x12", "zz", "0x" + "G" * 40, " " * 42):
        with pytest.raises(SolverError) as exc:
            await market.balance_info(bad, MULTI)
        assert exc.value.code is ErrorCode.VALIDATION
        with pytest.raises(SolverError) as exc:
            await market.party_a_upnl(bad)
        assert exc.value.code is ErrorCode.VALIDATION


async def test_other_multi_account(market: MarketService) -> None:
    with pytest.raises(SolverError) as exc:
        await market.balance_info(MULTI, "0x" + "1" * 40)
    assert exc.value.code is ErrorCode.UNKNOWN_MULTI_ACCOUNT
    assert exc.value.code.status == 404


def test_symbols_listed(market: MarketService) -> None:
    assert [s.symbol_id for s in market.symbols] == [1, 2, 3]
    assert market.symbols[2].maintenance_ratio == Decimal("0.04")
