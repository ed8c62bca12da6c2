"""Latest price per symbol in Redis: `{prefix}price:{SYMBOL}` -> JSON {"price": str, "ts": float}.

`ts` is the *source* timestamp (unix seconds). Readers compute the age; a missing price is
missing, never 0, and an old price is never republished as new.

`set` keeps a point unless the stored one is newer (an equal time overwrites); the feed uses
`set_many_if_newer`, which also refuses an equal time, so a tick two engine replicas both receive
is accepted (and appended to the price stream) exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from redis.asyncio import Redis


@dataclass(frozen=True, slots=True)
class PricePoint:
    symbol: str
    price: Decimal
    ts: float  # source time, unix seconds

    def age(self, now: float) -> float:
        return now - self.ts


class PriceCache:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    def _key(self, symbol: str) -> str:
        return f"{self._prefix}price:{symbol.upper()}"

    async def set(self, point: PricePoint) -> None:
        payload = json.dumps({"price": str(point.price), "ts": point.ts})
        # Only move forward in source time: a late, older tick never overwrites a newer one.
        await self._redis.eval(_SET_IF_NEWER, 1, self._key(point.symbol), payload, repr(point.ts))

    async def set_many_if_newer(self, points: Sequence[PricePoint]) -> list[bool]:
        """Store each point whose source time is strictly newer than the stored one (one round
        trip); True for each point stored."""
        if not points:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for point in points:
            payload = json.dumps({"price": str(point.price), "ts": point.ts})
            pipe.eval(_SET_IF_STRICTLY_NEWER, 1, self._key(point.symbol), payload, repr(point.ts))
        return [bool(r) for r in await pipe.execute()]

    async def get(self, symbol: str) -> PricePoint | None:
        raw = await self._redis.get(self._key(symbol))
        return _decode(symbol, raw)

    async def get_many(self, symbols: list[str]) -> dict[str, PricePoint]:
        if not symbols:
            return {}
        raws = await self._redis.mget([self._key(s) for s in symbols])
        out: dict[str, PricePoint] = {}
        for sym, raw in zip(symbols, raws, strict=True):
            point = _decode(sym, raw)
            if point is not None:
                out[sym.upper()] = point
        return out


def _decode(symbol: str, raw: bytes | str | None) -> PricePoint | None:
    if raw is None:
        return None
    data = json.loads(raw)
    return PricePoint(symbol=symbol.upper(), price=Decimal(data["price"]), ts=float(data["ts"]))


_SET_IF_NEWER = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, obj = pcall(cjson.decode, cur)
  if ok and obj['ts'] and tonumber(obj['ts']) > tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""

_SET_IF_STRICTLY_NEWER = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, obj = pcall(cjson.decode, cur)
  if ok and obj['ts'] and tonumber(obj['ts']) >= tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""
