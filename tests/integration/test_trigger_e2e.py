"""A stop loss end to end on anvil: real position, API placement, two trigger loops on the price
stream, a restart between the trigger and the close, and the real chain worker closing it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlmodel import col, select

from solver.app import create_app
from solver.auth.jwt import JwtCodec
from solver.chain.types import QuoteStatus
from solver.chain.web3_reader import Web3ChainReader
from solver.core.clock import SystemClock
from solver.db import migrate
from solver.db.engine import SessionFactory, create_engine, session_factory
from solver.db.models import InstantClose, IntentKind, Notification, TriggerOrder, TriggerStatus, TxIntent
from solver.devnet.deploy import DevnetInfo
from solver.orders.trigger_engine import TriggerEngine
from solver.settings import Settings
from tests.fixtures.app import settings_for
from tests.fixtures.db import scratch_database_url
from tests.fixtures.trading import PriceKeeper, chain_quote, new_account, running_worker
from tests.integration.test_worker_flow import open_request, settled_open, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def own_database_url() -> Iterator[str]:
    """The trigger loops load every armed order in their database: other files' orders (armed on
    the shared session database) must not be there to fire on this test's ticks."""
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
        triggers={"poll_interval_s": 0.1},
    )


@contextlib.asynccontextmanager
async def trigger_loop(settings: Settings, db: SessionFactory, redis: Any, group: str) -> AsyncIterator[TriggerEngine]:
    """One engine's trigger loop, as `solver engine` registers it."""
    chain = Web3ChainReader.from_settings(settings.chain)
    engine = TriggerEngine(settings=settings, sessions=db, redis=redis, chain=chain, group=group)
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    try:

        async def started() -> bool:
            return engine.stats["reloads"] > 0

        await wait_for(started, timeout=10)
        yield engine
    finally:
        stop.set()
        await task
        await chain.close()


async def xadd(redis: Any, settings: Settings, price: str) -> None:
    key = f"{settings.redis_prefix}prices:stream"
    await redis.xadd(key, {"symbol": "BTCUSDT", "price": price, "ts": repr(time.time())})


async def rows(db: SessionFactory, model: Any, **where: Any) -> list[Any]:
    async with db() as s:
        stmt = select(model).where(*[col(getattr(model, k)) == v for k, v in where.items()])
        return list((await s.exec(stmt.order_by(col(model.id)))).all())


async def test_stop_loss_closes_the_position_once(
    settings: Settings, devnet: DevnetInfo, db_factory: SessionFactory, redis_client: Any
) -> None:
    account = new_account(devnet)
    owner = devnet.demo_accounts[0].owner
    token = JwtCodec(settings.auth, SystemClock()).issue(
        account=account, owner=owner, expires_at=datetime.now(UTC) + timedelta(hours=1)
    )
    async with PriceKeeper(redis_client, settings.redis_prefix) as prices:
        async with running_worker(settings, devnet):
            opened = await settled_open(db_factory, await open_request(db_factory, account))
        qid = opened.quote_id
        assert qid is not None and chain_quote(devnet, qid)["quoteStatus"] == QuoteStatus.OPENED

        # The worker is stopped from here on: the close the trigger creates waits in the outbox.
        async with AsyncTestClient(app=create_app(settings), base_url="http://testserver.local") as api:
            body = {
                "userAddress": owner, "accountAddress": account, "positionSide": 0, "symbolId": 1,
                "requestedPrice": "60012", "quoteId": qid, "tpPrice": "61000", "slPrice": "59000",
                "timestamp": int(time.time() * 1000),
            }  # fmt: skip
            resp = await api.post("/stop_loss", json=body, headers={"Authorization": f"Bearer {token}"})
            assert resp.status_code == 200, resp.text
        tp, sl = (o["id"] for o in resp.json()["orders"])

        async def status(oid: int) -> TriggerStatus:
            (row,) = await rows(db_factory, TriggerOrder, id=oid)
            return TriggerStatus(row.status)

        def reaches(oid: int, expected: TriggerStatus) -> Any:
            async def check() -> bool:
                return await status(oid) == expected

            return check

        # Two loops that both receive every tick (two consumer groups) race on the same crossing.
        async with (
            trigger_loop(settings, db_factory, redis_client, "triggers") as a,
            trigger_loop(settings, db_factory, redis_client, "triggers-b") as b,
        ):
            await prices.set("BTCUSDT", Decimal(58000))
            await xadd(redis_client, settings, "58000")
            await wait_for(reaches(sl, TriggerStatus.TRIGGERED), timeout=10)
            await asyncio.sleep(0.5)  # let the slower loop see the tick as well
            assert a.stats["fire_fired"] + b.stats["fire_fired"] == 1
        assert len(await rows(db_factory, InstantClose, quote_id=qid)) == 1
        assert await status(tp) == TriggerStatus.CANCELLED

        # Restart between the trigger and the close: another crossing tick fires nothing.
        async with trigger_loop(settings, db_factory, redis_client, "triggers") as c:
            assert sl not in c.books
            await xadd(redis_client, settings, "57990")
            await asyncio.sleep(0.5)
            assert len(await rows(db_factory, InstantClose, quote_id=qid)) == 1
            # Now the worker runs the close; the loop sees it filled.
            async with running_worker(settings, devnet):
                await wait_for(reaches(sl, TriggerStatus.FILLED), timeout=60)

    q = chain_quote(devnet, qid)
    assert q["quoteStatus"] == QuoteStatus.CLOSED
    assert q["avgClosedPrice"] == 579884 * 10**17  # mark 58000 − 0.02 % hedger fee
    (close,) = await rows(db_factory, InstantClose, quote_id=qid)
    assert close.status == "filled" and close.close_price == Decimal("57420")  # 58000 × (1 − 1 %)
    intents = await rows(db_factory, TxIntent, instant_close_id=close.id)
    assert [i.kind for i in intents].count(IntentKind.CLOSE_REQUEST) == 1
    (row,) = await rows(db_factory, TriggerOrder, id=sl)
    assert (row.quantity, row.attempts, row.fire_mark) == (Decimal("0.01"), 1, Decimal(58000))
    actions = [n.last_seen_action for n in await rows(db_factory, Notification, account=account)]
    for expected in ("SetStopLoss", "SetTakeProfit", "StopLossTriggered", "TakeProfitCancelled", "StopLossFilled",
                     "FillOrderInstantClose"):  # fmt: skip
        assert actions.count(expected) == 1, (expected, actions)
