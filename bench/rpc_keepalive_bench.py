"""JSON-RPC round trips: the keep-alive provider (solver.chain.provider) vs web3's default
AsyncHTTPProvider (one new TCP connection per call), against anvil, interleaved rounds.

    .venv/bin/python bench/rpc_keepalive_bench.py --calls 500 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from web3 import AsyncHTTPProvider, AsyncWeb3

from solver.chain.provider import async_web3
from solver.devnet.anvil import start_anvil


async def _run(w3: AsyncWeb3[Any], calls: int, concurrency: int) -> tuple[float, list[float]]:
    lat: list[float] = []
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            t = time.perf_counter()
            await w3.eth.block_number
            lat.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(calls)))
    return calls / (time.perf_counter() - start), lat


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    node = start_anvil()
    results: dict[str, list[tuple[float, float, float]]] = {"web3 default": [], "keep-alive": []}
    try:
        for r in range(args.rounds):
            for name, rows in results.items():
                w3 = AsyncWeb3(AsyncHTTPProvider(node.url)) if name == "web3 default" else async_web3(node.url)
                rate, lat = await _run(w3, args.calls, args.concurrency)
                lat.sort()
                p50, p99 = lat[len(lat) // 2] * 1e3, lat[int(len(lat) * 0.99)] * 1e3
                rows.append((rate, p50, p99))
                print(f"round {r} {name}: {rate:.0f} calls/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms")
                await w3.provider.disconnect()
    finally:
        node.stop()
    base = statistics.median(x[0] for x in results["web3 default"])
    for name, rows in results.items():
        rate = statistics.median(x[0] for x in rows)
        p50 = statistics.median(x[1] for x in rows)
        p99 = statistics.median(x[2] for x in rows)
        print(f"median {name}: {rate:.0f} calls/s ({rate / base:.2f}x), p50 {p50:.2f} ms, p99 {p99:.2f} ms")


if __name__ == "__main__":
    asyncio.run(main())
