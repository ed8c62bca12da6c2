"""Strategy orders per price tick: the engine's index (solver.strategy.book) against scanning
every live order, same run.

    .venv/bin/python bench/strategy_bench.py [--orders 1000 10000 100000] [--ticks 3000] [--seed 7]

Each population is half LIMIT (limit prices log-uniform within ±5 % of the mark, either side,
slippage 0.1 %), half DCA (delays 1 min to 1 h, first due times spread over the first delay,
a quarter with a ±1 % price range), over 10 symbols. The ticks are a random walk per symbol
(σ 0.02 % per tick, round robin, 1 simulated second apart). Per tick:

- `book`: `StrategyBook.candidates` for the ticked symbol, then `rules.decide` for each
  candidate; a `Send` takes the order out of the book (its sub-order is in flight, as in the
  engine) and puts it back 5 ticks later with its progress after an `opened`;
- `scan`: `rules.decide` for every live order of the ticked symbol (an index by symbol, no
  sorted keys: what a loop without the book does), same bookkeeping.

Both see the same ticks; the orders sent must be the same (checked). Memory: tracemalloc of
building the book. Pure CPU, one core, no Redis or Postgres: the I/O per tick (one locked
read and write per order sent) is proportional to the orders sent, which both methods share.
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import statistics
import time
import tracemalloc
from dataclasses import dataclass, replace
from decimal import Decimal

from solver.db.models import StrategyStatus, StrategyType
from solver.strategy import rules
from solver.strategy.book import Entry, StrategyBook

SYMBOLS = {i: Decimal(p) for i, p in enumerate(["60000", "3000", "0.5", "150", "600", "25", "8", "0.1", "2", "70"], 1)}
MARKET = rules.Market(price_precision=8, quantity_precision=8, min_quote_value=Decimal(10))
SETTLE_TICKS = 5


@dataclass
class Order:
    id: int
    symbol: int
    terms: rules.Terms
    progress: rules.Progress

    def entry(self) -> Entry:
        t = self.terms
        if t.type == StrategyType.LIMIT:
            assert t.limit_price is not None
            sign = -1 if t.position_type == rules.LONG else 1
            return Entry(self.id, self.symbol, t.position_type, threshold=t.limit_price * (1 + sign * t.slippage))
        return Entry(self.id, self.symbol, t.position_type, due=self.progress.next_due or Decimal(0))


def build(n: int, seed: int) -> list[Order]:
    rng = random.Random(seed)
    out: list[Order] = []
    for i in range(n):
        sym = rng.choice(list(SYMBOLS))
        mark = SYMBOLS[sym]
        side = rng.choice([rules.LONG, rules.SHORT])
        slots = rng.randint(1, 10)
        common = {
            "position_type": side,
            "leverage": Decimal(rng.choice([2, 5, 10, 20])),
            "initial_input": Decimal(rng.randint(100, 10_000)),
            "max_suborders": slots,
            "max_invocations": min(255, slots * 2),
            "slippage": Decimal("0.001"),
        }
        if i % 2 == 0:
            away = Decimal(10 ** rng.uniform(-4, -1.3))  # 0.01 % to 5 % from the mark
            price = mark * (1 - away if side == rules.LONG else 1 + away)
            terms = rules.Terms(type=StrategyType.LIMIT, limit_price=price.quantize(Decimal("1e-8")), **common)
            due = None
        else:
            delay = rng.randint(60, 3600)
            band = rng.random() < 0.25
            terms = rules.Terms(
                type=StrategyType.DCA,
                delay_s=delay,
                band_from=mark * Decimal("0.99") if band else None,
                band_to=mark * Decimal("1.01") if band else None,
                **common,
            )
            due = Decimal(rng.randint(0, delay))
        out.append(Order(i + 1, sym, terms, rules.Progress(current_input=terms.initial_input, next_due=due)))
    return out


def walk(n_ticks: int, seed: int) -> list[tuple[int, Decimal]]:
    rng = random.Random(seed + 1)
    marks = dict(SYMBOLS)
    order = list(SYMBOLS)
    ticks = []
    for t in range(n_ticks):
        sym = order[t % len(order)]
        marks[sym] = (marks[sym] * Decimal(1 + rng.gauss(0, 0.0002))).quantize(Decimal("1e-8"))
        ticks.append((sym, marks[sym]))
    return ticks


def _step(o: Order, mark: Decimal, now: Decimal) -> rules.Send | None:
    d = rules.decide(o.terms, o.progress, MARKET, mark, now)
    if isinstance(d, rules.Send):
        o.progress = rules.sent(o.progress, d.sizing)
        return d
    if isinstance(d, rules.Finish):
        o.progress = replace(o.progress, status=d.status)
    return None


def _settle(o: Order, send: rules.Send, now: Decimal) -> None:
    o.progress = rules.opened(o.terms, o.progress, slots=send.sizing.slots, quantity=send.sizing.quantity, sent_at=now)


def run_book(orders: list[Order], ticks: list[tuple[int, Decimal]]) -> tuple[list[float], list[int], int]:
    by_id = {o.id: o for o in orders}
    book = StrategyBook()
    for o in orders:
        book.add(o.entry())
    inflight: dict[int, list[tuple[int, rules.Send]]] = {}
    times: list[float] = []
    sent: list[int] = []
    touched = 0
    gc.collect()
    for t, (sym, mark) in enumerate(ticks, start=1):
        now = Decimal(t)
        t0 = time.perf_counter_ns()
        for oid, send in inflight.pop(t, []):
            o = by_id[oid]
            _settle(o, send, now)
            if o.progress.status == StrategyStatus.ACTIVE:
                book.add(o.entry())
        ids = book.candidates(sym, mark, now)
        touched += len(ids)
        for oid in ids:
            o = by_id[oid]
            send = _step(o, mark, now)
            if send is not None:
                book.remove(oid)
                inflight.setdefault(t + SETTLE_TICKS, []).append((oid, send))
                sent.append(oid)
            elif o.progress.status != StrategyStatus.ACTIVE:
                book.remove(oid)
        times.append((time.perf_counter_ns() - t0) / 1000)
    return times, sent, touched


def run_scan(orders: list[Order], ticks: list[tuple[int, Decimal]]) -> tuple[list[float], list[int], int]:
    by_symbol: dict[int, list[Order]] = {}
    for o in orders:
        by_symbol.setdefault(o.symbol, []).append(o)
    busy: set[int] = set()
    inflight: dict[int, list[tuple[Order, rules.Send]]] = {}
    times: list[float] = []
    sent: list[int] = []
    touched = 0
    gc.collect()
    for t, (sym, mark) in enumerate(ticks, start=1):
        now = Decimal(t)
        t0 = time.perf_counter_ns()
        for o, send in inflight.pop(t, []):
            _settle(o, send, now)
            busy.discard(o.id)
        for o in by_symbol.get(sym, ()):
            if o.id in busy or o.progress.status != StrategyStatus.ACTIVE:
                continue
            touched += 1
            send = _step(o, mark, now)
            if send is not None:
                busy.add(o.id)
                inflight.setdefault(t + SETTLE_TICKS, []).append((o, send))
                sent.append(o.id)
        times.append((time.perf_counter_ns() - t0) / 1000)
    return times, sent, touched


def memory_of_book(orders: list[Order]) -> float:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    book = StrategyBook()
    for o in orders:
        book.add(o.entry())
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del book
    return (after - before) / 2**20


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    ap.add_argument("--ticks", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    print(f"python {platform.python_version()}, {args.ticks} ticks, seed {args.seed}")
    print("| orders | method | median µs/tick | p99 µs/tick | orders looked at / tick | sub-orders sent | book MiB |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    ticks = walk(args.ticks, args.seed)
    for n in args.orders:
        book_t, book_sent, book_touched = run_book(build(n, args.seed), ticks)
        scan_t, scan_sent, scan_touched = run_scan(build(n, args.seed), ticks)
        assert sorted(book_sent) == sorted(scan_sent), "the book and the scan sent different sub-orders"
        mib = memory_of_book(build(n, args.seed))
        for name, times, touched, mem in (
            ("book", book_t, book_touched, f"{mib:.1f}"),
            ("scan", scan_t, scan_touched, ""),
        ):
            print(
                f"| {n:,} | {name} | {statistics.median(times):,.1f} | {pct(times, 0.99):,.1f} "
                f"| {touched / len(ticks):,.1f} | {len(book_sent):,} | {mem} |"
            )
        ratio = statistics.median(scan_t) / max(statistics.median(book_t), 1e-9)
        print(f"|  | scan / book (median) | {ratio:,.1f}x |  |  |  |  |")


if __name__ == "__main__":
    main()
