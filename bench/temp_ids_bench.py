"""Temporary quote id allocation: throughput and latency, against baselines in the same run.

    .venv/bin/python bench/temp_ids_bench.py [--n 20000] [--clients 8] [--concurrency 64]

Compares, on the same Redis and Postgres:
- `TempIdAllocator.allocate()` (Lua DECR-if-exists; what the API uses),
- a bare Redis DECR (the floor: one round trip, no safety),
- Postgres `nextval()` on a sequence (the obvious durable alternative).
Prints requests/s and p50/p99 latency per method, and the ratio to the bare DECR.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import psycopg
import redis.asyncio as aioredis

from solver.quotes.temp_ids import TempIdAllocator

REDIS_URL = "redis://127.0.0.1:6379/0"
PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


async def run(name: str, n: int, concurrency: int, op: Callable[[int], Awaitable[object]]) -> dict[str, float]:
    latencies: list[float] = []
    queue = iter(range(n))

    async def worker() -> None:
        for i in queue:
            t0 = time.perf_counter()
            await op(i)
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    latencies.sort()
    return {
        "rps": n / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--clients", type=int, default=8, help="separate Redis connections / allocators")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"

    clients = [aioredis.from_url(REDIS_URL) for _ in range(args.clients)]

    async def no_stored_ids() -> int | None:
        return None

    allocators = [TempIdAllocator(c, prefix, no_stored_ids) for c in clients]
    await allocators[0].start()
    ids: list[int] = []

    async def alloc(i: int) -> None:
        ids.append(await allocators[i % len(allocators)].allocate())

    async def decr(i: int) -> None:
        await clients[i % len(clients)].decr(f"{prefix}bare")

    pg = [await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True) for _ in range(args.clients)]
    seq = f"bench_seq_{uuid.uuid4().hex[:8]}"
    await pg[0].execute(f"CREATE SEQUENCE {seq}")
    locks = [asyncio.Lock() for _ in pg]

    async def nextval(i: int) -> None:
        k = i % len(pg)
        async with locks[k]:  # one statement at a time per connection
            await pg[k].execute(f"SELECT nextval('{seq}')")

    results: dict[str, list[dict[str, float]]] = {
        "redis DECR (floor)": [],
        "TempIdAllocator": [],
        "postgres nextval": [],
    }
    for _ in range(args.rounds):  # interleave rounds so machine noise hits all methods alike
        results["redis DECR (floor)"].append(await run("decr", args.n, args.concurrency, decr))
        results["TempIdAllocator"].append(await run("alloc", args.n, args.concurrency, alloc))
        results["postgres nextval"].append(await run("nextval", args.n, args.concurrency, nextval))

    assert len(ids) == len(set(ids)) == args.n * args.rounds and max(ids) < 0, "ids must be unique and negative"
    base = statistics.median(r["rps"] for r in results["redis DECR (floor)"])
    print(f"n={args.n} per round, rounds={args.rounds}, clients={args.clients}, concurrency={args.concurrency}")
    print(f"{'method':22} {'rps':>10} {'p50 ms':>8} {'p99 ms':>8} {'vs DECR':>8}")
    for name, rs in results.items():
        rps = statistics.median(r["rps"] for r in rs)
        p50 = statistics.median(r["p50_ms"] for r in rs)
        p99 = statistics.median(r["p99_ms"] for r in rs)
        print(f"{name:22} {rps:10.0f} {p50:8.2f} {p99:8.2f} {rps / base:8.2f}")
    print(f"all {len(ids)} allocated ids unique and negative")

    await pg[0].execute(f"DROP SEQUENCE {seq}")
    for c in pg:
        await c.close()
    async for key in clients[0].scan_iter(match=f"{prefix}*"):
        await clients[0].delete(key)
    for c in clients:
        await c.aclose()


if __name__ == "__main__":
    asyncio.run(main())
