"""The stop loss / take profit loop of `solver engine` (trading-rules.md §4).

In solver.engine.register_loops: `trigger_engine.register(engine)`; standalone or in tests:

    triggers = TriggerEngine(settings=settings, sessions=sessions, redis=redis, chain=chain)
    task = asyncio.create_task(triggers.run(stop), name="triggers")

Two halves share the in-memory books:

- **ticks**: price ticks from the Redis stream `{prefix}prices:stream`, read with the consumer
  group `triggers.consumer_group` (solver.pricing.stream). A tick older than the newest one
  already handled for its symbol, or older than `risk.max_price_age_s` by its *source* time, is
  skipped: stale prices never fire. A fresh tick pops the armed triggers it crosses from the
  sorted books (work grows with the triggers crossed, not with the book) and fires each one
  (solver.orders.actions: one DB transaction, compare-and-set, so a trigger fires at most once
  even with two engines or a repeated tick).
- **poll** (every `triggers.poll_interval_s`): picks up orders the API added or cancelled,
  arms waiting orders whose quote is OPENED, drops those whose quote ended, settles fired orders
  whose close ended (filled / retried with a fresh price / failed), cancels the orders of
  positions closed or liquidated another way (quote mirror, plus a few chain reads per poll),
  and rebuilds the books from Postgres every `triggers.full_reload_s`.

On start the books are built from Postgres, so a restart loses nothing: a fired order is not
armed any more and never fires again; its close keeps going through the worker. The latest
cached price of each symbol then runs through the books once (`catch_up`), so what crossed while
no loop ran fires at once (if that price is fresh).

Consumer names default to host-pid-random: entries a dead consumer received but never acked are
acked unread after a minute (their prices are stale by then). Pass a stable `consumer` name to
have a restarted process re-read its own unacked entries first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from solver.chain.reader import ChainReader
from solver.core.clock import Clock, SystemClock
from solver.db.engine import SessionFactory
from solver.db.models import TriggerOrder, TriggerStatus
from solver.market.marks import MarkPrices
from solver.observability.heartbeat import Beat, no_beat
from solver.orders import repository as repo
from solver.orders.actions import ENDED, Outcome, TriggerActions
from solver.orders.triggers import Trigger, TriggerBooks
from solver.pricing.cache import PriceCache, PricePoint
from solver.pricing.stream import PriceStream, StreamTick
from solver.settings import Settings

log = logging.getLogger("solver.orders.engine")

SYNC_MARGIN = timedelta(seconds=5)  # re-read rows changed this long before the last poll
DEFER_S = 1.0  # an order that could not fire waits this long before it may fire again
FIRE_CONCURRENCY = 16
READ_COUNT = 500
STALE_PENDING_MS = 60_000  # unacked entries of dead consumers, this idle, are acked unread


class TriggerEngine:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: SessionFactory,
        redis: Redis,
        chain: ChainReader,
        clock: Clock | None = None,
        consumer: str | None = None,
        group: str | None = None,
        stream: PriceStream | None = None,
    ) -> None:
        self._settings = settings
        self._symbols = {s.name: s for s in settings.symbols}
        self._sessions = sessions
        self._redis = redis
        self._clock = clock or SystemClock()
        self._marks = MarkPrices(settings=settings, prices=PriceCache(redis, settings.redis_prefix), clock=self._clock)
        self.actions = TriggerActions(
            settings=settings, sessions=sessions, chain=chain, marks=self._marks, clock=self._clock
        )
        self._stream = stream or PriceStream(redis, settings.redis_prefix)
        self.group = group or settings.triggers.consumer_group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.books = TriggerBooks()
        self._waiting: dict[int, int] = {}  # order id -> quote id
        self._deferred: dict[int, tuple[Trigger, float]] = {}  # order id -> (trigger, may fire again at)
        self._busy: set[int] = set()  # being fired right now
        self._retired: set[int] = set()  # known to be past `armed`: never armed again (FSM)
        self._last_ts: dict[int, float] = {}  # symbol id -> newest source time handled
        self._synced_at: datetime | None = None
        self._reloaded_at = 0.0
        self._sweep_at = 0
        self._sweep_quotes: list[int] = []
        self._fire_slots = asyncio.Semaphore(FIRE_CONCURRENCY)
        self.stats: Counter[str] = Counter()
        self.beat: Beat = no_beat  # set by the engine: one beat per iteration of each half

    # --- lifecycle -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set. An invariant violation propagates (crash-only); anything
        else is logged at the loop boundary and retried."""
        await self._stream.ensure_group(self.group)
        await self.reload()
        await self.catch_up()
        tasks = [
            asyncio.create_task(self._tick_loop(stop), name="triggers-ticks"),
            asyncio.create_task(self._poll_loop(stop), name="triggers-poll"),
        ]
        waiter = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not waiter:
                    t.result()  # a loop ended: re-raise its error
        finally:
            for t in [*tasks, waiter]:
                t.cancel()
            await asyncio.gather(*tasks, waiter, return_exceptions=True)

    async def _tick_loop(self, stop: asyncio.Event) -> None:
        # Entries this consumer received but did not ack before a restart come first.
        await self._handle(await self._stream.read_group(self.group, self.consumer, READ_COUNT, pending=True))
        block = self._settings.triggers.read_block_ms
        while not stop.is_set():
            self.beat("triggers.ticks")
            try:
                await self._handle(await self._stream.read_group(self.group, self.consumer, READ_COUNT, block))
            except (asyncio.CancelledError, AssertionError):
                raise
            except Exception:
                log.exception("trigger engine: reading price ticks failed")
                await _sleep(stop, 1.0)

    async def _poll_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.beat("triggers.poll")
            try:
                await self.poll_once()
            except (asyncio.CancelledError, AssertionError):
                raise
            except Exception:
                log.exception("trigger engine: poll failed")
            await _sleep(stop, self._settings.triggers.poll_interval_s)

    async def _handle(self, ticks: Sequence[StreamTick]) -> None:
        for tick in ticks:
            await self.on_tick(tick.point)
        if ticks:
            await self._stream.ack(self.group, *[t.id for t in ticks])

    # --- ticks -----------------------------------------------------------------------------

    async def catch_up(self) -> int:
        """Run the latest cached price of every symbol through the books (after a start: what
        crossed while no loop ran fires now, on a fresh price only)."""
        points = await self._marks.latest(self._settings.symbols)
        fired = 0
        for point in points.values():
            fired += await self.on_tick(point)
        return fired

    async def on_tick(self, point: PricePoint) -> int:
        """Fire what a tick crosses; the number of orders fired."""
        sym = self._symbols.get(point.symbol.upper())
        if sym is None:
            return 0
        last = self._last_ts.get(sym.symbol_id)
        if last is not None and point.ts <= last:
            self.stats["old_ticks"] += 1
            return 0  # a repeated or out-of-order tick: a newer price was already seen
        self._last_ts[sym.symbol_id] = point.ts
        if not (point.price.is_finite() and point.price > 0) or not self._marks.is_fresh(point):
            self.stats["stale_ticks"] += 1
            return 0
        crossed = self.books.pop_crossed(sym.symbol_id, point.price)
        if not crossed:
            return 0
        outcomes = await asyncio.gather(*(self._fire(t, point) for t in crossed))
        return sum(1 for o in outcomes if o == Outcome.FIRED)

    async def _fire(self, trig: Trigger, point: PricePoint) -> Outcome:
        self._busy.add(trig.order_id)  # from the pop on: a sync must not put it back meanwhile
        try:
            async with self._fire_slots:
                # The fire may wait for a slot or a lock: never on a price that went stale meanwhile.
                if self._marks.is_fresh(point):
                    outcome = await self.actions.fire(trig, point.price)
                else:
                    outcome = Outcome.DEFER
        except (asyncio.CancelledError, AssertionError):
            self.books.add(trig)
            raise
        except Exception:
            log.exception(
                "trigger %s: fire failed", trig.order_id, extra={"trigger_id": trig.order_id, "quote_id": trig.quote_id}
            )
            outcome = Outcome.DEFER
        finally:
            self._busy.discard(trig.order_id)
        self.stats[f"fire_{outcome.value}"] += 1
        if outcome == Outcome.DEFER:
            self._deferred[trig.order_id] = (trig, time.monotonic() + DEFER_S)
        else:
            self._retired.add(trig.order_id)
        return outcome

    # --- poll ------------------------------------------------------------------------------

    async def poll_once(self) -> None:
        """One reconcile pass; the books then reflect everything it (and the API) changed."""
        await self._arm_waiting()
        await self._settle_fired()
        await self._check_mirror()
        await self._sweep()
        if self._synced_at is None or time.monotonic() - self._reloaded_at >= self._settings.triggers.full_reload_s:
            await self.reload()
            await self._ack_abandoned()
        else:
            await self.sync()
        self._requeue_deferred()

    async def reload(self) -> None:
        """Rebuild the books and the waiting set from every active order in Postgres."""
        async with self._sessions() as s:
            now = await repo.db_now(s)
            rows = await repo.active(s)
        self.books = TriggerBooks()
        self._waiting.clear()
        # Keep only what can still matter: an order fired while the snapshot was read.
        self._retired &= {r.id for r in rows}
        armed: list[Trigger] = []
        for row in rows:
            trig = self._apply(row, add=False)
            if trig is not None:
                armed.append(trig)
        self.books.load(armed)  # one sort per book, not an insort per order
        self._sweep_quotes = sorted({t.quote_id for t in armed})
        self._synced_at = now
        self._reloaded_at = time.monotonic()
        self.stats["reloads"] += 1

    async def sync(self) -> None:
        """Apply the orders changed since the last poll (new, cancelled, armed, fired)."""
        assert self._synced_at is not None
        async with self._sessions() as s:
            now = await repo.db_now(s)
            rows = await repo.changed_since(s, self._synced_at - SYNC_MARGIN)
        for row in rows:
            self._apply(row)
        self._synced_at = now

    def _apply(self, row: TriggerOrder, *, add: bool = True) -> Trigger | None:
        """Follow the row's status; an armed order that belongs in the books is added (or, with
        `add=False`, returned for a bulk load)."""
        assert row.id is not None
        oid = row.id
        if row.status == TriggerStatus.ARMED:
            self._waiting.pop(oid, None)
            if oid in self._retired or oid in self._busy or oid in self._deferred or oid in self.books:
                return None
            trig = Trigger(oid, row.quote_id, row.symbol_id, row.position_type, row.kind.value, row.trigger_price)
            if not add:
                return trig
            self.books.add(trig)
        elif row.status == TriggerStatus.WAITING:
            self._waiting[oid] = row.quote_id
        else:
            self._retired.add(oid)
            self._waiting.pop(oid, None)
            self._deferred.pop(oid, None)
            self.books.remove(oid)
        return None

    async def _arm_waiting(self) -> None:
        quotes = sorted(set(self._waiting.values()))
        if quotes:
            await self._each(quotes, self.actions.check_quote)

    async def _settle_fired(self) -> None:
        async with self._sessions() as s:
            ids = await repo.fired_with_ended_close(s)
        for oid in ids:
            self.stats[f"settle_{await self.actions.settle(oid)}"] += 1

    async def _check_mirror(self) -> None:
        """Positions the quote mirror shows ended: confirm on chain and cancel their orders."""
        async with self._sessions() as s:
            quotes = await repo.pending_with_mirrored_status(s, [int(x) for x in ENDED])
        if quotes:
            await self._each(quotes, self.actions.check_quote)

    async def _sweep(self) -> None:
        """A few armed positions per poll re-read on chain (works without the mirror too)."""
        n = self._settings.triggers.chain_sweep_batch
        # The armed positions of the last reload (sorting the whole book every poll cost 7 ms at
        # 100,000 orders); orders armed since are covered by the mirror check until the next one.
        quotes = self._sweep_quotes
        if n == 0 or not quotes:
            return
        start = self._sweep_at % len(quotes)
        batch = (quotes[start:] + quotes[:start])[:n]
        self._sweep_at = start + len(batch)
        await self._each(batch, self.actions.check_quote)

    def _requeue_deferred(self) -> None:
        now = time.monotonic()
        for oid, (trig, at) in list(self._deferred.items()):
            if at <= now:
                del self._deferred[oid]
                if oid not in self._retired:
                    self.books.add(trig)

    async def _each(self, quote_ids: Sequence[int], check: Callable[[int], Awaitable[object]]) -> None:
        async def one(quote_id: int) -> None:
            async with self._fire_slots:
                await check(quote_id)

        await asyncio.gather(*(one(q) for q in quote_ids))

    async def _ack_abandoned(self) -> None:
        """Ack entries delivered to consumers that died without acking (their ticks are stale by
        now, so none would fire); keeps the group's pending list from growing forever."""
        try:
            reply = await self._redis.xautoclaim(
                self._stream.key, self.group, self.consumer, min_idle_time=STALE_PENDING_MS, count=1000
            )
        except Exception:
            log.debug("xautoclaim failed", exc_info=True)
            return
        entries = reply[1] if isinstance(reply, list | tuple) and len(reply) > 1 else []
        ids = [e[0] for e in entries if isinstance(e, list | tuple) and e]
        if ids:
            await self._redis.xack(self._stream.key, self.group, *ids)


class EngineLike(Protocol):
    """What `register` needs of solver.engine.Engine."""

    settings: Settings
    redis: Redis
    stream: PriceStream
    clock: Clock
    closers: list[object]

    def add_loop(self, loop: Any) -> None: ...


class _Disposer:
    def __init__(self, db: AsyncEngine) -> None:
        self._db = db

    async def close(self) -> None:
        await self._db.dispose()


def register(engine: EngineLike, *, chain: ChainReader | None = None) -> TriggerEngine:
    """Build the trigger loop on the engine's Redis, price stream and clock, with its own DB pool,
    publishing its notifications to the WebSocket fan-out, and add it to the engine's loops."""
    from solver.db.engine import create_engine, session_factory
    from solver.notify.publish import NotificationPublisher, enable_publishing

    settings = engine.settings
    db = create_engine(settings.database_url, pool_size=4, max_overflow=4, application_name="solver-triggers")
    sessions = session_factory(db)
    publisher = NotificationPublisher(engine.redis, settings.redis_prefix)
    enable_publishing(sessions, publisher)  # StopLossTriggered & co. reach position-state-ws3
    if chain is None:
        from solver.chain.web3_reader import Web3ChainReader

        chain = Web3ChainReader.from_settings(settings.chain)
        engine.closers.append(chain)
    loop = TriggerEngine(
        settings=settings, sessions=sessions, redis=engine.redis, chain=chain, clock=engine.clock, stream=engine.stream
    )
    engine.closers.extend([publisher, _Disposer(db)])
    engine.add_loop(loop.run)
    return loop


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
