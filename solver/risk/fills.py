"""Pure fill prices of the solver as counterparty (trading-rules.md §2b).

A MARKET open fills at the mark moved by the hedger fee against the user (LONG pays more,
SHORT receives less), rounded to the symbol's price precision in the user's favour; it fills
only if that is no worse for the user than the price they asked for. Closes mirror this. A
LIMIT request fills at its own price once the mark allows it. None means "do not fill".
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal

_CTX = Context(prec=120)
LONG, SHORT = 0, 1
LIMIT, MARKET = 0, 1
_ONE = Decimal(1)


def _round(value: Decimal, precision: int, rounding: str) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-precision), rounding=rounding, context=_CTX)


def open_fill_price(
    *, mark: Decimal, position_type: int, order_type: int, requested: Decimal, fee: Decimal, precision: int
) -> Decimal | None:
    if position_type == LONG:
        fill = _round(_CTX.multiply(mark, _CTX.add(_ONE, fee)), precision, ROUND_FLOOR)
        if order_type == LIMIT:
            return requested if fill <= requested else None
        return fill if 0 < fill <= requested else None
    if position_type == SHORT:
        fill = _round(_CTX.multiply(mark, _CTX.subtract(_ONE, fee)), precision, ROUND_CEILING)
        if order_type == LIMIT:
            return requested if fill >= requested else None
        return fill if fill >= requested and fill > 0 else None
    raise ValueError(f"unknown position type {position_type}")


def close_fill_price(
    *, mark: Decimal, position_type: int, requested: Decimal, fee: Decimal, precision: int
) -> Decimal | None:
    """Closing a LONG sells: at mark × (1 − fee), never below the requested close price."""
    if position_type == LONG:
        fill = _round(_CTX.multiply(mark, _CTX.subtract(_ONE, fee)), precision, ROUND_CEILING)
        return fill if fill >= requested and fill > 0 else None
    if position_type == SHORT:
        fill = _round(_CTX.multiply(mark, _CTX.add(_ONE, fee)), precision, ROUND_FLOOR)
        return fill if 0 < fill <= requested else None
    raise ValueError(f"unknown position type {position_type}")
