"""Decimal <-> 18-decimal fixed point, and parsing of the number strings clients send.

Every decimal field may arrive as a JSON string or number, with many fractional digits or in
exponent form. Parse with Decimal (never float), convert to wei at one boundary.
"""

from __future__ import annotations

import re
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Context, Decimal, InvalidOperation

WAD = 10**18
UINT256_MAX = 2**256 - 1
INT256_MAX = 2**255 - 1
INT256_MIN = -(2**255)

# Wide enough for uint256 in wei plus 18 fractional digits, so nothing is rounded by accident.
_CTX = Context(prec=120, rounding=ROUND_HALF_EVEN)
_ONE_WEI = Decimal(1).scaleb(-18)
_NUMBER = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,6})?$")


class NumberFormatError(ValueError):
    """The value has no meaning as a number here (NaN, infinite, garbage, out of range)."""


def parse_decimal(value: object, *, field: str = "value", allow_negative: bool = False) -> Decimal:
    """Parse a client number (str/int/Decimal; floats are converted via their repr)."""
    if isinstance(value, bool) or value is None:
        raise NumberFormatError(f"{field} must be a number")
    if isinstance(value, float):
        # JSON numbers decoded as float: use the shortest repr, never binary expansion.
        value = repr(value)
    if isinstance(value, int):
        dec = Decimal(value)
    elif isinstance(value, Decimal):
        dec = value
    elif isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 200:
            raise NumberFormatError(f"{field} must be a number")
        # JSON-number syntax with ASCII digits only: Decimal() alone would also take "1_000"
        # and non-ASCII digits.
        if not _NUMBER.match(text):
            raise NumberFormatError(f"{field} must be a number, got {value!r}")
        try:
            dec = Decimal(text)
        except InvalidOperation as exc:
            raise NumberFormatError(f"{field} must be a number, got {value!r}") from exc
    else:
        raise NumberFormatError(f"{field} must be a number")
    if not dec.is_finite():
        raise NumberFormatError(f"{field} must be a finite number")
    if dec.is_signed() and not dec.is_zero() and not allow_negative:
        raise NumberFormatError(f"{field} must not be negative")
    # Huge magnitudes have no meaning as money; tiny ones simply round to 0 at 18 decimals.
    if dec.adjusted() > 90:
        raise NumberFormatError(f"{field} is out of range")
    return dec


def to_wei(value: Decimal, *, rounding: str = ROUND_HALF_EVEN, signed: bool = False) -> int:
    """Human units -> 18-decimal integer; more than 18 decimals are rounded, not rejected."""
    scaled = _CTX.multiply(value, Decimal(WAD)).quantize(Decimal(1), rounding=rounding, context=_CTX)
    wei = int(scaled)
    if signed:
        if not INT256_MIN <= wei <= INT256_MAX:
            raise NumberFormatError("value is beyond int256")
    elif not 0 <= wei <= UINT256_MAX:
        raise NumberFormatError("value is beyond uint256")
    return wei


def from_wei(value: int) -> Decimal:
    """18-decimal integer -> exact Decimal."""
    return _CTX.divide(Decimal(value), Decimal(WAD))


def round_to_wei(value: Decimal) -> Decimal:
    return value.quantize(_ONE_WEI, rounding=ROUND_HALF_EVEN, context=_CTX)


def fmt(value: Decimal) -> str:
    """Plain decimal string for responses: no exponent, no trailing zeros."""
    if value.is_zero():
        return "0"
    text = format(value.normalize(_CTX), "f")
    return text


def quantize_down(value: Decimal, precision: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-precision), rounding=ROUND_DOWN, context=_CTX)


def has_at_most_decimals(value: Decimal, precision: int) -> bool:
    """True when value needs no more than `precision` fractional digits."""
    normalized = value.normalize(_CTX)
    exponent = normalized.as_tuple().exponent
    assert isinstance(exponent, int)
    return -exponent <= precision
