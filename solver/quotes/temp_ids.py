"""Temporary quote ids for instant opens: -1, -2, … unique across every API replica.

One Redis counter, decremented by a Lua script that refuses to run on a missing key (a plain
DECR on a missing key would restart at -1 and hand out ids already stored). When the key is
missing (first start, Redis flushed or restarted without persistence) the allocator seeds it
from Postgres: `min(smallest stored temp id, 0) - margin`. The margin skips ids that other
replicas handed out but have not persisted yet. Seeding is a compare-and-set (also Lua): it only
ever moves the counter down, so concurrent seeders and a stale seed cannot rewind it.

The final guard is the UNIQUE constraint on `instant_open.temp_quote_id`: if Redis came back
with a stale value (an old snapshot) and an id collides anyway, the insert fails with
`DuplicateTempQuoteId`; the caller calls `resync()` and retries with a fresh id. Gaps in the
sequence are expected and harmless; reuse is impossible.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from solver.core.errors import ErrorCode, SolverError
from solver.core.redis_keys import temp_quote_id_counter

DEFAULT_MARGIN = 1000

# KEYS[1] counter. Returns the new id, or false (nil to the client) when the key is missing.
_ALLOCATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
    return false
end
return redis.call('DECR', KEYS[1])
"""

# KEYS[1] counter, ARGV[1] floor. SET the floor when the key is missing, not an integer, or
# above the floor; otherwise keep it. Returns the counter's value afterwards.
# (Comparisons are on Lua doubles: exact for |ids| < 2^53, far beyond any realistic count.)
_SEED = """
local floor = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '')
if current == nil or current > floor then
    redis.call('SET', KEYS[1], ARGV[1])
    return ARGV[1]
end
return redis.call('GET', KEYS[1])
"""

SeedSource = Callable[[], Awaitable[int | None]]


class TempIdAllocator:
    """Hands out negative, strictly decreasing temp quote ids.

    `seed_source` returns the smallest temp id stored in Postgres (or None when none is),
    e.g. `solver.quotes.repository.temp_id_seed_source(session_factory)`.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        prefix: str,
        seed_source: SeedSource,
        *,
        margin: int = DEFAULT_MARGIN,
    ) -> None:
        if margin < 1:
            raise ValueError("margin must be positive")
        self._redis = redis
        self._key = temp_quote_id_counter(prefix)
        self._seed_source = seed_source
        self._margin = margin
        self._allocate = redis.register_script(_ALLOCATE)
        self._seed = redis.register_script(_SEED)
        # One re-seed at a time per process; other replicas are handled by the Lua CAS.
        self._seed_lock = asyncio.Lock()

    @property
    def key(self) -> str:
        return self._key

    async def start(self) -> int:
        """Seed the counter (if missing or above the floor). Call once at process start.

        Returns the counter's value afterwards (the next id handed out is one below it).
        """
        return await self.resync()

    async def resync(self) -> int:
        """Move the counter below every stored temp id; never moves it up.

        Call after a `DuplicateTempQuoteId`: it means Redis forgot ids it handed out.
        """
        async with self._seed_lock:
            smallest = await self._seed_source()
            floor = min(smallest if smallest is not None else 0, 0) - self._margin
            value = await self._seed(keys=[self._key], args=[str(floor)])
            return int(value)

    async def allocate(self) -> int:
        """A fresh negative temp id, re-seeding transparently if the counter vanished."""
        for _ in range(3):
            try:
                value = await self._allocate(keys=[self._key])
            except ResponseError:
                value = None  # not an integer: the seed CAS below overwrites it
            if value is not None and int(value) < 0:
                return int(value)
            # Missing key (None), or a value nobody of ours could have written: re-seed from
            # Postgres (the CAS lowers it below every stored id) and try again.
            await self.resync()
        raise SolverError(ErrorCode.UNAVAILABLE, detail=["temp quote id counter could not be seeded"])
