"""The LIMIT / DCA loop of `solver engine` (trading-rules.md §3).

In solver.engine.register_loops: `strategy_engine.register(engine)`.

- **ticks** (consumer group `strategy.consumer_group` on the price stream): a fresh tick asks the
  book (solver.strategy.book) for the orders it makes eligible (LIMIT) or that are due (DCA) and
  steps each one.
- **poll** (every `strategy.poll_interval_s`): settles sub-orders whose instant open ended,
  re-sends sub-orders a crash left half-sent, picks up orders the API created or cancelled,
  cancels the orders of accounts flagged for liquidation, and steps due DCA orders with the
  latest fresh price even when no tick comes.

What a step does to an order (lock, decide, write the sub-order, submit it through the instant
open flow, settle it) is in solver.strategy.actions, one database transaction each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from solver.chain.reader import ChainReader
from solver.core.clock import Clock, SystemClock
from solver.core.errors import ErrorCode
from solver.db.engine import SessionFactory
from solver.db.models import (
    STRATEGY_LIVE,
    StrategyOrder,
    StrategyStatus,
)
from solver.market.marks import MarkPrices
from solver.observability.heartbeat import Beat, no_beat
from solver.pricing.cache import PriceCache, PricePoint
from solver.pricing.stream import PriceStream, StreamTick
from solver.quotes.open_service import InstantOpenService
from solver.risk.flags import ReduceOnlyFlags
from solver.settings import Settings
from solver.strategy.actions import SYSTEM_CANCEL, Opens, StrategyActions
from solver.strategy.book import StrategyBook
from solver.strategy.suborders import entry_of

log = logging.getLogger("solver.strategy.engine")

SYNC_MARGIN = timedelta(seconds=5)  # re-read rows changed this long before the last poll
READ_COUNT = 500


class StrategyEngine:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: SessionFactory,
        redis: Redis,
        opens: Opens,
        clock: Clock | None = None,
        stream: PriceStream | None = None,
        consumer: str | None = None,
        group: str | None = None,
    ) -> None:
        self._settings = settings
        self._symbols = {s.symbol_id: s for s in settings.symbols}
        self._by_name = {s.name: s for s in settings.symbols}
        self._sessions = sessions
        self._clock = clock or SystemClock()
        self._marks = MarkPrices(settings=settings, prices=PriceCache(redis, settings.redis_prefix), clock=self._clock)
        self._flags = ReduceOnlyFlags(redis, settings.redis_prefix)
        self._stream = stream or PriceStream(redis, settings.redis_prefix)
        self.group = group or settings.strategy.consumer_group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.book = StrategyBook()
        self._accounts: dict[int, str] = {}  # live order id -> account
        self._stepping: set[int] = set()
        self._slots = asyncio.Semaphore(settings.strategy.concurrency)
        self._synced_at: datetime | None = None
        self._last_ts: dict[int, float] = {}
        self.stats: Counter[str] = Counter()
        self.actions = StrategyActions(
            settings=settings, sessions=sessions, opens=opens, marks=self._marks, clock=self._clock, stats=self.stats
        )
        self.beat: Beat = no_beat  # set by the engine: one beat per iteration of each half

    # --- lifecycle -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await self._stream.ensure_group(self.group)
        await self.reload()
        tasks = [
            asyncio.create_task(self._tick_loop(stop), name="strategy-ticks"),
            asyncio.create_task(self._poll_loop(stop), name="strategy-poll"),
        ]
        waiter = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not waiter:
                    t.result()
        finally:
            for t in [*tasks, waiter]:
                t.cancel()
            await asyncio.gather(*tasks, waiter, return_exceptions=True)

    async def _tick_loop(self, stop: asyncio.Event) -> None:
        block = self._settings.strategy.read_block_ms
        while not stop.is_set():
            self.beat("strategy.ticks")
            try:
                ticks = await self._stream.read_group(self.group, self.consumer, READ_COUNT, block)
                await self._handle(ticks)
            except (asyncio.CancelledError, AssertionError):
                raise
            except Exception:
                log.exception("strategy engine: reading price ticks failed")
                await _sleep(stop, 1.0)

    async def _poll_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.beat("strategy.poll")
            try:
                await self.poll_once()
            except (asyncio.CancelledError, AssertionError):
                raise
            except Exception:
                log.exception("strategy engine: poll failed")
            await _sleep(stop, self._settings.strategy.poll_interval_s)

    async def _handle(self, ticks: Sequence[StreamTick]) -> None:
        # Only the newest tick of each symbol in a batch matters.
        newest: dict[str, PricePoint] = {}
        for t in ticks:
            newest[t.point.symbol.upper()] = t.point
        for point in newest.values():
            await self.on_tick(point)
        if ticks:
            await self._stream.ack(self.group, *[t.id for t in ticks])

    # --- ticks -----------------------------------------------------------------------------

    async def on_tick(self, point: PricePoint) -> int:
        """Step the orders a fresh tick makes eligible or finds due; how many were stepped."""
        sym = self._by_name.get(point.symbol.upper())
        if sym is None:
            return 0
        last = self._last_ts.get(sym.symbol_id)
        if last is not None and point.ts <= last:
            return 0
        self._last_ts[sym.symbol_id] = point.ts
        if not (point.price.is_finite() and point.price > 0) or not self._marks.is_fresh(point):
            self.stats["stale_ticks"] += 1
            return 0
        now = Decimal(str(self._clock.time()))
        ids = [oid for oid in self.book.candidates(sym.symbol_id, point.price, now) if oid not in self._stepping]
        if ids:
            await asyncio.gather(*(self.step(oid) for oid in ids))
        return len(ids)

    # --- poll ------------------------------------------------------------------------------

    async def poll_once(self) -> None:
        await self.settle()
        await self.resend_cut_off()
        await self.sync()
        await self._cancel_flagged()
        await self._finish_pending_cancels()
        points = await self._marks.latest(s for s in self._settings.symbols if s.symbol_id in self.book.symbols())
        for point in points.values():
            self._last_ts.pop(self._by_name[point.symbol.upper()].symbol_id, None)  # let the same price step again
            await self.on_tick(point)

    async def reload(self) -> None:
        async with self._sessions() as s:
            now = await _db_now(s)
            rows = list((await s.exec(select(StrategyOrder).where(col(StrategyOrder.status).in_(STRATEGY_LIVE)))).all())
        self.book = StrategyBook()
        self._accounts.clear()
        for row in rows:
            self._apply(row)
        self._synced_at = now
        self.stats["reloads"] += 1

    async def sync(self) -> None:
        if self._synced_at is None:
            await self.reload()
            return
        async with self._sessions() as s:
            now = await _db_now(s)
            stmt = select(StrategyOrder).where(col(StrategyOrder.modify_time) >= self._synced_at - SYNC_MARGIN)
            rows = list((await s.exec(stmt)).all())
        for row in rows:
            self._apply(row)
        self._synced_at = now

    def _apply(self, row: StrategyOrder) -> None:
        assert row.id is not None
        if row.id in self._stepping:
            return  # the step puts it back from its own fresh read
        if row.status not in STRATEGY_LIVE:
            self.book.remove(row.id)
            self._accounts.pop(row.id, None)
            return
        self._accounts[row.id] = row.account
        if row.status == StrategyStatus.ACTIVE and row.active_transactions == 0:
            self.book.add(entry_of(row))
        else:
            self.book.remove(row.id)

    async def _cancel_flagged(self) -> None:
        if not self._accounts:
            return
        flagged = set(await self._flags.all())
        for oid, account in list(self._accounts.items()):
            if account in flagged and oid not in self._stepping:
                await self.step(oid, cancel_reason=SYSTEM_CANCEL[ErrorCode.REDUCE_ONLY])

    async def _finish_pending_cancels(self) -> None:
        async with self._sessions() as s:
            stmt = select(StrategyOrder.id).where(
                col(StrategyOrder.status) == StrategyStatus.REQUESTED_CANCELLATION,
                col(StrategyOrder.active_transactions) == 0,
            )
            ids = [i for i in (await s.exec(stmt)).all() if i is not None]
        for oid in ids:
            await self.step(oid)

    # --- one order -------------------------------------------------------------------------

    async def step(self, order_id: int, *, cancel_reason: str | None = None) -> None:
        """Decide and act for one order (send a sub-order, finish it, or nothing)."""
        if order_id in self._stepping:
            return
        self._stepping.add(order_id)
        self.book.remove(order_id)
        row: StrategyOrder | None = None
        try:
            async with self._slots:
                sub_id, row = await self.actions.decide(order_id, cancel_reason)
                if sub_id is not None:
                    row = await self.actions.submit(sub_id)
        except (asyncio.CancelledError, AssertionError):
            raise
        except Exception:
            log.exception(
                "strategy order %s: step failed",
                order_id,
                extra={"strategy_order_id": order_id, "account": self._accounts.get(order_id)},
            )
            self.stats["step_errors"] += 1
        finally:
            self._stepping.discard(order_id)
            if row is None:
                row = await self.actions.read(order_id)
            if row is not None:
                self._apply(row)

    # --- settlement ------------------------------------------------------------------------

    async def settle(self) -> int:
        """Sub-orders whose instant open ended: count them opened or failed."""
        ids = await self.actions.ended()
        for sub_id in ids:
            row = await self.actions.settle_one(sub_id)
            if row is not None and row.id is not None and row.id not in self._stepping:
                self._apply(row)
        return len(ids)

    async def resend_cut_off(self) -> int:
        """Sub-orders left `sending` by a crash: send the identical request again."""
        rows = await self.actions.cut_off()
        for sub_id, order_id in rows:
            if order_id in self._stepping:
                continue
            self._stepping.add(order_id)
            try:
                row = await self.actions.submit(sub_id)
            finally:
                self._stepping.discard(order_id)
            if row is not None:
                self._apply(row)
            self.stats["resent"] += 1
        return len(rows)


# --- helpers -------------------------------------------------------------------------------


async def _db_now(s: AsyncSession) -> datetime:
    value = (await s.exec(select(func.now()))).one()
    assert isinstance(value, datetime)
    return value


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class EngineLike(Protocol):
    settings: Settings
    redis: Redis
    stream: PriceStream
    clock: Clock
    closers: list[object]

    def add_loop(self, loop: Any) -> None: ...


class _Disposer:
    def __init__(self, db: AsyncEngine) -> None:
        self._db = db

    async def aclose(self) -> None:
        await self._db.dispose()


def instant_opens(
    settings: Settings, sessions: SessionFactory, redis: Redis, chain: ChainReader, clock: Clock
) -> InstantOpenService:
    """An instant open service like the API's: sub-orders pass the same gate, temp ids and outbox."""
    from solver.market.repository import MarketStats
    from solver.quotes.repository import temp_id_seed_source
    from solver.quotes.temp_ids import TempIdAllocator

    return InstantOpenService(
        settings=settings,
        sessions=sessions,
        chain=chain,
        marks=MarkPrices(settings=settings, prices=PriceCache(redis, settings.redis_prefix), clock=clock),
        stats=MarketStats(sessions),
        temp_ids=TempIdAllocator(redis, settings.redis_prefix, temp_id_seed_source(sessions)),
        clock=clock,
        flags=ReduceOnlyFlags(redis, settings.redis_prefix),
    )


def register(engine: EngineLike) -> StrategyEngine:
    """The strategy loop on the engine's Redis, price stream and clock, with its own DB pool."""
    from solver.chain.web3_reader import Web3ChainReader
    from solver.db.engine import create_engine, session_factory
    from solver.notify.publish import NotificationPublisher, enable_publishing

    settings = engine.settings
    pool = settings.strategy.concurrency + 4  # a submit holds one connection while the open uses another
    db = create_engine(settings.database_url, pool_size=pool, max_overflow=4, application_name="solver-strategies")
    sessions = session_factory(db)
    publisher = NotificationPublisher(engine.redis, settings.redis_prefix)
    enable_publishing(sessions, publisher)
    chain = Web3ChainReader.from_settings(settings.chain)
    opens = instant_opens(settings, sessions, engine.redis, chain, engine.clock)
    loop = StrategyEngine(
        settings=settings, sessions=sessions, redis=engine.redis, opens=opens, clock=engine.clock, stream=engine.stream
    )
    engine.closers.extend([chain, publisher, _Disposer(db)])
    engine.add_loop(loop.run)
    return loop
