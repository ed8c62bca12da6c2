"""The strategy loop on anvil with the real chain worker: LIMIT and DCA orders become real quotes
through the instant open flow, sub-order failures consume invocations, and the counters follow
trading-rules.md §3. Orders are written as the API writes them; marks come from the price
keeper, and the loop's poll steps them on the latest fresh price (the same path as a tick)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlmodel import col, select

from solver.chain.types import QuoteStatus
from solver.chain.web3_reader import Web3ChainReader
from solver.core.clock import SystemClock
from solver.db import migrate
from solver.db.engine import SessionFactory, create_engine, session_factory
from solver.db.models import (
    InstantOpen,
    Notification,
    StrategyOrder,
    StrategyStatus,
    StrategySubOrder,
    StrategyType,
    SubOrderStatus,
)
from solver.devnet.deploy import DevnetInfo
from solver.settings import Settings
from solver.strategy.strategy_engine import StrategyEngine, instant_opens
from tests.fixtures.app import settings_for
from tests.fixtures.db import scratch_database_url
from tests.fixtures.trading import PriceKeeper, chain_quote, new_account, running_worker
from tests.integration.test_worker_flow import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def own_database_url() -> Iterator[str]:
    """The loop steps every live order in its database: other files' orders must not be there."""
    url = scratch_database_url()
    migrate.upgrade(url)
    try:
        yield url
    finally:
        migrate.drop_database(url)


@pytest.fixture
async def db_factory(own_database_url: str) -> AsyncIterator[SessionFactory]:
    engine = create_engine(own_database_url, pool_size=5, max_overflow=5)
    yield session_factory(engine)
    await engine.dispose()


@pytest.fixture
def settings(devnet: DevnetInfo, own_database_url: str, redis_prefix: str) -> Settings:
    return settings_for(
        devnet,
        own_database_url,
        redis_prefix,
        worker={"signer_private_keys": [devnet.solver_private_key], "poll_interval_s": 0.02},
        strategy={"poll_interval_s": 0.1},
    )


@contextlib.asynccontextmanager
async def strategy_loop(settings: Settings, db: SessionFactory, redis: Redis) -> AsyncIterator[StrategyEngine]:
    chain = Web3ChainReader.from_settings(settings.chain)
    clock = SystemClock()
    loop = StrategyEngine(
        settings=settings, sessions=db, redis=redis, opens=instant_opens(settings, db, redis, chain, clock), clock=clock
    )
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:
        yield loop
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await chain.close()


async def insert_order(db: SessionFactory, account: str, **fields: Any) -> int:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "account": account,
        "symbol_id": 1,
        "position_type": 0,
        "leverage": Decimal(10),
        "slippage": Decimal("0.001"),
        "create_time": now,
        "modify_time": now,
        **fields,
    }
    values.setdefault("current_input_amount", values["initial_input_amount"])
    if values["type"] == StrategyType.DCA:
        values.setdefault("next_due_time", now)
    async with db() as s:
        row = StrategyOrder(**values)
        s.add(row)
        await s.commit()
        assert row.id is not None
        return row.id


async def order(db: SessionFactory, oid: int) -> StrategyOrder:
    async with db() as s:
        row = await s.get(StrategyOrder, oid)
        assert row is not None
        return row


async def subs(db: SessionFactory, oid: int) -> list[StrategySubOrder]:
    async with db() as s:
        stmt = select(StrategySubOrder).where(col(StrategySubOrder.order_id) == oid).order_by(col(StrategySubOrder.id))
        return list((await s.exec(stmt)).all())


def ends(db: SessionFactory, oid: int) -> Any:
    async def check() -> StrategyOrder | None:
        row = await order(db, oid)
        return row if row.status not in (StrategyStatus.ACTIVE, StrategyStatus.REQUESTED_CANCELLATION) else None

    return check


def assert_books_balance(row: StrategyOrder, parts: list[StrategySubOrder]) -> None:
    """current_input + margins in flight + margins opened == initial (§3: it only moves)."""
    used = sum((p.margin for p in parts if p.status != SubOrderStatus.FAILED), Decimal(0))
    assert row.current_input_amount + used == row.initial_input_amount
    opened = [p for p in parts if p.status == SubOrderStatus.OPENED]
    assert row.current_output_amount == sum((p.quantity for p in opened), Decimal(0))
    assert row.invocations_executed == len(parts)
    assert row.suborders_executed == sum(p.slots for p in opened)


async def test_limit_order_fills_in_sub_orders_once_the_price_crosses(
    settings: Settings, devnet: DevnetInfo, db_factory: SessionFactory, redis_client: Redis
) -> None:
    account = new_account(devnet)
    oid = await insert_order(
        db_factory,
        account,
        type=StrategyType.LIMIT,
        initial_input_amount=Decimal(300),
        max_suborders=3,
        max_invocations=5,
        limit_price=Decimal(59800),
    )
    async with (
        PriceKeeper(redis_client, settings.redis_prefix) as prices,
        running_worker(settings, devnet),
        strategy_loop(settings, db_factory, redis_client) as loop,
    ):
        await asyncio.sleep(1.0)  # mark 60000 > 59800 × 0.999: not eligible
        assert await subs(db_factory, oid) == []
        assert loop.stats["sent"] == 0
        await prices.set("BTCUSDT", Decimal(59700))  # ≤ 59740.2: eligible
        row = await wait_for(ends(db_factory, oid), timeout=90)

    parts = await subs(db_factory, oid)
    assert row.status == StrategyStatus.EXECUTED and row.close_time is not None
    assert [p.status for p in parts] == [SubOrderStatus.OPENED] * 3
    # 300 / 3 = 100 USD at 10x on 59800: 0.016 BTC (rounded down), 95.68 USD used; what the
    # rounding left carries over: (300 − 95.68) / 2 = 102.16 -> 0.017, then the remainder.
    assert [p.quantity for p in parts] == [Decimal("0.016"), Decimal("0.017"), Decimal("0.017")]
    assert all(p.price == Decimal(59800) for p in parts)
    assert_books_balance(row, parts)
    assert row.current_input_amount == Decimal(1)  # 300 − 0.05 × 59800 / 10
    quote_ids = [p.quote_id for p in parts]
    assert len(set(quote_ids)) == 3
    for qid in quote_ids:
        assert qid is not None
        q = chain_quote(devnet, qid)
        assert q["quoteStatus"] == QuoteStatus.OPENED
        assert q["openedPrice"] == 59800 * 10**18  # a LIMIT fills at the user's price
    async with db_factory() as s:
        actions = [
            n.last_seen_action
            for n in (await s.exec(select(Notification).where(col(Notification.account) == account))).all()
        ]
    assert actions.count("StrategySubOrderSent") == 3
    assert actions.count("StrategySubOrderOpened") == 3
    assert actions.count("StrategyOrderStatus") == 1


async def test_dca_order_waits_outside_its_band_then_spaces_sub_orders_by_delay(
    settings: Settings, devnet: DevnetInfo, db_factory: SessionFactory, redis_client: Redis
) -> None:
    account = new_account(devnet)
    oid = await insert_order(
        db_factory,
        account,
        type=StrategyType.DCA,
        position_type=1,  # SHORT
        initial_input_amount=Decimal(200),
        max_suborders=2,
        max_invocations=2,
        slippage=Decimal("0.005"),
        dca_delay_s=3,
        band_from=Decimal(60500),
        band_to=Decimal(61500),
    )
    async with (
        PriceKeeper(redis_client, settings.redis_prefix) as prices,
        running_worker(settings, devnet),
        strategy_loop(settings, db_factory, redis_client),
    ):
        await asyncio.sleep(1.5)  # 60000 is under the band: due, but waits without an invocation
        row = await order(db_factory, oid)
        assert (row.invocations_executed, row.current_input_amount) == (0, Decimal(200))
        await prices.set("BTCUSDT", Decimal(61000))
        row = await wait_for(ends(db_factory, oid), timeout=90)

    parts = await subs(db_factory, oid)
    assert row.status == StrategyStatus.EXECUTED
    assert [p.status for p in parts] == [SubOrderStatus.OPENED] * 2
    # The first waited ~1.5 s for the range (less than a delay late): the second keeps the grid,
    # creation + 3 s.
    second = (parts[1].create_time - row.create_time).total_seconds()
    assert second >= 3, second
    assert all(p.price == Decimal("60695") for p in parts)  # 61000 × (1 − 0.005), a SHORT's floor
    assert_books_balance(row, parts)


async def test_failed_sub_orders_consume_invocations_until_max_retries_exceeded(
    settings: Settings, devnet: DevnetInfo, db_factory: SessionFactory, redis_client: Redis
) -> None:
    """Allocated 150 USD: the first 100 USD sub-order opens, every later one is refused by the
    gate (insufficient available balance), consuming an invocation each."""
    account = new_account(devnet, allocate=150)
    oid = await insert_order(
        db_factory,
        account,
        type=StrategyType.DCA,
        initial_input_amount=Decimal(300),
        max_suborders=3,
        max_invocations=4,
        slippage=Decimal("0.01"),
        dca_delay_s=1,
    )
    async with (
        PriceKeeper(redis_client, settings.redis_prefix),
        running_worker(settings, devnet),
        strategy_loop(settings, db_factory, redis_client),
    ):
        row = await wait_for(ends(db_factory, oid), timeout=90)

    parts = await subs(db_factory, oid)
    assert row.status == StrategyStatus.MAX_RETRIES_EXCEEDED
    assert [p.status for p in parts] == [SubOrderStatus.OPENED] + [SubOrderStatus.FAILED] * 3
    assert row.suborders_executed == 1 and row.current_output_amount == parts[0].quantity > 0  # partial fill kept
    assert row.error_code is not None and row.status_reason is not None
    assert_books_balance(row, parts)
    async with db_factory() as s:
        opens = (await s.exec(select(InstantOpen).where(col(InstantOpen.account) == account))).all()
    assert len(opens) == 1  # refused sub-orders never reached the chain


async def test_restart_between_sub_order_row_and_instant_open_resends_the_same_request(
    settings: Settings, devnet: DevnetInfo, db_factory: SessionFactory, redis_client: Redis
) -> None:
    """A crash after the `sending` row is written: the next loop re-sends under the same
    Idempotency-Key; exactly one instant open and one quote result."""
    account = new_account(devnet)
    oid = await insert_order(
        db_factory,
        account,
        type=StrategyType.LIMIT,
        initial_input_amount=Decimal(100),
        max_suborders=1,
        max_invocations=1,
        limit_price=Decimal(60500),
    )
    async with PriceKeeper(redis_client, settings.redis_prefix):
        # A loop whose instant open call never returns (a crash in the middle of it).
        async with strategy_loop(settings, db_factory, redis_client) as loop:
            real = loop.actions.opens
            hang = asyncio.Event()

            class Stuck:
                async def open(self, *args: Any) -> Any:
                    await real.open(*args)  # the open is stored...
                    await hang.wait()  # ...and the answer never comes back

            loop.actions.opens = Stuck()

            async def sending() -> bool:
                return [p.status for p in await subs(db_factory, oid)] == [SubOrderStatus.SENDING]

            await wait_for(sending, timeout=30)
            await asyncio.sleep(0.5)
        async with running_worker(settings, devnet), strategy_loop(settings, db_factory, redis_client) as again:
            row = await wait_for(ends(db_factory, oid), timeout=90)
            assert again.stats["resent"] >= 1
    parts = await subs(db_factory, oid)
    assert row.status == StrategyStatus.EXECUTED
    assert [p.status for p in parts] == [SubOrderStatus.OPENED]
    async with db_factory() as s:
        opens = (await s.exec(select(InstantOpen).where(col(InstantOpen.account) == account))).all()
    assert len(opens) == 1 and opens[0].quote_id == parts[0].quote_id
