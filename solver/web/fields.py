"""Request field types: numbers as JSON string or number, parsed with Decimal; addresses."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from eth_utils.address import is_address, to_checksum_address
from pydantic import BeforeValidator

from solver.core.units import UINT256_MAX, NumberFormatError, parse_decimal


def _decimal(value: Any) -> Decimal:
    try:
        dec = parse_decimal(value)
    except NumberFormatError as exc:
        raise ValueError(str(exc)) from exc
    if dec * 10**18 > UINT256_MAX:
        raise ValueError("value is beyond uint256")
    return dec


def _whole(value: Any) -> int:
    """A whole number: a JSON integer, an integral number (`1E+3`) or a string of ASCII digits.

    Stricter than pydantic's lax int: `true`/`false` are not 1/0 (a `positionType: true` must not
    open a SHORT) and strings like `"1_000"` are refused, as for decimal fields. Exponents are
    bounded (parse_decimal) before any conversion to int.
    """
    if isinstance(value, bool):
        raise ValueError("must be a whole number, not true or false")
    if isinstance(value, int):
        return value
    if isinstance(value, str | Decimal | float):
        try:
            dec = parse_decimal(value, allow_negative=True)
        except NumberFormatError as exc:
            raise ValueError("must be a whole number") from exc
        if dec == dec.to_integral_value():
            return int(dec)
    raise ValueError("must be a whole number")


def _address(value: Any) -> str:
    if not isinstance(value, str) or not is_address(value.lower()):
        raise ValueError("must be a 0x-prefixed 20-byte hex address")
    return str(to_checksum_address(value.lower()))


NonNegativeDecimal = Annotated[Decimal, BeforeValidator(_decimal)]
WholeNumber = Annotated[int, BeforeValidator(_whole)]  # bound it with Field(ge=..., le=...)
Address = Annotated[str, BeforeValidator(_address)]


def checksum(value: str) -> str:
    """Checksum an address from a path parameter or raise ValueError."""
    return _address(value)
