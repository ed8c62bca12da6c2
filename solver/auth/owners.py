"""Owner of a sub-account, read from MultiAccount and cached in Redis.

Never trust a client-supplied owner. Ownership of a sub-account does not change in
MultiAccount, so a cache of minutes is safe; unknown accounts are not cached.
"""

from __future__ import annotations

from redis.asyncio import Redis

from solver.chain.reader import ChainReader


class OwnerResolver:
    def __init__(self, chain: ChainReader, redis: Redis, prefix: str, ttl_s: int) -> None:
        self._chain = chain
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl_s

    async def owner_of(self, account: str) -> str | None:
        key = f"{self._prefix}owner:{account.lower()}"
        if self._ttl > 0:
            cached = await self._redis.get(key)
            if cached is not None:
                return cached.decode() if isinstance(cached, bytes) else str(cached)
        owner = await self._chain.owner_of(account)
        if owner is not None and self._ttl > 0:
            await self._redis.set(key, owner, ex=self._ttl)
        return owner
