"""Locked parameters (trading-rules.md §1) over every allowed leverage of every configured symbol."""

from __future__ import annotations

from decimal import Context, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solver.core.errors import ErrorCode
from solver.core.units import from_wei, to_wei
from solver.market.locked_params import (
    LeverageError,
    allowed_leverages,
    check_locked_values,
    locked_amounts,
    locked_percents,
    max_leverage,
    min_leverage,
)
from solver.settings import SymbolConfig, load_settings

pytestmark = pytest.mark.unit

CTX = Context(prec=120)
SYMBOLS = load_settings().symbols
CASES = [(s, lev) for s in SYMBOLS for lev in allowed_leverages(s)]
NOTIONALS = [Decimal("100"), Decimal("5.5") * Decimal("0.5123"), Decimal("123456.789"), Decimal("0.000001")]


def _sym(**over: object) -> SymbolConfig:
    base: dict[str, object] = {
        "symbol_id": 99,
        "name": "TESTUSDT",
        "symbol": "TEST",
        "price_precision": 2,
        "quantity_precision": 2,
        "maintenance_ratio": Decimal("0.01"),
        "min_acceptable_quote_value": Decimal(10),
        "min_acceptable_portion_lf": Decimal("0.001"),
        "trading_fee": Decimal("0.0006"),
        "max_notional_value": Decimal(1_000_000),
        "notional_cap": Decimal(5_000_000),
    }
    base.update(over)
    return SymbolConfig.model_validate(base)


def test_configured_max_leverage() -> None:
    by_name = {s.name: s for s in SYMBOLS}
    assert max_leverage(by_name["BTCUSDT"]) == 50  # floor(0.6 / 0.01) = 60, capped at 50
    assert max_leverage(by_name["ETHUSDT"]) == 60
    assert max_leverage(by_name["XRPUSDT"]) == 15  # floor(0.6 / 0.04)
    assert all(min_leverage(s) == 1 for s in SYMBOLS)


@pytest.mark.parametrize(("sym", "lev"), CASES, ids=[f"{s.name}-{lev}" for s, lev in CASES])
def test_every_allowed_leverage(sym: SymbolConfig, lev: int) -> None:
    p = locked_percents(sym, Decimal(lev))
    cn = sym.maintenance_ratio
    # Percentages add up to exactly 100, and match the formulas to 18 decimals (rounded up).
    assert p.cva + p.lf + p.party_amm == 100
    assert Decimal(0) <= p.cva - CTX.divide(2 * cn * lev * 100, Decimal(3)) < Decimal("1e-18")
    assert Decimal(0) <= p.lf - CTX.divide(cn * lev * 100, Decimal(3)) < Decimal("1e-18")
    assert p.party_bmm == sym.party_bmm_percent
    assert p.lf >= 100 * sym.min_acceptable_portion_lf
    assert p.party_amm > 0
    for n in NOTIONALS:
        cva, lf, amm = locked_amounts(p, n)
        margin = CTX.add(CTX.add(cva, lf), amm)
        assert abs(margin - CTX.divide(n, Decimal(lev))) < Decimal("1e-100")
        assert abs(CTX.divide(n, margin) - lev) < Decimal("1e-90")  # implied leverage is L
        # A client sending these values (rounded to wei as on chain) passes the check.
        qty, price = n, Decimal(1)
        wei = [from_wei(to_wei(x)) for x in (cva, lf, amm)]
        check = check_locked_values(sym, quantity=qty, price=price, cva=wei[0], lf=wei[1], party_amm=wei[2])
        leftover = {v.code for v in check.violations}
        # Tiny notionals are only refused for the minimum quote value, never for cva/lf/leverage.
        assert leftover <= {ErrorCode.QUOTE_VALUE_TOO_LOW}
        if margin >= sym.min_acceptable_quote_value:
            assert check.ok, check.messages()


@pytest.mark.parametrize("sym", SYMBOLS, ids=[s.name for s in SYMBOLS])
def test_out_of_range_leverage_rejected(sym: SymbolConfig) -> None:
    top = max_leverage(sym)
    for bad in (Decimal(top + 1), Decimal(0), Decimal(-1), Decimal("0.5"), Decimal(10**6)):
        with pytest.raises(LeverageError, match="between"):
            locked_percents(sym, bad)


def test_fractional_leverage_inside_range() -> None:
    p = locked_percents(SYMBOLS[0], Decimal("12.5"))
    assert p.cva + p.lf + p.party_amm == 100
    assert p.as_strings()["leverage"] == "12.5"


def test_lf_portion_removes_low_leverages() -> None:
    # lf% = ⅓·cn·L·100 ≥ 100·0.01 needs L ≥ 3 when cn = 0.01.
    sym = _sym(min_acceptable_portion_lf=Decimal("0.01"))
    assert allowed_leverages(sym)[0] == 3
    with pytest.raises(LeverageError):
        locked_percents(sym, Decimal(2))
    assert locked_percents(sym, Decimal(3)).lf == 1


def test_no_allowed_leverage() -> None:
    sym = _sym(maintenance_ratio=Decimal("0.01"), min_acceptable_portion_lf=Decimal("0.5"))
    assert allowed_leverages(sym) == []
    assert max_leverage(sym) == 0
    with pytest.raises(LeverageError, match="no leverage"):
        locked_percents(sym, Decimal(1))


def test_strings_are_plain_decimals() -> None:
    out = locked_percents(SYMBOLS[0], Decimal(10)).as_strings()
    assert out == {
        "cva": "6.666666666666666667",
        "lf": "3.333333333333333334",
        "partyAmm": "89.999999999999999999",
        "partyBmm": "0",
        "leverage": "10",
    }


# --- request check -----------------------------------------------------------------------------

BTC = SYMBOLS[0]


def _check(qty: str, price: str, cva: str, lf: str, amm: str) -> list[ErrorCode]:
    c = check_locked_values(
        BTC, quantity=Decimal(qty), price=Decimal(price), cva=Decimal(cva), lf=Decimal(lf), party_amm=Decimal(amm)
    )
    return [v.code for v in c.violations]


def test_check_accepts_exact_values() -> None:
    # N = 1000, cn = 0.01, L = 10: cva = 6.666…, lf = 3.333…, partyAmm = 100 − 10 = 90.
    assert _check("0.02", "50000", "6.666666666666666667", "3.333333333333333333", "90") == []


def test_check_tolerates_client_rounding() -> None:
    assert _check("0.02", "50000", "6.666666", "3.333333", "90.000001") == []


def test_check_cva_and_lf_too_low() -> None:
    c = check_locked_values(
        BTC, quantity=Decimal("0.02"), price=Decimal(50000), cva=Decimal(6), lf=Decimal(3), party_amm=Decimal(91)
    )
    assert [v.code for v in c.violations] == [ErrorCode.LOCKED_VALUES_TOO_LOW] * 2
    assert "cva must be at least 6.666666666666666667" in c.messages()[0]
    assert c.violations[0].required == c.required_cva


def test_check_leverage_too_high() -> None:
    # Margin 10 for N = 1000 is leverage 100 > 50.
    c = check_locked_values(
        BTC,
        quantity=Decimal("0.02"),
        price=Decimal(50000),
        cva=Decimal("6.67"),
        lf=Decimal("3.34"),
        party_amm=Decimal(0),
    )
    assert [v.code for v in c.violations] == [ErrorCode.LEVERAGE_TOO_HIGH]
    assert c.violations[0].required == 20  # N / 50
    assert "at least 20" in c.messages()[0]
    assert c.implied_leverage is not None and c.implied_leverage > 99


def test_check_max_leverage_exactly_allowed() -> None:
    # N = 1000 at L = 50: margin 20 = 6.666… + 3.333… + 10.
    assert _check("0.02", "50000", "6.666666666666666667", "3.333333333333333333", "10") == []


def test_check_lf_portion_and_quote_value() -> None:
    # min portion 0.01 with cn 0.01 allows L ≥ 3; a margin of 500 on N = 1000 is L = 2, so lf (which
    # covers ⅓·cn·N) is below 1 % of the margin. The margin is also below a minimum value of 1000.
    sym = _sym(min_acceptable_portion_lf=Decimal("0.01"), min_acceptable_quote_value=Decimal(1000))
    c = check_locked_values(
        sym, quantity=Decimal(1), price=Decimal(1000), cva=Decimal("6.67"), lf=Decimal("3.34"), party_amm=Decimal(490)
    )
    assert {v.code for v in c.violations} == {ErrorCode.LF_PORTION_TOO_LOW, ErrorCode.QUOTE_VALUE_TOO_LOW}


def test_check_zero_margin() -> None:
    assert _check("1", "1", "0", "0", "0") == [
        ErrorCode.LOCKED_VALUES_TOO_LOW,
        ErrorCode.LOCKED_VALUES_TOO_LOW,
        ErrorCode.QUOTE_VALUE_TOO_LOW,
    ]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(CASES),
    st.decimals(min_value=Decimal("0.001"), max_value=Decimal(1000), places=3),
    st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(100000), places=4),
)
def test_client_formula_always_passes(case: tuple[SymbolConfig, int], qty: Decimal, price: Decimal) -> None:
    sym, lev = case
    n = qty * price
    p = locked_percents(sym, Decimal(lev))
    cva, lf, amm = (from_wei(to_wei(x)) for x in locked_amounts(p, n))
    check = check_locked_values(sym, quantity=qty, price=price, cva=cva, lf=lf, party_amm=amm)
    assert {v.code for v in check.violations} <= {ErrorCode.QUOTE_VALUE_TOO_LOW}
