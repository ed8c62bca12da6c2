"""Replay price source for development, tests and benchmarks (trading-rules.md §5).

A deterministic random walk per symbol from its configured reference price (a seed makes a run
repeatable), or a CSV file of `ts,symbol,price` rows replayed at their pace. The source adapter
is solver.pricing.sources.ReplaySource: its ticks go through the same FeedRunner, latest-price
keys and price stream as a live feed.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator, Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

from solver.settings import SymbolConfig


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
