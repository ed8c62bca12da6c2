"""The health book: ticks touch only the crossed accounts, and never miss one that crosses zero."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solver.risk.account import LONG, SHORT
from solver.risk.health import Direction, Exposure, HealthInputs, HealthPosition, health, inputs
from solver.risk.health_book import HealthBook

pytestmark = pytest.mark.unit

D = Decimal


ONE = Decimal(1)


def long_liquidated_at(price: Decimal, qty: Decimal = ONE) -> HealthInputs:
    """A one-symbol net LONG of `qty` whose liquidation price is `price` (symbol 1)."""
    # health = base + q m − k with base 0: zero at m = k / q.
    return HealthInputs(D(0), D(0), D(0), {1: Exposure(qty, price * qty)})


def short_liquidated_at(price: Decimal) -> HealthInputs:
    return HealthInputs(D(0), D(0), D(0), {1: Exposure(D(-1), -price)})


def acct(i: int) -> str:
    return f"0x{i:040x}"


def book_with(n: int, *, mark: Decimal) -> HealthBook:
    book = HealthBook()
    book.tick(1, mark, 1.0)
    # LONGs liquidated at 1..n, SHORTs at n+2..2n+1: the mark n+1 is between them.
    accounts = {acct(i): long_liquidated_at(D(i)) for i in range(1, n + 1)}
    accounts |= {acct(n + 1 + i): short_liquidated_at(D(n + 1 + i)) for i in range(1, n + 1)}
    evaluations = book.load(accounts)
    assert all(e.health is not None and e.health > 0 for e in evaluations)
    book.check()
    return book


@pytest.mark.parametrize("n", [100, 10_000])
@pytest.mark.parametrize("k", [0, 1, 7, 40])
def test_a_tick_crossing_k_accounts_does_work_in_k_not_n(n: int, k: int) -> None:
    book = book_with(n, mark=D(n + 1))
    before = book.counters.work
    evaluations = book.tick(1, D(n) - D(k) + D("0.5"), 2.0)  # the k highest LONGs are now below
    assert sorted(e.account for e in evaluations) == sorted(acct(n - i) for i in range(k))
    assert all(e.health is not None and e.health < 0 for e in evaluations)
    assert book.counters.entries_crossed == k
    assert book.counters.work - before == 2 * k  # k entries crossed, k exact evaluations
    book.check()

    # A second tick that crosses nothing does no work: a single-symbol account's key is its exact
    # liquidation price, so staying on the same side decides nothing new.
    before = book.counters.work
    assert book.tick(1, D(n) - D(k) + D("0.25"), 3.0) == []
    assert book.counters.work == before

    # Back up: the k accounts leave the zone (evaluated once more so they can be cleared).
    before = book.counters.work
    evaluations = book.tick(1, D(n + 1), 4.0)
    assert len(evaluations) == k and all(e.health is not None and e.health > 0 for e in evaluations)
    assert book.counters.work - before == 2 * k
    assert book.watched() == set()


def test_watched_multi_symbol_accounts_are_evaluated_on_every_tick() -> None:
    """Their keys are conservative: in the zone of every symbol does not mean below zero."""
    book = HealthBook(min_band=D("0.2"), max_band=D("0.2"))  # other marks anywhere within ± 20 %
    name = acct(278)  # an account whose band is not lowered by the per-account jitter
    book.tick(1, D(100), 1.0)
    book.tick(2, D(100), 1.0)
    inp = inputs(
        D(25), [HealthPosition(1, LONG, D(100), D(1), D(0), D(0)), HealthPosition(2, LONG, D(100), D(1), D(0), D(0))]
    )
    book.upsert(name, inp)
    # m* = 75 at the other mark 100; with the other mark anywhere in 80..120: 55..95
    assert book.keys(name) == {1: (Direction.BELOW, D(95)), 2: (Direction.BELOW, D(95))}
    book.tick(1, D(94), 2.0)
    [e] = book.tick(2, D(94), 2.0)  # in both zones, so watched, but health 13: healthy
    assert e.health == D(13) and book.is_watched(name) and book.evaluated_each_tick(1) == 1
    [e] = book.tick(1, D(93), 3.0)  # crosses nothing, evaluated anyway
    assert e.health == D(12)
    [e] = book.tick(2, D(85), 4.0)
    assert e.health == D(3)
    [e] = book.tick(2, D(81), 5.0)
    assert e.health == D(-1)
    assert book.tick(2, D(50), 6.0) != []  # below the optimistic key (55): deep, certainly below zero
    assert book.evaluated_each_tick(1) == 0 and book.tick(1, D(92), 7.0) == []
    book.check()


def test_shorts_are_crossed_rising() -> None:
    book = book_with(50, mark=D(51))
    evaluations = book.tick(1, D("54.5"), 2.0)  # SHORTs liquidated at 52, 53, 54
    assert sorted(e.account for e in evaluations) == [acct(52), acct(53), acct(54)]
    assert book.counters.entries_crossed == 3


def test_exact_boundary_is_healthy() -> None:
    book = HealthBook()
    book.tick(1, D(200), 1.0)
    book.upsert(acct(1), long_liquidated_at(D(100)))
    # At the liquidation price health is 0: not liquidatable, not even in the zone.
    assert book.tick(1, D(100), 2.0) == []
    assert book.evaluate(acct(1)).health == 0
    [e] = book.tick(1, D("99.9"), 3.0)
    assert e.health is not None and e.health < 0


def test_stale_or_repeated_tick_is_ignored() -> None:
    book = HealthBook()
    book.tick(1, D(200), 10.0)
    book.upsert(acct(1), long_liquidated_at(D(100)))
    assert book.tick(1, D(50), 10.0) == []
    assert book.tick(1, D(50), 9.0) == []
    mark = book.mark(1)
    assert mark is not None and mark.price == D(200)


def test_account_waits_for_the_first_mark_of_each_symbol() -> None:
    book = HealthBook()
    inp = inputs(
        D(10), [HealthPosition(1, LONG, D(100), D(1), D(1), D(1)), HealthPosition(2, SHORT, D(5), D(1), D(0), D(0))]
    )
    e = book.upsert(acct(1), inp)
    assert e.health is None
    book.tick(1, D(100), 1.0)
    [e] = book.tick(2, D(5), 1.0)
    assert e.health == D(8)
    assert book.liquidation_prices(acct(1)) == {1: D(92), 2: D(13)}
    book.check()


def test_remove_and_upsert_keep_the_lists_consistent() -> None:
    book = book_with(20, mark=D(21))
    book.remove(acct(3))
    book.upsert(acct(4), long_liquidated_at(D(30)))  # now under water
    assert book.is_watched(acct(4))
    book.upsert(acct(4), long_liquidated_at(D(4)))
    assert not book.is_watched(acct(4))
    book.check()
    assert acct(3) not in book and len(book) == 39


def test_other_symbol_moves_shift_keys_through_intervals() -> None:
    """LONG BTC + LONG ETH: a fall of ETH moves BTC's liquidation price up; the book notices
    even though BTC never ticks."""
    book = HealthBook(min_band=D("0.01"), max_band=D("0.02"))
    book.tick(1, D(100), 1.0)
    book.tick(2, D(100), 1.0)
    inp = inputs(
        D(30), [HealthPosition(1, LONG, D(100), D(1), D(0), D(0)), HealthPosition(2, LONG, D(100), D(1), D(0), D(0))]
    )
    book.upsert(acct(1), inp)
    ts = 2.0
    seen_negative = False
    for step in range(1, 40):
        price = D(100) - D(step)
        evaluations = book.tick(2, price, ts)
        ts += 1
        book.check()
        exact = health(inp, {1: D(100), 2: price})
        if exact < 0:
            assert [e.health for e in evaluations] == [exact]
            seen_negative = True
            break
    assert seen_negative
    assert book.counters.intervals_left > 0


# -- the book never misses a sign change (property) ----------------------------------------------

SYMBOLS = [1, 2, 3]


@st.composite
def account_inputs(draw: st.DrawFn) -> HealthInputs:
    items = draw(
        st.lists(
            st.builds(
                HealthPosition,
                symbol_id=st.sampled_from(SYMBOLS),
                position_type=st.sampled_from([LONG, SHORT]),
                opened_price=st.decimals(min_value=D(50), max_value=D(150), places=2),
                open_quantity=st.decimals(min_value=D("0.1"), max_value=D(5), places=1),
                cva=st.decimals(min_value=D(0), max_value=D(5), places=2),
                lf=st.decimals(min_value=D(0), max_value=D(5), places=2),
            ),
            min_size=1,
            max_size=4,
        )
    )
    allocated = draw(st.decimals(min_value=D(0), max_value=D(200), places=2))
    return inputs(allocated, items)


ticks = st.lists(
    st.tuples(st.sampled_from(SYMBOLS), st.decimals(min_value=D(-8), max_value=D(8), places=2)),
    min_size=1,
    max_size=60,
)


@settings(max_examples=250, deadline=None)
@given(
    accounts=st.lists(account_inputs(), min_size=1, max_size=12),
    moves=ticks,
    bands=st.sampled_from([(D("0.01"), D("0.01")), (D("0.005"), D("0.2")), (D("0.05"), D("0.5"))]),
)
def test_every_sign_change_is_evaluated_in_its_tick(
    accounts: list[HealthInputs], moves: list[tuple[int, Decimal]], bands: tuple[Decimal, Decimal]
) -> None:
    book = HealthBook(min_band=bands[0], max_band=bands[1])
    marks = {s: D(100) for s in SYMBOLS}
    for s in SYMBOLS:
        book.tick(s, marks[s], 0.0)
    names = [acct(i) for i in range(len(accounts))]
    book.load(dict(zip(names, accounts, strict=True)))
    below = {n: health(inp, marks) < 0 for n, inp in zip(names, accounts, strict=True)}
    for t, (s, pct) in enumerate(moves, start=1):
        marks[s] = max(D("0.01"), marks[s] * (1 + pct / 100))
        evaluated = {e.account: e.health for e in book.tick(s, marks[s], float(t))}
        book.check()
        for n, inp in zip(names, accounts, strict=True):
            exact = health(inp, marks)
            if exact < 0:
                assert book.is_watched(n) or not inp.active_symbols(), "an account under water is not watched"
            if (exact < 0) != below[n]:
                assert evaluated.get(n) == exact, "a sign change was not evaluated in its tick"
            if n in evaluated:
                assert evaluated[n] == exact
            below[n] = exact < 0
