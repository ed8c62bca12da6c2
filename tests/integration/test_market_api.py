"""Market data endpoints (http-api.md §2) against real Redis and Postgres.

Most tests use an in-test `FakeChain` (a ChainReader with canned balances and positions), which
makes edge cases cheap (`*_fake_chain`); /get_balance_info and /partyA_upnl are also tested on
the anvil devnet through Web3ChainReader with a position the solver really opened (`*_devnet`).

Each test configures its markets under fresh symbol ids, so rows other tests leave in the
session's database never count towards the numbers asserted here.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import redis.asyncio as aioredis
from eth_account import Account
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from web3 import Web3
from web3.logs import DISCARD

from solver.app import build_services, create_app
from solver.chain.types import LockedValues, OnChainQuote, PartyABalances, SubAccount
from solver.chain.web3_reader import Web3ChainReader
from solver.core.clock import FixedClock
from solver.core.errors import ErrorCode
from solver.core.units import to_wei
from solver.db.engine import session_factory
from solver.devnet.artifacts import load_artifact
from solver.devnet.deploy import DevnetInfo
from solver.market.feeds import MarketFeeds
from solver.market.repository import MarketStats
from solver.market.service import MarketService
from solver.oracle.signer import OracleSigner
from solver.pricing.cache import PriceCache, PricePoint
from solver.settings import Settings, load_settings
from tests.fixtures.db import next_temp_quote_id
from tests.fixtures.redis import REDIS_URL

pytestmark = pytest.mark.integration

ERROR_KEYS = {"error_code", "error_message", "error_detail"}
NOW = 1_763_700_000.0  # a fixed "now" (2025-11-21T04:40:00Z); prices are seeded relative to it
MULTI = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
OWNER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
ACC1 = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
ACC2 = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
TEST_JWT_SECRET = "integration-test-secret-0123456789abcdef"


# --- fake chain ------------------------------------------------------------------------------


def _lv(cva: str = "0", lf: str = "0", amm: str = "0", bmm: str = "0") -> LockedValues:
    return LockedValues(to_wei(Decimal(cva)), to_wei(Decimal(lf)), to_wei(Decimal(amm)), to_wei(Decimal(bmm)))


def _position(
    qid: int, account: str, symbol_id: int, side: int, opened: str, qty: str, closed: str = "0"
) -> OnChainQuote:
    return OnChainQuote(
        id=qid,
        party_a=account,
        party_b="0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",
        symbol_id=symbol_id,
        position_type=side,
        order_type=1,
        status=4,
        opened_price=to_wei(Decimal(opened)),
        requested_open_price=to_wei(Decimal(opened)),
        market_price=to_wei(Decimal(opened)),
        quantity=to_wei(Decimal(qty)),
        closed_amount=to_wei(Decimal(closed)),
        locked=_lv(),
        initial_locked=_lv(),
        max_funding_rate=0,
        avg_closed_price=0,
        requested_close_price=0,
        quantity_to_close=0,
        parent_id=0,
        create_timestamp=int(NOW),
        status_modify_timestamp=int(NOW),
        deadline=int(NOW) + 60,
        trading_fee=0,
        affiliate="0x0000000000000000000000000000000000000000",
    )


class FakeChain:
    """ChainReader with canned answers (stands in for anvil where the devnet is not needed)."""

    def __init__(self) -> None:
        self.accounts: dict[str, list[SubAccount]] = {}
        self.balances: dict[str, PartyABalances] = {}
        self.positions: dict[str, list[OnChainQuote]] = {}
        self.fail = False

    async def close(self) -> None:
        return None

    async def chain_id(self) -> int:
        return 31337

    async def owner_of(self, account: str) -> str | None:
        for owner, subs in self.accounts.items():
            if any(s.address.lower() == account.lower() for s in subs):
                return owner
        return None

    async def accounts_of(self, owner: str) -> list[SubAccount]:
        if self.fail:
            raise ConnectionError("node down")
        return list(self.accounts.get(owner, []))

    async def is_delegated(self, account: str, target: str, selector: bytes) -> bool:
        return False

    async def party_a_balances(self, account: str) -> PartyABalances:
        return self.balances.get(account, PartyABalances(allocated=0, locked=_lv(), pending_locked=_lv()))

    async def quote(self, quote_id: int) -> OnChainQuote | None:
        return None

    async def open_positions(self, account: str) -> list[OnChainQuote]:
        if self.fail:
            raise ConnectionError("node down")
        return list(self.positions.get(account, []))

    async def pending_quote_ids(self, account: str) -> list[int]:
        return []

    async def nonce_of_party_a(self, account: str) -> int:
        return 0

    async def nonce_of_party_b(self, party_b: str, party_a: str) -> int:
        return 0

    async def is_valid_signature_1271(self, wallet: str, digest: bytes, signature: bytes) -> bool:
        return False


# --- fixtures --------------------------------------------------------------------------------


@dataclasses.dataclass
class Env:
    client: AsyncTestClient[Any]
    settings: Settings
    prices: PriceCache
    feeds: MarketFeeds
    chain: FakeChain
    engine: AsyncEngine
    ids: dict[str, int]  # market name -> this test's symbol id

    async def price(self, name: str, price: str, age_s: float = 1.0) -> None:
        await self.prices.set(PricePoint(symbol=name, price=Decimal(price), ts=NOW - age_s))


def _market_settings(database_url: str, redis_prefix: str, base_id: int) -> Settings:
    symbols = [s.model_dump() for s in load_settings().symbols]
    for i, sym in enumerate(symbols):
        sym["symbol_id"] = base_id + i
    symbols[0]["party_bmm_percent"] = Decimal("0.5")
    return load_settings(
        env="test",
        database_url=database_url,
        redis_url=REDIS_URL,
        redis_prefix=redis_prefix,
        chain={"chain_id": 31337, "multi_account_address": MULTI},
        auth={"jwt_secret": TEST_JWT_SECRET},
        symbols=symbols,
    )


@pytest.fixture
async def env(
    database_url: str, db_engine: AsyncEngine, redis_prefix: str, redis_client: aioredis.Redis
) -> AsyncIterator[Env]:
    """The app on its own Redis client and engine: AsyncTestClient runs the app (lifespan and
    requests) on a portal event loop in another thread, so nothing it uses may be shared with
    the test's loop. Seeding and cleanup go through `redis_client` and `db_engine`."""
    base_id = 1_000_000 + secrets.randbelow(10**9)
    settings = _market_settings(database_url, redis_prefix, base_id)
    app_redis = aioredis.from_url(REDIS_URL)
    app_engine = create_async_engine(database_url, poolclass=NullPool)
    chain = FakeChain()
    clock = FixedClock(NOW)
    services = build_services(settings, redis=app_redis, engine=app_engine, chain=chain, clock=clock)
    # The wiring app.py should adopt: MarketService(..., feeds=MarketFeeds(redis, prefix)).
    market = MarketService(
        settings=settings,
        prices=PriceCache(app_redis, settings.redis_prefix),
        chain=chain,
        stats=MarketStats(session_factory(app_engine)),
        clock=clock,
        feeds=MarketFeeds(app_redis, settings.redis_prefix),
    )
    app = create_app(settings, dataclasses.replace(services, market=market))
    ids = {s.name: s.symbol_id for s in settings.symbols}
    try:
        async with AsyncTestClient(app=app) as client:
            yield Env(
                client,
                settings,
                PriceCache(redis_client, settings.redis_prefix),
                MarketFeeds(redis_client, settings.redis_prefix),
                chain,
                db_engine,
                ids,
            )
            client.blocking_portal.call(app_redis.aclose)
            client.blocking_portal.call(app_engine.dispose)
    finally:
        async with db_engine.begin() as conn:
            for table in ("quote", "instant_open"):
                await conn.execute(
                    text(f"DELETE FROM {table} WHERE symbol_id = ANY(:ids)"), {"ids": list(ids.values())}
                )


async def _insert_quote(engine: AsyncEngine, **f: Any) -> None:
    row = {
        "quote_id": secrets.randbelow(10**15) + 10**12,
        "party_a": ACC1,
        "position_type": 0,
        "order_type": 1,
        "closed_amount": Decimal(0),
        "opened_price": None,
        "cva": Decimal(1),
        "lf": Decimal(1),
        "party_amm": Decimal(1),
        "party_bmm": Decimal(0),
        "trading_fee": Decimal("0.0006"),
        "deadline": int(NOW) + 60,
        "block_number": 1,
        "create_time": datetime.fromtimestamp(NOW, UTC) - timedelta(hours=1),
    }
    row.update(f)
    cols = ", ".join(row)
    vals = ", ".join(f":{k}" for k in row)
    async with engine.begin() as conn:
        await conn.execute(text(f"INSERT INTO quote ({cols}) VALUES ({vals})"), row)


async def _insert_instant_open(engine: AsyncEngine, **f: Any) -> None:
    row = {
        "temp_quote_id": next_temp_quote_id(),
        "account": ACC1,
        "position_type": 0,
        "order_type": 1,
        "cva": Decimal(1),
        "lf": Decimal("0.5"),
        "party_amm": Decimal(3),
        "party_bmm": Decimal(0),
        "max_funding_rate": Decimal(200),
        "deadline": int(NOW) + 60,
        "status": "pending",
        "quote_id": None,
    }
    row.update(f)
    cols = ", ".join(row)
    vals = ", ".join(f":{k}" for k in row)
    async with engine.begin() as conn:
        await conn.execute(text(f"INSERT INTO instant_open ({cols}) VALUES ({vals})"), row)


def _assert_error(resp: Any, status: int, code: ErrorCode | None = None) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == ERROR_KEYS
    assert isinstance(body["error_code"], int)
    assert isinstance(body["error_message"], str) and body["error_message"]
    assert body["error_detail"] is None or all(isinstance(x, str) for x in body["error_detail"])
    if code is not None:
        assert body["error_code"] == code.code, body


# --- /contract-symbols -----------------------------------------------------------------------

SYMBOL_TYPES: dict[str, type | tuple[type, ...]] = {
    "symbol_id": int,
    "name": str,
    "symbol": str,
    "asset": str,
    "price_precision": int,
    "quantity_precision": int,
    "is_valid": bool,
    "min_acceptable_quote_value": (int, float),
    "min_acceptable_portion_lf": str,
    "trading_fee": str,
    "max_leverage": (int, float),
    "max_notional_value": (int, float),
    "max_funding_rate": str,
    "rfq_allowed": bool,
    "hedger_fee_open": str,
    "hedger_fee_close": str,
}


async def test_contract_symbols(env: Env) -> None:
    resp = await env.client.get("/contract-symbols")
    assert resp.status_code == 200
    body = resp.json()
    assert body["count"] == 3 == len(body["symbols"])
    for item in body["symbols"]:
        assert set(item) == set(SYMBOL_TYPES)
        for key, typ in SYMBOL_TYPES.items():
            assert isinstance(item[key], typ), (key, item[key])
        assert item["symbol_id"] >= 1
    btc = next(s for s in body["symbols"] if s["name"] == "BTCUSDT")
    assert btc == {
        "symbol_id": env.ids["BTCUSDT"],
        "name": "BTCUSDT",
        "symbol": "BTC",
        "asset": "USDT",
        "price_precision": 1,
        "quantity_precision": 3,
        "is_valid": True,
        "min_acceptable_quote_value": 10,
        "min_acceptable_portion_lf": "0.001",
        "trading_fee": "0.0006",
        "max_leverage": 50,
        "max_notional_value": 1000000,
        "max_funding_rate": "200",
        "rfq_allowed": True,
        "hedger_fee_open": "0.0002",
        "hedger_fee_close": "0.0002",
    }


# --- /get_locked_params ----------------------------------------------------------------------


@pytest.mark.parametrize("key", ["BTCUSDT", "btcusdt", "BtcUsdt", "id"])
async def test_locked_params_by_name_or_id(env: Env, key: str) -> None:
    key = str(env.ids["BTCUSDT"]) if key == "id" else key
    resp = await env.client.get(f"/get_locked_params/{key}", params={"leverage": "10"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "cva": "6.666666666666666667",
        "lf": "3.333333333333333334",
        "partyAmm": "89.999999999999999999",
        "partyBmm": "0.5",
        "leverage": "10",
        "message": "Success",
    }


async def test_locked_params_bounds(env: Env) -> None:
    ok = await env.client.get("/get_locked_params/XRPUSDT", params={"leverage": "15"})
    assert ok.status_code == 200
    assert ok.json()["cva"] == "40" and ok.json()["lf"] == "20" and ok.json()["partyAmm"] == "40"
    one = await env.client.get("/get_locked_params/XRPUSDT?leverage=1")
    assert one.status_code == 200
    too_high = await env.client.get("/get_locked_params/XRPUSDT?leverage=16")
    _assert_error(too_high, 400, ErrorCode.INVALID_LEVERAGE)
    assert "1 and 15" in too_high.json()["error_message"]


# --- caps ------------------------------------------------------------------------------------


async def test_open_interest_and_notional_cap(env: Env) -> None:
    before = (await env.client.get("/open-interest")).json()
    assert before["total_cap"] == "10000000"
    btc, eth = env.ids["BTCUSDT"], env.ids["ETHUSDT"]
    empty = await env.client.get(f"/notional_cap/{btc}")
    assert empty.json() == {"total_cap": "5000000", "used": "0"}

    # OPENED, partly closed: (0.5 − 0.1) × 60000 = 24000
    await _insert_quote(
        env.engine,
        symbol_id=btc,
        status=4,
        quantity=Decimal("0.5"),
        closed_amount=Decimal("0.1"),
        opened_price=Decimal(60000),
        requested_open_price=Decimal(60100),
    )
    # PENDING at the requested price: 0.2 × 61000 = 12200
    await _insert_quote(
        env.engine, symbol_id=btc, status=0, quantity=Decimal("0.2"), requested_open_price=Decimal(61000)
    )
    # CLOSED: not counted
    await _insert_quote(
        env.engine,
        symbol_id=btc,
        status=7,
        quantity=Decimal(1),
        closed_amount=Decimal(1),
        opened_price=Decimal(60000),
        requested_open_price=Decimal(60000),
    )
    # Accepted instant open not on chain yet: 0.1 × 59000 = 5900
    await _insert_instant_open(env.engine, symbol_id=btc, quantity=Decimal("0.1"), requested_open_price=Decimal(59000))
    # Instant open whose quote is already mirrored: counted once (through the quote row, 3 × 3000)
    qid = secrets.randbelow(10**15) + 10**12
    await _insert_quote(
        env.engine, quote_id=qid, symbol_id=eth, status=1, quantity=Decimal(3), requested_open_price=Decimal(3000)
    )
    await _insert_instant_open(
        env.engine, symbol_id=eth, quantity=Decimal(3), requested_open_price=Decimal(3000), status="sent", quote_id=qid
    )
    # Failed instant open: not counted
    await _insert_instant_open(
        env.engine, symbol_id=eth, quantity=Decimal(1), requested_open_price=Decimal(3000), status="failed"
    )

    resp = await env.client.get(f"/notional_cap/{btc}")
    assert resp.status_code == 200
    assert resp.json() == {"total_cap": "5000000", "used": "42100"}
    by_name = await env.client.get("/notional_cap/ethusdt")
    assert by_name.json() == {"total_cap": "3000000", "used": "9000"}
    after = (await env.client.get("/open-interest")).json()
    assert set(after) == {"total_cap", "used"}
    assert Decimal(after["used"]) - Decimal(before["used"]) == Decimal(51100)


# --- prices ----------------------------------------------------------------------------------


async def test_price_range(env: Env) -> None:
    await env.price("XRPUSDT", "0.5123")
    resp = await env.client.get("/price-range/xrpusdt")
    assert resp.status_code == 200
    # 0.5123 × 0.95 = 0.486685 → up to 0.4867; × 1.05 = 0.537915 → down to 0.5379
    assert resp.json() == {"min_price": "0.4867", "max_price": "0.5379"}


async def test_price_range_missing_or_stale_is_503(env: Env) -> None:
    missing = await env.client.get("/price-range/BTCUSDT")
    _assert_error(missing, 503, ErrorCode.PRICE_UNAVAILABLE)
    await env.price("BTCUSDT", "60000", age_s=60)
    stale = await env.client.get("/price-range/BTCUSDT")
    _assert_error(stale, 503, ErrorCode.PRICE_STALE)
    assert "60 s old" in stale.json()["error_message"]


async def test_market_info(env: Env) -> None:
    btc = env.ids["BTCUSDT"]
    # 24 h ago (the hour bucket of NOW − 24 h) BTC was at 50000; now it is 60000: +20 %.
    await env.feeds.record_price(PricePoint("BTCUSDT", Decimal(50000), NOW - 86400 + 10))
    await env.price("BTCUSDT", "60000")
    await env.price("ETHUSDT", "3000", age_s=3600)  # stale: shown as last known, no reference
    # Volume: filled quotes created in the last 24 h (0.5 × 60000 + 0.25 × 60000); older and unfilled ignored.
    await _insert_quote(
        env.engine,
        symbol_id=btc,
        status=4,
        quantity=Decimal("0.5"),
        opened_price=Decimal(60000),
        requested_open_price=Decimal(60000),
    )
    await _insert_quote(
        env.engine,
        symbol_id=btc,
        status=7,
        quantity=Decimal("0.25"),
        closed_amount=Decimal("0.25"),
        opened_price=Decimal(60000),
        requested_open_price=Decimal(60000),
    )
    await _insert_quote(
        env.engine,
        symbol_id=btc,
        status=4,
        quantity=Decimal(9),
        opened_price=Decimal(60000),
        requested_open_price=Decimal(60000),
        create_time=datetime.fromtimestamp(NOW - 2 * 86400, UTC),
    )
    await _insert_quote(env.engine, symbol_id=btc, status=0, quantity=Decimal(9), requested_open_price=Decimal(60000))

    resp = await env.client.get("/get_market_info")
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"BTCUSDT", "ETHUSDT"}  # XRP never had a price: omitted, not 0
    assert body["BTCUSDT"] == {
        "price": "60000",
        "price_change_percent": "20",
        "trade_volume": "45000",
        "notional_cap": "5000000",
    }
    assert body["ETHUSDT"] == {
        "price": "3000",
        "price_change_percent": "0",
        "trade_volume": "0",
        "notional_cap": "3000000",
    }
    for item in body.values():
        assert all(isinstance(v, str) for v in item.values())


async def test_funding_info(env: Env) -> None:
    await env.feeds.set_funding_rates("BTCUSDT", Decimal("0.0001"), Decimal("-0.00005"))
    resp = await env.client.get("/get_funding_info", params=[("symbols", "BTCUSDT"), ("symbols", "ethusdt")])
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"BTCUSDT", "ETHUSDT"}
    epoch = 28800
    next_ms = (int(NOW) // epoch + 1) * epoch * 1000
    assert body["BTCUSDT"] == {
        "next_funding_time": next_ms,
        "next_funding_rate_long": "0.0001",
        "next_funding_rate_short": "-0.00005",
        "funding_rate_epoch_duration": epoch,
    }
    assert body["ETHUSDT"]["next_funding_rate_long"] == "0"
    assert body["ETHUSDT"]["next_funding_time"] > NOW * 1000
    everything = await env.client.get("/get_funding_info")
    assert set(everything.json()) == {"BTCUSDT", "ETHUSDT", "XRPUSDT"}
    comma = await env.client.get("/get_funding_info?symbols=XRPUSDT,BTCUSDT")
    assert set(comma.json()) == {"XRPUSDT", "BTCUSDT"}


# --- balances (fake chain) -------------------------------------------------------------------


def _seed_accounts(env: Env) -> None:
    btc, eth = env.ids["BTCUSDT"], env.ids["ETHUSDT"]
    env.chain.accounts[OWNER] = [SubAccount(ACC1, "main"), SubAccount(ACC2, "empty")]
    env.chain.balances[ACC1] = PartyABalances(
        allocated=to_wei(Decimal(1000)),
        locked=_lv(cva="6.6", lf="3.3", amm="90", bmm="1"),
        pending_locked=_lv(cva="1", lf="0.5", amm="2"),
    )
    env.chain.positions[ACC1] = [
        _position(11, ACC1, btc, 0, "60000", "0.02"),  # LONG: (61000 − 60000) × 0.02 = +20
        _position(12, ACC1, eth, 1, "3000", "1.5", closed="0.5"),  # SHORT: −(3100 − 3000) × 1 = −100
    ]


async def test_balance_info_fake_chain(env: Env) -> None:
    _seed_accounts(env)
    await env.price("BTCUSDT", "61000")
    await env.price("ETHUSDT", "3100")
    # An accepted instant open not yet on chain adds to pending (cva 1, lf 0.5, partyAmm 3).
    await _insert_instant_open(
        env.engine,
        symbol_id=env.ids["BTCUSDT"],
        account=ACC1,
        quantity=Decimal("0.001"),
        requested_open_price=Decimal(61000),
    )
    resp = await env.client.get(f"/get_balance_info/{OWNER.lower()}/{MULTI.lower()}")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {ACC1, ACC2}  # checksummed keys
    for entry in body.values():
        assert set(entry) == {"party_a"}
        fields = dict(entry["party_a"])
        assert set(fields) == {
            "allocated_balance",
            "available_balance",
            "cva",
            "lf",
            "notional",
            "party_a_mm",
            "pending_cva",
            "pending_lf",
            "pending_party_a_mm",
            "upnl",
            "timestamp",
        }
        assert isinstance(fields.pop("timestamp"), int)
        assert all(isinstance(v, str) for v in fields.values())
    a = body[ACC1]["party_a"]
    assert a["upnl"] == "-80"
    assert a["notional"] == "4320"  # 0.02 × 61000 + 1 × 3100
    assert (a["cva"], a["lf"], a["party_a_mm"]) == ("6.6", "3.3", "90")
    assert (a["pending_cva"], a["pending_lf"], a["pending_party_a_mm"]) == ("2", "1", "5")
    # 1000 − 80 − 99.9 − 8 = 812.1
    assert a["available_balance"] == "812.1"
    assert a["allocated_balance"] == "1000"
    assert a["timestamp"] == int(NOW)
    assert body[ACC2]["party_a"]["upnl"] == "0"
    assert body[ACC2]["party_a"]["available_balance"] == "0"


async def test_balance_info_unknown_owner_is_empty(env: Env) -> None:
    resp = await env.client.get(f"/get_balance_info/{ACC2}/{MULTI}")
    assert resp.status_code == 200
    assert resp.json() == {}


async def test_balance_info_stale_price_is_503(env: Env) -> None:
    _seed_accounts(env)
    await env.price("BTCUSDT", "61000")
    await env.price("ETHUSDT", "3100", age_s=30)
    _assert_error(await env.client.get(f"/get_balance_info/{OWNER}/{MULTI}"), 503, ErrorCode.PRICE_STALE)
    _assert_error(await env.client.get(f"/partyA_upnl/{ACC1}"), 503, ErrorCode.PRICE_STALE)


async def test_chain_failure_is_503(env: Env) -> None:
    env.chain.fail = True
    _assert_error(await env.client.get(f"/get_balance_info/{OWNER}/{MULTI}"), 503, ErrorCode.UNAVAILABLE)
    _assert_error(await env.client.get(f"/partyA_upnl/{ACC1}"), 503, ErrorCode.UNAVAILABLE)


async def test_party_a_upnl_fake_chain(env: Env) -> None:
    _seed_accounts(env)
    await env.price("BTCUSDT", "61000")
    await env.price("ETHUSDT", "3100")
    resp = await env.client.get(f"/partyA_upnl/{ACC1.lower()}")
    assert resp.status_code == 200
    assert resp.json() == {"upnl": "-80", "timestamp": int(NOW)}
    empty = await env.client.get(f"/partyA_upnl/{ACC2}")
    assert empty.json() == {"upnl": "0", "timestamp": int(NOW)}


# --- bad inputs ------------------------------------------------------------------------------

ADDR_BAD = ["0xzz", "0x123", "notanaddress", "0x" + "g" * 40, "1" * 42]

BAD_REQUESTS: list[tuple[str, int, ErrorCode]] = [
    ("/get_locked_params/NOPEUSDT?leverage=10", 404, ErrorCode.UNKNOWN_SYMBOL),
    ("/get_locked_params/0?leverage=10", 404, ErrorCode.UNKNOWN_SYMBOL),
    ("/get_locked_params/-1?leverage=10", 404, ErrorCode.UNKNOWN_SYMBOL),
    ("/get_locked_params/99999999999999999999999999999?leverage=10", 404, ErrorCode.UNKNOWN_SYMBOL),
    ("/get_locked_params/" + "A" * 500 + "?leverage=10", 404, ErrorCode.UNKNOWN_SYMBOL),
    ("/get_locked_params/%E2%82%AC?leverage=10", 404, ErrorCode.UNKNOWN_SYMBOL),
    ("/get_locked_params/BTCUSDT", 400, ErrorCode.INVALID_LEVERAGE),
    ("/get_locked_params/BTCUSDT?leverage=", 400, ErrorCode.INVALID_LEVERAGE),
    ("/get_locked_params/BTCUSDT?leverage=abc", 400, ErrorCode.INVALID_LEVERAGE),
    ("/get_locked_params/BTCUSDT?leverage=-1", 400, ErrorCode.INVALID_LEVERAGE),
    ("/get_locked_params/BTCUSDT?leverage=0", 400, ErrorCode.INVALID_LEVERAGE),
    ("/get_locked_params/BTCUSDT?leverage=51", 400, ErrorCode.INVALID_LEVERAGE),
    ("/get_locked_params/BTCUSDT?leverage=0.5", 400, ErrorCode.INVALID_LEVERAGE),
    ("/get_locked_params/BTCUSDT?leverage=NaN", 400, ErrorCode.INVALID_LEVERAGE),
    ("/get_locked_params/BTCUSDT?leverage=Infinity", 400, ErrorCode.INVALID_LEVERAGE),
    ("/get_locked_params/BTCUSDT?leverage=1e999999", 400, ErrorCode.INVALID_LEVERAGE),
    ("/get_locked_params/BTCUSDT?leverage=" + "9" * 400, 400, ErrorCode.INVALID_LEVERAGE),
    ("/get_locked_params/BTCUSDT?leverage=99999999999999999999999", 400, ErrorCode.INVALID_LEVERAGE),
    ("/notional_cap/abc", 404, ErrorCode.UNKNOWN_SYMBOL),
    ("/notional_cap/-5", 404, ErrorCode.UNKNOWN_SYMBOL),
    ("/notional_cap/1.5", 404, ErrorCode.UNKNOWN_SYMBOL),
    ("/notional_cap/0", 404, ErrorCode.UNKNOWN_SYMBOL),
    ("/price-range/NOPE", 404, ErrorCode.UNKNOWN_SYMBOL),
    ("/price-range/1e3", 404, ErrorCode.UNKNOWN_SYMBOL),
    ("/get_funding_info?symbols=NOPE", 404, ErrorCode.UNKNOWN_SYMBOL),
    ("/get_funding_info?symbols=BTCUSDT&symbols=NOPE", 404, ErrorCode.UNKNOWN_SYMBOL),
    (f"/get_balance_info/{OWNER}/0x0000000000000000000000000000000000000001", 404, ErrorCode.UNKNOWN_MULTI_ACCOUNT),
    *[(f"/get_balance_info/{bad}/{MULTI}", 400, ErrorCode.VALIDATION) for bad in ADDR_BAD],
    *[(f"/get_balance_info/{OWNER}/{bad}", 400, ErrorCode.VALIDATION) for bad in ADDR_BAD],
    *[(f"/partyA_upnl/{bad}", 400, ErrorCode.VALIDATION) for bad in ADDR_BAD],
]


@pytest.mark.parametrize(("path", "status", "code"), BAD_REQUESTS, ids=[p[:70] for p, _, _ in BAD_REQUESTS])
async def test_bad_inputs(env: Env, path: str, status: int, code: ErrorCode) -> None:
    _assert_error(await env.client.get(path), status, code)


# --- MarketFeeds -----------------------------------------------------------------------------


async def test_feeds_reference_price(redis_client: aioredis.Redis, redis_prefix: str) -> None:
    feeds = MarketFeeds(redis_client, redis_prefix)
    assert await feeds.reference_price("BTCUSDT", NOW) is None
    # Within the 24 h window only the oldest hour counts; the first price of an hour wins.
    await feeds.record_price(PricePoint("BTCUSDT", Decimal(61000), NOW - 3600 * 5))
    assert await feeds.reference_price("btcusdt", NOW) == 61000  # oldest known inside 24 h
    await feeds.record_price(PricePoint("BTCUSDT", Decimal(50000), NOW - 86400 + 60))
    await feeds.record_price(PricePoint("BTCUSDT", Decimal(52000), NOW - 86400 + 120))  # same hour: ignored
    assert await feeds.reference_price("BTCUSDT", NOW) == 50000
    # Older than 24 h does not count, and older than 26 h is pruned on the next new hour.
    await feeds.record_price(PricePoint("BTCUSDT", Decimal(1), NOW - 27 * 3600))
    assert await feeds.reference_price("BTCUSDT", NOW) == 50000
    await feeds.record_price(PricePoint("BTCUSDT", Decimal(60000), NOW))
    fields = await redis_client.hkeys(f"{redis_prefix}price_hourly:BTCUSDT")
    assert len(fields) == 3
    # Garbage in the hash is skipped (the next oldest price is used), never read as a price.
    oldest = str(int(NOW - 86400) // 3600 * 3600)
    await redis_client.hset(f"{redis_prefix}price_hourly:BTCUSDT", mapping={oldest: "{oops", "junk": "{}"})
    assert await feeds.reference_price("BTCUSDT", NOW) == 61000


async def test_feeds_funding_rates(redis_client: aioredis.Redis, redis_prefix: str) -> None:
    feeds = MarketFeeds(redis_client, redis_prefix)
    assert await feeds.funding_rates("ETHUSDT") == (0, 0)
    await feeds.set_funding_rates("ETHUSDT", Decimal("0.0003"), Decimal("-0.0001"))
    assert await feeds.funding_rates("ethusdt") == (Decimal("0.0003"), Decimal("-0.0001"))
    await redis_client.hset(f"{redis_prefix}funding:ETHUSDT", "long", "NaN")
    assert await feeds.funding_rates("ETHUSDT") == (0, Decimal("-0.0001"))


# --- balances on the anvil devnet (Web3ChainReader) -------------------------------------------


@dataclasses.dataclass
class OpenedPosition:
    owner: str
    account: str
    symbol_id: int
    opened_price: Decimal
    quantity: Decimal
    cva: Decimal
    lf: Decimal
    party_amm: Decimal


def _send(w3: Web3, key: str, call: Any) -> Any:
    """Sign with `key`, send, wait; the gas estimate pre-flights the call (a revert raises here)."""
    acct = Account.from_key(key)
    tx = call.build_transaction(
        {
            "from": acct.address,
            "nonce": w3.eth.get_transaction_count(acct.address, "pending"),
            "chainId": w3.eth.chain_id,
        }
    )
    tx["gas"] = int(tx["gas"] * 3 // 2)
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction), timeout=60, poll_latency=0.02
    )
    assert receipt["status"] == 1
    return receipt


def _open_devnet_position(devnet: DevnetInfo, oracle: OracleSigner) -> OpenedPosition:
    """A fresh owner and sub-account (shared demo accounts stay untouched) with one LONG BTC
    position opened by the solver: 0.02 BTC at 60000 with the locked values of leverage 10."""
    w3 = Web3(Web3.HTTPProvider(devnet.rpc_url))
    collateral = w3.eth.contract(address=devnet.collateral, abi=load_artifact("MockCollateral").abi)
    symmio = w3.eth.contract(address=devnet.symmio, abi=load_artifact("LocalSymmio").abi)
    multi = w3.eth.contract(address=devnet.multi_account, abi=load_artifact("MultiAccount").abi)
    owner = Account.create()
    owner_key = owner.key.to_0x_hex()
    admin = Account.from_key(devnet.admin_private_key)
    gas_tx = {
        "from": admin.address,
        "to": owner.address,
        "value": 10**18,
        "gas": 21_000,
        "gasPrice": w3.eth.gas_price,
        "nonce": w3.eth.get_transaction_count(admin.address, "pending"),
        "chainId": w3.eth.chain_id,
    }
    w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(admin.sign_transaction(gas_tx).raw_transaction))

    receipt = _send(w3, owner_key, multi.functions.addAccount("market-api-test"))
    account = Web3.to_checksum_address(multi.events.AddAccount().process_receipt(receipt)[0]["args"]["account"])
    deposit = to_wei(Decimal(10_000))
    _send(w3, owner_key, collateral.functions.mint(owner.address, deposit))
    _send(w3, owner_key, collateral.functions.approve(devnet.multi_account, deposit))
    _send(w3, owner_key, multi.functions.depositAndAllocateForAccount(account, deposit))
    _send(w3, devnet.solver_private_key, symmio.functions.allocateForPartyB(to_wei(Decimal(1000)), account))

    # N = 0.02 × 60000 = 1200; cn 0.01, L 10: cva ⅔·cn·N = 8, lf ⅓·cn·N = 4, partyAmm N/L − cn·N = 108.
    symbol_id, price, qty = 1, Decimal(60000), Decimal("0.02")
    cva, lf, amm = Decimal(8), Decimal(4), Decimal(108)
    sig = oracle.single_upnl_and_price(
        diamond=devnet.symmio,
        chain_id=devnet.chain_id,
        party_a=account,
        nonce_a=symmio.functions.nonceOfPartyA(account).call(),
        upnl=0,
        symbol_id=symbol_id,
        price=to_wei(price),
    )
    deadline = w3.eth.get_block("latest")["timestamp"] + 3600
    send_quote = symmio.encode_abi(
        "sendQuote",
        args=[
            [devnet.solver], symbol_id, 0, 1, to_wei(price), to_wei(qty), to_wei(cva), to_wei(lf), to_wei(amm), 0,
            to_wei(Decimal(200)), deadline, sig.as_tuple(),
        ],
    )  # fmt: skip
    receipt = _send(w3, owner_key, multi.functions._call(account, [send_quote]))
    sent = symmio.events.SendQuote().process_receipt(receipt, errors=DISCARD)
    quote_id = int(sent[0]["args"]["quoteId"])

    nonce_b = symmio.functions.nonceOfPartyB(devnet.solver, account).call()
    nonce_a = symmio.functions.nonceOfPartyA(account).call()
    lock_sig = oracle.party_b_upnl(
        diamond=devnet.symmio, chain_id=devnet.chain_id, party_b=devnet.solver, party_a=account, nonce_b=nonce_b, upnl=0
    )
    open_sig = oracle.pair_upnl_and_price(
        diamond=devnet.symmio,
        chain_id=devnet.chain_id,
        party_b=devnet.solver,
        party_a=account,
        nonce_b=nonce_b,
        nonce_a=nonce_a,
        upnl_party_b=0,
        upnl_party_a=0,
        symbol_id=symbol_id,
        price=to_wei(price),
    )
    _send(
        w3,
        devnet.solver_private_key,
        symmio.functions.lockAndOpenQuote(
            quote_id, to_wei(qty), to_wei(price), lock_sig.as_tuple(), open_sig.as_tuple()
        ),
    )
    return OpenedPosition(owner.address, account, symbol_id, price, qty, cva, lf, amm)


@pytest.fixture
async def devnet_api(
    devnet: DevnetInfo, database_url: str, redis_prefix: str, redis_client: aioredis.Redis
) -> AsyncIterator[tuple[AsyncTestClient[Any], PriceCache]]:
    """The app on the real devnet through Web3ChainReader (own Redis client and engine, see `env`)."""
    settings = load_settings(
        env="test",
        database_url=database_url,
        redis_url=REDIS_URL,
        redis_prefix=redis_prefix,
        chain={
            "chain_id": devnet.chain_id,
            "rpc_urls": [devnet.rpc_url],
            "multi_account_address": devnet.multi_account,
            "symmio_address": devnet.symmio,
            "collateral_address": devnet.collateral,
            "solver_address": devnet.solver,
        },
        auth={"jwt_secret": TEST_JWT_SECRET},
    )
    app_redis = aioredis.from_url(REDIS_URL)
    app_engine = create_async_engine(database_url, poolclass=NullPool)
    chain = Web3ChainReader.from_settings(settings.chain)
    services = build_services(settings, redis=app_redis, engine=app_engine, chain=chain)
    async with AsyncTestClient(app=create_app(settings, services)) as client:
        yield client, PriceCache(redis_client, redis_prefix)
        client.blocking_portal.call(app_redis.aclose)
        client.blocking_portal.call(app_engine.dispose)


async def test_balance_info_devnet(
    devnet: DevnetInfo, oracle_signer: OracleSigner, devnet_api: tuple[AsyncTestClient[Any], PriceCache]
) -> None:
    client, prices = devnet_api
    pos = _open_devnet_position(devnet, oracle_signer)
    await prices.set(PricePoint("BTCUSDT", Decimal(61000), time.time()))

    resp = await client.get(f"/get_balance_info/{pos.owner.lower()}/{devnet.multi_account.lower()}")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert list(body) == [pos.account]
    a = body[pos.account]["party_a"]
    assert isinstance(a.pop("timestamp"), int)
    assert all(isinstance(v, str) for v in a.values())
    # Trading fee 1200 × 0.0006 = 0.72 is taken from the allocated 10000 at sendQuote.
    assert a["allocated_balance"] == "9999.28"
    assert (a["cva"], a["lf"], a["party_a_mm"]) == ("8", "4", "108")
    assert (a["pending_cva"], a["pending_lf"], a["pending_party_a_mm"]) == ("0", "0", "0")
    assert a["upnl"] == "20"  # (61000 − 60000) × 0.02
    assert a["notional"] == "1220"  # 0.02 × 61000
    assert a["available_balance"] == "9899.28"  # 9999.28 + 20 − 120

    upnl_resp = await client.get(f"/partyA_upnl/{pos.account.lower()}")
    assert upnl_resp.status_code == 200
    assert upnl_resp.json()["upnl"] == "20"
    assert isinstance(upnl_resp.json()["timestamp"], int)

    # A demo owner's accounts are all listed, each with a party_a object.
    demo = devnet.demo_accounts[0]
    demo_resp = await client.get(f"/get_balance_info/{demo.owner}/{devnet.multi_account}")
    assert demo_resp.status_code == 200
    assert demo.account in demo_resp.json()
    assert all(set(v) == {"party_a"} for v in demo_resp.json().values())


async def test_party_a_upnl_devnet_stale_price(
    devnet: DevnetInfo, oracle_signer: OracleSigner, devnet_api: tuple[AsyncTestClient[Any], PriceCache]
) -> None:
    client, prices = devnet_api
    pos = _open_devnet_position(devnet, oracle_signer)
    missing = await client.get(f"/partyA_upnl/{pos.account}")
    _assert_error(missing, 503, ErrorCode.PRICE_UNAVAILABLE)
    await prices.set(PricePoint("BTCUSDT", Decimal(61000), time.time() - 60))
    _assert_error(await client.get(f"/partyA_upnl/{pos.account}"), 503, ErrorCode.PRICE_STALE)
    # An account without positions needs no price.
    empty = await client.get(f"/partyA_upnl/{devnet.demo_accounts[0].account}")
    assert empty.status_code == 200
