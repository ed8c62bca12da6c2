"""Replay price source for development, tests and benchmarks (trading-rules.md §5).

A deterministic random walk per symbol from its configured reference price (a seed makes a run
repeatable), or a CSV file of `ts,symbol,price` rows replayed at their pace. Each tick is written
with its own source time to the latest-price keys: the same keys a live feed writes.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import random
import time
from collections.abc import Iterator, Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

from solver.pricing.cache import PriceCache, PricePoint
from solver.settings import SymbolConfig

log = logging.getLogger("solver.pricing")


class RandomWalk:
    """Multiplicative steps of at most `step` (fraction) per tick, rounded to the price precision."""

    def __init__(self, symbols: Sequence[SymbolConfig], *, seed: int = 7, step: Decimal = Decimal("0.0005")) -> None:
        self._rng = random.Random(seed)  # a repeatable path, not a secret
        self._step = step
        self._symbols = [s for s in symbols if s.reference_price is not None]
        self.prices: dict[str, Decimal] = {s.name: Decimal(s.reference_price or 0) for s in self._symbols}

    def tick(self) -> dict[str, Decimal]:
        for s in self._symbols:
            move = Decimal(self._rng.randint(-1000, 1000)) / 1000 * self._step
            quantum = Decimal(1).scaleb(-s.price_precision)
            nxt = (self.prices[s.name] * (1 + move)).quantize(quantum, rounding=ROUND_HALF_EVEN)
            self.prices[s.name] = max(nxt, quantum)
        return dict(self.prices)


def read_csv(path: Path) -> Iterator[tuple[float, str, Decimal]]:
    with path.open(newline="") as f:
        for row in csv.reader(f):
            if not row or row[0].startswith("#") or row[0] == "ts":
                continue
            yield float(row[0]), row[1].upper(), Decimal(row[2])


async def run_replay(
    cache: PriceCache,
    symbols: Sequence[SymbolConfig],
    stop: asyncio.Event,
    *,
    interval_s: float = 1.0,
    seed: int = 7,
    csv_path: Path | None = None,
) -> None:
    if csv_path is not None:
        await _replay_csv(cache, csv_path, stop)
        return
    walk = RandomWalk(symbols, seed=seed)
    prices = dict(walk.prices)
    while not stop.is_set():
        now = time.time()
        for name, price in prices.items():
            await cache.set(PricePoint(name, price, now))
        prices = walk.tick()
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        except TimeoutError:
            continue


async def _replay_csv(cache: PriceCache, path: Path, stop: asyncio.Event) -> None:
    rows = list(read_csv(path))
    if not rows:
        log.warning("replay file %s has no rows", path)
        return
    start_src, start_wall = rows[0][0], time.time()
    for ts, name, price in rows:
        delay = (ts - start_src) - (time.time() - start_wall)
        if delay > 0:
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
                return
            except TimeoutError:
                pass
        # Source time is the wall time of this replay, so consumers compute a real age.
        await cache.set(PricePoint(name, price, time.time()))
