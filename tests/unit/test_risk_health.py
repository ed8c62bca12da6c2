"""Account health and liquidation prices (trading-rules.md §6), against a slow reference."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solver.risk.account import LONG, SHORT, Position
from solver.risk.account import upnl as reference_upnl
from solver.risk.health import (
    Direction,
    HealthPosition,
    guarded_key,
    health,
    health_of,
    inputs,
    is_liquidatable,
    liquidation_price,
    single_position_liquidation_price,
)

pytestmark = pytest.mark.unit

D = Decimal


def reference_health(allocated: Decimal, positions: list[HealthPosition], marks: dict[int, Decimal]) -> Decimal:
    """From scratch, position by position, with the §2 uPnL of solver.risk.account."""
    as_positions = [Position(p.symbol_id, p.position_type, p.opened_price, p.open_quantity) for p in positions]
    cva = sum((p.cva for p in positions), D(0))
    lf = sum((p.lf for p in positions), D(0))
    return allocated + reference_upnl(as_positions, marks) - cva - lf


# -- strategies ----------------------------------------------------------------------------------

SYMBOLS = [1, 2, 3]
prices = st.decimals(min_value=D("0.01"), max_value=D(100_000), places=4)
quantities = st.decimals(min_value=D("0.001"), max_value=D(1000), places=3)
money = st.decimals(min_value=D(0), max_value=D(1_000_000), places=6)


@st.composite
def positions(draw: st.DrawFn) -> HealthPosition:
    return HealthPosition(
        symbol_id=draw(st.sampled_from(SYMBOLS)),
        position_type=draw(st.sampled_from([LONG, SHORT])),
        opened_price=draw(prices),
        open_quantity=draw(quantities),
        cva=draw(st.decimals(min_value=D(0), max_value=D(10_000), places=6)),
        lf=draw(st.decimals(min_value=D(0), max_value=D(5_000), places=6)),
    )


marks_st = st.fixed_dictionaries({s: prices for s in SYMBOLS})


# -- examples ------------------------------------------------------------------------------------


def test_single_long_and_short_match_the_spec_formula() -> None:
    # allocated 1000, cva 20, lf 10, LONG 2 @ 100: entry − (1000 − 30)/2 = 100 − 485 = −385 (never)
    long = HealthPosition(1, LONG, D(100), D(2), D(20), D(10))
    inp = inputs(D(1000), [long])
    assert liquidation_price(inp, 1, {1: D(100)}) == D(-385)
    assert single_position_liquidation_price(
        position_type=LONG, entry=D(100), quantity=D(2), allocated=D(1000), cva=D(20), lf=D(10)
    ) == D(-385)
    # 10x: allocated 30, LONG 2 @ 100, cva 1, lf 0.5: 100 − 28.5/2 = 85.75
    inp = inputs(D(30), [HealthPosition(1, LONG, D(100), D(2), D(1), D("0.5"))])
    assert liquidation_price(inp, 1, {}) == D("85.75")
    assert health(inp, {1: D("85.75")}) == 0
    assert is_liquidatable(health(inp, {1: D("85.74")}))
    assert not is_liquidatable(health(inp, {1: D("85.75")}))  # Symmio: strictly below zero
    short = inputs(D(30), [HealthPosition(1, SHORT, D(100), D(2), D(1), D("0.5"))])
    assert liquidation_price(short, 1, {}) == D("114.25")
    assert single_position_liquidation_price(
        position_type=SHORT, entry=D(100), quantity=D(2), allocated=D(30), cva=D(1), lf=D("0.5")
    ) == D("114.25")
    assert health_of(allocated=D(30), upnl=D(-28), cva=D(1), lf=D("0.5")) == D("0.5")


def test_hedged_symbol_has_no_liquidation_price_and_counts_its_spread() -> None:
    inp = inputs(
        D(10),
        [HealthPosition(1, LONG, D(100), D(1), D(1), D(0)), HealthPosition(1, SHORT, D(110), D(1), D(1), D(0))],
    )
    assert inp.active_symbols() == ()
    assert liquidation_price(inp, 1, {}) is None
    assert health(inp, {}) == D(10) + D(10) - D(2)  # the short gained 10 on the long, any mark


def test_multi_symbol_price_holds_the_other_marks() -> None:
    inp = inputs(
        D(100),
        [HealthPosition(1, LONG, D(100), D(1), D(5), D(5)), HealthPosition(2, SHORT, D(50), D(2), D(5), D(5))],
    )
    marks = {1: D(100), 2: D(60)}  # the short lost 20: health = 100 − 20 − 20 = 60
    assert health(inp, marks) == D(60)
    assert liquidation_price(inp, 1, marks) == D(40)
    assert liquidation_price(inp, 2, marks) == D(90)


# -- properties against the reference ------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(allocated=money, items=st.lists(positions(), min_size=1, max_size=6), marks=marks_st)
def test_health_matches_reference(allocated: Decimal, items: list[HealthPosition], marks: dict[int, Decimal]) -> None:
    assert health(inputs(allocated, items), marks) == reference_health(allocated, items, marks)


@settings(max_examples=400, deadline=None)
@given(allocated=money, items=st.lists(positions(), min_size=1, max_size=6), marks=marks_st, data=st.data())
def test_liquidation_price_zeroes_health_and_flips_its_sign(
    allocated: Decimal, items: list[HealthPosition], marks: dict[int, Decimal], data: st.DataObject
) -> None:
    inp = inputs(allocated, items)
    active = inp.active_symbols()
    if not active:
        return
    s = data.draw(st.sampled_from(active))
    price = liquidation_price(inp, s, marks)
    assert price is not None
    q = inp.exposures[s].net_quantity
    at = reference_health(allocated, items, {**marks, s: price})
    assert abs(at) <= abs(q) * abs(price) * D("1e-35") + D("1e-30")
    eps = max(abs(price), D(1)) * D("1e-12")
    below = reference_health(allocated, items, {**marks, s: price - eps})
    above = reference_health(allocated, items, {**marks, s: price + eps})
    if q > 0:  # net LONG: liquidated below the price
        assert below < 0 < above
    else:
        assert above < 0 < below


@settings(max_examples=300, deadline=None)
@given(
    allocated=money,
    items=st.lists(positions(), min_size=2, max_size=6),
    refs=marks_st,
    band=st.decimals(min_value=D("0.001"), max_value=D("0.2"), places=3),
    data=st.data(),
)
def test_guarded_key_is_safe_for_any_other_mark_in_the_band(
    allocated: Decimal,
    items: list[HealthPosition],
    refs: dict[int, Decimal],
    band: Decimal,
    data: st.DataObject,
) -> None:
    inp = inputs(allocated, items)
    active = inp.active_symbols()
    if not active:
        return
    s = data.draw(st.sampled_from(active))
    guarded = guarded_key(inp, s, refs, band)
    assert guarded is not None
    direction, key = guarded
    exact = liquidation_price(inp, s, refs)
    assert exact is not None
    if direction is Direction.BELOW:
        assert key >= exact
    else:
        assert key <= exact
    # Any other marks in their bands, the mark of s at the key (its safe edge): healthy.
    moved = {
        t: refs[t] * (1 + data.draw(st.decimals(min_value=-band, max_value=band, places=6))) for t in SYMBOLS if t != s
    }
    if key <= 0:
        return  # no positive mark is on the unsafe side of a LONG key ≤ 0
    assert reference_health(allocated, items, {**moved, s: key}) >= 0
