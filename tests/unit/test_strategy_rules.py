"""Strategy order rules (trading-rules.md §3): sub-order sizing, LIMIT / DCA conditions, the DCA
schedule, the invocation budget and the terminal statuses, plus a simulation of random ticks and
sub-order outcomes that checks the §3 invariants at every step."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from decimal import Decimal, localcontext
from fractions import Fraction

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from solver.db.models import STRATEGY_TERMINAL, StrategyStatus, StrategyType
from solver.strategy.rules import (
    LONG,
    RETRY_BACKOFF_S,
    SHORT,
    Finish,
    Market,
    Progress,
    Send,
    Sizing,
    Terms,
    Wait,
    dca_price,
    decide,
    failed,
    in_band,
    limit_eligible,
    opened,
    sent,
    sized,
)

pytestmark = pytest.mark.unit

D = Decimal
NOW = D(1_000_000)
MARKET = Market(price_precision=2, quantity_precision=2, min_quote_value=D(1))
ONE, TEN, HUNDRED = D(1), D(10), D(100)
PERMILLE, PERCENT = D("0.001"), D("0.01")


def limit(
    side: int = LONG,
    *,
    price: Decimal = TEN,
    slippage: Decimal = PERMILLE,
    leverage: Decimal = ONE,
    initial: Decimal = HUNDRED,
    max_suborders: int = 1,
    max_invocations: int | None = None,
) -> Terms:
    return Terms(
        type=StrategyType.LIMIT,
        position_type=side,
        leverage=leverage,
        initial_input=initial,
        max_suborders=max_suborders,
        max_invocations=max_suborders if max_invocations is None else max_invocations,
        slippage=slippage,
        limit_price=price,
    )


def dca(
    side: int = LONG,
    *,
    delay: int = 60,
    band: tuple[Decimal | None, Decimal | None] = (None, None),
    slippage: Decimal = PERCENT,
    leverage: Decimal = ONE,
    initial: Decimal = HUNDRED,
    max_suborders: int = 4,
    max_invocations: int | None = None,
) -> Terms:
    return Terms(
        type=StrategyType.DCA,
        position_type=side,
        leverage=leverage,
        initial_input=initial,
        max_suborders=max_suborders,
        max_invocations=max_suborders if max_invocations is None else max_invocations,
        slippage=slippage,
        delay_s=delay,
        band_from=band[0],
        band_to=band[1],
    )


def start(terms: Terms) -> Progress:
    return Progress(current_input=terms.initial_input)


def must_send(decision: object) -> Send:
    assert isinstance(decision, Send), decision
    return decision


# -- sizing: examples ---------------------------------------------------------------------------


def test_sized_splits_the_margin_evenly() -> None:
    # 100 over 4 sub-orders at 2x and price 10: margin 25, quantity 25 × 2 / 10 = 5.
    assert sized(D(100), 4, D(2), D(10), MARKET) == Sizing(margin=D(25), quantity=D(5), slots=1)


def test_sized_rounds_the_quantity_down_and_returns_the_margin_used() -> None:
    # margin 100 / 3 = 33.33…, quantity 33.33… / 7 = 4.76… → 4.7 (one decimal); used 4.7 × 7 = 32.9.
    market = Market(price_precision=2, quantity_precision=1, min_quote_value=D(1))
    s = sized(D(100), 3, D(1), D(7), market)
    assert s == Sizing(margin=D("32.9"), quantity=D("4.7"), slots=1)
    # At 5x the quantity is ×5 but the margin used is the same N / L.
    s = sized(D(100), 3, D(5), D(7), market)
    assert s is not None and s.quantity == D("23.8") and s.margin == D("23.8") * 7 / 5 == D("33.32")


def test_sized_merges_slices_below_the_minimum_quote_value() -> None:
    market = Market(price_precision=2, quantity_precision=0, min_quote_value=D(15))
    # 45 over 3: one slice of 15 reaches it and leaves 30, enough for more sub-orders.
    assert sized(D(45), 3, D(1), D(1), market) == Sizing(margin=D(15), quantity=D(15), slots=1)
    # 40 over 3: one slice (13.33 → 13) is below 15, two (26.66 → 26) reach it and leave 14, too
    # little for a sub-order of its own: the last takes the remainder.
    assert sized(D(40), 3, D(1), D(1), market) == Sizing(margin=D(40), quantity=D(40), slots=3)
    # 30 over 3: two slices (20) would leave 10 < 15: all of it at once.
    assert sized(D(30), 3, D(1), D(1), market) == Sizing(margin=D(30), quantity=D(30), slots=3)
    # With a minimum of 25 only the whole remainder reaches it.
    market = replace(market, min_quote_value=D(25))
    assert sized(D(30), 3, D(1), D(1), market) == Sizing(margin=D(30), quantity=D(30), slots=3)


def test_sized_merges_slices_that_buy_less_than_one_step() -> None:
    # 150 over 3 at price 100 with whole units: one slice buys 0.5 → 0, two buy 1 unit.
    market = Market(price_precision=2, quantity_precision=0, min_quote_value=D(0))
    assert sized(D(150), 3, D(1), D(100), market) == Sizing(margin=D(100), quantity=D(1), slots=2)


def test_sized_the_last_sub_order_takes_the_remainder() -> None:
    assert sized(D("10.07"), 1, D(1), D(1), MARKET) == Sizing(margin=D("10.07"), quantity=D("10.07"), slots=1)
    # ... as far as the quantity step allows: what the step cannot buy stays in current_input.
    market = replace(MARKET, quantity_precision=0)
    assert sized(D("10.07"), 1, D(1), D(1), market) == Sizing(margin=D(10), quantity=D(10), slots=1)


def test_sized_is_none_when_even_the_whole_remainder_is_too_small() -> None:
    market = Market(price_precision=2, quantity_precision=2, min_quote_value=D(10))
    assert sized(D(5), 3, D(1), D(1), market) is None  # below the minimum quote value
    assert sized(D("9.99"), 1, D(1), D(1), market) is None
    assert sized(D(10), 1, D(1), D(1), market) == Sizing(D(10), D(10), 1)  # the minimum is inclusive
    whole = Market(price_precision=2, quantity_precision=0, min_quote_value=D(0))
    assert sized(D(5), 1, D(1), D(100), whole) is None  # 0.05 units: less than one step
    assert sized(D(5), 1, D(20), D(100), whole) == Sizing(D(5), D(1), 1)  # 5 × 20 / 100 = 1 unit


def test_sized_rejects_degenerate_inputs() -> None:
    assert sized(D(100), 0, D(1), D(1), MARKET) is None
    assert sized(D(0), 3, D(1), D(1), MARKET) is None
    assert sized(D(100), 3, D(1), D(0), MARKET) is None


def test_sized_quantity_at_an_exact_step_boundary() -> None:
    """Margin 100 / 3 at 3x and price 1 buys exactly 100 units: the spec's formula (margin ×
    leverage / price, rounded down) gives 100.00. KNOWN BUG (rules.py `sized`): the slice is
    computed first (33.33…33, rounded to 28 digits) and × 3 gives 99.99…99, which rounds down to
    99.99: one quantity step is lost whenever margin × leverage / price lands exactly on a step."""
    s = sized(D(100), 3, D(3), D(1), MARKET)
    assert s is not None
    assert s.slots == 1
    assert s.quantity == D(100)


# -- sizing: against a slow exact reference -----------------------------------------------------


def reference_sized(
    current_input: Decimal, remaining: int, leverage: Decimal, price: Decimal, market: Market
) -> tuple[Fraction, Fraction, int] | None:
    """(margin used, quantity, slots), in exact rational arithmetic, slot count by slot count."""
    if remaining < 1 or current_input <= 0 or price <= 0:
        return None
    step = Fraction(1, 10**market.quantity_precision)
    lev, px, minimum = Fraction(leverage), Fraction(price), Fraction(market.min_quote_value)
    for slots in range(1, remaining + 1):
        margin = Fraction(current_input) * slots / remaining
        steps = math.floor(margin * lev / px / step)
        if steps <= 0:
            continue
        quantity = steps * step
        used = quantity * px / lev
        if used >= minimum:
            if slots < remaining and Fraction(current_input) - used < minimum:
                # the remainder could not be a sub-order: this one takes everything
                quantity = math.floor(Fraction(current_input) * lev / px / step) * step
                return quantity * px / lev, quantity, remaining
            return used, quantity, slots
    return None


def check_against_reference(ci: Decimal, remaining: int, lev: Decimal, price: Decimal, market: Market) -> None:
    got = sized(ci, remaining, lev, price, market)
    want = reference_sized(ci, remaining, lev, price, market)
    if want is None:
        assert got is None
        return
    assert got is not None
    used, quantity, slots = want
    assert got.slots == slots
    assert Fraction(got.quantity) == quantity
    # The margin is N / L of the quantity: exact when it is a finite decimal; otherwise within the
    # Money scale (18 decimals), the precision the database keeps.
    assert abs(Fraction(got.margin) - used) <= Fraction(1, 10**18)
    assert got.margin <= ci


markets = st.builds(
    Market,
    price_precision=st.integers(0, 4),
    quantity_precision=st.integers(0, 4),
    min_quote_value=st.sampled_from([D(0), D(1), D(5), D(10), D(50)]),
)
amounts = st.decimals(min_value=D("0.01"), max_value=D(10_000), places=2)
prices = st.decimals(min_value=D("0.01"), max_value=D(50_000), places=2)


@settings(max_examples=400, deadline=None)
@given(
    ci=amounts,
    remaining=st.sampled_from([1, 2, 4, 5, 8, 10]),
    lev=st.sampled_from([D(1), D(2), D(4), D(5), D(10), D(20), D("2.5"), D("0.5")]),
    price=prices,
    market=markets,
)
def test_sized_matches_the_reference_when_the_arithmetic_is_exact(
    ci: Decimal, remaining: int, lev: Decimal, price: Decimal, market: Market
) -> None:
    """Slices and N / L are finite decimals here: sizing must agree with the reference exactly."""
    check_against_reference(ci, remaining, lev, price, market)


@settings(max_examples=400, deadline=None)
@given(
    ci=amounts,
    remaining=st.integers(1, 12),
    lev=st.sampled_from([D(1), D(2), D(3), D(7), D(10), D("1.5"), D("2.5"), D(25), D(33)]),
    price=prices,
    market=markets,
)
@example(ci=D(1), remaining=3, lev=D(3), price=D(1), market=Market(2, 0, D(0)))
@example(ci=D(100), remaining=3, lev=D(3), price=D(10), market=Market(2, 2, D(1)))
def test_sized_matches_the_reference(ci: Decimal, remaining: int, lev: Decimal, price: Decimal, market: Market) -> None:
    """Any split and leverage. KNOWN BUG: fails at exact step boundaries (see
    test_sized_quantity_at_an_exact_step_boundary), e.g. ci=1, remaining=3, leverage=3, price=1."""
    check_against_reference(ci, remaining, lev, price, market)


# -- LIMIT eligibility --------------------------------------------------------------------------


def test_limit_eligibility_the_seeds_example() -> None:
    """Sell (SHORT) at ≥ 10 with slippage 0.001 fires at 10.01, not at 10.009."""
    assert limit_eligible(SHORT, D("10.01"), D(10), D("0.001"))
    assert limit_eligible(SHORT, D("10.02"), D(10), D("0.001"))
    assert not limit_eligible(SHORT, D("10.009"), D(10), D("0.001"))
    assert not limit_eligible(SHORT, D(10), D(10), D("0.001"))


def test_limit_eligibility_long_side() -> None:
    """Buy (LONG) at ≤ 10 with slippage 0.001 fires at 9.99 and below."""
    assert limit_eligible(LONG, D("9.99"), D(10), D("0.001"))
    assert limit_eligible(LONG, D("9.5"), D(10), D("0.001"))
    assert not limit_eligible(LONG, D("9.991"), D(10), D("0.001"))
    assert not limit_eligible(LONG, D(10), D(10), D("0.001"))


def test_decide_limit_sends_at_the_users_price_only_when_eligible() -> None:
    terms = limit(SHORT, price=D(10), slippage=D("0.001"))
    p = start(terms)
    assert decide(terms, p, MARKET, D("10.009"), NOW) == Wait("limit price not reached")
    send = must_send(decide(terms, p, MARKET, D("10.01"), NOW))
    assert send.price == D(10) and not send.market_order  # the request is a LIMIT at P
    assert send.sizing == Sizing(margin=D(100), quantity=D(10), slots=1)

    terms = limit(LONG, price=D(10), slippage=D("0.001"))
    assert decide(terms, start(terms), MARKET, D("9.991"), NOW) == Wait("limit price not reached")
    assert must_send(decide(terms, start(terms), MARKET, D("9.99"), NOW)).price == D(10)


@settings(max_examples=300, deadline=None)
@given(
    side=st.sampled_from([LONG, SHORT]),
    mark=st.decimals(min_value=D(1), max_value=D(20), places=4),
    price=st.decimals(min_value=D(1), max_value=D(20), places=2),
    slippage=st.decimals(min_value=D("0.0001"), max_value=D(1), places=4),
)
def test_limit_eligibility_matches_the_rule(side: int, mark: Decimal, price: Decimal, slippage: Decimal) -> None:
    if side == LONG:
        expected = Fraction(mark) <= Fraction(price) * (1 - Fraction(slippage))
    else:
        expected = Fraction(mark) >= Fraction(price) * (1 + Fraction(slippage))
    assert limit_eligible(side, mark, price, slippage) == expected


# -- DCA ----------------------------------------------------------------------------------------


def test_dca_price_rounds_toward_the_mark() -> None:
    # LONG: mark × (1 + s) rounded down; SHORT: mark × (1 − s) rounded up.
    assert dca_price(LONG, D(100), D("0.01"), 2) == D("101.00")
    assert dca_price(LONG, D("100.12"), D("0.001"), 2) == D("100.22")  # 100.22012 → 100.22
    assert dca_price(SHORT, D("100.12"), D("0.001"), 2) == D("100.02")  # 100.01988 → 100.02
    assert dca_price(SHORT, D(100), D("0.01"), 0) == D(99)
    assert dca_price(LONG, D("1.23456"), D("0.1"), 3) == D("1.358")  # 1.358016 → 1.358
    assert dca_price(SHORT, D("1.23456"), D("0.1"), 3) == D("1.112")  # 1.111104 → 1.112


@settings(max_examples=300, deadline=None)
@given(
    side=st.sampled_from([LONG, SHORT]),
    mark=st.decimals(min_value=D("0.01"), max_value=D(100_000), places=2),
    slippage=st.decimals(min_value=D("0.0001"), max_value=D("0.5"), places=4),
    precision=st.integers(0, 6),
)
def test_dca_price_is_within_one_step_inside_the_slippage(
    side: int, mark: Decimal, slippage: Decimal, precision: int
) -> None:
    step = Fraction(1, 10**precision)
    price = Fraction(dca_price(side, mark, slippage, precision))
    assert price / step == int(price / step)  # on the price grid
    m = Fraction(mark)
    if side == LONG:
        bound = m * (1 + Fraction(slippage))
        floor_bound = math.floor(bound / step) * step
        ceil_mark = math.ceil(m / step) * step
        # inside the slippage, rounded toward the mark, but never under the mark
        assert price == max(floor_bound, ceil_mark)
        assert price >= m
    else:
        bound = m * (1 - Fraction(slippage))
        ceil_bound = math.ceil(bound / step) * step
        floor_mark = math.floor(m / step) * step
        assert price == max(min(ceil_bound, floor_mark), step)
        assert price > 0
        assert price <= m or price == step


def test_decide_dca_sends_a_market_order_at_the_slippage_price() -> None:
    terms = dca(LONG, slippage=D("0.01"))
    send = must_send(decide(terms, start(terms), MARKET, D(100), NOW))
    assert send.market_order
    assert send.price == D(101)
    assert send.sizing == Sizing(margin=D("24.24"), quantity=D("0.24"), slots=1)  # 25 / 101 = 0.2475 → 0.24
    assert must_send(decide(dca(SHORT), start(terms), MARKET, D(100), NOW)).price == D(99)


def test_dca_band_wait_does_not_consume_an_invocation() -> None:
    terms = dca(band=(D(90), D(110)))
    p = start(terms)
    for mark in (D("89.99"), D("110.01"), D(200), D(1)):
        assert decide(terms, p, MARKET, mark, NOW) == Wait("mark outside the price range")
    # The waits changed nothing: the first sub-order in the band is still invocation 1 of 4.
    assert p == start(terms)
    for mark in (D(90), D(100), D(110)):  # the band is inclusive
        send = must_send(decide(terms, p, MARKET, mark, NOW))
        assert sent(p, send.sizing).invocations_executed == 1
    assert in_band(D(5), None, D(10)) and in_band(D(50), D(10), None) and in_band(D(1), None, None)
    assert not in_band(D(11), None, D(10)) and not in_band(D(9), D(10), None)


def test_dca_schedule() -> None:
    terms = dca(delay=60, max_suborders=5)
    p = start(terms)
    # The first sub-order at once, the next one `delay` later.
    send = must_send(decide(terms, p, MARKET, D(100), NOW))
    p = opened(terms, sent(p, send.sizing), slots=1, quantity=send.sizing.quantity, sent_at=NOW)
    assert p.next_due == NOW + 60
    assert decide(terms, p, MARKET, D(100), NOW + 59) == Wait("not due yet")
    # On time: previous due + delay.
    send = must_send(decide(terms, p, MARKET, D(100), NOW + 60))
    p = opened(terms, sent(p, send.sizing), slots=1, quantity=send.sizing.quantity, sent_at=NOW + 60)
    assert p.next_due == NOW + 120
    # Sent less than a delay late (it waited for the band): the grid holds, due at 180.
    send = must_send(decide(terms, p, MARKET, D(100), NOW + 150))
    p = opened(terms, sent(p, send.sizing), slots=1, quantity=send.sizing.quantity, sent_at=NOW + 150)
    assert p.next_due == NOW + 180
    # Sent a whole delay late or more: no burst, the next one a delay after this one.
    send = must_send(decide(terms, p, MARKET, D(100), NOW + 260))
    p = opened(terms, sent(p, send.sizing), slots=1, quantity=send.sizing.quantity, sent_at=NOW + 260)
    assert p.next_due == NOW + 320
    # A send before its due time (not something decide does) still keeps previous due + delay.
    q = opened(terms, sent(replace(p, next_due=NOW + 400), send.sizing), slots=1, quantity=D(1), sent_at=NOW + 350)
    assert q.next_due == NOW + 460


def test_limit_opened_keeps_the_due_time() -> None:
    terms = limit(max_suborders=2)
    p = replace(start(terms), next_due=NOW - 5)
    send = must_send(decide(terms, p, MARKET, D(9), NOW))
    assert opened(terms, sent(p, send.sizing), slots=1, quantity=D(5), sent_at=NOW).next_due == NOW - 5


# -- the invocation budget ----------------------------------------------------------------------


def test_sent_takes_the_margin_and_an_invocation() -> None:
    terms = limit(max_suborders=4)
    p = start(terms)
    send = must_send(decide(terms, p, MARKET, D(9), NOW))
    assert send.sizing == Sizing(margin=D(25), quantity=D("2.5"), slots=1)
    q = sent(p, send.sizing)
    assert (q.current_input, q.invocations_executed, q.active_transactions) == (D(75), 1, 1)
    assert (q.current_output, q.suborders_executed) == (D(0), 0)
    assert decide(terms, q, MARKET, D(9), NOW) == Wait("sub-order in flight")


def test_opened_counts_the_sub_order_and_its_quantity() -> None:
    terms = limit(max_suborders=4)
    p = sent(start(terms), Sizing(D(50), D(5), 2))
    q = opened(terms, p, slots=2, quantity=D("4.5"), sent_at=NOW)  # a partial fill counts what filled
    assert (q.current_input, q.current_output, q.suborders_executed, q.active_transactions) == (D(50), D("4.5"), 2, 0)
    assert q.invocations_executed == 1


def test_failed_returns_the_margin_and_backs_off() -> None:
    terms = limit(max_suborders=4, max_invocations=10)
    p = start(terms)
    send = must_send(decide(terms, p, MARKET, D(9), NOW))
    q = failed(sent(p, send.sizing), margin=send.sizing.margin, now=NOW + 1)
    assert (q.current_input, q.invocations_executed, q.active_transactions) == (D(100), 1, 0)
    assert (q.current_output, q.suborders_executed) == (D(0), 0)
    assert q.next_due == NOW + 1 + RETRY_BACKOFF_S
    assert decide(terms, q, MARKET, D(9), NOW + 1 + RETRY_BACKOFF_S - D("0.001")) == Wait("not due yet")
    assert must_send(decide(terms, q, MARKET, D(9), NOW + 1 + RETRY_BACKOFF_S)).sizing == send.sizing
    # A DCA due later than the back-off keeps its due time.
    d = dca(delay=60)
    p = replace(sent(start(d), Sizing(D(25), D(1), 1)), next_due=NOW + 60)
    assert failed(p, margin=D(25), now=NOW).next_due == NOW + 60


def test_max_invocations_ends_with_the_partial_fill_kept() -> None:
    terms = limit(max_suborders=2, max_invocations=3)
    p = start(terms)
    t = NOW
    send = must_send(decide(terms, p, MARKET, D(9), t))
    p = opened(terms, sent(p, send.sizing), slots=1, quantity=send.sizing.quantity, sent_at=t)
    for _ in range(2):
        send = must_send(decide(terms, p, MARKET, D(9), t))
        p = failed(sent(p, send.sizing), margin=send.sizing.margin, now=t)
        t += RETRY_BACKOFF_S
    fin = decide(terms, p, MARKET, D(9), t)
    assert isinstance(fin, Finish) and fin.status == StrategyStatus.MAX_RETRIES_EXCEEDED
    assert fin.reason is not None and "3 invocations" in fin.reason and "1 of 2" in fin.reason
    assert (p.current_output, p.suborders_executed, p.current_input) == (D(5), 1, D(50))
    # It finishes without a price too (the engine checks right after settling a sub-order).
    assert decide(terms, p, MARKET, None, t) == fin


def test_all_sub_orders_done_is_executed_even_on_the_last_invocation() -> None:
    terms = limit(max_suborders=2, max_invocations=2)
    p = start(terms)
    for _ in range(2):
        send = must_send(decide(terms, p, MARKET, D(9), NOW))
        p = opened(terms, sent(p, send.sizing), slots=1, quantity=send.sizing.quantity, sent_at=NOW)
    assert (p.suborders_executed, p.invocations_executed, p.current_input, p.current_output) == (2, 2, D(0), D(10))
    assert decide(terms, p, MARKET, None, NOW) == Finish(StrategyStatus.EXECUTED)


def test_merged_slots_finish_the_order_sooner() -> None:
    market = Market(price_precision=2, quantity_precision=0, min_quote_value=D(40))
    terms = limit(max_suborders=4, initial=D(100))
    p = start(terms)
    send = must_send(decide(terms, p, market, D(1), NOW))  # price 10, 25 per slice: two merged
    assert send.sizing == Sizing(margin=D(50), quantity=D(5), slots=2)
    p = opened(terms, sent(p, send.sizing), slots=2, quantity=D(5), sent_at=NOW)
    send = must_send(decide(terms, p, market, D(1), NOW))
    assert send.sizing == Sizing(margin=D(50), quantity=D(5), slots=2)
    p = opened(terms, sent(p, send.sizing), slots=2, quantity=D(5), sent_at=NOW)
    assert p.suborders_executed == 4 and p.invocations_executed == 2
    assert decide(terms, p, market, D(1), NOW) == Finish(StrategyStatus.EXECUTED)


def test_cancellation() -> None:
    terms = limit()
    p = replace(start(terms), status=StrategyStatus.REQUESTED_CANCELLATION)
    assert decide(terms, p, MARKET, None, NOW) == Finish(StrategyStatus.CANCELLED_BY_USER)
    assert decide(terms, p, MARKET, D(9), NOW) == Finish(StrategyStatus.CANCELLED_BY_USER)
    in_flight = replace(p, active_transactions=1)
    assert decide(terms, in_flight, MARKET, D(9), NOW) == Wait("sub-order in flight")


def test_remainder_below_the_minimum() -> None:
    market = Market(price_precision=2, quantity_precision=2, min_quote_value=D(10))
    terms = limit(max_suborders=3, initial=D(100))
    partly = replace(start(terms), current_input=D(5), suborders_executed=1, invocations_executed=1)
    fin = decide(terms, partly, market, D(9), NOW)
    assert isinstance(fin, Finish) and fin.status == StrategyStatus.EXECUTED
    assert fin.reason is not None and "5" in fin.reason and "10" in fin.reason
    nothing = replace(start(terms), current_input=D(5))
    fin = decide(terms, nothing, market, D(9), NOW)
    assert isinstance(fin, Finish) and fin.status == StrategyStatus.CANCELLED_BY_SYSTEM
    # ... but only once a price is known (the size depends on it).
    assert decide(terms, nothing, market, None, NOW) == Wait("no fresh price")


def test_no_fresh_price_waits() -> None:
    for terms in (limit(), dca()):
        assert decide(terms, start(terms), MARKET, None, NOW) == Wait("no fresh price")


@pytest.mark.parametrize("status", sorted(STRATEGY_TERMINAL))
def test_terminal_statuses_never_act(status: StrategyStatus) -> None:
    for terms in (limit(), dca()):
        p = replace(start(terms), status=status)
        assert isinstance(decide(terms, p, MARKET, D(9), NOW + 10**6), Wait)


# -- simulation ---------------------------------------------------------------------------------


@dataclass
class Sim:
    terms: Terms
    market: Market
    p: Progress
    now: Decimal = NOW
    in_flight: list[tuple[Sizing, Decimal]] = field(default_factory=list)  # (sizing, sent_at)
    opened_margins: list[Decimal] = field(default_factory=list)
    opened_quantities: list[Decimal] = field(default_factory=list)
    sends: int = 0


def conserved(sim: Sim) -> bool:
    with localcontext() as ctx:
        ctx.prec = 200  # exact for these magnitudes: no rounding hides a lost fraction
        total = sim.p.current_input + sum((s.margin for s, _ in sim.in_flight), D(0)) + sum(sim.opened_margins, D(0))
        return total == sim.terms.initial_input


def apply(sim: Sim, decision: object) -> None:
    if isinstance(decision, Finish):
        assert not sim.in_flight, "finished with a sub-order in flight"
        sim.p = replace(sim.p, status=decision.status)


def tick(sim: Sim, dt: Decimal, mark: Decimal | None) -> None:
    sim.now += dt
    t, p = sim.terms, sim.p
    decision = decide(t, p, sim.market, mark, sim.now)
    if p.status in STRATEGY_TERMINAL:
        assert isinstance(decision, Wait)
    if isinstance(decision, Send):
        assert mark is not None and p.status == StrategyStatus.ACTIVE and not sim.in_flight
        assert p.next_due is None or sim.now >= p.next_due
        if t.type == StrategyType.LIMIT:
            assert t.limit_price is not None
            assert limit_eligible(t.position_type, mark, t.limit_price, t.slippage)
            assert decision.price == t.limit_price and not decision.market_order
        else:
            assert in_band(mark, t.band_from, t.band_to)
            assert decision.price == dca_price(t.position_type, mark, t.slippage, sim.market.price_precision)
            assert decision.market_order
        s = decision.sizing
        assert s.quantity > 0 and 0 < s.margin <= p.current_input
        assert s.margin >= sim.market.min_quote_value
        assert 1 <= s.slots <= t.max_suborders - p.suborders_executed
        sim.p = sent(p, s)
        sim.in_flight.append((s, sim.now))
        sim.sends += 1
    elif isinstance(decision, Wait):
        pass  # nothing to apply: a wait consumes nothing
    else:
        apply(sim, decision)


def settle(sim: Sim, ok: bool, fill: Fraction, dt: Decimal) -> None:
    if not sim.in_flight:
        return
    sim.now += dt
    sizing, sent_at = sim.in_flight.pop()
    if ok:
        quantity = (sizing.quantity * D(fill.numerator) / D(fill.denominator)).quantize(sizing.quantity)
        before = sim.p.next_due
        sim.p = opened(sim.terms, sim.p, slots=sizing.slots, quantity=quantity, sent_at=sent_at)
        sim.opened_margins.append(sizing.margin)
        sim.opened_quantities.append(quantity)
        if sim.terms.type == StrategyType.DCA:
            assert sim.terms.delay_s is not None and sim.p.next_due is not None
            # The grid from the previous due time, unless this one was a whole delay late: then
            # a delay after its send. Never at or before the send itself (no burst).
            assert sim.p.next_due > sent_at
            if before is not None:
                grid = before + sim.terms.delay_s
                assert sim.p.next_due == (grid if grid > sent_at else sent_at + sim.terms.delay_s)
    else:
        sim.p = failed(sim.p, margin=sizing.margin, now=sim.now)
        assert sim.p.next_due is not None and sim.p.next_due >= sim.now + RETRY_BACKOFF_S
    # The engine checks for the end right after settling, without a price.
    apply(sim, decide(sim.terms, sim.p, sim.market, None, sim.now))


def cancel(sim: Sim) -> None:
    if sim.p.status == StrategyStatus.ACTIVE:
        sim.p = replace(sim.p, status=StrategyStatus.REQUESTED_CANCELLATION)


def check_invariants(sim: Sim, before: Progress) -> None:
    t, p = sim.terms, sim.p
    assert D(0) <= p.current_input <= t.initial_input
    assert p.current_output >= before.current_output
    assert p.current_output == sum(sim.opened_quantities, D(0))
    assert before.invocations_executed <= p.invocations_executed <= t.max_invocations
    assert p.invocations_executed == sim.sends  # every attempt, and only attempts, consume one
    assert before.suborders_executed <= p.suborders_executed <= t.max_suborders
    assert p.active_transactions in (0, 1) and p.active_transactions == len(sim.in_flight)
    assert conserved(sim), (p.current_input, sim.in_flight, sim.opened_margins, t.initial_input)
    if before.status in STRATEGY_TERMINAL:
        assert p == before  # terminal statuses are final, and nothing moves any more
    if p.status == StrategyStatus.MAX_RETRIES_EXCEEDED:
        assert p.invocations_executed == t.max_invocations
    if p.status == StrategyStatus.CANCELLED_BY_USER:
        assert before.status in (StrategyStatus.REQUESTED_CANCELLATION, StrategyStatus.CANCELLED_BY_USER)


marks = st.one_of(st.none(), st.decimals(min_value=D(8), max_value=D(12), places=3))
actions = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.sampled_from([D(0), D(1), D(2), D(30), D(61)]), marks),
        st.tuples(st.just("open"), st.sampled_from([Fraction(1), Fraction(1), Fraction(1, 2)]), st.just(D(1))),
        st.tuples(st.just("fail"), st.just(Fraction(0)), st.sampled_from([D(0), D(1), D(5)])),
        st.tuples(st.just("cancel"), st.just(Fraction(0)), st.just(D(0))),
    ),
    max_size=60,
)


@st.composite
def scenarios(draw: st.DrawFn, leverages: st.SearchStrategy[Decimal]) -> tuple[Terms, Market]:
    kind = draw(st.sampled_from([StrategyType.LIMIT, StrategyType.DCA]))
    max_suborders = draw(st.integers(1, 6))
    band = draw(st.sampled_from([(None, None), (D(9), D(11)), (D("9.5"), None), (None, D("10.5")), (D(10), D(10))]))
    terms = Terms(
        type=kind,
        position_type=draw(st.sampled_from([LONG, SHORT])),
        leverage=draw(leverages),
        initial_input=draw(st.decimals(min_value=D(1), max_value=D(10_000), places=2)),
        max_suborders=max_suborders,
        max_invocations=draw(st.integers(max_suborders, max_suborders + 5)),
        slippage=draw(st.sampled_from([D("0.001"), D("0.01"), D("0.05")])),
        limit_price=D(10) if kind == StrategyType.LIMIT else None,
        delay_s=draw(st.sampled_from([1, 30, 60])) if kind == StrategyType.DCA else None,
        band_from=band[0] if kind == StrategyType.DCA else None,
        band_to=band[1] if kind == StrategyType.DCA else None,
    )
    market = Market(
        price_precision=draw(st.integers(1, 4)),
        quantity_precision=draw(st.integers(0, 3)),
        min_quote_value=draw(st.sampled_from([D(0), D(1), D(5), D(20), D(200)])),
    )
    return terms, market


def simulate(scenario: tuple[Terms, Market], steps: list[tuple[str, object, object]]) -> None:
    terms, market = scenario
    sim = Sim(terms, market, start(terms))
    for action, a, b in steps:
        before = sim.p
        if action == "tick":
            assert isinstance(a, Decimal)
            tick(sim, a, b if isinstance(b, Decimal) else None)
        elif action in ("open", "fail"):
            assert isinstance(a, Fraction) and isinstance(b, Decimal)
            settle(sim, action == "open", a, b)
        else:
            cancel(sim)
        check_invariants(sim, before)


EXACT_LEVERAGES = st.sampled_from([D(1), D(2), D(4), D(5), D(10), D(20), D("2.5"), D("0.5")])
ANY_LEVERAGES = st.sampled_from([D(1), D(3), D(7), D("1.5"), D(6), D(9), D(11), D(33)])


@settings(max_examples=300, deadline=None)
@given(scenario=scenarios(EXACT_LEVERAGES), steps=actions)
def test_simulation_keeps_the_invariants(
    scenario: tuple[Terms, Market], steps: list[tuple[str, object, object]]
) -> None:
    """Random ticks / outcomes / cancels; leverages whose N / L is a finite decimal."""
    simulate(scenario, steps)


@settings(max_examples=200, deadline=None)
@given(scenario=scenarios(ANY_LEVERAGES), steps=actions)
@example(
    scenario=(
        limit(SHORT, leverage=D(3), initial=D("1.34"), max_suborders=3),
        Market(price_precision=1, quantity_precision=1, min_quote_value=D(0)),
    ),
    steps=[("tick", D(0), D("10.01"))],
)
def test_simulation_keeps_the_invariants_at_any_leverage(
    scenario: tuple[Terms, Market], steps: list[tuple[str, object, object]]
) -> None:
    """Same, at leverages where N / L = quantity × price / leverage is not a finite decimal.
    KNOWN BUG (rules.py `sized`): the margin is not rounded to a fixed scale, so `current_input −
    margin` is rounded to 28 significant digits and current_input + Σ margins drifts from
    initial_input (see test_margin_accounting_is_exact_at_leverage_3)."""
    simulate(scenario, steps)


def test_margin_accounting_is_exact_at_leverage_3() -> None:
    """KNOWN BUG (see above): 1000 in 70 sub-orders at 3x, price 10, whole units: the first buys
    4 units, margin 4 × 10 / 3 = 13.33…33 (28 digits); current_input = 1000 − 13.33…33 is rounded
    to 986.66…667, so the exact sum of the two is 1000.00…0003, not 1000."""
    terms = limit(LONG, price=D(10), leverage=D(3), initial=D(1000), max_suborders=70)
    market = Market(price_precision=2, quantity_precision=0, min_quote_value=D(1))
    send = must_send(decide(terms, start(terms), market, D(9), NOW))
    assert send.sizing.quantity == D(4)
    p = sent(start(terms), send.sizing)
    with localcontext() as ctx:
        ctx.prec = 200
        assert p.current_input + send.sizing.margin == terms.initial_input
