"""Fill prices of the solver (trading-rules.md §2b) against a slow reference."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from solver.risk.fills import LIMIT, LONG, MARKET, SHORT, close_fill_price, open_fill_price

pytestmark = pytest.mark.unit


def test_market_open_fills_at_mark_plus_fee_rounded_for_the_user() -> None:
    kw = {"order_type": MARKET, "fee": Decimal("0.0002"), "precision": 1}
    assert open_fill_price(mark=Decimal(60000), position_type=LONG, requested=Decimal(60600), **kw) == Decimal(
        "60012.0"
    )
    assert open_fill_price(mark=Decimal(60000), position_type=SHORT, requested=Decimal(59000), **kw) == Decimal(
        "59988.0"
    )
    # 60000.37 * 1.0002 = 60012.370074: a LONG pays 60012.3, not 60012.4.
    assert open_fill_price(mark=Decimal("60000.37"), position_type=LONG, requested=Decimal(61000), **kw) == Decimal(
        "60012.3"
    )


def test_no_fill_when_the_mark_moved_past_the_price() -> None:
    kw = {"order_type": MARKET, "fee": Decimal("0.0002"), "precision": 1}
    assert open_fill_price(mark=Decimal(60100), position_type=LONG, requested=Decimal(60020), **kw) is None
    assert open_fill_price(mark=Decimal(59000), position_type=SHORT, requested=Decimal(59990), **kw) is None


def test_limit_open_fills_at_its_own_price_once_allowed() -> None:
    kw = {"order_type": LIMIT, "fee": Decimal(0), "precision": 2}
    assert open_fill_price(mark=Decimal(99), position_type=LONG, requested=Decimal(100), **kw) == Decimal(100)
    assert open_fill_price(mark=Decimal(101), position_type=LONG, requested=Decimal(100), **kw) is None
    assert open_fill_price(mark=Decimal(101), position_type=SHORT, requested=Decimal(100), **kw) == Decimal(100)


def test_close_mirrors_open() -> None:
    kw = {"fee": Decimal("0.0002"), "precision": 1}
    assert close_fill_price(mark=Decimal(60000), position_type=LONG, requested=Decimal(59000), **kw) == Decimal(
        "59988.0"
    )
    assert close_fill_price(mark=Decimal(60000), position_type=SHORT, requested=Decimal(61000), **kw) == Decimal(
        "60012.0"
    )
    assert close_fill_price(mark=Decimal(58000), position_type=LONG, requested=Decimal(59000), **kw) is None


marks = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(10**6), places=6, allow_nan=False)
fees = st.decimals(min_value=Decimal(0), max_value=Decimal("0.01"), places=5, allow_nan=False)


@given(mark=marks, fee=fees, precision=st.integers(0, 8), side=st.sampled_from([LONG, SHORT]))
def test_market_fill_matches_reference_and_never_beats_the_request(
    mark: Decimal, fee: Decimal, precision: int, side: int
) -> None:
    q = Decimal(1).scaleb(-precision)
    if side == LONG:
        ref = (mark * (1 + fee)).quantize(q, rounding=ROUND_FLOOR)
        requested = ref  # exactly at the fill: allowed
        assert open_fill_price(
            mark=mark, position_type=side, order_type=MARKET, requested=requested, fee=fee, precision=precision
        ) == (ref if ref > 0 else None)
        if ref > 0:
            worse = requested - q
            assert (
                open_fill_price(
                    mark=mark, position_type=side, order_type=MARKET, requested=worse, fee=fee, precision=precision
                )
                is None
            )
    else:
        ref = (mark * (1 - fee)).quantize(q, rounding=ROUND_CEILING)
        got = open_fill_price(
            mark=mark, position_type=side, order_type=MARKET, requested=ref, fee=fee, precision=precision
        )
        assert got == (ref if ref > 0 else None)
        assert (
            open_fill_price(
                mark=mark, position_type=side, order_type=MARKET, requested=ref + q, fee=fee, precision=precision
            )
            is None
        )
