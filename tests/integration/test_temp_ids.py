"""Temp quote ids: unique and negative under concurrency (tasks and OS processes), never reused
after the Redis key is lost, re-seeded transparently at run time."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from solver.db.engine import SessionFactory, session_scope
from solver.quotes import repository as repo
from solver.quotes.temp_ids import TempIdAllocator
from tests.fixtures.db import instant_open_fields
from tests.fixtures.redis import REDIS_URL

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _client() -> aioredis.Redis:
    # A blocking pool queues commands beyond its size; the default pool raises
    # MaxConnectionsError past 100 commands in flight.
    return aioredis.Redis(connection_pool=aioredis.BlockingConnectionPool.from_url(REDIS_URL, max_connections=20))


async def _none() -> int | None:
    return None


def _fixed(value: int | None) -> Callable[[], Awaitable[int | None]]:
    async def seed() -> int | None:
        return value

    return seed


async def test_thousand_concurrent_allocations_from_five_clients(redis_prefix: str) -> None:
    clients = [_client() for _ in range(5)]
    try:
        allocators = [TempIdAllocator(c, redis_prefix, _none) for c in clients]
        await allocators[0].start()
        ids = await asyncio.gather(*(allocators[i % 5].allocate() for i in range(1000)))
    finally:
        for c in clients:
            await c.aclose()
        cleanup = aioredis.from_url(REDIS_URL)
        await cleanup.delete(f"{redis_prefix}temp_quote_id")
        await cleanup.aclose()
    assert len(set(ids)) == 1000
    assert all(i < 0 for i in ids)
    # Nothing was stored: the floor is -margin and ids continue below it, contiguously.
    assert max(ids) == -1001
    assert min(ids) == -2000


# Each child process builds its own client and allocator and prints its ids as JSON.
_CHILD = """
import asyncio, json, sys
import redis.asyncio as aioredis
from solver.quotes.temp_ids import TempIdAllocator

async def none():
    return None

async def main(url, prefix, n):
    client = aioredis.Redis(connection_pool=aioredis.BlockingConnectionPool.from_url(url, max_connections=20))
    alloc = TempIdAllocator(client, prefix, none)
    ids = await asyncio.gather(*(alloc.allocate() for _ in range(n)))
    await client.aclose()
    print(json.dumps(ids))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def test_allocations_from_several_processes(redis_client: aioredis.Redis, redis_prefix: str) -> None:
    # The key starts missing: the processes race to seed it as well as to allocate.
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CHILD,
            REDIS_URL,
            redis_prefix,
            "400",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]
    client = _client()
    try:
        in_process = TempIdAllocator(client, redis_prefix, _none)
        local = await asyncio.gather(*(in_process.allocate() for _ in range(300)))
    finally:
        await client.aclose()
    ids = list(local)
    for proc in procs:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        assert proc.returncode == 0, err.decode()
        ids.extend(json.loads(out))
    assert len(ids) == 1500
    assert len(set(ids)) == 1500
    assert all(i < 0 for i in ids)


async def test_restart_after_key_loss_goes_below_stored_ids(
    redis_client: aioredis.Redis, redis_prefix: str, db_factory: SessionFactory
) -> None:
    seed = repo.temp_id_seed_source(db_factory)
    allocator = TempIdAllocator(redis_client, redis_prefix, seed, margin=50)
    await allocator.start()
    stored: list[int] = []
    for _ in range(5):
        temp_id = await allocator.allocate()
        async with session_scope(db_factory) as session:
            await repo.insert_instant_open(session, **instant_open_fields(temp_quote_id=temp_id))
        stored.append(temp_id)
    smallest_in_db = await seed()
    assert smallest_in_db is not None and smallest_in_db <= min(stored)

    await redis_client.delete(allocator.key)  # Redis flushed / restarted empty
    restarted = TempIdAllocator(redis_client, redis_prefix, seed, margin=50)
    value = await restarted.start()
    assert value == smallest_in_db - 50
    fresh = [await restarted.allocate() for _ in range(10)]
    assert all(i < smallest_in_db for i in fresh)
    assert max(fresh) == smallest_in_db - 51


async def test_key_deleted_at_run_time_is_reseeded(redis_client: aioredis.Redis, redis_prefix: str) -> None:
    allocator = TempIdAllocator(redis_client, redis_prefix, _fixed(-5000), margin=100)
    await allocator.start()
    first = await allocator.allocate()
    assert first == -5101
    await redis_client.delete(allocator.key)
    # Missing key: allocate() re-seeds from the seed source (not from -1) and carries on.
    after = await allocator.allocate()
    assert after == -5101  # same floor: still below every stored id (-5000)
    assert await allocator.allocate() == -5102


async def test_concurrent_reseed_after_key_loss_never_duplicates(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    client = _client()
    allocators = [TempIdAllocator(client, redis_prefix, _fixed(-10), margin=10) for _ in range(4)]
    await allocators[0].start()
    before = await asyncio.gather(*(a.allocate() for a in allocators for _ in range(25)))
    await redis_client.delete(allocators[0].key)
    after = await asyncio.gather(*(a.allocate() for a in allocators for _ in range(25)))
    await client.aclose()
    assert len(set(after)) == 100  # the seed races are resolved by the Lua compare-and-set
    assert all(i < -10 for i in [*before, *after])


async def test_start_only_moves_the_counter_down(redis_client: aioredis.Redis, redis_prefix: str) -> None:
    key = f"{redis_prefix}temp_quote_id"
    # A stale value above the floor (e.g. an old snapshot) is lowered ...
    await redis_client.set(key, "-3")
    assert await TempIdAllocator(redis_client, redis_prefix, _fixed(-500), margin=10).start() == -510
    # ... a value already below the floor is kept (other replicas handed those ids out) ...
    await redis_client.set(key, "-9000")
    assert await TempIdAllocator(redis_client, redis_prefix, _fixed(-500), margin=10).start() == -9000
    assert await redis_client.get(key) == b"-9000"
    # ... and garbage or a positive value is replaced.
    for junk in ("abc", "7"):
        await redis_client.set(key, junk)
        allocator = TempIdAllocator(redis_client, redis_prefix, _none, margin=10)
        assert await allocator.allocate() == -11


async def test_resync_after_unique_violation(
    redis_client: aioredis.Redis, redis_prefix: str, db_factory: SessionFactory
) -> None:
    """The UNIQUE constraint is the last guard: a colliding id is refused, resync() skips past."""
    seed = repo.temp_id_seed_source(db_factory)
    allocator = TempIdAllocator(redis_client, redis_prefix, seed, margin=5)
    await allocator.start()
    temp_id = await allocator.allocate()
    async with session_scope(db_factory) as session:
        await repo.insert_instant_open(session, **instant_open_fields(temp_quote_id=temp_id))
    await redis_client.set(allocator.key, str(temp_id + 1))  # Redis came back with an old value
    stale = await allocator.allocate()
    assert stale == temp_id
    async with session_scope(db_factory) as session:
        with pytest.raises(repo.DuplicateTempQuoteId):
            await repo.insert_instant_open(session, **instant_open_fields(temp_quote_id=stale))
        await allocator.resync()
        fresh = await allocator.allocate()
        row = await repo.insert_instant_open(session, **instant_open_fields(temp_quote_id=fresh))
    assert row.temp_quote_id < temp_id
