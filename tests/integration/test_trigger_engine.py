"""The trigger engine against Postgres and Redis, with a scripted chain (no worker).

The chain is a dict of quotes the test edits; the closes the engine creates are settled by hand
the way the worker would (compare-and-set on the instant close row). The real worker on anvil is
in test_trigger_e2e.py.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from eth_utils.address import to_checksum_address
from sqlalchemy import update
from sqlmodel import col, select

from solver.auth.jwt import Principal
from solver.chain.types import LockedValues, OnChainQuote, QuoteStatus
from solver.core.clock import SystemClock
from solver.core.errors import ErrorCode, SolverError
from solver.core.units import to_wei
from solver.db import migrate
from solver.db.engine import SessionFactory, create_engine, session_factory
from solver.db.models import (
    InstantClose,
    InstantCloseStatus,
    IntentKind,
    Notification,
    Quote,
    TriggerKind,
    TriggerOrder,
    TriggerStatus,
    TxIntent,
)
from solver.market.marks import MarkPrices
from solver.orders import repository as orders_repo
from solver.orders.schemas import StopLossBody
from solver.orders.service import TriggerOrderService
from solver.orders.trigger_engine import TriggerEngine
from solver.pricing.cache import PriceCache, PricePoint
from solver.quotes import repository as quotes_repo
from solver.settings import Settings
from tests.fixtures.app import settings_for
from tests.fixtures.db import scratch_database_url

pytestmark = pytest.mark.integration

D = Decimal
LANE = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
SL, TP = TriggerKind.STOP_LOSS, TriggerKind.TAKE_PROFIT
S = TriggerStatus


class FakeChain:
    """The ChainReader calls the engine and the service make, from a dict the test edits."""

    def __init__(self) -> None:
        self.quotes: dict[int, OnChainQuote] = {}
        self.down = False

    async def quote(self, quote_id: int) -> OnChainQuote | None:
        if self.down:
            raise ConnectionError("node down")
        return self.quotes.get(quote_id)

    async def is_delegated(self, account: str, target: str, selector: bytes) -> bool:
        return True

    async def close(self) -> None:
        return None

    def put(self, account: str, *, side: int = 0, status: int = QuoteStatus.OPENED, qty: str = "0.02") -> int:
        quote_id = 10**12 + secrets.randbelow(10**12)
        locked = LockedValues(to_wei(D(8)), to_wei(D(4)), to_wei(D(108)), 0)
        self.quotes[quote_id] = OnChainQuote(
            id=quote_id, party_a=account, party_b=LANE, symbol_id=1, position_type=side, order_type=1,
            status=status, opened_price=to_wei(D(60000)), requested_open_price=to_wei(D(60000)),
            market_price=to_wei(D(60000)), quantity=to_wei(D(qty)), closed_amount=0, locked=locked,
            initial_locked=locked, max_funding_rate=0, avg_closed_price=0, requested_close_price=0,
            quantity_to_close=0, parent_id=0, create_timestamp=0, status_modify_timestamp=0, deadline=0,
            trading_fee=0, affiliate="0x" + "0" * 40,
        )  # fmt: skip
        return quote_id

    def set_status(self, quote_id: int, status: int) -> None:
        self.quotes[quote_id] = replace(self.quotes[quote_id], status=status)


@pytest.fixture(scope="module")
def own_database_url() -> Iterator[str]:
    """The loops load every armed order in their database: other files' orders must not be there."""
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
def settings(own_database_url: str, redis_prefix: str) -> Settings:
    devnet = SimpleNamespace(
        chain_id=31337, rpc_url="http://127.0.0.1:1", multi_account="0x" + "1" * 40, symmio="0x" + "2" * 40,
        collateral="0x" + "3" * 40, solver=LANE,
    )  # fmt: skip
    return settings_for(devnet, own_database_url, redis_prefix, triggers={"max_close_attempts": 2})


@pytest.fixture
def fake_chain() -> FakeChain:
    return FakeChain()


@pytest.fixture
def account() -> str:
    return str(to_checksum_address("0x" + secrets.token_hex(20)))


@pytest.fixture
async def prices(redis_client: Any, redis_prefix: str) -> PriceCache:
    return PriceCache(redis_client, redis_prefix)


@pytest.fixture
def make_engine(settings: Settings, db_factory: SessionFactory, redis_client: Any, fake_chain: FakeChain) -> Any:
    def make(**kw: Any) -> TriggerEngine:
        return TriggerEngine(settings=settings, sessions=db_factory, redis=redis_client, chain=fake_chain,
                             group=kw.pop("group", f"g-{uuid.uuid4().hex[:8]}"), **kw)  # fmt: skip

    return make


async def place(
    db: SessionFactory, account: str, quote_id: int, kind: TriggerKind, level: str, *, side: int = 0,
    status: TriggerStatus = S.ARMED,
) -> int:  # fmt: skip
    async with db() as s:
        row = await orders_repo.insert(
            s, account=account, quote_id=quote_id, kind=kind, position_type=side, symbol_id=1,
            trigger_price=D(level), requested_price=None, status=status, now=datetime.now(UTC),
        )  # fmt: skip
        await s.commit()
        assert row.id is not None
        return row.id


async def order(db: SessionFactory, id: int) -> TriggerOrder:
    async with db() as s:
        row = await s.get(TriggerOrder, id)
        assert row is not None
        return row


async def closes_of(db: SessionFactory, quote_id: int) -> list[InstantClose]:
    async with db() as s:
        stmt = select(InstantClose).where(col(InstantClose.quote_id) == quote_id).order_by(col(InstantClose.id))
        return list((await s.exec(stmt)).all())


async def notes_of(db: SessionFactory, account: str) -> list[Notification]:
    async with db() as s:
        stmt = select(Notification).where(col(Notification.account) == account)
        return list((await s.exec(stmt.order_by(col(Notification.create_time), col(Notification.id)))).all())


async def settle_close(db: SessionFactory, close_id: int, *path: InstantCloseStatus, **fields: Any) -> None:
    """Move an instant close the way the worker would."""
    async with db() as s:
        prev = InstantCloseStatus.PENDING
        for new in path:
            extra = fields if new == path[-1] else {}
            assert await quotes_repo.transition_instant_close(
                s, close_id, prev, new, now=datetime.now(UTC), actor="worker", **extra
            )
            prev = new
        await s.commit()


def _mine(engine: TriggerEngine, chain: FakeChain) -> list[Any]:
    """This test's armed orders: the session database also holds other tests' orders."""
    return [t for t in engine.books if t.quote_id in chain.quotes]


def tick(price: str, age: float = 0.0, symbol: str = "BTCUSDT") -> PricePoint:
    return PricePoint(symbol, D(price), time.time() - age)


# --- firing --------------------------------------------------------------------------------


async def test_fires_once_with_oco_and_survives_a_restart(
    make_engine: Any, fake_chain: FakeChain, db_factory: SessionFactory, account: str, settings: Settings,
    prices: PriceCache,
) -> None:  # fmt: skip
    qid = fake_chain.put(account)
    sl = await place(db_factory, account, qid, SL, "59000")
    tp = await place(db_factory, account, qid, TP, "61000")
    engine = make_engine()
    await engine.reload()
    assert len(_mine(engine, fake_chain)) == 2
    assert await engine.on_tick(tick("59500")) == 0
    assert await engine.on_tick(tick("58900")) == 1

    fired, sibling = await order(db_factory, sl), await order(db_factory, tp)
    assert (fired.status, fired.quantity, fired.close_price, fired.fire_mark, fired.attempts) == (
        S.TRIGGERED, D("0.02"), D("58311.0"), D(58900), 1,
    )  # fmt: skip
    assert (sibling.status, sibling.end_reason) == (S.CANCELLED, "oco")
    (close,) = await closes_of(db_factory, qid)
    assert close.id == fired.instant_close_id
    assert (close.status, close.quantity_to_close, close.close_price, close.account) == (
        InstantCloseStatus.PENDING, D("0.02"), D("58311"), account,
    )  # fmt: skip
    assert close.deadline > time.time() + 60
    async with db_factory() as s:
        (intent,) = (await s.exec(select(TxIntent).where(col(TxIntent.instant_close_id) == close.id))).all()
    assert (intent.kind, intent.key, intent.lane, intent.quote_id) == (
        IntentKind.CLOSE_REQUEST, f"close:{close.id}:request", 0, qid,
    )  # fmt: skip
    notes = {n.last_seen_action: n for n in await notes_of(db_factory, account)}
    assert notes["StopLossTriggered"].action_status == "success" and notes["StopLossTriggered"].state_type == "alert"
    dropped = notes["TakeProfitCancelled"]
    assert dropped.action_status == "failed" and "stop loss of this position fired" in (dropped.failure_message or "")

    # The same tick again, a newer crossing tick, a restarted engine: nothing fires again.
    assert await engine.on_tick(tick("58900", age=0.5)) == 0
    assert await engine.on_tick(tick("58000")) == 0
    restarted = make_engine()
    await restarted.reload()
    assert sl not in restarted.books and tp not in restarted.books
    assert await restarted.on_tick(tick("57000")) == 0
    await restarted.poll_once()  # the close is still pending: nothing to settle
    assert len(await closes_of(db_factory, qid)) == 1
    assert (await order(db_factory, sl)).status == S.TRIGGERED

    # The API refuses to replace or cancel a fired trigger.
    await prices.set(PricePoint("BTCUSDT", D(58000), time.time()))
    service = TriggerOrderService(
        settings=settings, sessions=db_factory, chain=fake_chain,  # type: ignore[arg-type]
        marks=MarkPrices(settings=settings, prices=prices, clock=SystemClock()), clock=SystemClock(),
    )  # fmt: skip
    principal = Principal(account=account, owner=account, jti="x", exp=2**40)
    body = StopLossBody.model_validate({
        "userAddress": account, "accountAddress": account, "positionSide": 0, "symbolId": 1, "quoteId": qid,
        "tpPrice": "", "slPrice": "57000", "timestamp": int(time.time() * 1000),
    })  # fmt: skip
    with pytest.raises(SolverError) as err:
        await service.place(principal, body)
    assert err.value.code == ErrorCode.TRIGGER_ALREADY_FIRED
    with pytest.raises(SolverError) as err:
        await service.cancel(principal, str(qid), None)
    assert err.value.code == ErrorCode.TRIGGER_ALREADY_FIRED


async def test_stale_and_out_of_order_ticks_never_fire(
    make_engine: Any, fake_chain: FakeChain, db_factory: SessionFactory, account: str
) -> None:
    qid = fake_chain.put(account, side=1)  # SHORT: SL above, TP below
    sl = await place(db_factory, account, qid, SL, "61000", side=1)
    engine = make_engine()
    await engine.reload()
    assert await engine.on_tick(tick("61500", age=10)) == 0  # older than max_price_age_s (5)
    assert engine.stats["stale_ticks"] == 1
    assert (await order(db_factory, sl)).status == S.ARMED and sl in engine.books
    assert await engine.on_tick(tick("60500", age=1)) == 0
    assert await engine.on_tick(tick("61500", age=2)) == 0  # fresh, but older than the last one seen
    assert await engine.on_tick(tick("61500", symbol="NOPEUSDT")) == 0
    assert await engine.on_tick(tick("61000")) == 1  # mark ≥ sl for a SHORT
    row = await order(db_factory, sl)
    assert row.status == S.TRIGGERED and row.close_price == D("61610.0")  # × 1.01, rounded up


async def test_two_engines_fire_one_close(
    make_engine: Any, fake_chain: FakeChain, db_factory: SessionFactory, account: str
) -> None:
    quotes = [fake_chain.put(account) for _ in range(5)]
    for qid in quotes:
        await place(db_factory, account, qid, SL, "59000")
    a, b = make_engine(), make_engine()
    await a.reload()
    await b.reload()
    point = tick("58000")
    fired = await asyncio.gather(a.on_tick(point), b.on_tick(point))
    assert sum(fired) == 5
    for qid in quotes:
        assert len(await closes_of(db_factory, qid)) == 1
    assert a.stats["fire_gone"] + b.stats["fire_gone"] == 5  # each loser saw it already fired


# --- before the fire -------------------------------------------------------------------------


async def test_waiting_is_armed_when_opened_and_dropped_when_never_opened(
    make_engine: Any, fake_chain: FakeChain, db_factory: SessionFactory, account: str
) -> None:
    opening = fake_chain.put(account, status=QuoteStatus.LOCKED)
    never = fake_chain.put(account, status=QuoteStatus.PENDING)
    w1 = await place(db_factory, account, opening, SL, "59000", status=S.WAITING)
    w2 = await place(db_factory, account, never, TP, "61000", status=S.WAITING)
    engine = make_engine()
    await engine.reload()
    assert len(_mine(engine, fake_chain)) == 0
    await engine.poll_once()
    assert (await order(db_factory, w1)).status == S.WAITING
    assert await engine.on_tick(tick("58000")) == 0  # not armed: no fire

    fake_chain.set_status(opening, QuoteStatus.OPENED)
    fake_chain.set_status(never, QuoteStatus.CANCELED)
    await engine.poll_once()
    assert (await order(db_factory, w1)).status == S.ARMED and w1 in engine.books
    dropped = await order(db_factory, w2)
    assert (dropped.status, dropped.end_reason) == (S.CANCELLED, "not_opened")
    assert "ended without opening" in (dropped.error_message or "")
    assert await engine.on_tick(tick("57900")) == 1
    actions = [n.last_seen_action for n in await notes_of(db_factory, account)]
    assert "TakeProfitCancelled" in actions and "StopLossTriggered" in actions


async def test_position_closed_otherwise_cancels_its_triggers(
    make_engine: Any, fake_chain: FakeChain, db_factory: SessionFactory, account: str, settings: Settings
) -> None:
    swept = fake_chain.put(account)
    mirrored = fake_chain.put(account)
    a = await place(db_factory, account, swept, SL, "59000")
    b = await place(db_factory, account, mirrored, TP, "61000")
    engine = make_engine()
    await engine.reload()
    await engine.poll_once()
    assert len(_mine(engine, fake_chain)) == 2

    fake_chain.set_status(swept, QuoteStatus.CLOSED)  # found by the chain sweep
    fake_chain.set_status(mirrored, QuoteStatus.LIQUIDATED)  # found through the quote mirror too
    async with db_factory() as s:
        q = fake_chain.quotes[mirrored]
        s.add(Quote(
            quote_id=mirrored, party_a=account, party_b=LANE, symbol_id=1, position_type=0, order_type=1,
            status=QuoteStatus.LIQUIDATED, requested_open_price=D(60000), quantity=D("0.02"), cva=D(8), lf=D(4),
            party_amm=D(108), party_bmm=D(0), trading_fee=D(0), deadline=q.deadline, block_number=1,
        ))  # fmt: skip
        await s.commit()
    await engine.poll_once()
    for oid in (a, b):
        row = await order(db_factory, oid)
        assert (row.status, row.end_reason) == (S.CANCELLED, "position_closed"), row
    assert len(_mine(engine, fake_chain)) == 0
    assert await engine.on_tick(tick("50000")) == 0


async def test_a_close_in_progress_or_a_node_failure_defers(
    make_engine: Any, fake_chain: FakeChain, db_factory: SessionFactory, account: str
) -> None:
    qid = fake_chain.put(account)
    sl = await place(db_factory, account, qid, SL, "59000")
    async with db_factory() as s:  # the user's own close, not filled yet
        user_close = await quotes_repo.insert_instant_close(
            s, quote_id=qid, account=account, quantity_to_close=D("0.01"), close_price=D(58000),
            deadline=int(time.time()) + 300, now=datetime.now(UTC),
        )  # fmt: skip
        await s.commit()
    engine = make_engine()
    await engine.reload()
    assert await engine.on_tick(tick("58500")) == 0
    assert engine.stats["fire_defer"] == 1 and (await order(db_factory, sl)).status == S.ARMED
    assert user_close.id is not None
    await settle_close(db_factory, user_close.id, InstantCloseStatus.CANCELLED)

    fake_chain.down = True
    await asyncio.sleep(1.05)  # a deferred order may fire again after DEFER_S
    await engine.poll_once()  # the chain sweep cannot read the chain: nothing changes
    assert sl in engine.books
    assert await engine.on_tick(tick("58400")) == 0
    assert engine.stats["fire_defer"] == 2 and (await order(db_factory, sl)).status == S.ARMED
    fake_chain.down = False
    await asyncio.sleep(1.05)
    await engine.poll_once()
    assert await engine.on_tick(tick("58300")) == 1


# --- after the fire --------------------------------------------------------------------------


async def test_failed_close_is_retried_with_a_fresh_price_then_fails(
    make_engine: Any, fake_chain: FakeChain, db_factory: SessionFactory, account: str, prices: PriceCache
) -> None:
    qid = fake_chain.put(account)
    sl = await place(db_factory, account, qid, SL, "59000")
    engine = make_engine()
    await engine.reload()
    assert await engine.on_tick(tick("58900")) == 1
    first = (await order(db_factory, sl)).instant_close_id
    assert first is not None
    moved = "The market moved past your close price."
    await settle_close(db_factory, first, InstantCloseStatus.SENT, InstantCloseStatus.FAILED,
                       error_code=ErrorCode.PRICE_MOVED.code, error_message=moved)  # fmt: skip

    await engine.poll_once()  # no fresh price in the cache: wait, without using an attempt
    row = await order(db_factory, sl)
    assert (row.status, row.attempts, row.instant_close_id) == (S.TRIGGERED, 1, first)

    await prices.set(PricePoint("BTCUSDT", D(58000), time.time()))
    await engine.poll_once()
    row = await order(db_factory, sl)
    assert (row.status, row.attempts, row.close_price, row.fire_mark) == (S.TRIGGERED, 2, D("57420.0"), D(58000))
    assert row.instant_close_id not in (None, first) and row.error_code == ErrorCode.PRICE_MOVED.code
    second = row.instant_close_id
    assert second is not None and len(await closes_of(db_factory, qid)) == 2
    await engine.poll_once()  # the retry is pending: nothing more
    assert len(await closes_of(db_factory, qid)) == 2

    await settle_close(db_factory, second, InstantCloseStatus.FAILED, error_code=ErrorCode.PRICE_MOVED.code,
                       error_message=moved)  # fmt: skip
    await engine.poll_once()  # max_close_attempts = 2: failed
    row = await order(db_factory, sl)
    assert (row.status, row.error_code) == (S.FAILED, ErrorCode.PRICE_MOVED.code)
    assert "failed 2 times" in (row.error_message or "")
    failed = [n for n in await notes_of(db_factory, account) if n.last_seen_action == "StopLossFailed"]
    assert len(failed) == 1 and failed[0].error_code == ErrorCode.PRICE_MOVED.code
    assert len(await closes_of(db_factory, qid)) == 2


async def test_filled_close_fills_the_order(
    make_engine: Any, fake_chain: FakeChain, db_factory: SessionFactory, account: str
) -> None:
    qid = fake_chain.put(account, side=1)
    tp = await place(db_factory, account, qid, TP, "59000", side=1)
    engine = make_engine()
    await engine.reload()
    assert await engine.on_tick(tick("58999.9")) == 1
    close_id = (await order(db_factory, tp)).instant_close_id
    assert close_id is not None
    await settle_close(db_factory, close_id, InstantCloseStatus.SENT, InstantCloseStatus.FILLED)
    fake_chain.set_status(qid, QuoteStatus.CLOSED)
    await engine.poll_once()
    assert (await order(db_factory, tp)).status == S.FILLED
    (filled,) = [n for n in await notes_of(db_factory, account) if n.last_seen_action == "TakeProfitFilled"]
    assert filled.filled_amount_close == D("0.02") and filled.action_status == "success"


# --- the loop on the price stream ------------------------------------------------------------


@pytest.fixture
async def running(make_engine: Any) -> AsyncIterator[Any]:
    started: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(**kw: Any) -> TriggerEngine:
        engine = make_engine(**kw)
        stop = asyncio.Event()
        started.append((stop, asyncio.create_task(engine.run(stop))))
        for _ in range(200):
            if engine.stats["reloads"]:
                return engine
            await asyncio.sleep(0.02)
        raise AssertionError("engine did not start")

    yield start
    for stop, _ in started:
        stop.set()
    await asyncio.gather(*(t for _, t in started))


async def test_run_reads_the_price_stream_and_acks(
    running: Any, fake_chain: FakeChain, db_factory: SessionFactory, account: str, redis_client: Any,
    settings: Settings,
) -> None:  # fmt: skip
    qid = fake_chain.put(account)
    sl = await place(db_factory, account, qid, SL, "59000")
    engine = await running(group="triggers")
    key = f"{settings.redis_prefix}prices:stream"
    # The feed's wire format: symbol, price as a decimal string, ts as the source time.
    await redis_client.xadd(key, {"symbol": "BTCUSDT", "price": "58999.9", "ts": repr(time.time() - 30)})  # stale
    await redis_client.xadd(key, {"symbol": "BTCUSDT", "price": "59100", "ts": repr(time.time())})
    await asyncio.sleep(0.5)
    assert (await order(db_factory, sl)).status == S.ARMED
    await redis_client.xadd(key, {"symbol": "BTCUSDT", "price": "58999.9", "ts": repr(time.time())})
    for _ in range(100):
        if (await order(db_factory, sl)).status == S.TRIGGERED:
            break
        await asyncio.sleep(0.05)
    assert (await order(db_factory, sl)).status == S.TRIGGERED
    assert engine.stats["stale_ticks"] >= 1
    pending = await redis_client.xpending(key, "triggers")
    assert pending["pending"] == 0


async def test_start_catches_up_on_the_latest_fresh_price(
    running: Any, fake_chain: FakeChain, db_factory: SessionFactory, account: str, prices: PriceCache
) -> None:
    """What crossed while no loop ran fires at start, from the latest cached price, if fresh."""
    stale_q, fresh_q = fake_chain.put(account), fake_chain.put(account, side=1)
    stale = await place(db_factory, account, stale_q, SL, "59000")
    fresh = await place(db_factory, account, fresh_q, TP, "3100", side=1)
    fake_chain.quotes[fresh_q] = replace(fake_chain.quotes[fresh_q], symbol_id=2)
    async with db_factory() as s:
        await s.exec(update(TriggerOrder).where(col(TriggerOrder.id) == fresh).values(symbol_id=2))
        await s.commit()
    await prices.set(PricePoint("BTCUSDT", D(58000), time.time() - 30))  # crossed, but stale
    await prices.set(PricePoint("ETHUSDT", D(3050), time.time()))
    engine = await running()
    for _ in range(100):  # `running` returns once the books are loaded; the catch-up follows
        if engine.stats["fire_fired"]:
            break
        await asyncio.sleep(0.05)
    assert engine.stats["fire_fired"] == 1
    assert (await order(db_factory, fresh)).status == S.TRIGGERED
    assert (await order(db_factory, stale)).status == S.ARMED


async def test_registered_in_the_engine_process(
    settings: Settings, fake_chain: FakeChain, db_factory: SessionFactory, account: str, redis_client: Any
) -> None:
    """`trigger_engine.register(engine)` (solver.engine.register_loops) runs the loop on the
    engine's stream; its notifications are published for the WebSocket fan-out."""
    from solver.engine import build_engine, run_engine
    from solver.orders import trigger_engine

    qid = fake_chain.put(account)
    sl = await place(db_factory, account, qid, SL, "59000")
    engine = build_engine(settings, redis=redis_client, sources=[])
    loop = trigger_engine.register(engine, chain=fake_chain)  # type: ignore[arg-type]
    assert engine.extra_loops == [loop.run]
    stop = asyncio.Event()
    task = asyncio.create_task(run_engine(engine, stop))
    for _ in range(100):
        if loop.stats["reloads"]:
            break
        await asyncio.sleep(0.05)
    await engine.stream.add_many([PricePoint("BTCUSDT", D(58000), time.time())])
    for _ in range(100):
        if (await order(db_factory, sl)).status == S.TRIGGERED:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await task
    assert (await order(db_factory, sl)).status == S.TRIGGERED
