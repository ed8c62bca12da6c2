"""Balance and uPnL math (trading-rules.md §2)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from solver.risk.account import (
    LONG,
    SHORT,
    Locked,
    MissingMarkError,
    Position,
    available_balance,
    notional,
    position_upnl,
    upnl,
)

pytestmark = pytest.mark.unit

D = Decimal


def test_long_and_short_upnl() -> None:
    long = Position(symbol_id=1, position_type=LONG, opened_price=D(60000), open_quantity=D("0.5"))
    short = Position(symbol_id=2, position_type=SHORT, opened_price=D(3000), open_quantity=D(2))
    assert position_upnl(long, D(61000)) == D(500)
    assert position_upnl(short, D(3100)) == D(-200)
    assert upnl([long, short], {1: D(61000), 2: D(3100)}) == D(300)
    assert notional([long, short], {1: D(61000), 2: D(3100)}) == D(30500) + D(6200)


def test_no_positions() -> None:
    assert upnl([], {}) == 0
    assert notional([], {}) == 0


def test_missing_mark_is_an_error_not_zero() -> None:
    p = Position(symbol_id=7, position_type=LONG, opened_price=D(1), open_quantity=D(1))
    q = Position(symbol_id=3, position_type=SHORT, opened_price=D(1), open_quantity=D(1))
    with pytest.raises(MissingMarkError) as exc:
        upnl([p, q], {})
    assert exc.value.symbol_ids == (3, 7)
    with pytest.raises(MissingMarkError):
        notional([p], {})


def test_unknown_position_type() -> None:
    with pytest.raises(ValueError, match="position type"):
        upnl([Position(symbol_id=1, position_type=2, opened_price=D(1), open_quantity=D(1))], {1: D(1)})


def test_available_balance() -> None:
    locked = Locked(cva=D("6.5"), lf=D("3.25"), party_amm=D(90))
    pending = Locked(cva=D(1), lf=D("0.5"), party_amm=D(10))
    assert locked.total == D("99.75")
    assert (locked + pending).total == D("111.25")
    assert available_balance(allocated=D(1000), upnl=D(-50), locked=locked, pending=pending) == D("838.75")
    # Can go negative: the account is over-committed.
    assert available_balance(allocated=D(10), upnl=D(0), locked=locked, pending=Locked()) == D("-89.75")


def test_exact_with_18_decimals() -> None:
    p = Position(
        symbol_id=1, position_type=LONG, opened_price=D("0.512300000000000001"), open_quantity=D("5.500000000000000001")
    )
    assert position_upnl(p, D("0.512300000000000002")) == D("0.000000000000000005500000000000000001")


amounts = st.decimals(min_value=0, max_value=10**9, places=18, allow_nan=False, allow_infinity=False)


@given(amounts, amounts, amounts)
def test_long_and_short_mirror(opened: Decimal, qty: Decimal, mark: Decimal) -> None:
    long = Position(symbol_id=1, position_type=LONG, opened_price=opened, open_quantity=qty)
    short = Position(symbol_id=1, position_type=SHORT, opened_price=opened, open_quantity=qty)
    assert position_upnl(long, mark) == position_upnl(short, mark).copy_negate()  # exact, no context rounding
    assert upnl([long, short], {1: mark}) == 0
