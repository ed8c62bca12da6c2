"""Number parsing and 18-decimal conversion (solver/core/units.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from solver.core.units import (
    UINT256_MAX,
    WAD,
    NumberFormatError,
    fmt,
    from_wei,
    has_at_most_decimals,
    parse_decimal,
    quantize_down,
    round_to_wei,
    to_wei,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("raw", "wei"),
    [
        ("0E-21", 0),
        ("1.01E-7", 101_000_000_000),
        ("1e18", 10**36),
        ("0.5123", 512_300_000_000_000_000),
        (" 2 ", 2 * WAD),
        (3, 3 * WAD),
        (0.1, 10**17),  # a JSON float goes through its shortest repr, never its binary expansion
        ("0.000000000000000001", 1),
        # 25 fractional digits (an oracle price times 1.01): rounded half-even to 18, not rejected
        ("0.5174230000000000000000005", 517_423_000_000_000_000),
        ("1.0000000000000000005000000", 10**18),  # exactly half a wei: to even
        ("1.0000000000000000015000000", 10**18 + 2),
        ("1.00000000000000000050000001", 10**18 + 1),
    ],
)
def test_parse_and_to_wei(raw: object, wei: int) -> None:
    assert to_wei(parse_decimal(raw)) == wei


@pytest.mark.parametrize(
    "raw",
    [
        "NaN",
        "nan",
        "sNaN",
        "Infinity",
        "-Infinity",
        "inf",
        "",
        "  ",
        "abc",
        "1,5",
        "0x10",
        "1e",
        "--1",
        None,
        True,
        [],
        {},
    ],
)
def test_garbage_rejected(raw: object) -> None:
    with pytest.raises(NumberFormatError):
        parse_decimal(raw)


@pytest.mark.parametrize("raw", ["-1", "-0.000001", -5, "-1E-7"])
def test_negative_rejected_unless_allowed(raw: object) -> None:
    with pytest.raises(NumberFormatError, match="negative"):
        parse_decimal(raw)
    assert parse_decimal(raw, allow_negative=True) < 0


def test_negative_zero_is_zero() -> None:
    assert parse_decimal("-0") == 0


def test_beyond_uint256_rejected() -> None:
    limit = from_wei(UINT256_MAX)
    assert to_wei(limit) == UINT256_MAX
    with pytest.raises(NumberFormatError, match="uint256"):
        to_wei(from_wei(UINT256_MAX + 1))
    with pytest.raises(NumberFormatError, match="uint256"):
        to_wei(parse_decimal("1e60"))
    with pytest.raises(NumberFormatError):
        parse_decimal("1e999999")
    with pytest.raises(NumberFormatError):
        parse_decimal("9" * 300)


def test_signed_bounds() -> None:
    assert to_wei(Decimal("-1.5"), signed=True) == -15 * 10**17
    with pytest.raises(NumberFormatError, match="uint256"):
        to_wei(Decimal(-1))


def test_fmt_never_uses_exponent() -> None:
    assert fmt(Decimal("1E+3")) == "1000"
    assert fmt(Decimal("1.01E-7")) == "0.000000101"
    assert fmt(Decimal("0E-21")) == "0"
    assert fmt(Decimal("2.500")) == "2.5"
    assert fmt(Decimal("-0.10")) == "-0.1"


def test_precision_helpers() -> None:
    assert quantize_down(Decimal("1.23456"), 3) == Decimal("1.234")
    assert has_at_most_decimals(Decimal("1.2300"), 2)
    assert not has_at_most_decimals(Decimal("1.231"), 2)
    assert has_at_most_decimals(Decimal("1E+2"), 0)
    assert round_to_wei(Decimal("0.5174230000000000000000005")) == Decimal("0.517423")


@given(st.integers(min_value=0, max_value=UINT256_MAX))
def test_wei_roundtrip(x: int) -> None:
    assert to_wei(from_wei(x)) == x


@given(st.integers(min_value=-(2**255), max_value=2**255 - 1))
def test_signed_wei_roundtrip(x: int) -> None:
    assert to_wei(from_wei(x), signed=True) == x


@given(st.integers(min_value=0, max_value=UINT256_MAX))
def test_string_roundtrip(x: int) -> None:
    # What the API sends out (fmt) parses back to the same wei.
    assert to_wei(parse_decimal(fmt(from_wei(x)))) == x


@given(st.decimals(min_value=0, max_value=Decimal(10) ** 40, allow_nan=False, allow_infinity=False, places=25))
def test_long_fractions_round_to_nearest_wei(d: Decimal) -> None:
    wei = to_wei(d)
    assert abs(from_wei(wei) - d) <= Decimal("0.5e-18")


@pytest.mark.parametrize("raw", ["1_000", "٣", "１", "1e", "e5", "0x10", "1.2.3", "1E-9999999"])
def test_non_json_digits_rejected(raw: str) -> None:
    with pytest.raises(NumberFormatError):
        parse_decimal(raw)


@pytest.mark.parametrize("raw", ["0E-100", "1E-95", "4E-19"])
def test_tiny_values_round_to_zero(raw: str) -> None:
    assert to_wei(parse_decimal(raw)) == 0
