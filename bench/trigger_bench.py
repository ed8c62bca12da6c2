"""Stop loss / take profit per price tick: the trigger books and the health book, in memory.

    .venv/bin/python bench/trigger_bench.py [--orders 100 10000 100000] [--moves 0.0002 0.001]
                                            [--ticks 2000] [--seed 7]

What `solver engine` does in memory for one price tick, with N armed SL/TP orders in the trigger
books (solver.orders.triggers.TriggerBooks) and as many open positions in the health book
(solver.risk.health_book.HealthBook, the market of bench/health_bench.py: 10 symbols, accounts
of 1-3 positions). Orders: one per position-like entry, random symbol, side and kind (SL or TP),
level log-uniform 0.5-20 % from the mark on the side where it belongs (LONG SL below, LONG TP
above, SHORT the reverse), and 2 % of them close to the mark (0.01-0.3 %) so that some fire. Ticks:
the health market's, round robin over the symbols, gaussian moves of σ (0.02 % is about a crypto
mark's move per second, 0.1 % a stress case). Per tick it times:

- `triggers`: `TriggerBooks.pop_crossed` (what `TriggerEngine.on_tick` does before the DB work of
  the fired orders, which is proportional to the orders fired);
- `health`: `HealthBook.tick` and the flag decision for the accounts it returns (as health_bench);
- `both`: the sum of the two for the same tick (the engine runs both loops on every tick);
- `baseline scan all`: test every armed order (all symbols) for the crossing condition and drop
  the fired ones (orders as plain tuples with the direction precomputed, Decimal comparisons);
- `baseline scan symbol`: the same over a list per symbol (no sorting).

The baselines run on a prefix of the ticks (they are slow); after each of those ticks the orders
fired must be the same for the books and both scans (checked). Fired orders leave the books
(as in the engine). Also per population: the build of the books the way `TriggerEngine.reload`
does it (`add` one order at a time), the in-memory part of one poll's chain sweep (the sorted set
of armed quote ids, `TriggerEngine._sweep`, every `triggers.poll_interval_s`), and memory
(tracemalloc, in a separate pass) of the books with their `Trigger`s and of the health book;
and the median `pop_crossed` of the ticks that fire nothing, both interleaved with the health
ticks (as in the engine) and alone (a fresh copy of the books, same ticks, nothing in between).
Pure CPU, one core, no Redis or Postgres.
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from health_bench import SYMBOLS, Market, build_market

from solver.orders.triggers import LONG, SHORT, STOP_LOSS, TAKE_PROFIT, Trigger, TriggerBooks, fires_below
from solver.risk.health_book import HealthBook

NEAR_SHARE = 0.02  # orders placed 0.01-0.3 % from the mark
Flat = tuple[int, int, bool, Decimal]  # order id, symbol id, fires below, level


def build_orders(n: int, marks: dict[int, Decimal], seed: int) -> list[Trigger]:
    rng = random.Random(seed)
    out: list[Trigger] = []
    for i in range(1, n + 1):
        sym = rng.choice(list(SYMBOLS))
        side = rng.choice([LONG, SHORT])
        kind = rng.choice([STOP_LOSS, TAKE_PROFIT])
        d = 10 ** rng.uniform(-4, -2.52) if rng.random() < NEAR_SHARE else 10 ** rng.uniform(-2.3, -0.7)
        sign = -1 if fires_below(side, kind) else 1  # below: the level sits under the mark
        level = (marks[sym] * Decimal(1 + sign * d)).quantize(Decimal("1e-8"))
        out.append(Trigger(i, 1_000_000 + i, sym, side, kind, level))
    return out


def flat(orders: list[Trigger]) -> list[Flat]:
    return [(t.order_id, t.symbol_id, t.below, t.level) for t in orders]


# -- the measured paths ----------------------------------------------------------------------------


def books_of(orders: list[Trigger]) -> TriggerBooks:
    """As TriggerEngine.reload: a fresh TriggerBooks, `add` one order at a time."""
    books = TriggerBooks()
    for t in orders:
        books.add(t)
    return books


def health_of(m: Market) -> tuple[HealthBook, set[str]]:
    book = HealthBook()
    for s, p in m.marks.items():
        book.tick(s, p, 0.0)
    flagged = {e.account for e in book.load(m.accounts) if e.health is not None and e.health < 0}
    return book, flagged


def run_engine(
    m: Market, books: TriggerBooks, n_ticks: int, snapshot_until: int
) -> tuple[list[float], list[float], list[frozenset[int]], list[int], HealthBook]:
    """Per tick: µs of pop_crossed, µs of the health tick + flags, fired ids (first ticks), fired count."""
    health, flagged = health_of(m)
    trig_us: list[float] = []
    health_us: list[float] = []
    fired: list[frozenset[int]] = []
    counts: list[int] = []
    gc.collect()
    for t, (sym, price) in enumerate(m.ticks[:n_ticks], start=1):
        t0 = time.perf_counter_ns()
        crossed = books.pop_crossed(sym, price)
        t1 = time.perf_counter_ns()
        for e in health.tick(sym, price, float(t)):
            if e.health is not None and e.health < 0:
                flagged.add(e.account)
            else:
                flagged.discard(e.account)
        t2 = time.perf_counter_ns()
        trig_us.append((t1 - t0) / 1000)
        health_us.append((t2 - t1) / 1000)
        counts.append(len(crossed))
        if t <= snapshot_until:
            fired.append(frozenset(c.order_id for c in crossed))
    return trig_us, health_us, fired, counts, health


def run_scan_all(m: Market, orders: list[Flat], n_ticks: int) -> tuple[list[float], list[frozenset[int]]]:
    active = list(orders)
    times: list[float] = []
    fired: list[frozenset[int]] = []
    gc.collect()
    for sym, price in m.ticks[:n_ticks]:
        t0 = time.perf_counter_ns()
        hit = [oid for oid, s, below, level in active if s == sym and (price <= level if below else price >= level)]
        if hit:
            gone = set(hit)
            active = [o for o in active if o[0] not in gone]
        times.append((time.perf_counter_ns() - t0) / 1000)
        fired.append(frozenset(hit))
    return times, fired


def run_scan_symbol(m: Market, orders: list[Flat], n_ticks: int) -> tuple[list[float], list[frozenset[int]]]:
    by_symbol: dict[int, list[Flat]] = {}
    for o in orders:
        by_symbol.setdefault(o[1], []).append(o)
    times: list[float] = []
    fired: list[frozenset[int]] = []
    gc.collect()
    for sym, price in m.ticks[:n_ticks]:
        t0 = time.perf_counter_ns()
        book = by_symbol.get(sym, [])
        hit = [oid for oid, _, below, level in book if (price <= level if below else price >= level)]
        if hit:
            gone = set(hit)
            by_symbol[sym] = [o for o in book if o[0] not in gone]
        times.append((time.perf_counter_ns() - t0) / 1000)
        fired.append(frozenset(hit))
    return times, fired


def run_books_alone(m: Market, orders: list[Trigger], n_ticks: int) -> list[float]:
    """µs of pop_crossed on the ticks that fire nothing, without a health tick in between (so
    the books' lists stay in the CPU caches: the floor of a tick)."""
    books = books_of(orders)
    out: list[float] = []
    gc.collect()
    for sym, price in m.ticks[:n_ticks]:
        t0 = time.perf_counter_ns()
        crossed = books.pop_crossed(sym, price)
        t1 = time.perf_counter_ns()
        if not crossed:
            out.append((t1 - t0) / 1000)
    return out


def sweep_ms(books: TriggerBooks, repeat: int = 5) -> float:
    """The in-memory part of TriggerEngine._sweep (once per poll): median ms."""
    out: list[float] = []
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        quotes = sorted({t.quote_id for t in books})
        out.append((time.perf_counter_ns() - t0) / 1e6)
        del quotes
    return statistics.median(out)


def memory(build: Callable[[], object]) -> float:
    """MiB held by what `build` returns (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = build()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del kept
    return (after - before) / 2**20


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- main ------------------------------------------------------------------------------------------


@dataclass
class Row:
    method: str
    times: list[float]
    per_tick: str
    mib: float | None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, nargs="+", default=[100, 10_000, 100_000], help="orders = positions")
    ap.add_argument("--moves", type=float, nargs="+", default=[0.0002, 0.001], help="σ of one tick, relative")
    ap.add_argument("--ticks", type=int, default=2000)
    ap.add_argument("--baseline-budget", type=int, default=5_000_000, help="orders × ticks for the baselines")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    print(
        f"ticks={args.ticks} per population, {len(SYMBOLS)} symbols, seed={args.seed}, {NEAR_SHARE:.0%} of "
        f"orders near the mark; Python {platform.python_version()} on {platform.machine()}; times per tick in µs"
    )
    for move in args.moves:
        print(f"\n== σ = {move:.2%} per tick ==\n")
        print("| orders = positions | method | ticks | p50 µs | p99 µs | max µs | per tick | MiB |")
        print("|---:|:---|---:|---:|---:|---:|---:|---:|")
        notes: list[str] = []
        for n in args.orders:
            notes.append(bench_one(n, move, args))
        print()
        for line in notes:
            print(line)


def bench_one(n: int, move: float, args: argparse.Namespace) -> str:
    m = build_market(n, args.ticks, args.seed, move)
    orders = build_orders(n, m.marks, args.seed + 1)
    base_ticks = min(args.ticks, max(20, args.baseline_budget // n))
    gc.collect()
    t0 = time.perf_counter()
    books = books_of(orders)
    build_s = time.perf_counter() - t0
    sweep = sweep_ms(books)
    trig, health, fired, fired_counts, hbook = run_engine(m, books, args.ticks, base_ticks)
    both = [a + b for a, b in zip(trig, health, strict=True)]
    total_fired = sum(fired_counts)
    scan_all, fired_all = run_scan_all(m, flat(orders), base_ticks)
    scan_sym, fired_sym = run_scan_symbol(m, flat(orders), base_ticks)
    assert fired == fired_all == fired_sym, "the fired orders differ between the books and the scans"
    mem_books = memory(lambda: books_of(build_orders(n, m.marks, args.seed + 1)))
    mem_health = memory(lambda: health_of(m)[0])
    c = hbook.counters
    evals = (c.evaluations - len(m.accounts)) / max(1, c.ticks - len(SYMBOLS))
    fired_prefix = sum(len(f) for f in fired)
    rows = [
        Row("triggers (books)", trig, f"{total_fired / len(trig):.3f} fired", mem_books),
        Row("health (book)", health, f"{evals:.2f} evals", mem_health),
        Row("both", both, "", None),
        Row("baseline scan all", scan_all, f"{n} tested", None),
        Row("baseline scan symbol", scan_sym, f"{n / len(SYMBOLS):.0f} tested", None),
    ]
    for r in rows:
        mib = "" if r.mib is None else f"{r.mib:.1f}"
        print(
            f"| {n} | {r.method} | {len(r.times)} | {statistics.median(r.times):.1f} | {pct(r.times, 0.99):.1f} "
            f"| {max(r.times):.1f} | {r.per_tick} | {mib} |"
        )
    p50_books = statistics.median(trig)
    quiet = [us for us, n_fired in zip(trig, fired_counts, strict=True) if n_fired == 0]
    alone = run_books_alone(m, orders, args.ticks)
    return (
        f"{n} orders: {total_fired} fired in {len(trig)} ticks ({fired_prefix} in the {base_ticks} baseline ticks, "
        f"same ids in all 3); books p50 on the {len(quiet)} ticks that fired nothing "
        f"{statistics.median(quiet):.1f} µs (books alone, no health tick between: {statistics.median(alone):.1f} µs); "
        f"p50 scan all / books = {statistics.median(scan_all) / p50_books:.0f}x, "
        f"scan symbol / books = {statistics.median(scan_sym) / p50_books:.0f}x; books build (add x {n}) "
        f"{build_s * 1000:.0f} ms; sweep per poll (sorted quote ids) {sweep:.2f} ms; {len(m.accounts)} accounts"
    )


if __name__ == "__main__":
    main()
