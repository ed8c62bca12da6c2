"""The strategy book: a tick returns exactly the LIMIT orders it makes eligible and the DCA orders
that are due, checked against a slow linear scan of every entry."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from solver.db.models import StrategyOrder, StrategyType
from solver.strategy.book import LONG, SHORT, Entry, StrategyBook
from solver.strategy.rules import limit_eligible
from solver.strategy.suborders import entry_of

pytestmark = pytest.mark.unit

D = Decimal


def reference(entries: dict[int, Entry], symbol_id: int, mark: Decimal, now: Decimal) -> list[int]:
    """Linear scan: LONG eligible when mark ≤ threshold, SHORT when mark ≥ threshold, DCA when due ≤ now."""
    out = []
    for e in entries.values():
        if e.symbol_id != symbol_id:
            continue
        if e.threshold is not None:
            if (e.side == LONG and mark <= e.threshold) or (e.side == SHORT and mark >= e.threshold):
                out.append(e.order_id)
        elif e.due is not None and e.due <= now:
            out.append(e.order_id)
    return sorted(out)


def got(book: StrategyBook, symbol_id: int, mark: Decimal, now: Decimal) -> list[int]:
    ids = book.candidates(symbol_id, mark, now)
    assert len(ids) == len(set(ids)), ids  # each order once
    return sorted(ids)


# -- examples -----------------------------------------------------------------------------------


def test_limit_thresholds_both_sides() -> None:
    book = StrategyBook()
    book.add(Entry(1, 7, LONG, threshold=D("9.99")))  # buy at ≤ 10, slippage 0.001
    book.add(Entry(2, 7, SHORT, threshold=D("10.01")))  # sell at ≥ 10, slippage 0.001
    book.add(Entry(3, 7, LONG, threshold=D(9)))
    book.add(Entry(4, 8, LONG, threshold=D(100)))  # another symbol
    assert got(book, 7, D(10), D(0)) == []
    assert got(book, 7, D("10.009"), D(0)) == []
    assert got(book, 7, D("10.01"), D(0)) == [2]  # the seed's example: fires at 10.01
    assert got(book, 7, D("9.99"), D(0)) == [1]  # the threshold itself is eligible
    assert got(book, 7, D("8.5"), D(0)) == [1, 3]
    assert got(book, 7, D("9.991"), D(0)) == []
    assert got(book, 9, D(1), D(0)) == []  # unknown symbol
    assert len(book) == 4 and 3 in book and 5 not in book
    assert book.symbols() == {7, 8}


def test_re_adding_replaces_the_threshold() -> None:
    book = StrategyBook()
    book.add(Entry(1, 7, LONG, threshold=D(10)))
    book.add(Entry(1, 7, LONG, threshold=D(5)))
    assert len(book) == 1
    assert got(book, 7, D(8), D(0)) == []
    assert got(book, 7, D(5), D(0)) == [1]
    book.add(Entry(1, 7, SHORT, threshold=D(5)))  # side changed too
    assert got(book, 7, D(4), D(0)) == []
    assert got(book, 7, D(6), D(0)) == [1]


def test_dca_due_orders_stay_until_removed() -> None:
    book = StrategyBook()
    book.add(Entry(1, 7, LONG, due=D(100)))
    book.add(Entry(2, 7, SHORT, due=D(200)))
    assert got(book, 7, D(1), D(99)) == []
    assert got(book, 7, D(1), D(100)) == [1]
    assert got(book, 7, D(1), D(150)) == [1]  # still due: it stays until taken out
    assert got(book, 7, D(5), D(150)) == [1]  # whatever the mark (the band is the rules' job)
    assert got(book, 7, D(1), D(250)) == [1, 2]
    assert book.remove(1) == Entry(1, 7, LONG, due=D(100))
    assert book.remove(1) is None
    assert got(book, 7, D(1), D(300)) == [2]


def test_re_adding_a_dca_order_with_a_new_due_time() -> None:
    book = StrategyBook()
    book.add(Entry(1, 7, LONG, due=D(100)))
    assert got(book, 7, D(1), D(100)) == [1]
    book.add(Entry(1, 7, LONG, due=D(160)))  # it was sent: the next one is due later
    assert got(book, 7, D(1), D(120)) == []
    assert got(book, 7, D(1), D(160)) == [1]
    book.add(Entry(1, 7, LONG, due=D(500)))  # re-added before its old due time was reached
    book.add(Entry(1, 7, LONG, due=D(300)))
    assert got(book, 7, D(1), D(299)) == []
    assert got(book, 7, D(1), D(300)) == [1]
    assert got(book, 7, D(1), D(600)) == [1]  # the stale 500 does not make it come twice


def test_removed_orders_never_come_back() -> None:
    book = StrategyBook()
    book.add(Entry(1, 7, LONG, due=D(100)))
    book.add(Entry(2, 7, LONG, threshold=D(10)))
    book.remove(1)
    book.remove(2)
    assert got(book, 7, D(1), D(10**9)) == []
    assert len(book) == 0 and book.symbols() == set()


def test_an_order_moving_between_limit_and_dca() -> None:
    book = StrategyBook()
    book.add(Entry(1, 7, LONG, due=D(100)))
    assert got(book, 7, D(1), D(100)) == [1]
    book.add(Entry(1, 7, LONG, threshold=D(0)))
    assert got(book, 7, D(1), D(100)) == []
    book.add(Entry(1, 8, LONG, due=D(50)))  # and to another symbol
    assert got(book, 7, D(1), D(100)) == []
    assert got(book, 8, D(1), D(100)) == [1]


def test_a_dca_entry_without_a_due_time_is_due_at_once() -> None:
    """`add` files a DCA entry with `due=None` as due at 0 (at once). KNOWN BUG (book.py
    `candidates`): the heap item (0, id) is then dropped because `entry.due == when` compares
    None with Decimal(0), so such an order is never returned. (entry_of always passes a due time,
    so the engine does not hit it today.)"""
    book = StrategyBook()
    book.add(Entry(1, 7, LONG))
    assert got(book, 7, D(1), D(100)) == [1]


def test_a_dca_order_moved_to_another_symbol_is_not_due_on_the_old_one() -> None:
    """KNOWN BUG (book.py `candidates`, the heap loop): a heap item of symbol 1 is accepted when
    the order's current entry has the same due time, without checking that the entry is still on
    symbol 1. The order is then put in symbol 1's `due` set, which `remove` (clearing only the
    set of the entry's symbol, 2) never clears: it is returned for symbol 1 forever, even after
    it was removed from the book."""
    book = StrategyBook()
    book.add(Entry(1, 1, LONG, due=D(100)))
    book.add(Entry(1, 2, LONG, due=D(100)))  # re-added on symbol 2, same due time
    assert got(book, 1, D(1), D(200)) == []
    assert got(book, 2, D(1), D(200)) == [1]
    book.remove(1)
    assert got(book, 1, D(1), D(300)) == []  # removed orders never come back
    assert got(book, 2, D(1), D(300)) == []


def test_large_order_ids_and_equal_thresholds() -> None:
    book = StrategyBook()
    big = 2**62
    for oid in (1, big, 5):
        book.add(Entry(oid, 7, LONG, threshold=D(10)))
        book.add(Entry(oid + 1, 7, SHORT, threshold=D(10)))
    assert got(book, 7, D(10), D(0)) == sorted([1, 2, 5, 6, big, big + 1])
    assert got(book, 7, D("10.0"), D(0)) == sorted([1, 2, 5, 6, big, big + 1])  # same value, other exponent


# -- entry_of agrees with the rules --------------------------------------------------------------


def limit_row(order_id: int, side: int, price: Decimal, slippage: Decimal) -> StrategyOrder:
    return StrategyOrder(
        id=order_id,
        account="0x" + "11" * 20,
        type=StrategyType.LIMIT,
        symbol_id=1,
        position_type=side,
        leverage=D(1),
        initial_input_amount=D(100),
        current_input_amount=D(100),
        max_suborders=1,
        max_invocations=1,
        slippage=slippage,
        limit_price=price,
    )


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from([LONG, SHORT]),
            st.decimals(min_value=D(1), max_value=D(20), places=2),
            st.decimals(min_value=D("0.0001"), max_value=D(1), places=4),
        ),
        max_size=20,
    ),
    mark=st.decimals(min_value=D(0), max_value=D(40), places=4),
)
def test_limit_candidates_are_exactly_the_eligible_orders(
    rows: list[tuple[int, Decimal, Decimal]], mark: Decimal
) -> None:
    """A tick returns a LIMIT order iff rules.limit_eligible says it may send (§3)."""
    book = StrategyBook()
    eligible = []
    for i, (side, price, slippage) in enumerate(rows, start=1):
        book.add(entry_of(limit_row(i, side, price, slippage)))
        if limit_eligible(side, mark, price, slippage):
            eligible.append(i)
    assert got(book, 1, mark, D(0)) == eligible


def test_entry_of_a_dca_row() -> None:
    row = limit_row(3, LONG, D(10), D("0.01"))
    row.type, row.limit_price, row.dca_delay_s = StrategyType.DCA, None, 60
    assert entry_of(row) == Entry(3, 1, LONG, due=D(0))  # never sent: due at once
    row.next_due_time = datetime.fromtimestamp(1_700_000_060, UTC)
    e = entry_of(row)
    assert e.due == D(1_700_000_060) and e.threshold is None
    book = StrategyBook()
    book.add(e)
    assert got(book, 1, D(10), D(1_700_000_059)) == []
    assert got(book, 1, D(10), D(1_700_000_060)) == [3]


# -- random sequences against the reference -----------------------------------------------------

order_ids = st.integers(1, 30)
symbols = st.integers(1, 3)
thresholds = st.decimals(min_value=D(1), max_value=D(20), places=1)
probe_marks = st.decimals(min_value=D("0.5"), max_value=D("20.5"), places=2)


class BookMachine(RuleBasedStateMachine):
    """Random add / remove / candidates against a dict scanned linearly. Time only moves forward
    (the engine's clock), so a due DCA order stays due until it is removed or re-added. As in the
    engine, an order stays on one symbol (order id mod 3); moving one is covered by
    test_sequences_match_the_reference."""

    def __init__(self) -> None:
        super().__init__()
        self.book = StrategyBook()
        self.entries: dict[int, Entry] = {}
        self.removed: set[int] = set()
        self.now = D(1000)

    @rule(oid=order_ids, side=st.sampled_from([LONG, SHORT]), threshold=thresholds)
    def add_limit(self, oid: int, side: int, threshold: Decimal) -> None:
        e = Entry(oid, oid % 3 + 1, side, threshold=threshold)
        self.book.add(e)
        self.entries[oid] = e
        self.removed.discard(oid)

    @rule(oid=order_ids, side=st.sampled_from([LONG, SHORT]), offset=st.integers(-50, 100))
    def add_dca(self, oid: int, side: int, offset: int) -> None:
        e = Entry(oid, oid % 3 + 1, side, due=self.now + offset)  # due in the past, now or later
        self.book.add(e)
        self.entries[oid] = e
        self.removed.discard(oid)

    @rule(oid=order_ids)
    def remove(self, oid: int) -> None:
        assert self.book.remove(oid) == self.entries.pop(oid, None)
        self.removed.add(oid)

    @precondition(lambda self: bool(self.entries))
    @rule(data=st.data())
    def take_a_candidate_out(self, data: st.DataObject) -> None:
        """What the engine does to step an order: remove it, and maybe put it back changed."""
        oid = data.draw(st.sampled_from(sorted(self.entries)))
        assert self.book.remove(oid) == self.entries.pop(oid)
        if data.draw(st.booleans()):
            self.add_dca(oid, LONG, data.draw(st.integers(0, 60)))

    @rule(symbol_id=symbols, mark=probe_marks, dt=st.sampled_from([D(0), D(1), D("0.5"), D(10), D(30)]))
    def tick(self, symbol_id: int, mark: Decimal, dt: Decimal) -> None:
        self.now += dt
        ids = got(self.book, symbol_id, mark, self.now)
        assert ids == reference(self.entries, symbol_id, mark, self.now)
        assert not set(ids) & self.removed
        # Asking again changes nothing (candidates stay in the book until removed).
        assert got(self.book, symbol_id, mark, self.now) == ids

    @invariant()
    def same_entries(self) -> None:
        assert len(self.book) == len(self.entries)
        assert all(oid in self.book for oid in self.entries)
        assert not any(oid in self.book for oid in self.removed)
        assert self.book.symbols() == {e.symbol_id for e in self.entries.values()}


TestBookMachine = BookMachine.TestCase
TestBookMachine.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)


book_ops = st.lists(
    st.one_of(
        st.tuples(st.just("limit"), order_ids, symbols, st.sampled_from([LONG, SHORT]), thresholds),
        st.tuples(st.just("dca"), order_ids, symbols, st.sampled_from([LONG, SHORT]), st.integers(0, 200)),
        st.tuples(st.just("remove"), order_ids, st.just(0), st.just(0), st.just(0)),
        st.tuples(st.just("tick"), st.just(0), symbols, st.just(0), probe_marks),
    ),
    max_size=80,
)


def run_ops(ops: list[tuple[str, int, int, int, object]], final_mark: Decimal, *, fixed_symbols: bool) -> None:
    """Absolute due times, a clock that advances by 5 per tick; with `fixed_symbols` an order
    always stays on one symbol (as in the engine)."""
    book = StrategyBook()
    entries: dict[int, Entry] = {}
    removed: set[int] = set()
    now = D(0)
    for op, oid, sym, side, x in ops:
        symbol_id = oid % 3 + 1 if fixed_symbols and op in ("limit", "dca") else sym
        if op == "limit":
            assert isinstance(x, Decimal)
            entries[oid] = Entry(oid, symbol_id, side, threshold=x)
            book.add(entries[oid])
            removed.discard(oid)
        elif op == "dca":
            assert isinstance(x, int)
            entries[oid] = Entry(oid, symbol_id, side, due=D(x))
            book.add(entries[oid])
            removed.discard(oid)
        elif op == "remove":
            assert book.remove(oid) == entries.pop(oid, None)
            removed.add(oid)
        else:
            assert isinstance(x, Decimal)
            now += 5
            assert got(book, symbol_id, x, now) == reference(entries, symbol_id, x, now)
    for symbol_id in (1, 2, 3):
        for t in (now, D(10**6)):
            ids = got(book, symbol_id, final_mark, t)
            assert ids == reference(entries, symbol_id, final_mark, t)
            assert not set(ids) & removed


@settings(max_examples=150, deadline=None)
@given(ops=book_ops, final_mark=probe_marks)
@example(ops=[("dca", 1, 1, LONG, 1), ("dca", 1, 2, LONG, 1)], final_mark=D(1))
def test_sequences_match_the_reference(ops: list[tuple[str, int, int, int, object]], final_mark: Decimal) -> None:
    """Orders may be re-added on another symbol. KNOWN BUG: see
    test_a_dca_order_moved_to_another_symbol_is_not_due_on_the_old_one."""
    run_ops(ops, final_mark, fixed_symbols=False)


@settings(max_examples=150, deadline=None)
@given(ops=book_ops, final_mark=probe_marks)
def test_sequences_match_the_reference_one_symbol_per_order(
    ops: list[tuple[str, int, int, int, object]], final_mark: Decimal
) -> None:
    run_ops(ops, final_mark, fixed_symbols=True)
