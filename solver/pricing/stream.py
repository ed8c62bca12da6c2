"""Every accepted price tick, in order, as a Redis stream (trading-rules.md §5).

Key: `{prefix}prices:stream` (`solver.core.redis_keys.price_stream`). Written only by the price
feed (`solver engine`, `solver prices`), after the tick was accepted by the latest-price key
(`PriceCache.set_many_if_newer`), so the stream never carries an old price as new:

    XADD {prefix}prices:stream MAXLEN ~ 100000 * symbol <SYMBOL> price <decimal str> ts <float str>

- `symbol`: market name, upper case (`BTCUSDT`), as in `config/*.toml` `[[symbols]] name`.
- `price`: the mark as a decimal string (`Decimal(price)`; never a float, always > 0).
- `ts`: the *source* time in unix seconds (`float(ts)`), e.g. Binance's event time `E` / 1000.
  Consumers compute the age from it (`solver.pricing.status`), never from the entry id.

Per symbol, `ts` strictly increases along the stream. Entries are trimmed approximately to the
newest 100 000, so a consumer far behind loses the oldest ticks (only the newest price matters;
read the latest-price keys on start).

Consumers use their own consumer group (one group per purpose: `triggers`, `health`, ...; one
consumer name per process within it, so replicas share the work):

    stream = PriceStream(redis, prefix)
    await stream.ensure_group("triggers")                  # XGROUP CREATE ... $ MKSTREAM, idempotent
    ticks = await stream.read_group("triggers", "engine-1", count=500, block_ms=1000)
    for tick in ticks: handle(tick.point)                  # tick.id is the stream entry id
    await stream.ack("triggers", *[t.id for t in ticks])

`read_group(..., pending=True)` re-reads this consumer's delivered-but-unacked entries (after a
restart) instead of new ones. A missing group (or stream) is created on first read.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from solver.core.redis_keys import price_stream
from solver.pricing.cache import PricePoint

log = logging.getLogger("solver.pricing.stream")

DEFAULT_MAXLEN = 100_000


@dataclass(frozen=True, slots=True)
class StreamTick:
    id: str  # stream entry id, for ack
    point: PricePoint


class PriceStream:
    def __init__(self, redis: Redis, prefix: str, *, maxlen: int = DEFAULT_MAXLEN) -> None:
        self._redis = redis
        self.key = price_stream(prefix)
        self._maxlen = maxlen
        self._groups: set[str] = set()

    async def add_many(self, points: Sequence[PricePoint]) -> list[str]:
        """Append each point (in order, one round trip); the new entry ids."""
        if not points:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for p in points:
            fields: dict[Any, Any] = {"symbol": p.symbol.upper(), "price": str(p.price), "ts": repr(p.ts)}
            pipe.xadd(self.key, fields, maxlen=self._maxlen, approximate=True)
        return [_text(i) for i in await pipe.execute()]

    async def ensure_group(self, group: str, *, start_id: str = "$") -> bool:
        """Create the consumer group (and the stream) if missing; True if it was created now."""
        try:
            await self._redis.xgroup_create(self.key, group, id=start_id, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
            self._groups.add(group)
            return False
        self._groups.add(group)
        return True

    async def read_group(
        self, group: str, consumer: str, count: int = 100, block_ms: int | None = 1000, *, pending: bool = False
    ) -> list[StreamTick]:
        """New ticks for this consumer (or its unacked ones with `pending`), oldest first.

        Blocks up to `block_ms` when there are none (None: do not block). Entries that cannot be
        decoded, or were trimmed while pending, are acked and skipped.
        """
        if group not in self._groups:
            await self.ensure_group(group)
        start = "0" if pending else ">"
        block = None if pending else block_ms
        try:
            reply = await self._redis.xreadgroup(group, consumer, {self.key: start}, count=count, block=block)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # The stream (and its groups) was deleted under us: start again from now.
            self._groups.discard(group)
            await self.ensure_group(group)
            return []
        ticks: list[StreamTick] = []
        bad: list[str] = []
        for _key, entries in _entries(reply):
            for raw_id, fields in entries:
                entry_id = _text(raw_id)
                point = decode_fields(fields)
                if point is None:
                    bad.append(entry_id)
                else:
                    ticks.append(StreamTick(entry_id, point))
        if bad:
            log.warning("skipping %d undecodable price stream entries", len(bad), extra={"group": group})
            await self.ack(group, *bad)
        return ticks

    async def ack(self, group: str, *ids: str) -> int:
        if not ids:
            return 0
        return int(await self._redis.xack(self.key, group, *ids))

    async def latest(self, count: int = 10) -> list[StreamTick]:
        """The newest `count` entries, newest first (inspection and tests; not for consumers)."""
        out: list[StreamTick] = []
        for raw_id, fields in await self._redis.xrevrange(self.key, count=count) or []:
            point = decode_fields(fields)
            if point is not None:
                out.append(StreamTick(_text(raw_id), point))
        return out

    async def length(self) -> int:
        return int(await self._redis.xlen(self.key))


def decode_fields(fields: Any) -> PricePoint | None:
    """A stream entry's fields as a PricePoint; None if missing (trimmed) or malformed."""
    if not isinstance(fields, dict):
        return None
    data = {_text(k): _text(v) for k, v in fields.items()}
    try:
        price = Decimal(data["price"])
        ts = float(data["ts"])
        symbol = data["symbol"].upper()
    except (KeyError, ValueError, InvalidOperation):
        return None
    if not symbol or not price.is_finite() or price <= 0 or not math.isfinite(ts):
        return None
    return PricePoint(symbol, price, ts)


def _entries(reply: Any) -> list[tuple[Any, list[tuple[Any, Any]]]]:
    if not reply:
        return []
    if isinstance(reply, dict):  # RESP3
        return list(reply.items())
    return [(item[0], item[1]) for item in reply]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
