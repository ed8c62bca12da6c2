"""Redis-held market data beside the latest price (solver.pricing.cache): keys share its prefix.

- `{prefix}price_hourly:{SYMBOL}`: hash `hour start (unix s)` -> `{"price", "ts"}`, the first
  fresh price seen in each hour (HSETNX), pruned after 26 h. It gives the 24 h reference for
  `price_change_percent`. Anyone holding a fresh price may record it (the price feed on each
  tick, the market endpoints when they read one); recording twice in an hour is a no-op.
- `{prefix}funding:{SYMBOL}`: hash `long`, `short` -> next funding rate as a decimal string,
  written by whoever computes funding; absent means 0.
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal, InvalidOperation

from redis.asyncio import Redis

from solver.pricing.cache import PricePoint

log = logging.getLogger("solver.market")

HOUR = 3600
DAY = 86400
_KEEP_S = 26 * HOUR


class MarketFeeds:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    def _hourly_key(self, symbol: str) -> str:
        return f"{self._prefix}price_hourly:{symbol.upper()}"

    def _funding_key(self, symbol: str) -> str:
        return f"{self._prefix}funding:{symbol.upper()}"

    async def record_price(self, point: PricePoint) -> None:
        """Keep the first price of the point's hour (by source time); drop buckets older than 26 h."""
        key = self._hourly_key(point.symbol)
        bucket = int(point.ts) // HOUR * HOUR
        payload = json.dumps({"price": str(point.price), "ts": point.ts})
        if not await self._redis.hsetnx(key, str(bucket), payload):
            return
        fields = await self._redis.hkeys(key)
        old = [f for f in fields if (_int(f) or 0) < bucket - _KEEP_S]
        if old:
            await self._redis.hdel(key, *old)

    async def reference_price(self, symbol: str, now: float) -> Decimal | None:
        """Price at the start of the hour 24 h ago, else the oldest one recorded since; None if none."""
        since = int(now - DAY) // HOUR * HOUR
        raw = await self._redis.hgetall(self._hourly_key(symbol))
        best: tuple[int, Decimal] | None = None
        for field, value in raw.items():
            bucket = _int(field)
            if bucket is None or bucket < since or bucket > now:
                continue
            try:
                price = Decimal(json.loads(value)["price"])
            except (ValueError, KeyError, TypeError, InvalidOperation):
                continue
            if price.is_finite() and price > 0 and (best is None or bucket < best[0]):
                best = (bucket, price)
        return None if best is None else best[1]

    async def funding_rates(self, symbol: str) -> tuple[Decimal, Decimal]:
        """(long, short) next funding rates; 0 when not set. Garbage is logged and read as 0."""
        raw = await self._redis.hmget(self._funding_key(symbol), ["long", "short"])
        return _rate(symbol, "long", raw[0]), _rate(symbol, "short", raw[1])

    async def set_funding_rates(self, symbol: str, long: Decimal, short: Decimal) -> None:
        await self._redis.hset(self._funding_key(symbol), mapping={"long": str(long), "short": str(short)})


def _int(value: bytes | str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _rate(symbol: str, side: str, raw: bytes | str | None) -> Decimal:
    if raw is None:
        return Decimal(0)
    text = raw.decode() if isinstance(raw, bytes) else raw
    try:
        rate = Decimal(text)
    except InvalidOperation:
        rate = Decimal("NaN")
    if not rate.is_finite():
        log.warning("ignoring invalid %s funding rate %r for %s", side, text, symbol)
        return Decimal(0)
    return rate
