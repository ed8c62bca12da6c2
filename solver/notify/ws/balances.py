"""upnl-ws data: one account's balance frame, computed at most about once per TTL per account.

However many clients on however many replicas watch one account, the chain is read roughly
once per `ws.upnl_cache_ttl_s`: the result (frame or error) is kept in Redis
(`{prefix}ws:upnl:{account}`, PX = TTL); on a miss one replica takes `{prefix}ws:upnl_lock:
{account}` (SET NX) and computes while the others poll the cache briefly; inside a process
concurrent callers share one computation. A stale or missing price yields the 503 error
(PRICE_STALE / PRICE_UNAVAILABLE), never a frame of zeros.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import dataclass

from redis.asyncio import Redis

from solver.core.errors import ErrorCode, SolverError
from solver.core.redis_keys import upnl_cache, upnl_lock
from solver.market.balances import PartyABalance
from solver.market.service import MarketService
from solver.notify.ws.frames import balance_frame, error_frame

log = logging.getLogger("solver.notify.ws")

_LOCK_MS = 5_000  # a replica computing longer than this is presumed dead
_POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class BalanceResult:
    frame: str | None  # the upnl-ws object, or
    error: str | None  # an error frame (same body as the HTTP errors)


class BalanceFeed:
    def __init__(self, *, redis: Redis, prefix: str, market: MarketService, ttl_s: float) -> None:
        self._redis = redis
        self._prefix = prefix
        self._market = market
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._inflight: dict[str, asyncio.Task[BalanceResult]] = {}
        self.computed = 0  # chain computations done by this process (tests, metrics)

    async def get(self, account: str) -> BalanceResult:
        """The frame of an EIP-55 account; errors come back as error frames, never raised.

        Concurrent callers share one task, which a caller's cancellation (a client leaving)
        does not cancel."""
        task = self._inflight.get(account)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._guarded(account), name=f"upnl-{account}")
            self._inflight[account] = task
            task.add_done_callback(lambda _: self._inflight.pop(account, None))
        return await asyncio.shield(task)

    async def _guarded(self, account: str) -> BalanceResult:
        try:
            return await self._load(account)
        except SolverError as exc:
            return BalanceResult(None, error_frame(exc.code, exc.message, exc.detail))
        except Exception as exc:
            log.warning("upnl-ws: balances of %s unavailable: %r", account, exc)
            return BalanceResult(None, error_frame(ErrorCode.UNAVAILABLE))

    async def _load(self, account: str) -> BalanceResult:
        key = upnl_cache(self._prefix, account)
        cached = await self._cached(key)
        if cached is not None:
            return cached
        lock = upnl_lock(self._prefix, account)
        token = secrets.token_hex(8)
        if not await self._redis.set(lock, token, nx=True, px=_LOCK_MS):
            # Another replica is computing: wait for its answer rather than read the chain too.
            for _ in range(int(_LOCK_MS / 1000 / _POLL_S)):
                await asyncio.sleep(_POLL_S)
                cached = await self._cached(key)
                if cached is not None:
                    return cached
                if not await self._redis.exists(lock):
                    break
        try:
            result = await self._compute(account)
            payload = {"frame": result.frame} if result.frame is not None else {"error": result.error}
            await self._redis.set(key, json.dumps(payload), px=self._ttl_ms)
            return result
        finally:
            await self._redis.eval(_RELEASE, 1, lock, token)

    async def _compute(self, account: str) -> BalanceResult:
        self.computed += 1
        try:
            b = await self._market.account_balance(account)
        except SolverError as exc:  # stale price, node down: cached too, so replicas do not all retry
            return BalanceResult(None, error_frame(exc.code, exc.message, exc.detail))
        return BalanceResult(_frame(b), None)

    async def _cached(self, key: str) -> BalanceResult | None:
        raw = await self._redis.get(key)
        if raw is None:
            return None
        data = json.loads(raw)
        return BalanceResult(data.get("frame"), data.get("error"))


def _frame(b: PartyABalance) -> str:
    return balance_frame(
        upnl=b.upnl,
        timestamp=b.timestamp,
        available=b.available,
        allocated=b.allocated,
        cva=b.locked.cva,
        lf=b.locked.lf,
        party_a_mm=b.locked.party_amm,
        pending_cva=b.pending.cva,
        pending_lf=b.pending.lf,
        pending_party_a_mm=b.pending.party_amm,
    )


_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
