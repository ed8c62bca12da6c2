"""Cancels once the request is on chain: the API's cancel (the real service) and the worker's
request/accept pair, stepped by hand so the cancel lands exactly between two steps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis

from solver.chain.types import QuoteStatus
from solver.chain.web3_reader import Web3ChainReader
from solver.core.clock import SystemClock
from solver.db.engine import SessionFactory
from solver.db.models import InstantClose, InstantCloseStatus, InstantOpen, InstantOpenStatus
from solver.devnet.deploy import DevnetInfo
from solver.market.marks import MarkPrices
from solver.market.repository import MarketStats
from solver.oracle.local import LocalOracle
from solver.pricing.cache import PriceCache
from solver.quotes.close_service import InstantCloseService
from solver.quotes.lane import Lane
from solver.quotes.open_service import InstantOpenService
from solver.quotes.repository import temp_id_seed_source
from solver.quotes.temp_ids import TempIdAllocator
from solver.settings import Settings
from solver.worker import Worker, build_worker, close_worker
from tests.fixtures.app import settings_for
from tests.fixtures.redis import REDIS_URL
from tests.fixtures.trading import PriceKeeper, chain_quote, new_account
from tests.integration.test_worker_flow import close_request, open_request

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(devnet: DevnetInfo, database_url: str, redis_prefix: str) -> Settings:
    return settings_for(devnet, database_url, redis_prefix, worker={"signer_private_keys": [devnet.solver_private_key]})


class Env:
    def __init__(self, worker: Worker, opens: InstantOpenService, closes: InstantCloseService) -> None:
        self.worker = worker
        self.lane: Lane = worker.lanes[0]
        self.opens = opens
        self.closes = closes

    async def account(self, devnet: DevnetInfo) -> str:
        """A fresh account; the harness funds it with the solver key, so re-seed the nonce after."""
        account = new_account(devnet)
        await self.lane.recover()
        return account

    async def step(self) -> None:
        busy, in_flight = await self.lane.track()
        await self.lane.fill(busy, in_flight)

    async def until(self, check: Callable[[], Awaitable[bool]], steps: int = 200) -> None:
        """Run the lane until `check` holds, looking between settling receipts and sending more."""
        for _ in range(steps):
            busy, in_flight = await self.lane.track()
            if await check():
                return
            await self.lane.fill(busy, in_flight)
            await asyncio.sleep(0.01)
        raise AssertionError("the lane did not get there")


@pytest.fixture
async def env(settings: Settings, devnet: DevnetInfo, db_factory: SessionFactory) -> AsyncIterator[Env]:
    redis = Redis.from_url(REDIS_URL)
    chain = Web3ChainReader.from_settings(settings.chain)
    clock = SystemClock()
    marks = MarkPrices(settings=settings, prices=PriceCache(redis, settings.redis_prefix), clock=clock)
    worker = await build_worker(
        settings, oracle=LocalOracle(devnet.oracle_signer(), chain, marks, settings), chain=chain, clock=clock
    )
    await worker.lanes[0].recover()
    temp_ids = TempIdAllocator(redis, settings.redis_prefix, temp_id_seed_source(db_factory))
    opens = InstantOpenService(
        settings=settings,
        sessions=db_factory,
        chain=chain,
        marks=marks,
        stats=MarketStats(db_factory),
        temp_ids=temp_ids,
        clock=clock,
    )
    closes = InstantCloseService(settings=settings, sessions=db_factory, chain=chain, marks=marks, clock=clock)
    async with PriceKeeper(redis, settings.redis_prefix):
        yield Env(worker, opens, closes)
    await close_worker(worker)
    await chain.close()
    await redis.aclose()


async def _open(db: SessionFactory, id: int) -> InstantOpen:
    async with db() as s:
        row = await s.get(InstantOpen, id, populate_existing=True)
    assert row is not None
    return row


async def _close(db: SessionFactory, id: int) -> InstantClose:
    async with db() as s:
        row = await s.get(InstantClose, id, populate_existing=True)
    assert row is not None
    return row


async def test_cancel_after_the_quote_is_on_chain_cancels_it_there(
    env: Env, devnet: DevnetInfo, db_factory: SessionFactory
) -> None:
    account = await env.account(devnet)
    open_id = await open_request(db_factory, account)

    async def has_quote_id() -> bool:
        return (await _open(db_factory, open_id)).quote_id is not None

    await env.until(has_quote_id)  # sendQuote mined; lockAndOpen queued, not sent yet
    row = await _open(db_factory, open_id)
    assert row.status == InstantOpenStatus.SENT and row.quote_id is not None
    assert chain_quote(devnet, row.quote_id)["quoteStatus"] == QuoteStatus.PENDING

    message = await env.opens.cancel(account, str(row.temp_quote_id))
    assert "cancel" in message.lower()

    async def settled() -> bool:
        return (await _open(db_factory, open_id)).status == InstantOpenStatus.CANCELLED

    await env.until(settled)
    assert chain_quote(devnet, row.quote_id)["quoteStatus"] == QuoteStatus.CANCELED


async def test_cancel_of_a_close_request_on_chain_returns_the_position_to_opened(
    env: Env, devnet: DevnetInfo, db_factory: SessionFactory
) -> None:
    account = await env.account(devnet)
    open_id = await open_request(db_factory, account)

    async def opened() -> bool:
        return (await _open(db_factory, open_id)).status == InstantOpenStatus.OPENED

    await env.until(opened)
    quote_id = (await _open(db_factory, open_id)).quote_id
    assert quote_id is not None
    close_id = await close_request(db_factory, account, quote_id, "0.01", "59000")

    async def requested() -> bool:
        return chain_quote(devnet, quote_id)["quoteStatus"] == QuoteStatus.CLOSE_PENDING

    await env.until(requested)  # requestToClosePosition mined; the fill is queued, not sent
    assert (await _close(db_factory, close_id)).status == InstantCloseStatus.SENT
    await env.closes.cancel(account, str(quote_id))

    async def cancelled() -> bool:
        return (await _close(db_factory, close_id)).status == InstantCloseStatus.CANCELLED

    await env.until(cancelled)
    assert chain_quote(devnet, quote_id)["quoteStatus"] == QuoteStatus.OPENED


async def test_cancel_of_a_pending_close_never_reaches_the_chain(
    env: Env, devnet: DevnetInfo, db_factory: SessionFactory
) -> None:
    account = await env.account(devnet)
    open_id = await open_request(db_factory, account)

    async def opened() -> bool:
        return (await _open(db_factory, open_id)).status == InstantOpenStatus.OPENED

    await env.until(opened)
    quote_id = (await _open(db_factory, open_id)).quote_id
    assert quote_id is not None
    close_id = await close_request(db_factory, account, quote_id, "0.01", "59000")
    await env.closes.cancel(account, str(quote_id))
    assert (await _close(db_factory, close_id)).status == InstantCloseStatus.CANCELLED
    for _ in range(5):
        await env.step()
    assert chain_quote(devnet, quote_id)["quoteStatus"] == QuoteStatus.OPENED
