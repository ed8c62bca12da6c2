"""The engine's health loop against real Redis and Postgres (trading-rules.md §6).

Positions are quote mirror rows inserted directly; allocated balances come from a fake chain
reader (only `party_a_balances` is used) except in the API test, which runs on the devnet. Ticks
are XADDed to the price stream and handed to the loop one read at a time, so "flagged within that
tick" is checked right after the read that carried it was processed.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import pytest
from redis.asyncio import Redis
from sqlmodel import col, select, update

from solver.chain.reader import ChainReader
from solver.chain.types import LockedValues, PartyABalances, QuoteStatus
from solver.core.clock import FixedClock
from solver.core.units import to_wei
from solver.db.engine import SessionFactory
from solver.db.models import Notification, Quote
from solver.pricing.cache import PriceCache, PricePoint
from solver.pricing.stream import PriceStream
from solver.risk.flags import ReduceOnlyFlags, health_key, reduce_only_key
from solver.risk.health_engine import HealthEngine
from solver.settings import Settings, load_settings
from tests.fixtures.redis import REDIS_URL

pytestmark = pytest.mark.integration

D = Decimal
SOLVER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
T0 = 1_900_000_000.0


def new_address() -> str:
    from eth_utils.address import to_checksum_address

    return str(to_checksum_address("0x" + secrets.token_hex(20)))


def new_quote_id() -> int:
    return secrets.randbelow(2**62) + 10**12


class FakeChain:
    """Allocated balances by account (a missing account reads as 0)."""

    def __init__(self) -> None:
        self.allocated: dict[str, Decimal] = {}
        self.reads = 0

    async def party_a_balances(self, account: str) -> PartyABalances:
        self.reads += 1
        zero = LockedValues(0, 0, 0, 0)
        return PartyABalances(to_wei(self.allocated.get(account, D(0))), zero, zero)


async def insert_quote(
    db: SessionFactory,
    account: str,
    *,
    symbol_id: int = 1,
    position_type: int = 0,
    price: Decimal = Decimal(60000),
    quantity: Decimal = Decimal(1),
    cva: Decimal = Decimal(400),
    lf: Decimal = Decimal(200),
    status: int = QuoteStatus.OPENED,
    modified: datetime | None = None,
) -> int:
    quote_id = new_quote_id()
    now = modified or datetime.now(UTC)
    async with db() as s:
        s.add(
            Quote(
                quote_id=quote_id,
                party_a=account,
                party_b=SOLVER,
                symbol_id=symbol_id,
                position_type=position_type,
                order_type=1,
                status=status,
                requested_open_price=price,
                opened_price=price,
                quantity=quantity,
                cva=cva,
                lf=lf,
                party_amm=D(100),
                party_bmm=D(0),
                trading_fee=D(0),
                deadline=2_000_000_000,
                block_number=1,
                create_time=now,
                modify_time=now,
            )
        )
        await s.commit()
    return quote_id


async def set_status(db: SessionFactory, quote_id: int, status: int) -> None:
    async with db() as s:
        await s.exec(
            update(Quote).where(col(Quote.quote_id) == quote_id).values(status=status, modify_time=datetime.now(UTC))
        )
        await s.commit()


async def alerts(db: SessionFactory, account: str) -> list[Notification]:
    async with db() as s:
        rows = await s.exec(
            select(Notification).where(
                col(Notification.account) == account, col(Notification.last_seen_action) == "LiquidatePosition"
            )
        )
        return list(rows.all())


@pytest.fixture
def health_settings(database_url: str, redis_prefix: str) -> Settings:
    return load_settings(
        env="test",
        database_url=database_url,
        redis_url=REDIS_URL,
        redis_prefix=redis_prefix,
        chain={"solver_address": SOLVER},
        auth={"jwt_secret": "health-test-secret-0123456789abcdef0123"},
        health={"poll_interval_s": 0.05, "mirror_overlap_s": 5},
    )


class Harness:
    def __init__(self, settings: Settings, redis: Redis, db: SessionFactory) -> None:
        self.settings = settings
        self.redis = redis
        self.db = db
        self.prefix = settings.redis_prefix
        self.clock = FixedClock(T0)
        self.chain = FakeChain()
        self.stream = PriceStream(redis, self.prefix)
        self.engine = self.new_engine()

    def new_engine(self) -> HealthEngine:
        return HealthEngine(
            settings=self.settings,
            redis=self.redis,
            stream=self.stream,
            sessions=self.db,
            chain=cast(ChainReader, self.chain),
            clock=self.clock,
            consumer="test",
        )

    async def tick(self, symbol: str, price: Decimal | str, *, age: float = 0.0) -> None:
        """XADD one tick (dated a second after the previous one) and process exactly the read that
        carries it."""
        self.clock.advance(1)
        await self.stream.add_many([PricePoint(symbol, D(price), self.clock.time() - age)])
        ticks = await self.stream.read_group(self.engine.group, self.engine.consumer, 100, None)
        assert [t.point.symbol for t in ticks] == [symbol]
        await self.engine.handle_ticks(ticks)

    async def flagged(self, account: str) -> bool:
        return await ReduceOnlyFlags(self.redis, self.prefix).is_flagged(account)

    async def health(self, account: str) -> dict[str, str]:
        raw: dict[Any, Any] = await self.redis.hgetall(health_key(self.prefix, account))
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def reason(self, account: str) -> dict[str, Any]:
        raw = await self.redis.get(reduce_only_key(self.prefix, account))
        assert raw is not None
        return dict(json.loads(raw))


@pytest.fixture
async def h(health_settings: Settings, redis_client: Redis, db_factory: SessionFactory) -> Harness:
    harness = Harness(health_settings, redis_client, db_factory)
    await PriceCache(redis_client, harness.prefix).set(PricePoint("BTCUSDT", D(60000), T0))
    await PriceCache(redis_client, harness.prefix).set(PricePoint("ETHUSDT", D(3000), T0))
    return harness


async def test_tick_crossing_the_liquidation_price_flags_within_that_tick(h: Harness) -> None:
    weak, strong = new_address(), new_address()
    # LONG 1 BTC @ 60000, cva 400 + lf 200, allocated 1600: liquidation price 60000 − 1000 = 59000.
    await insert_quote(h.db, weak)
    await insert_quote(h.db, strong)
    h.chain.allocated.update({weak: D(1600), strong: D(10_000)})
    await h.engine.start()

    snap = await h.health(weak)
    assert snap["health"] == "1000" and snap["flagged"] == "0"
    assert json.loads(snap["liquidation_prices"]) == {"BTCUSDT": "59000"}
    assert json.loads(snap["exposure"]) == {"BTCUSDT": ["1", "60000"]}
    assert D(snap["available"]) == D(1600) - D(700)  # allocated − (cva + lf + partyAmm)

    await h.tick("BTCUSDT", "59000.5")
    assert not await h.flagged(weak)
    await h.tick("BTCUSDT", "58999")  # crosses 59000
    assert await h.flagged(weak) and not await h.flagged(strong)
    reason = await h.reason(weak)
    assert reason["health"] == "-1" and reason["symbol"] == "BTCUSDT" and reason["price"] == "58999"
    [alert] = await alerts(h.db, weak)
    assert alert.state_type == "alert" and alert.action_status == "seen"
    assert alert.event_key == f"liquidation:{weak}:{reason['episode']}"
    assert alert.counterparty_address == SOLVER and alert.quote_id is not None
    assert (await h.health(weak))["flagged"] == "1"

    await h.tick("BTCUSDT", "58000")  # still below: no second alert
    assert await h.flagged(weak) and len(await alerts(h.db, weak)) == 1

    await h.tick("BTCUSDT", "59000")  # health exactly 0: healthy again (Symmio: strictly below)
    assert not await h.flagged(weak)
    assert (await h.health(weak))["flagged"] == "0"

    await h.tick("BTCUSDT", "55000")  # a new episode, a new alert
    assert await h.flagged(weak) and len(await alerts(h.db, weak)) == 2
    assert not await h.flagged(strong)


async def test_stale_tick_neither_flags_nor_clears(h: Harness) -> None:
    account = new_address()
    await insert_quote(h.db, account)
    h.chain.allocated[account] = D(1600)
    await h.engine.start()

    await h.tick("BTCUSDT", "58000", age=60)  # source time a minute old: stale
    assert not await h.flagged(account)
    assert await alerts(h.db, account) == []
    await h.tick("BTCUSDT", "58000")  # the same price, fresh
    assert await h.flagged(account)
    # The reason names the fresh tick that made the decision (not "a balance or position change").
    reason = await ReduceOnlyFlags(h.redis, h.prefix).reason(account)
    assert reason is not None and (reason.symbol, reason.price) == ("BTCUSDT", "58000"), reason

    await h.tick("BTCUSDT", "65000", age=60)  # recovery on a stale price does not clear either
    assert await h.flagged(account)
    await h.tick("BTCUSDT", "65000")
    assert not await h.flagged(account)


async def test_other_symbol_moves_flag_a_multi_symbol_account(h: Harness) -> None:
    """LONG BTC + LONG ETH: only ETH falls, yet the account goes under water."""
    account = new_address()
    await insert_quote(h.db, account, cva=D(0), lf=D(0))
    await insert_quote(h.db, account, symbol_id=2, price=D(3000), quantity=D(10), cva=D(0), lf=D(0))
    h.chain.allocated[account] = D(3000)
    await h.engine.start()
    price = D(3000)
    while price > D(2600):
        price -= D(25)
        await h.tick("ETHUSDT", price)
        await h.tick("BTCUSDT", "60000")  # unchanged, but fresh: decisions need every mark fresh
        if price > D(2700):  # health = 3000 + 10 × (price − 3000) ≥ 0 down to 2700
            assert not await h.flagged(account), price
    assert await h.flagged(account)


async def test_positions_and_balances_follow_the_mirror_and_chain(h: Harness) -> None:
    account = new_address()
    await h.engine.start()
    assert account not in h.engine.book

    quote_id = await insert_quote(h.db, account)
    h.chain.allocated[account] = D(500)  # health 500 − 600 < 0 at entry
    await h.engine.poll_once()
    assert account in h.engine.book
    assert await h.flagged(account)  # flagged on the position change, no tick needed
    assert len(await alerts(h.db, account)) == 1

    h.chain.allocated[account] = D(5000)  # the user deposited: flagged accounts are re-read first
    await h.engine.poll_once()
    assert not await h.flagged(account)
    assert (await h.health(account))["allocated"] == "5000"

    await h.tick("BTCUSDT", "50000")
    assert await h.flagged(account)
    await set_status(h.db, quote_id, QuoteStatus.CLOSED)  # closed: nothing left to liquidate
    await h.engine.poll_once()
    assert account not in h.engine.book
    assert not await h.flagged(account)
    assert await h.health(account) == {}


async def test_late_commit_with_an_older_modify_time_is_seen(h: Harness) -> None:
    account = new_address()
    await h.engine.start()
    await insert_quote(h.db, new_address())  # moves the watermark forward
    await h.engine.poll_once()
    await insert_quote(h.db, account, modified=datetime.now(UTC) - timedelta(seconds=2))
    h.chain.allocated[account] = D(100)
    await h.engine.poll_once()
    assert account in h.engine.book and await h.flagged(account)


async def test_restart_keeps_the_episode_and_clears_flags_without_positions(h: Harness) -> None:
    account, gone = new_address(), new_address()
    await insert_quote(h.db, account)
    h.chain.allocated[account] = D(1600)
    await h.redis.set(reduce_only_key(h.prefix, gone), "not json")  # flagged, but holds nothing
    await h.engine.start()
    assert not await h.flagged(gone)
    await h.tick("BTCUSDT", "58000")
    assert await h.flagged(account)
    episode = (await h.reason(account))["episode"]

    h.engine = h.new_engine()  # a restart: same Redis and Postgres, fresh memory
    await PriceCache(h.redis, h.prefix).set(PricePoint("BTCUSDT", D(58000), h.clock.time()))
    await h.engine.start()
    assert (await h.reason(account))["episode"] == episode
    assert len(await alerts(h.db, account)) == 1


async def test_run_loop_end_to_end(h: Harness) -> None:
    account = new_address()
    h.chain.allocated[account] = D(1600)
    h.clock = FixedClock(time.time())  # the running loop reads ticks dated now
    await h.redis.delete(f"{h.prefix}price:BTCUSDT", f"{h.prefix}price:ETHUSDT")  # dated T0, in the future
    h.engine = h.new_engine()
    stop = asyncio.Event()
    task = asyncio.create_task(h.engine.run(stop))
    try:
        await until(lambda: h.engine.started)
        await insert_quote(h.db, account)
        await until(lambda: account in h.engine.book)
        await h.stream.add_many([PricePoint("BTCUSDT", D(60000), h.clock.time())])
        await until_async(lambda: h.health(account))  # priced by its first tick
        assert not await h.flagged(account)
        await h.stream.add_many([PricePoint("BTCUSDT", D(58000), h.clock.time() + 0.5)])
        await until_async(lambda: h.flagged(account))
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def until(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def until_async(check: Callable[[], Any], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


# -- the API refuses opens from a flagged account (real app, devnet chain) -------------------------


@pytest.fixture
async def devnet_account(devnet: Any) -> AsyncIterator[str]:
    from tests.fixtures.trading import new_account

    yield new_account(devnet)


async def test_api_refuses_opens_of_a_flagged_account(
    api: Any, app_settings: Settings, devnet_account: str, redis_client: Redis, db_factory: SessionFactory
) -> None:
    from solver.auth.jwt import JwtCodec
    from solver.chain.web3_reader import Web3ChainReader
    from solver.core.clock import SystemClock
    from solver.core.errors import ErrorCode
    from tests.integration.test_instant_api import open_body

    account = devnet_account
    prefix = app_settings.redis_prefix
    prices = PriceCache(redis_client, prefix)
    await prices.set(PricePoint("BTCUSDT", D(60000), time.time()))
    # 10 BTC LONG @ 60000 on 100 000 allocated (devnet), no locked cva/lf: liquidated below 50 000.
    await insert_quote(db_factory, account, quantity=D(10), cva=D(0), lf=D(0))
    chain = Web3ChainReader.from_settings(app_settings.chain)
    engine = HealthEngine(
        settings=app_settings,
        redis=redis_client,
        stream=PriceStream(redis_client, prefix),
        sessions=db_factory,
        chain=chain,
        clock=SystemClock(),
        consumer="api-test",
    )
    try:
        await engine.start()
        assert account in engine.book
        stream = PriceStream(redis_client, prefix)

        async def tick(price: str) -> None:
            await stream.add_many([PricePoint("BTCUSDT", D(price), time.time())])
            await engine.handle_ticks(await stream.read_group(engine.group, engine.consumer, 100, None))

        await tick("49000")
        assert await ReduceOnlyFlags(redis_client, prefix).is_flagged(account)

        token = JwtCodec(app_settings.auth, SystemClock()).issue(
            account=account, owner=account, expires_at=datetime.now(UTC) + timedelta(hours=1)
        )
        auth = {"Authorization": f"Bearer {token}"}
        await prices.set(PricePoint("BTCUSDT", D(60000), time.time()))
        resp = await api.post("/instant_open", json=open_body(), headers=auth)
        assert resp.status_code == 403, resp.text
        assert resp.json()["error_code"] == ErrorCode.REDUCE_ONLY.code == 1309

        history = await api.post("/position-state/0/10", json={"address": account})
        [alert] = [n for n in history.json()["position_state"] if n["last_seen_action"] == "LiquidatePosition"]
        assert alert["state_type"] == "alert" and alert["action_status"] == "seen"

        await tick("60000")  # healthy again: the flag is gone and opens are accepted
        assert not await ReduceOnlyFlags(redis_client, prefix).is_flagged(account)
        resp = await api.post("/instant_open", json=open_body(), headers=auth)
        assert resp.status_code == 200, resp.text
    finally:
        await chain.close()


async def test_register_runs_the_loop_inside_the_engine(h: Harness) -> None:
    from solver.engine import build_engine, run_engine
    from solver.risk.health_engine import register

    account = new_address()
    await insert_quote(h.db, account)
    h.chain.allocated[account] = D(100)  # below zero at any BTC price near 60000
    await PriceCache(h.redis, h.prefix).set(PricePoint("BTCUSDT", D(60000), time.time()))
    engine = build_engine(h.settings, redis=h.redis, sources=[])
    loop = register(engine, chain=cast(ChainReader, h.chain))
    stop = asyncio.Event()
    task = asyncio.create_task(run_engine(engine, stop))
    try:
        await until(lambda: loop.started)
        assert await h.flagged(account)
        assert len(await alerts(h.db, account)) == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
