"""Account health per price tick: the health book against recomputing every account, same run.

    .venv/bin/python bench/health_bench.py [--positions 100 10000 100000] [--moves 0.0002 0.001]
                                           [--ticks 2000] [--seed 7]

For each population of open positions it builds one synthetic market (10 symbols; accounts
with 1-3 positions, about 20 % of them in more than one symbol; health from 2 % to 50 % of the
notional (log-uniform, i.e. leverage ~2x to ~50x), 1 % of the accounts within 0.1-1 % of
liquidation and 0.5 % already below zero) and, per volatility, one sequence of ticks (round
robin over the symbols, each a gaussian move of σ: 0.02 % is about a crypto mark's move per
second, 0.1 % a stress case, a day's volatility in under a minute). Then, per tick, it times:

- `book`: `HealthBook.tick` (solver.risk.health_book) and the flag decision for each account
  it returns: what the engine's health loop does in memory for a tick;
- `baseline all`: recompute every account's health from scratch (Decimal) and compare to 0;
- `baseline symbol`: recompute only the accounts holding the ticked symbol (an index by
  symbol, no sorted keys).

Both baselines run on a prefix of the same ticks (they are slow); after each of those ticks the
set of flagged accounts must be the same for all three (checked). Memory: tracemalloc, in a
separate pass (it slows everything down), of building each structure. Pure CPU, one core, no
Redis or Postgres: the I/O per tick (flags, health hashes) is proportional to the evaluations.
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

from solver.risk.account import LONG, SHORT
from solver.risk.health import HealthInputs, HealthPosition, health, inputs
from solver.risk.health_book import HealthBook

SYMBOLS = {i: Decimal(p) for i, p in enumerate(["60000", "3000", "0.5", "150", "600", "25", "8", "0.1", "2", "70"], 1)}


@dataclass
class Market:
    accounts: dict[str, HealthInputs]
    marks: dict[int, Decimal]
    ticks: list[tuple[int, Decimal]]
    positions: int


def build_market(n_positions: int, n_ticks: int, seed: int, move: float) -> Market:
    rng = random.Random(seed)
    marks = dict(SYMBOLS)
    accounts: dict[str, HealthInputs] = {}
    made = 0
    i = 0
    while made < n_positions:
        k = min(n_positions - made, rng.choices([1, 2, 3], weights=[70, 20, 10])[0])
        multi = k > 1 and rng.random() < 0.7
        first = rng.choice(list(SYMBOLS))
        items: list[HealthPosition] = []
        notional_total = Decimal(0)
        for _ in range(k):
            sym = rng.choice(list(SYMBOLS)) if multi else first
            mark = marks[sym]
            notional = Decimal(rng.randint(1_000, 50_000))
            entry = _q(mark * Decimal(1 + rng.uniform(-0.02, 0.02)))
            qty = _q(notional / entry)
            cva = _q(notional * Decimal("0.0066"))
            lf = _q(notional * Decimal("0.0033"))
            items.append(HealthPosition(sym, rng.choice([LONG, SHORT]), entry, qty, cva, lf))
            notional_total += notional
        # allocated so that health = distance × notional (see the module doc)
        roll = rng.random()
        if roll < 0.005:
            distance = Decimal("-0.01")
        elif roll < 0.015:
            distance = Decimal(10 ** rng.uniform(-3, -2))
        else:
            distance = Decimal(10 ** rng.uniform(-1.7, -0.3))
        partial = inputs(Decimal(0), items)
        allocated = _q(distance * notional_total - health(partial, marks))
        accounts[f"0x{i:040x}"] = inputs(allocated, items)
        made += k
        i += 1
    ticks: list[tuple[int, Decimal]] = []
    walk = dict(marks)
    order = list(SYMBOLS)
    for t in range(n_ticks):
        sym = order[t % len(order)]
        walk[sym] = _q(walk[sym] * Decimal(1 + rng.gauss(0, move)))
        ticks.append((sym, walk[sym]))
    return Market(accounts, marks, ticks, n_positions)


def _q(value: Decimal) -> Decimal:
    return value.quantize(Decimal("1e-8"))


# -- the three methods ---------------------------------------------------------------------------


def run_book(m: Market, n_ticks: int, snapshot_until: int) -> tuple[list[float], list[frozenset[str]], HealthBook]:
    book = HealthBook()
    for s, p in m.marks.items():
        book.tick(s, p, 0.0)
    flagged = {e.account for e in book.load(m.accounts) if e.health is not None and e.health < 0}
    times: list[float] = []
    snaps: list[frozenset[str]] = []
    gc.collect()
    for t, (sym, price) in enumerate(m.ticks[:n_ticks], start=1):
        t0 = time.perf_counter_ns()
        for e in book.tick(sym, price, float(t)):
            if e.health is not None and e.health < 0:
                flagged.add(e.account)
            else:
                flagged.discard(e.account)
        times.append((time.perf_counter_ns() - t0) / 1000)
        if t <= snapshot_until:
            snaps.append(frozenset(flagged))
    return times, snaps, book


def _health(inp: HealthInputs, marks: dict[int, Decimal]) -> Decimal:
    total = inp.base
    for s, e in inp.exposures.items():
        total += e.net_quantity * marks[s] - e.cost
    return total


def run_all(m: Market, n_ticks: int) -> tuple[list[float], list[frozenset[str]]]:
    marks = dict(m.marks)
    items = list(m.accounts.items())
    times: list[float] = []
    snaps: list[frozenset[str]] = []
    gc.collect()
    for sym, price in m.ticks[:n_ticks]:
        t0 = time.perf_counter_ns()
        marks[sym] = price
        flagged = {name for name, inp in items if _health(inp, marks) < 0}
        times.append((time.perf_counter_ns() - t0) / 1000)
        snaps.append(frozenset(flagged))
    return times, snaps


def run_symbol(m: Market, n_ticks: int) -> tuple[list[float], list[frozenset[str]], float]:
    marks = dict(m.marks)
    holders: dict[int, list[tuple[str, HealthInputs]]] = {}
    for name, inp in m.accounts.items():
        for s in inp.active_symbols():
            holders.setdefault(s, []).append((name, inp))
    flagged = {name for name, inp in m.accounts.items() if _health(inp, marks) < 0}
    times: list[float] = []
    snaps: list[frozenset[str]] = []
    evaluated = 0
    gc.collect()
    for sym, price in m.ticks[:n_ticks]:
        evaluated += len(holders.get(sym, ()))
        t0 = time.perf_counter_ns()
        marks[sym] = price
        for name, inp in holders.get(sym, ()):
            if _health(inp, marks) < 0:
                flagged.add(name)
            else:
                flagged.discard(name)
        times.append((time.perf_counter_ns() - t0) / 1000)
        snaps.append(frozenset(flagged))
    return times, snaps, evaluated / max(1, n_ticks)


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


def _book_of(m: Market) -> HealthBook:
    book = HealthBook()
    for s, p in m.marks.items():
        book.tick(s, p, 0.0)
    book.load(m.accounts)
    return book


def _holders_of(m: Market) -> dict[int, list[tuple[str, HealthInputs]]]:
    holders: dict[int, list[tuple[str, HealthInputs]]] = {}
    for name, inp in m.accounts.items():
        for s in inp.active_symbols():
            holders.setdefault(s, []).append((name, inp))
    return holders


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--positions", type=int, nargs="+", default=[100, 10_000, 100_000])
    ap.add_argument("--moves", type=float, nargs="+", default=[0.0002, 0.001], help="σ of one tick, relative")
    ap.add_argument("--ticks", type=int, default=2000)
    ap.add_argument("--baseline-budget", type=int, default=5_000_000, help="positions × ticks for baselines")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    print(
        f"ticks={args.ticks} per population, {len(SYMBOLS)} symbols, seed={args.seed}; Python "
        f"{platform.python_version()} on {platform.machine()}; times per tick in µs"
    )
    for move in args.moves:
        print(f"\n== σ = {move:.2%} per tick ==")
        print(
            f"{'positions':>9} {'accounts':>8}  {'method':<16}{'ticks':>6} {'p50':>9} {'p99':>9} {'max':>9} "
            f"{'evals/tick':>10} {'MiB':>7}"
        )
        for n in args.positions:
            bench_one(n, move, args)


def bench_one(n: int, move: float, args: argparse.Namespace) -> None:
    m = build_market(n, args.ticks, args.seed, move)
    base_ticks = min(args.ticks, max(20, args.baseline_budget // n))
    t0 = time.perf_counter()
    book_times, book_snaps, book = run_book(m, args.ticks, base_ticks)
    build_s = time.perf_counter() - t0 - sum(book_times) / 1e6
    c = book.counters
    all_times, all_snaps = run_all(m, base_ticks)
    sym_times, sym_snaps, sym_evals = run_symbol(m, base_ticks)
    assert book_snaps == all_snaps == sym_snaps, "the flagged accounts differ between methods"
    mem_book = memory(lambda: _book_of(m))
    mem_holders = memory(lambda: _holders_of(m))
    mem_inputs = memory(lambda: build_market(n, 0, args.seed, move).accounts)
    ticks = c.ticks - len(SYMBOLS)  # minus the initial marks
    evals = (c.evaluations - len(m.accounts)) / ticks  # minus the load
    rows = [
        ("book", book_times, f"{evals:10.2f}", mem_book),
        ("baseline all", all_times, f"{len(m.accounts):10d}", 0.0),
        ("baseline symbol", sym_times, f"{sym_evals:10.1f}", mem_holders),
    ]
    for name, times, ev, mem in rows:
        print(
            f"{n:>9} {len(m.accounts):>8}  {name:<16}{len(times):>6} {statistics.median(times):>9.1f} "
            f"{pct(times, 0.99):>9.1f} {max(times):>9.1f} {ev} {mem:>7.1f}"
        )
    flagged_end = len(book_snaps[-1]) if book_snaps else 0
    print(
        f"{'':>19}book per tick: {c.entries_crossed / ticks:.2f} entries crossed, "
        f"{c.intervals_left / ticks:.2f} accounts re-indexed (interval left); build {build_s:.2f} s; "
        f"p50 all/book = {statistics.median(all_times) / statistics.median(book_times):.0f}x; "
        f"{flagged_end} flagged after {base_ticks} ticks in all 3; inputs (shared) {mem_inputs:.1f} MiB"
    )


if __name__ == "__main__":
    main()
