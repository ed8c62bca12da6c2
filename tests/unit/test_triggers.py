"""Pure stop loss / take profit logic: fire rules, close prices, the sorted books, the FSM."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from solver.db.models import TRIGGER_ACTIVE, TRIGGER_TERMINAL, TriggerKind
from solver.db.models import TriggerStatus as T
from solver.db.models.trigger_order import ACTIVE_TRIGGER_WHERE
from solver.db.types import in_check
from solver.orders.fsm import TRIGGER_TRANSITIONS, IllegalTransition, check_transition, is_terminal
from solver.orders.triggers import (
    LONG,
    SHORT,
    STOP_LOSS,
    TAKE_PROFIT,
    Trigger,
    TriggerBooks,
    close_price,
    crosses,
    fires_below,
    placement_error,
)
from solver.risk.fills import close_fill_price

pytestmark = pytest.mark.unit

D = Decimal


# --- fire rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "kind", "level", "mark", "fires"),
    [
        (LONG, STOP_LOSS, D(100), D(101), False),
        (LONG, STOP_LOSS, D(100), D(100), True),  # mark ≤ sl
        (LONG, STOP_LOSS, D(100), D(99), True),
        (LONG, TAKE_PROFIT, D(110), D(109.9), False),
        (LONG, TAKE_PROFIT, D(110), D(110), True),  # mark ≥ tp
        (SHORT, STOP_LOSS, D(110), D(109), False),
        (SHORT, STOP_LOSS, D(110), D(110), True),  # mark ≥ sl
        (SHORT, TAKE_PROFIT, D(90), D(90), True),  # mark ≤ tp
        (SHORT, TAKE_PROFIT, D(90), D(91), False),
    ],
)
def test_crosses(side: int, kind: str, level: Decimal, mark: Decimal, fires: bool) -> None:
    assert crosses(side, kind, level, mark) is fires
    assert (placement_error(side, kind, level, mark) is not None) is fires


def test_directions_and_bad_input() -> None:
    assert fires_below(LONG, STOP_LOSS) and fires_below(SHORT, TAKE_PROFIT)
    assert not fires_below(LONG, TAKE_PROFIT) and not fires_below(SHORT, STOP_LOSS)
    with pytest.raises(ValueError, match="position type"):
        fires_below(2, STOP_LOSS)
    with pytest.raises(ValueError, match="kind"):
        fires_below(LONG, "trailing")
    assert TriggerKind.STOP_LOSS == STOP_LOSS and TriggerKind.TAKE_PROFIT == TAKE_PROFIT


def test_placement_messages_say_which_side() -> None:
    assert (
        placement_error(LONG, STOP_LOSS, D(100), D(99))
        == "The stop loss of a LONG must be below the current mark price."
    )
    assert placement_error(SHORT, TAKE_PROFIT, D(100), D(101)) is None
    msg = placement_error(SHORT, STOP_LOSS, D(100), D(101))
    assert msg is not None and "above" in msg and "SHORT" in msg


# --- close price ---------------------------------------------------------------------------


def test_close_price_examples() -> None:
    # LONG at 60000 with 1 %: 59400 exactly; SHORT 60600.
    assert close_price(D(60000), LONG, D("0.01"), 1) == D("59400.0")
    assert close_price(D(60000), SHORT, D("0.01"), 1) == D("60600.0")
    # Rounded away from the mark: down for a LONG, up for a SHORT.
    assert close_price(D("60000.37"), LONG, D("0.01"), 1) == D("59400.3")  # 59400.3663
    assert close_price(D("60000.37"), SHORT, D("0.01"), 1) == D("60600.4")  # 60600.3737
    # Too small for the precision: a LONG never asks 0.
    assert close_price(D("0.00001"), LONG, D("0.01"), 2) == D("0.0000099")
    with pytest.raises(ValueError):
        close_price(D(1), 3, D("0.01"), 1)


marks = st.decimals(min_value=D("0.0001"), max_value=D(10**7), places=6, allow_nan=False, allow_infinity=False)
slippages = st.decimals(min_value=D("0.0001"), max_value=D("0.2"), places=4)
fees = st.decimals(min_value=D(0), max_value=D("0.005"), places=5)
precisions = st.integers(min_value=0, max_value=8)


@given(mark=marks, side=st.sampled_from([LONG, SHORT]), slip=slippages, fee=fees, precision=precisions)
def test_close_price_is_fillable_and_bounded(
    mark: Decimal, side: int, slip: Decimal, fee: Decimal, precision: int
) -> None:
    price = close_price(mark, side, slip, precision)
    assert price > 0
    if side == LONG:
        assert price <= mark * (1 - slip)
        if mark * (1 - slip) >= D(1).scaleb(-precision):
            assert price.as_tuple().exponent == -precision
            assert mark * (1 - slip) - price < D(1).scaleb(-precision)
    else:
        assert price >= mark * (1 + slip)
        assert price - mark * (1 + slip) < D(1).scaleb(-precision)
    # When the slippage covers the hedger fee, the solver's own fill rule accepts the close at
    # the same mark (a price rounded to the precision is what the worker fills at).
    if slip >= fee and mark >= 1:
        fill = close_fill_price(mark=mark, position_type=side, requested=price, fee=fee, precision=precision)
        assert fill is not None


# --- books ---------------------------------------------------------------------------------


def _reference(orders: dict[int, Trigger], symbol_id: int, mark: Decimal) -> set[int]:
    return {
        t.order_id
        for t in orders.values()
        if t.symbol_id == symbol_id and crosses(t.position_type, t.kind, t.level, mark)
    }


def test_books_basic() -> None:
    books = TriggerBooks()
    long_sl = Trigger(1, 10, 1, LONG, STOP_LOSS, D(100))
    long_tp = Trigger(2, 10, 1, LONG, TAKE_PROFIT, D(120))
    short_sl = Trigger(3, 11, 1, SHORT, STOP_LOSS, D(115))
    short_tp = Trigger(4, 11, 1, SHORT, TAKE_PROFIT, D(95))
    other = Trigger(5, 12, 2, LONG, STOP_LOSS, D(1000))
    for t in (long_sl, long_tp, short_sl, short_tp, other):
        books.add(t)
    assert len(books) == 5 and 3 in books
    assert books.pop_crossed(1, D(110)) == []
    assert {t.order_id for t in books.crossed(1, D(116))} == {3}
    assert {t.order_id for t in books.pop_crossed(1, D(100))} == {1}
    assert books.pop_crossed(1, D(100)) == []  # popped once
    assert {t.order_id for t in books.pop_crossed(1, D(130))} == {2, 3}
    assert {t.order_id for t in books.pop_crossed(1, D(1))} == {4}
    assert len(books) == 1 and books.remove(5) == other and books.remove(5) is None
    with pytest.raises(ValueError):
        books.add(Trigger(6, 1, 1, LONG, STOP_LOSS, D(0)))


def test_equal_levels_and_re_add() -> None:
    books = TriggerBooks()
    for i in range(1, 6):
        books.add(Trigger(i, i, 1, LONG, STOP_LOSS, D(100)))
    books.add(Trigger(3, 3, 1, LONG, STOP_LOSS, D(90)))  # moved: replaces the old entry
    assert len(books) == 5
    assert {t.order_id for t in books.pop_crossed(1, D(95))} == {1, 2, 4, 5}
    assert [t.order_id for t in books.pop_crossed(1, D(90))] == [3]


triggers = st.builds(
    Trigger,
    order_id=st.integers(min_value=1, max_value=60),
    quote_id=st.integers(min_value=1, max_value=10**6),
    symbol_id=st.integers(min_value=1, max_value=3),
    position_type=st.sampled_from([LONG, SHORT]),
    kind=st.sampled_from([STOP_LOSS, TAKE_PROFIT]),
    level=st.decimals(min_value=D(1), max_value=D(200), places=1),
)
probe_marks = st.decimals(min_value=D("0.5"), max_value=D(210), places=2)


@settings(max_examples=300)
@given(orders=st.lists(triggers, max_size=60), symbol_id=st.integers(1, 3), mark=probe_marks)
def test_crossed_equals_a_scan_of_every_order(orders: list[Trigger], symbol_id: int, mark: Decimal) -> None:
    books = TriggerBooks()
    reference: dict[int, Trigger] = {}
    for t in orders:
        books.add(t)
        reference[t.order_id] = t
    expected = _reference(reference, symbol_id, mark)
    assert {t.order_id for t in books.crossed(symbol_id, mark)} == expected
    popped = books.pop_crossed(symbol_id, mark)
    assert sorted(t.order_id for t in popped) == sorted(expected)  # each once
    assert all(reference[t.order_id] == t for t in popped)
    assert len(books) == len(reference) - len(expected)
    assert books.crossed(symbol_id, mark) == []


@settings(max_examples=200)
@given(orders=st.lists(triggers, max_size=60), symbol_id=st.integers(1, 3), mark=probe_marks)
def test_bulk_load_equals_one_add_each(orders: list[Trigger], symbol_id: int, mark: Decimal) -> None:
    """`load` (the engine's reload: one sort per book) leaves the books as adding one by one."""
    added, loaded = TriggerBooks(), TriggerBooks()
    for t in orders:
        added.add(t)
    loaded.load(orders)
    assert len(loaded) == len(added)
    assert sorted(t.order_id for t in loaded) == sorted(t.order_id for t in added)
    assert sorted(t.order_id for t in loaded.pop_crossed(symbol_id, mark)) == sorted(
        t.order_id for t in added.pop_crossed(symbol_id, mark)
    )
    assert len(loaded) == len(added)


class BooksMachine(RuleBasedStateMachine):
    """Random add / remove / tick sequences against the slow reference."""

    def __init__(self) -> None:
        super().__init__()
        self.books = TriggerBooks()
        self.reference: dict[int, Trigger] = {}

    @rule(t=triggers)
    def add(self, t: Trigger) -> None:
        self.books.add(t)
        self.reference[t.order_id] = t

    @rule(order_id=st.integers(1, 60))
    def remove(self, order_id: int) -> None:
        assert self.books.remove(order_id) == self.reference.pop(order_id, None)

    @rule(symbol_id=st.integers(1, 3), mark=probe_marks)
    def tick(self, symbol_id: int, mark: Decimal) -> None:
        expected = _reference(self.reference, symbol_id, mark)
        popped = self.books.pop_crossed(symbol_id, mark)
        assert sorted(t.order_id for t in popped) == sorted(expected)
        for oid in expected:
            del self.reference[oid]

    @invariant()
    def same_orders(self) -> None:
        assert len(self.books) == len(self.reference)
        assert {t.order_id: t for t in self.books} == self.reference


TestBooksMachine = BooksMachine.TestCase
TestBooksMachine.settings = settings(max_examples=100, stateful_step_count=40)


def test_a_tick_touches_only_what_it_crosses() -> None:
    """100k resting orders: a tick that crosses 3 of them pops exactly those 3."""
    books = TriggerBooks()
    for i in range(1, 100_001):
        books.add(Trigger(i, i, 1, LONG, STOP_LOSS, D(50_000) - D(i) / 100))
    popped = books.pop_crossed(1, D("49999.98"))
    assert sorted(t.order_id for t in popped) == [1, 2]
    assert len(books) == 99_998


# --- state machine -------------------------------------------------------------------------

LEGAL = {
    (T.WAITING, T.ARMED), (T.WAITING, T.CANCELLED),
    (T.ARMED, T.TRIGGERED), (T.ARMED, T.CANCELLED),
    (T.TRIGGERED, T.TRIGGERED), (T.TRIGGERED, T.FILLED), (T.TRIGGERED, T.FAILED), (T.TRIGGERED, T.CANCELLED),
}  # fmt: skip


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(T, T)))
def test_every_trigger_pair(src: T, dst: T) -> None:
    if (src, dst) in LEGAL:
        check_transition(TRIGGER_TRANSITIONS, src, dst)
    else:
        with pytest.raises(IllegalTransition):
            check_transition(TRIGGER_TRANSITIONS, src, dst)


def test_terminal_and_active_sets_match_the_model() -> None:
    assert {s for s in T if is_terminal(TRIGGER_TRANSITIONS, s)} == set(TRIGGER_TERMINAL)
    assert set(T) == TRIGGER_ACTIVE | TRIGGER_TERMINAL

    listed = ACTIVE_TRIGGER_WHERE.removeprefix("status IN (").removesuffix(")")
    assert {v.strip().strip("'") for v in listed.split(",")} == {s.value for s in TRIGGER_ACTIVE}
    assert in_check("status", T).startswith("status IN ('waiting'")
