"""The health book: per symbol, accounts' liquidation prices in sorted lists, so that a price tick
touches only the accounts whose liquidation price it crossed (trading-rules.md §6). Pure, no I/O.

**Index.** For every account and every symbol S it holds with a non-zero net quantity, the book
keeps a *key* (solver.risk.health.band_keys) in one of two sorted lists of S: `below` for net
LONGs (liquidated when the mark falls below), `above` for net SHORTs. An account is *in the zone*
of S when the mark of S is on the unsafe side of its key (below it for `below`, above it for
`above`). A tick of S moving the mark from `o` to `n` changes the zone of exactly the entries
whose key lies between `o` and `n`: two bisections find them, so the index work of a tick is
O(log N + k) for k entries crossed, whatever the number N of positions.

**Why a key and not the liquidation price itself.** With one symbol the key *is* the
liquidation price. With several, m*_S depends on the other marks (m*_S = (k_S − R_S)/q_S, and
R_S moves with every other symbol T), so after a tick of T every multi-symbol account holding T
would have a stale entry in each of its other books; updating them all on every tick is
O(positions), which is what the book exists to avoid. Instead, when a multi-symbol account is
indexed, it gets a *band* δ and, for each symbol T it holds, a *validity interval*
`c_T × (1 ± δ)` around the current mark c_T; its key in S is m*_S with every other mark at the
worst point of its interval. While every m_T stays in its interval, a mark of S on the safe side
of the key proves health ≥ 0. Hence:

- an account is *watched* when it is in the zone of **every** symbol it holds (no symbol proves
  it healthy); only watched accounts can be below zero;
- a tick of S evaluates exactly (Decimal, from scratch) the accounts whose watched state the
  tick changed (entering: maybe below zero; leaving: recovered) and the watched multi-symbol
  accounts holding S that are not *deep* (their keys are conservative, so being watched does
  not decide them). Each multi-symbol account also has an *optimistic* key per symbol (m*_S
  with the other marks at the best point of their intervals, in two more sorted lists); a mark
  beyond it proves health < 0, so an account deep in any symbol is below zero without an
  evaluation, and is evaluated again when a tick brings it out of the deep. A
  single-symbol account's key is its exact liquidation price (a 40-digit division rounded
  toward the unsafe side, finer than any 18-decimal mark), so for it watched ⇔ below zero and
  only crossings need an evaluation; should an evaluation ever disagree with its zone, it is
  evaluated on every tick of its symbol until they agree again;
- the interval bounds are kept in two more sorted lists per symbol (lower and upper bounds): a
  tick of T that leaves an account's interval finds it by bisection, like a key crossing, and
  re-indexes it in that same tick (new interval around the new marks, new keys).

**Trade-off (the band).** The band is chosen per account: half its health spread over its
gross notional, `δ = health / (2 × Σ|q_T| × m_T)`, clamped to `[min_band, max_band]`, then
lowered by a fixed per-account fraction of up to a half (so accounts indexed at the same marks
do not all leave their intervals on the same tick). The slack thus uses at most half of a
healthy account's distance to liquidation: its keys stay at least halfway between the marks and
its true liquidation prices (out of the zones, so it costs nothing per tick), and it is
re-indexed only after another of its marks moved by δ: rarely for healthy accounts, every
`min_band` move for those near liquidation (few, and evaluated anyway). A wider `max_band`
means fewer re-indexings of healthy accounts; a wider `min_band` fewer for those near
liquidation but looser keys, so more of them are evaluated on every tick. Single-symbol
accounts have exact keys and no interval.

A symbol without any mark yet cannot be priced: accounts holding it wait (no key, no health)
until its first tick. `counters` counts the work (entries crossed, exact evaluations, accounts
re-indexed) so tests can assert on it instead of on time.
"""

from __future__ import annotations

import zlib
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Context, Decimal

from solver.risk.health import Direction, HealthInputs, band_keys, health, liquidation_price

_CTX = Context(prec=120)
_BAND = Context(prec=3, rounding=ROUND_FLOOR)
_LO = ""  # sorts before every account name in (key, name) tuples
_HI = "\U0010ffff"  # and after
_Entry = tuple[Decimal, str]


@dataclass(frozen=True, slots=True)
class Mark:
    price: Decimal
    ts: float  # source time, unix seconds


@dataclass(frozen=True, slots=True)
class Evaluation:
    """An exact recomputation of one account."""

    account: str
    health: Decimal | None  # None: a symbol it holds has no mark yet
    upnl: Decimal | None
    mark_ts: float | None  # oldest source time among the marks used (None: none used)


@dataclass(slots=True)
class Counters:
    ticks: int = 0
    entries_crossed: int = 0  # index entries whose key a tick crossed
    evaluations: int = 0  # exact health recomputations
    reindexed: int = 0  # accounts whose keys were (re)computed: upserts, first marks, intervals left
    intervals_left: int = 0  # multi-symbol accounts re-indexed because a tick left their interval

    @property
    def work(self) -> int:
        return self.entries_crossed + self.evaluations + self.reindexed


@dataclass(slots=True)
class _Account:
    inputs: HealthInputs
    active: tuple[int, ...]  # symbols with a non-zero net quantity
    keys: dict[int, tuple[Direction, Decimal]] = field(default_factory=dict)
    zone: set[int] = field(default_factory=set)
    waiting_on: tuple[int, ...] = ()  # active symbols without a mark yet
    watched: bool = False
    pinned: bool = False  # single-symbol, evaluated on every tick (its zone and health disagreed)
    intervals: dict[int, tuple[Decimal, Decimal]] = field(default_factory=dict)  # multi-symbol only
    deep_keys: dict[int, Decimal] = field(default_factory=dict)  # optimistic keys, multi-symbol only
    deep: set[int] = field(default_factory=set)  # symbols whose mark proves health < 0
    every_tick: bool = False  # in `_watched_by` of its symbols

    @property
    def priced(self) -> bool:
        return not self.waiting_on


class HealthBook:
    def __init__(self, *, min_band: Decimal = Decimal("0.005"), max_band: Decimal = Decimal("0.2")) -> None:
        if not Decimal(0) < min_band <= max_band < Decimal(1):
            raise ValueError("need 0 < min_band <= max_band < 1")
        self._min_band = min_band
        self._max_band = max_band
        self._accounts: dict[str, _Account] = {}
        self._marks: dict[int, Mark] = {}
        self._below: dict[int, list[_Entry]] = {}  # keys of net LONGs
        self._above: dict[int, list[_Entry]] = {}  # keys of net SHORTs
        self._deep_below: dict[int, list[_Entry]] = {}  # optimistic keys of net LONGs
        self._deep_above: dict[int, list[_Entry]] = {}
        self._lows: dict[int, list[_Entry]] = {}  # lower bounds of validity intervals
        self._highs: dict[int, list[_Entry]] = {}  # upper bounds
        self._watched_by: dict[int, set[str]] = {}  # symbol -> accounts to evaluate on each of its ticks
        self._waiting: dict[int, set[str]] = {}  # symbol without a mark -> accounts holding it
        self.counters = Counters()

    # -- reading ----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._accounts)

    def __contains__(self, account: object) -> bool:
        return account in self._accounts

    def accounts(self) -> Iterator[str]:
        return iter(self._accounts)

    def inputs(self, account: str) -> HealthInputs | None:
        acct = self._accounts.get(account)
        return acct.inputs if acct is not None else None

    def mark(self, symbol_id: int) -> Mark | None:
        return self._marks.get(symbol_id)

    def is_watched(self, account: str) -> bool:
        acct = self._accounts.get(account)
        return acct is not None and acct.watched

    def watched(self) -> set[str]:
        return {name for name, a in self._accounts.items() if a.watched}

    def keys(self, account: str) -> dict[int, tuple[Direction, Decimal]]:
        acct = self._accounts.get(account)
        return dict(acct.keys) if acct is not None else {}

    def liquidation_prices(self, account: str) -> dict[int, Decimal]:
        """Exact liquidation price per active symbol at the current marks (empty if unpriced)."""
        acct = self._accounts.get(account)
        if acct is None or not acct.priced:
            return {}
        marks = {s: self._marks[s].price for s in acct.active}
        out: dict[int, Decimal] = {}
        for s in acct.active:
            price = liquidation_price(acct.inputs, s, marks)
            if price is not None:
                out[s] = price
        return out

    def evaluate(self, account: str) -> Evaluation:
        return self._evaluate(account)

    def evaluated_each_tick(self, symbol_id: int) -> int:
        """How many accounts every tick of this symbol evaluates (watched multi-symbol ones)."""
        return len(self._watched_by.get(symbol_id, ()))

    # -- changes ----------------------------------------------------------------------------------

    def tick(self, symbol_id: int, price: Decimal, ts: float) -> list[Evaluation]:
        """Move the mark of `symbol_id`; the exact evaluations this tick needs (see module doc).

        A tick not newer (by source time) than the current mark is ignored: [] and no change.
        """
        if not price.is_finite() or price <= 0:
            raise ValueError(f"a mark must be a positive number, got {price}")
        prev = self._marks.get(symbol_id)
        if prev is not None and ts <= prev.ts:
            return []
        self.counters.ticks += 1
        self._marks[symbol_id] = Mark(price, ts)
        touched: set[str] = set()
        if prev is None:
            for name in sorted(self._waiting.pop(symbol_id, set())):
                self._index(name, touched)
                touched.add(name)  # first health of an account that was waiting for a price
        else:
            self._cross(symbol_id, prev.price, price, touched)
            self._revalidate(symbol_id, prev.price, price, touched)
        touched.update(self._watched_by.get(symbol_id, ()))
        return [self._evaluate(name) for name in sorted(touched)]

    def upsert(self, account: str, inputs: HealthInputs) -> Evaluation:
        """Add an account or replace its inputs (positions or allocated changed)."""
        acct = self._accounts.get(account)
        if acct is None:
            acct = _Account(inputs, inputs.active_symbols())
            self._accounts[account] = acct
        else:
            self._unindex(account, acct)
            acct.inputs = inputs
            acct.active = inputs.active_symbols()
        self._index(account, set())
        return self._evaluate(account)

    def load(self, accounts: Mapping[str, HealthInputs]) -> list[Evaluation]:
        """Bulk upsert (start): sorts each list once instead of inserting one entry at a time."""
        fresh = [name for name in accounts if name not in self._accounts]
        for name, inp in accounts.items():
            if name in self._accounts:
                self.upsert(name, inp)
        dirty: set[int] = set()
        for name in fresh:
            inp = accounts[name]
            acct = _Account(inp, inp.active_symbols())
            self._accounts[name] = acct
            dirty.update(self._compute_keys(name, acct, append=True))
        for s in dirty:
            for lists in (self._below, self._above, self._deep_below, self._deep_above, self._lows, self._highs):
                lists.get(s, []).sort()
        for name in fresh:
            self._refresh(name, self._accounts[name])
        return [self._evaluate(name) for name in accounts]

    def remove(self, account: str) -> bool:
        acct = self._accounts.pop(account, None)
        if acct is None:
            return False
        self._unindex(account, acct)
        return True

    # -- internals --------------------------------------------------------------------------------

    def _evaluate(self, name: str) -> Evaluation:
        e = self._compute(name)
        acct = self._accounts[name]
        if e.health is not None and len(acct.active) == 1:
            pinned = (e.health < 0) != acct.watched  # the exact key and the health disagree
            if pinned != acct.pinned:
                acct.pinned = pinned
                self._refresh(name, acct)
        return e

    def _compute(self, name: str) -> Evaluation:
        self.counters.evaluations += 1
        acct = self._accounts[name]
        if not acct.priced:
            return Evaluation(name, None, None, None)
        inp = acct.inputs
        total = Decimal(0)
        oldest: float | None = None
        for s, e in inp.exposures.items():
            if e.net_quantity:
                mark = self._marks[s]
                total = _CTX.add(total, e.upnl(mark.price))
                oldest = mark.ts if oldest is None else min(oldest, mark.ts)
            else:
                total = _CTX.subtract(total, e.cost)
        return Evaluation(name, _CTX.add(inp.base, total), total, oldest)

    def _cross(self, symbol_id: int, old: Decimal, new: Decimal, touched: set[str]) -> None:
        if old == new:
            return
        lo, hi = (old, new) if old < new else (new, old)
        below = self._below.get(symbol_id)
        if below:
            # In the zone iff mark < key: the state flips for lo < key <= hi.
            i, j = bisect_right(below, (lo, _HI)), bisect_right(below, (hi, _HI))
            self.counters.entries_crossed += j - i
            for key, name in below[i:j]:
                self._set_zone(name, symbol_id, new < key, touched)
        above = self._above.get(symbol_id)
        if above:
            # In the zone iff mark > key: the state flips for lo <= key < hi.
            i, j = bisect_left(above, (lo, _LO)), bisect_left(above, (hi, _LO))
            self.counters.entries_crossed += j - i
            for key, name in above[i:j]:
                self._set_zone(name, symbol_id, new > key, touched)
        deep_below = self._deep_below.get(symbol_id)
        if deep_below:
            i, j = bisect_right(deep_below, (lo, _HI)), bisect_right(deep_below, (hi, _HI))
            self.counters.entries_crossed += j - i
            for key, name in deep_below[i:j]:
                self._set_deep(name, symbol_id, new < key, touched)
        deep_above = self._deep_above.get(symbol_id)
        if deep_above:
            i, j = bisect_left(deep_above, (lo, _LO)), bisect_left(deep_above, (hi, _LO))
            self.counters.entries_crossed += j - i
            for key, name in deep_above[i:j]:
                self._set_deep(name, symbol_id, new > key, touched)

    def _set_zone(self, name: str, symbol_id: int, in_zone: bool, touched: set[str]) -> None:
        acct = self._accounts[name]
        if in_zone:
            acct.zone.add(symbol_id)
        else:
            acct.zone.discard(symbol_id)
        if self._refresh(name, acct):
            touched.add(name)  # entering: evaluate now; leaving: it may have recovered

    def _set_deep(self, name: str, symbol_id: int, deep: bool, touched: set[str]) -> None:
        acct = self._accounts[name]
        if deep:
            acct.deep.add(symbol_id)
        else:
            acct.deep.discard(symbol_id)
        if self._refresh(name, acct):
            touched.add(name)

    def _refresh(self, name: str, acct: _Account) -> bool:
        """Recompute the watched state from the zones and keep `_watched_by` = the accounts to
        evaluate on every tick (watched multi-symbol ones not deep anywhere, and pinned ones);
        True when either changed."""
        watched = acct.priced and bool(acct.keys) and len(acct.zone) == len(acct.keys)
        every_tick = (watched and len(acct.active) > 1 and not acct.deep) or acct.pinned
        changed = watched != acct.watched or every_tick != acct.every_tick
        acct.watched = watched
        if every_tick != acct.every_tick:
            acct.every_tick = every_tick
            for s in acct.active:
                if every_tick:
                    self._watched_by.setdefault(s, set()).add(name)
                else:
                    by = self._watched_by.get(s)
                    if by is not None:
                        by.discard(name)
        return changed

    def _band_for(self, name: str, acct: _Account, marks: Mapping[int, Decimal]) -> Decimal:
        """Half the account's health over its gross notional, clamped (see module doc)."""
        gross = Decimal(0)
        for s in acct.active:
            gross = _CTX.add(gross, _CTX.multiply(abs(acct.inputs.exposures[s].net_quantity), marks[s]))
        value = health(acct.inputs, marks)
        band = self._min_band
        if value > 0 and gross > 0:
            band = min(self._max_band, max(self._min_band, _CTX.divide(value, _CTX.multiply(2, gross))))
        jitter = Decimal(zlib.crc32(name.encode()) % 1000) / 2000  # 0 to 0.4995, fixed per account
        return _BAND.multiply(band, _CTX.subtract(1, jitter))  # 3 digits, rounded down

    def _compute_keys(self, name: str, acct: _Account, *, append: bool) -> list[int]:
        """Compute keys, zones and intervals (lists updated by insort, or appended when
        `append`); the symbols whose lists were touched."""
        waiting = tuple(s for s in acct.active if s not in self._marks)
        acct.waiting_on = waiting
        if waiting:
            for s in waiting:
                self._waiting.setdefault(s, set()).add(name)
            return []
        self.counters.reindexed += 1
        marks = {s: self._marks[s].price for s in acct.active}
        multi = len(acct.active) > 1
        band = self._band_for(name, acct, marks) if multi else self._min_band
        add = _append if append else insort
        for s in acct.active:
            keys = band_keys(acct.inputs, s, marks, band)
            assert keys is not None  # active symbols are not flat
            direction, key, deep_key = keys
            below = direction is Direction.BELOW
            acct.keys[s] = (direction, key)
            add((self._below if below else self._above).setdefault(s, []), (key, name))
            mark = marks[s]
            if (mark < key) if below else (mark > key):
                acct.zone.add(s)
            if multi:
                acct.deep_keys[s] = deep_key
                add((self._deep_below if below else self._deep_above).setdefault(s, []), (deep_key, name))
                if (mark < deep_key) if below else (mark > deep_key):
                    acct.deep.add(s)
                low = _CTX.multiply(mark, _CTX.subtract(1, band))
                high = _CTX.multiply(mark, _CTX.add(1, band))
                acct.intervals[s] = (low, high)
                add(self._lows.setdefault(s, []), (low, name))
                add(self._highs.setdefault(s, []), (high, name))
        return list(acct.active)

    def _index(self, name: str, touched: set[str]) -> None:
        acct = self._accounts[name]
        before = (acct.watched, acct.every_tick)
        if acct.keys or acct.waiting_on or acct.every_tick:
            self._unindex(name, acct)
        self._compute_keys(name, acct, append=False)
        self._refresh(name, acct)
        if (acct.watched, acct.every_tick) != before:
            touched.add(name)  # its state changed: decide it in this tick

    def _unindex(self, name: str, acct: _Account) -> None:
        for s, (direction, key) in acct.keys.items():
            book = self._below[s] if direction is Direction.BELOW else self._above[s]
            i = bisect_left(book, (key, name))
            if i >= len(book) or book[i] != (key, name):
                raise AssertionError(f"health book lost the entry of {name} in symbol {s}")
            del book[i]
        for s, (low, high) in acct.intervals.items():
            _remove(self._lows[s], (low, name))
            _remove(self._highs[s], (high, name))
        for s, deep_key in acct.deep_keys.items():
            below = acct.keys[s][0] is Direction.BELOW
            _remove((self._deep_below if below else self._deep_above)[s], (deep_key, name))
        for s in acct.waiting_on:
            waiting = self._waiting.get(s)
            if waiting is not None:
                waiting.discard(name)
        acct.intervals.clear()
        acct.deep_keys.clear()
        acct.deep.clear()
        acct.keys.clear()
        acct.zone.clear()
        acct.waiting_on = ()
        acct.pinned = False
        self._refresh(name, acct)  # not watched, not evaluated on every tick

    def _revalidate(self, symbol_id: int, old: Decimal, new: Decimal, touched: set[str]) -> None:
        """Re-index the multi-symbol accounts whose validity interval of this symbol the move
        from `old` to `new` left (each was valid at `old`)."""
        if new < old:
            lows = self._lows.get(symbol_id)
            if not lows:
                return
            # left when new < low (low <= old held): new < low <= old
            i, j = bisect_right(lows, (new, _HI)), bisect_right(lows, (old, _HI))
            names = [name for _, name in lows[i:j]]
        elif new > old:
            highs = self._highs.get(symbol_id)
            if not highs:
                return
            # left when new > high (high >= old held): old <= high < new
            i, j = bisect_left(highs, (old, _LO)), bisect_left(highs, (new, _LO))
            names = [name for _, name in highs[i:j]]
        else:
            return
        self.counters.intervals_left += len(names)
        for name in names:
            self._index(name, touched)

    # -- checks (tests) ---------------------------------------------------------------------------

    def check(self) -> None:
        """Assert the internal invariants (slow; tests and debugging)."""
        for lists in (self._below, self._above, self._deep_below, self._deep_above, self._lows, self._highs):
            for s, book in lists.items():
                assert book == sorted(book), f"unsorted list for symbol {s}"
        deep_entries = sum(len(b) for b in self._deep_below.values()) + sum(len(b) for b in self._deep_above.values())
        assert deep_entries == sum(len(a.deep_keys) for a in self._accounts.values())
        entries = sum(len(b) for b in self._below.values()) + sum(len(b) for b in self._above.values())
        assert entries == sum(len(a.keys) for a in self._accounts.values())
        for name, acct in self._accounts.items():
            assert acct.active == acct.inputs.active_symbols()
            if not acct.priced:
                assert not acct.keys and not acct.watched
                continue
            assert set(acct.keys) == set(acct.active)
            if len(acct.active) > 1:
                assert set(acct.intervals) == set(acct.active) == set(acct.deep_keys)
                for s, deep_key in acct.deep_keys.items():
                    below = acct.keys[s][0] is Direction.BELOW
                    book = (self._deep_below if below else self._deep_above)[s]
                    assert book[bisect_left(book, (deep_key, name))] == (deep_key, name)
                    mark = self._marks[s].price
                    assert ((mark < deep_key) if below else (mark > deep_key)) == (s in acct.deep), (name, s)
                for s, (low, high) in acct.intervals.items():
                    assert low <= self._marks[s].price <= high, (name, s)
                    assert self._lows[s][bisect_left(self._lows[s], (low, name))] == (low, name)
                    assert self._highs[s][bisect_left(self._highs[s], (high, name))] == (high, name)
            else:
                assert not acct.intervals and not acct.deep_keys and not acct.deep
            for s, (direction, key) in acct.keys.items():
                book = self._below[s] if direction is Direction.BELOW else self._above[s]
                i = bisect_left(book, (key, name))
                assert book[i] == (key, name)
                mark = self._marks[s].price
                in_zone = (mark < key) if direction is Direction.BELOW else (mark > key)
                assert in_zone == (s in acct.zone), (name, s)
            watched = bool(acct.keys) and len(acct.zone) == len(acct.keys)
            assert watched == acct.watched
            every_tick = (watched and len(acct.active) > 1 and not acct.deep) or acct.pinned
            assert every_tick == acct.every_tick
            for s in acct.active:
                assert (name in self._watched_by.get(s, set())) == every_tick


def _append(book: list[_Entry], entry: _Entry) -> None:
    book.append(entry)


def _remove(book: list[_Entry], entry: _Entry) -> None:
    i = bisect_left(book, entry)
    if i >= len(book) or book[i] != entry:
        raise AssertionError(f"health book lost the entry {entry}")
    del book[i]
