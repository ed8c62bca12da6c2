"""The engine's account-health loop (trading-rules.md §6): keeps every account's health current on
every tick of a symbol it holds, flags an account that goes below zero within that tick, and
clears the flag when it is healthy again.

State is in memory and rebuilt at every start (no table of its own): positions from the `quote`
mirror (solver.risk.health_mirror), allocated balances from the chain
(`ChainReader.party_a_balances`), marks from the latest-price keys, flags from Redis.

- **Ticks**: read from `{prefix}prices:stream` with the consumer group
  `settings.health.consumer_group` ("health"). Each tick goes through the health book
  (solver.risk.health_book: work in the crossed and near-liquidation accounts, not in all
  positions); every account the book evaluates is decided on its exact health, tick by tick.
  The effects of one read (flags, alerts, health hashes) are written as soon as its ticks are
  applied, before they are acked: the flag exists once the read that carried the tick is done.
- **Decisions** use fresh prices only: an evaluation using a mark older than
  `risk.max_price_age_s` (source time) neither flags nor clears; the account is re-checked
  after every later batch until its marks are fresh again.
- **Flag**: `{prefix}reduce_only:{account}` with the reason (solver.risk.flags), and one
  `LiquidatePosition` alert notification per episode (event_key
  `liquidation:{account}:{episode}`; the episode id lives in the flag, so a restart neither
  loses nor repeats the alert). Cleared (key deleted) when the account is healthy on fresh
  prices or holds no position any more. An account with a LIQUIDATED_PENDING quote stays
  flagged while Symmio liquidates it. This loop only flags and reports; it does not liquidate.
- **Positions**: every `poll_interval_s` the mirror rows modified since the last poll (with an
  overlap for late commits) name the accounts to reload; their allocated balance is re-read with
  them. A bounded batch of other balances is re-read per poll (flagged and watched accounts
  first, then round robin), and the whole book is reconciled every `full_reload_s`.
- **Health hashes** `{prefix}health:{account}` (fields in solver.risk.flags.HEALTH_FIELDS):
  written for every account at start, for each account a batch evaluates or a poll reloads,
  and for `snapshot_batch` more accounts per poll, round robin; between two snapshots a reader
  gets the current uPnL exactly from the hash's `exposure` and the latest marks.

Run one health loop per deployment: replicas in one consumer group would split the ticks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from redis.asyncio import Redis

from solver.chain.reader import ChainReader
from solver.core.clock import Clock
from solver.core.units import from_wei
from solver.db.engine import SessionFactory, session_scope
from solver.notify import repository as notify
from solver.observability.heartbeat import Beat, no_beat
from solver.pricing.cache import PriceCache
from solver.pricing.stream import PriceStream, StreamTick
from solver.risk import health_mirror as mirror
from solver.risk.flags import FlagReason, ReduceOnlyFlags, health_key, reduce_only_key
from solver.risk.health import inputs
from solver.risk.health_book import Evaluation, HealthBook
from solver.risk.health_effects import Cause, alert, flag_reason, hash_fields, restored_reason
from solver.risk.health_mirror import Holdings
from solver.settings import Settings

log = logging.getLogger("solver.risk.health")

ABANDONED_IDLE_MS = 60_000


class HealthEngine:
    def __init__(
        self,
        *,
        settings: Settings,
        redis: Redis,
        stream: PriceStream,
        sessions: SessionFactory,
        chain: ChainReader,
        clock: Clock,
        consumer: str | None = None,
    ) -> None:
        h = settings.health
        self._settings = settings
        self._h = h
        self._redis = redis
        self._prefix = settings.redis_prefix
        self._stream = stream
        self._sessions = sessions
        self._chain = chain
        self._clock = clock
        self._prices = PriceCache(redis, settings.redis_prefix)
        self._flag_reader = ReduceOnlyFlags(redis, settings.redis_prefix)
        self.group = h.consumer_group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.book = HealthBook(min_band=h.min_band, max_band=h.max_band)
        self._ids = {s.name: s.symbol_id for s in settings.symbols}
        self._names = {s.symbol_id: s.name for s in settings.symbols}
        self._max_age = float(settings.risk.max_price_age_s)
        self._holdings: dict[str, Holdings] = {}
        self._allocated: dict[str, Decimal] = {}
        self._flags: dict[str, FlagReason] = {}
        self._dirty_flags: set[str] = set()  # Redis flag key behind the memory state
        self._unnotified: set[str] = set()  # flagged, alert not written yet
        self._deferred: set[str] = set()  # decision waits for fresh marks
        self._snapshots: dict[str, Evaluation] = {}  # health hashes to write
        self._dropped: set[str] = set()  # health hashes to delete
        self._seen: dict[int, datetime] = {}  # quote id -> modify_time seen, within the overlap
        self._watermark: datetime | None = None
        self._order: list[str] = []  # accounts, for the round-robin balance reads and snapshots
        self._cursors = {"balance": 0, "snapshot": 0}
        self._retry: set[str] = set()  # accounts whose reload failed (balance unreadable)
        self._lock = asyncio.Lock()
        self._last_full = 0.0
        self.started = False
        self.beat: Beat = no_beat  # set by the engine: one beat per iteration of each half

    # -- loop -------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Start (rebuild from Postgres, the chain and Redis), then follow ticks and the mirror until
        `stop`. Transient errors are logged at the loop boundary and retried."""
        while not self.started and not stop.is_set():
            try:
                await self.start()
            except (asyncio.CancelledError, AssertionError):
                raise
            except Exception:
                log.exception("health: start failed; retrying")
                await _sleep(stop, 2.0)
        if stop.is_set():
            return
        tasks = [
            asyncio.create_task(self._tick_loop(stop), name="health-ticks"),
            asyncio.create_task(self._poll_loop(stop), name="health-poll"),
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
        while not stop.is_set():
            self.beat("health.ticks")
            try:
                h = self._h
                ticks = await self._stream.read_group(self.group, self.consumer, h.read_count, h.read_block_ms)
                if ticks:
                    await self.handle_ticks(ticks)
            except (asyncio.CancelledError, AssertionError):
                raise
            except Exception:
                log.exception("health: handling price ticks failed")
                await _sleep(stop, 1.0)

    async def _poll_loop(self, stop: asyncio.Event) -> None:
        last_claim = 0.0
        while not stop.is_set():
            self.beat("health.poll")
            await _sleep(stop, self._h.poll_interval_s)
            if stop.is_set():
                return
            try:
                await self.poll_once()
                if self._clock.time() - last_claim >= ABANDONED_IDLE_MS / 1000:
                    last_claim = self._clock.time()
                    await self._ack_abandoned()
            except (asyncio.CancelledError, AssertionError):
                raise
            except Exception:
                log.exception("health: poll failed")

    # -- start ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Rebuild the book: group first (no tick is missed), then marks, positions, balances, flags."""
        await self._stream.ensure_group(self.group)
        points = await self._prices.get_many(list(self._ids))
        async with self._sessions() as session:
            self._watermark = await mirror.watermark(session)
            holdings = await mirror.load_all(session)
        monitored = {a: h for a, h in holdings.items() if h.monitored}
        balances = await self._read_balances(monitored)
        existing = await self._flag_reader.all()
        async with self._lock:
            self.book = HealthBook(min_band=self._h.min_band, max_band=self._h.max_band)
            for name, point in points.items():
                self.book.tick(self._ids[name], point.price, point.ts)
            self._holdings = {a: monitored[a] for a in balances}
            self._allocated = balances
            self._retry = set(monitored) - set(balances)  # balance unreadable: tried again each poll
            self._flags = {a: r or restored_reason(self._clock.time()) for a, r in existing.items()}
            self._unnotified = set(self._flags)  # make sure each standing episode has its alert
            self._dirty_flags = {a for a, r in existing.items() if r is None}  # rewrite unreadable ones
            for account in existing:
                if account not in self._holdings:
                    self._clear(account)
            loaded = self.book.load({a: inputs(balances[a], h.positions) for a, h in self._holdings.items()})
            for e in loaded:
                self._decide(e, None)
            self._order = list(self._holdings)
            await self._flush()
            self._last_full = self._clock.time()
            self.started = True
        missing = len(monitored) - len(balances)
        log.info(
            "health: book built with %d accounts (%d without a balance yet), %d flagged",
            len(self._holdings),
            missing,
            len(self._flags),
        )

    # -- ticks ------------------------------------------------------------------------------------

    async def handle_ticks(self, ticks: Sequence[StreamTick]) -> None:
        """Apply a batch of ticks in order, write its effects, then ack it."""
        async with self._lock:
            causes: dict[int, Cause] = {}
            for tick in ticks:
                symbol_id = self._ids.get(tick.point.symbol)
                if symbol_id is None:
                    continue
                cause = Cause(tick.point.symbol, tick.point.price, tick.point.ts)
                causes[symbol_id] = cause
                for e in self.book.tick(symbol_id, tick.point.price, tick.point.ts):
                    self._decide(e, cause)
            self._recheck_deferred(causes)
            await self._flush()
        await self._stream.ack(self.group, *[t.id for t in ticks])

    # -- decisions --------------------------------------------------------------------------------

    def _decide(self, e: Evaluation, cause: Cause | None) -> None:
        account = e.account
        holdings = self._holdings.get(account)
        if holdings is None or e.health is None:
            return
        self._snapshots[account] = e
        below = e.health < 0 or holdings.liquidating
        if below == (account in self._flags):
            self._deferred.discard(account)  # nothing to change
            return
        if not holdings.liquidating and e.mark_ts is not None and self._clock.time() - e.mark_ts > self._max_age:
            # A stale price neither flags nor clears; decided again after each batch. (An account
            # that looks healthy on stale marks needs nothing: the book sees the fresh tick cross.)
            self._deferred.add(account)
            return
        self._deferred.discard(account)
        if below:
            self._flag(account, e, holdings, cause)
        else:
            self._clear(account)

    def _flag(self, account: str, e: Evaluation, holdings: Holdings, cause: Cause | None) -> None:
        assert e.health is not None
        reason = flag_reason(health=e.health, liquidating=holdings.liquidating, cause=cause, now=self._clock.time())
        self._flags[account] = reason
        self._dirty_flags.add(account)
        self._unnotified.add(account)
        log.warning("health: %s flagged reduce-only: %s", account, reason.message, extra={"account": account})

    def _clear(self, account: str) -> None:
        if self._flags.pop(account, None) is not None:
            log.info("health: %s healthy again: reduce-only flag cleared", account, extra={"account": account})
        self._dirty_flags.add(account)
        self._unnotified.discard(account)

    def _recheck_deferred(self, causes: dict[int, Cause] | None = None) -> None:
        """Accounts left undecided on stale marks. A flag set now names the batch's newest tick
        of a symbol the account holds (the fresh price that made the decision possible)."""
        for account in list(self._deferred):
            if account in self.book:
                self._decide(self.book.evaluate(account), self._cause_for(account, causes or {}))
            else:
                self._deferred.discard(account)

    def _cause_for(self, account: str, causes: dict[int, Cause]) -> Cause | None:
        holdings = self._holdings.get(account)
        if holdings is None or not causes:
            return None
        held = [causes[p.symbol_id] for p in holdings.positions if p.symbol_id in causes]
        return max(held, key=lambda c: c.ts, default=None)

    # -- polling the mirror and the chain ---------------------------------------------------------

    async def poll_once(self) -> None:
        """Write back flags Redis lost, reload accounts whose mirror rows changed (and all of them
        every full_reload_s), re-read a batch of balances, refresh a batch of health hashes."""
        await self.reassert_flags()  # first: it needs Redis only, not Postgres or the chain
        now = self._clock.time()
        full = now - self._last_full >= self._h.full_reload_s
        async with self._sessions() as session:
            changed, seen, mark = await self._changed_accounts(session)
            changed |= self._retry
            if full:
                everything = await mirror.load_all(session)
                known = set(self._holdings)
                changed |= {a for a, h in everything.items() if h.monitored and h != self._holdings.get(a)}
                changed |= {a for a in known if a not in everything or not everything[a].monitored}
            reloaded = await mirror.load_accounts(session, changed) if changed else {}
        refresh = set(self._balance_batch(exclude=changed))
        to_read = {a: h for a, h in reloaded.items() if h.monitored}
        balances = await self._read_balances({**to_read, **{a: self._holdings[a] for a in refresh}})
        async with self._lock:
            self._retry = set()
            for account, h in reloaded.items():
                if not h.monitored:
                    self._drop(account)
                elif account in balances:
                    self._apply(account, h, balances[account])
                elif account in self._holdings:  # balance read failed: keep the old one, re-read next poll
                    self._apply(account, h, self._allocated[account])
                    self._retry.add(account)
                else:
                    self._retry.add(account)
            for account in refresh:
                if account in balances and account in self._holdings and balances[account] != self._allocated[account]:
                    self._apply(account, self._holdings[account], balances[account])
            self._recheck_deferred()
            self._sweep()
            self._seen, self._watermark = seen, mark  # only once the changes were applied
            await self._flush()
            if full:
                self._last_full = now

    async def _changed_accounts(self, session: Any) -> tuple[set[str], dict[int, datetime], datetime | None]:
        """Accounts with mirror rows modified since the last poll, and the new (seen, watermark).

        Rows are re-read from `mirror_overlap_s` before the newest time seen: a transaction that
        commits late with an earlier modify_time is still caught; `seen` skips rows already
        handled."""
        overlap = timedelta(seconds=self._h.mirror_overlap_s)
        mark = self._watermark
        since = mark - overlap if mark is not None else None
        seen = dict(self._seen)
        out: set[str] = set()
        for quote_id, party_a, modified in await mirror.changed_since(session, since):
            if seen.get(quote_id) != modified:
                seen[quote_id] = modified
                out.add(party_a)
            if mark is None or modified > mark:
                mark = modified
        if mark is not None:
            floor = mark - overlap
            seen = {q: t for q, t in seen.items() if t >= floor}
        return out, seen, mark

    def _balance_batch(self, *, exclude: set[str]) -> list[str]:
        """Flagged, then watched, then round-robin accounts, at most balance_batch."""
        limit = self._h.balance_batch
        out: list[str] = []
        chosen: set[str] = set(exclude)

        def take(names: Iterable[str]) -> None:
            for name in names:
                if len(out) >= limit:
                    return
                if name in self._holdings and name not in chosen:
                    chosen.add(name)
                    out.append(name)

        take(sorted(self._flags))
        take(sorted(self.book.watched()) if len(out) < limit else ())
        if len(out) < limit:
            take(self._next("balance", limit - len(out)))
        return out

    def _next(self, cursor: str, n: int) -> list[str]:
        """The next `n` accounts of the round robin named `cursor`."""
        if not self._order or n <= 0:
            return []
        n = min(n, len(self._order))
        start = self._cursors[cursor] % len(self._order)
        batch = self._order[start : start + n]
        batch += self._order[: n - len(batch)]
        self._cursors[cursor] = (start + n) % len(self._order)
        return batch

    async def _read_balances(self, accounts: Iterable[str]) -> dict[str, Decimal]:
        names = list(accounts)
        gate = asyncio.Semaphore(self._h.balance_concurrency)
        out: dict[str, Decimal] = {}

        async def one(account: str) -> None:
            async with gate:
                try:
                    out[account] = from_wei((await self._chain.party_a_balances(account)).allocated)
                except Exception:
                    log.warning("health: could not read the balance of %s", account, exc_info=True)

        await asyncio.gather(*(one(a) for a in names))
        return out

    def _apply(self, account: str, h: Holdings, allocated: Decimal) -> None:
        if account not in self._holdings:
            self._order.append(account)
        self._holdings[account] = h
        self._allocated[account] = allocated
        self._decide(self.book.upsert(account, inputs(allocated, h.positions)), None)

    def _drop(self, account: str) -> None:
        """No open position any more: out of the book, flag cleared, hash deleted."""
        self.book.remove(account)
        if self._holdings.pop(account, None) is not None:
            self._order.remove(account)
        self._allocated.pop(account, None)
        self._deferred.discard(account)
        self._snapshots.pop(account, None)
        if account in self._flags:
            self._clear(account)
        self._dropped.add(account)

    def _sweep(self) -> None:
        for account in self._next("snapshot", self._h.snapshot_batch):
            if account not in self._snapshots:
                self._snapshots[account] = self.book.evaluate(account)

    # -- effects ----------------------------------------------------------------------------------

    async def reassert_flags(self) -> list[str]:
        """Write back every flag this loop holds that is missing in Redis (flushed, restarted
        without persistence, failed over to a replica that never had it); the accounts written.

        A decision only writes its flag when it changes, so without this a flag lost while the
        account stays below zero would stay lost until the engine restarts: one SET NX per flagged
        account per poll, in one pipeline, closes that gap within health.poll_interval_s."""
        async with self._lock:
            accounts = sorted(self._flags)
            if not accounts:
                return []
            pipe = self._redis.pipeline(transaction=False)
            for account in accounts:
                pipe.set(reduce_only_key(self._prefix, account), self._flags[account].to_json(), nx=True)
            written = [a for a, ok in zip(accounts, await pipe.execute(), strict=True) if ok]
        if written:
            log.warning(
                "health: %d reduce-only flag(s) were missing in Redis, written back: %s", len(written), written[:20]
            )
        return written

    async def _flush(self) -> None:
        """Flags and health hashes to Redis, then the alerts to Postgres; what fails stays pending."""
        if self._dirty_flags or self._snapshots or self._dropped:
            pipe = self._redis.pipeline(transaction=False)
            for account in sorted(self._dirty_flags):
                reason = self._flags.get(account)
                if reason is not None:
                    pipe.set(reduce_only_key(self._prefix, account), reason.to_json())
                else:
                    pipe.delete(reduce_only_key(self._prefix, account))
            for account in sorted(self._dropped):
                pipe.delete(health_key(self._prefix, account))
            for account, e in self._snapshots.items():
                fields: dict[Any, Any] = self._hash_fields(account, e)
                if fields:
                    pipe.hset(health_key(self._prefix, account), mapping=fields)
            await pipe.execute()
            self._dirty_flags.clear()
            self._dropped.clear()
            self._snapshots.clear()
        if self._unnotified:
            now = self._clock.now()
            async with session_scope(self._sessions) as session:
                for account in sorted(self._unnotified):
                    reason = self._flags.get(account)
                    if reason is not None:
                        n = alert(
                            account,
                            reason,
                            self._holdings.get(account, Holdings()),
                            names=self._names,
                            lanes=self._settings.chain.lanes,
                        )
                        await notify.add(session, n, now=now)
            self._unnotified.clear()

    def _hash_fields(self, account: str, e: Evaluation) -> dict[str, str]:
        h = self._holdings.get(account)
        inp = self.book.inputs(account)
        if h is None or inp is None:
            return {}
        return hash_fields(
            e,
            inp,
            h,
            liquidation_prices=self.book.liquidation_prices(account),
            names=self._names,
            flagged=account in self._flags,
            now=self._clock.time(),
        )

    async def _ack_abandoned(self) -> None:
        """Ack entries delivered to consumers that died without acking (each process has its own
        consumer name, and a restart rebuilds from the latest prices anyway)."""
        try:
            reply = await self._redis.xautoclaim(
                self._stream.key, self.group, self.consumer, min_idle_time=ABANDONED_IDLE_MS, count=1000
            )
        except Exception:
            log.debug("health: xautoclaim failed", exc_info=True)
            return
        entries = reply[1] if isinstance(reply, list | tuple) and len(reply) > 1 else []
        ids = [e[0] for e in entries if isinstance(e, list | tuple) and e]
        if ids:
            await self._redis.xack(self._stream.key, self.group, *ids)


# -- wiring -----------------------------------------------------------------------------------------


class EngineLike(Protocol):
    """What `register` needs of solver.engine.Engine."""

    settings: Settings
    redis: Redis
    stream: PriceStream
    clock: Clock
    closers: list[object]

    def add_loop(self, loop: Any) -> None: ...


class _Disposer:
    def __init__(self, engine: Any) -> None:
        self._engine = engine

    async def close(self) -> None:
        await self._engine.dispose()


def register(engine: EngineLike, *, chain: ChainReader | None = None) -> HealthEngine:
    """Build the health loop on the engine's Redis, stream and clock and add it to its loops
    (one line in solver.engine.register_loops: `health_engine.register(engine)`)."""
    from solver.db.engine import create_engine, session_factory
    from solver.notify.publish import NotificationPublisher, enable_publishing

    settings = engine.settings
    db = create_engine(settings.database_url, pool_size=2, max_overflow=2, application_name="solver-health")
    sessions = session_factory(db)
    publisher = NotificationPublisher(engine.redis, settings.redis_prefix)
    enable_publishing(sessions, publisher)  # LiquidatePosition alerts reach position-state-ws3
    if chain is None:
        from solver.chain.web3_reader import Web3ChainReader

        chain = Web3ChainReader.from_settings(settings.chain)
        engine.closers.append(chain)
    loop = HealthEngine(
        settings=settings, redis=engine.redis, stream=engine.stream, sessions=sessions, chain=chain, clock=engine.clock
    )
    engine.closers.extend([publisher, _Disposer(db)])
    engine.add_loop(loop.run)
    return loop


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
