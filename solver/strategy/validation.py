"""Pure: judge a strategy order request (trading-rules.md §3) and the list filters. No I/O.

`check_order(raw, symbol_of)` takes the JSON object exactly as sent (numbers as Decimal, never
float) and returns the parsed request or *every* violation, each with its error code and a
sentence that names the field and its bound (the API answers with the first and lists all in
`error_detail`, as the instant open gate does).

Numbers: prices, leverage and slippage with more than 18 decimals are rounded to 18 (the chain's
fixed point), as for instant opens; the input amount is money the order commits, so it is
rejected beyond 18 decimals instead of being changed. NaN, infinities, negative values and
values beyond uint256 have no meaning and are rejected.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from solver.core.errors import ErrorCode
from solver.core.units import (
    UINT256_MAX,
    NumberFormatError,
    fmt,
    from_wei,
    has_at_most_decimals,
    parse_decimal,
    round_to_wei,
)
from solver.db.models import StrategyType
from solver.market.locked_params import LeverageError, Violation, locked_percents, max_leverage, min_leverage
from solver.settings import SymbolConfig

MAX_SUBORDERS = 255  # also the bound of max_invocations
MAX_DELAY_S = 2_592_000  # 30 days
MONEY_DECIMALS = 18
LIST_DEFAULT_SIZE = 20
LIST_MAX_SIZE = 100
LONG, SHORT = 0, 1
_MAX_AMOUNT = from_wei(UINT256_MAX)  # in wei it must fit a uint256
_MAX_ID = 2**63 - 1
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no", ""})

INPUT_KEYS = ("input_amount", "initial_input_amount")  # the second is the seed's name, an alias


@dataclass(frozen=True, slots=True)
class StrategyRequest:
    """A valid POST /strategy-orders body, normalised (what is stored)."""

    type: StrategyType
    symbol_id: int
    position_type: int
    leverage: Decimal
    input_amount: Decimal
    max_suborders: int
    max_invocations: int
    slippage: Decimal
    limit_price: Decimal | None = None  # LIMIT
    delay_s: int | None = None  # DCA
    band_from: Decimal | None = None  # DCA, optional
    band_to: Decimal | None = None

    def fingerprint(self) -> dict[str, object]:
        """What makes two requests the same (for Idempotency-Key replays): the parsed values, so
        "0.5", 0.5 and "5E-1" are one request."""
        return {
            "type": self.type.value,
            "symbol_id": self.symbol_id,
            "position_type": self.position_type,
            "leverage": self.leverage,
            "input_amount": self.input_amount,
            "max_suborders": self.max_suborders,
            "max_invocations": self.max_invocations,
            "slippage": self.slippage,
            "limit_price": self.limit_price,
            "delay_s": self.delay_s,
            "band_from": self.band_from,
            "band_to": self.band_to,
        }


@dataclass(frozen=True, slots=True)
class Checked:
    """The request when valid, else None and every violation (in body order)."""

    request: StrategyRequest | None
    violations: tuple[Violation, ...]


@dataclass(frozen=True, slots=True)
class ListQuery:
    type: StrategyType | None = None
    include_finished: bool = False
    size: int = LIST_DEFAULT_SIZE
    before_id: int | None = None


@dataclass(frozen=True, slots=True)
class CheckedQuery:
    query: ListQuery | None
    violations: tuple[Violation, ...]


# --- field readers -------------------------------------------------------------------------------


def _show(value: object) -> str:
    """A value for a message: decimals plain (short), anything else as sent, cut to 40 characters."""
    if isinstance(value, Decimal) and value.is_finite():
        text = fmt(value)
        return text if len(text) <= 40 else f"{value:.6E}"
    if isinstance(value, str):
        return repr(value[:40])
    return repr(value)[:40]


class _Violations:
    def __init__(self) -> None:
        self.items: list[Violation] = []

    def add(self, code: ErrorCode, message: str) -> None:
        self.items.append(Violation(code, message))

    def number(self, raw: Any, field: str, code: ErrorCode, *, capped: bool = True) -> Decimal | None:
        """A finite Decimal (any sign, checked by the caller), else a violation; `capped`: also
        within uint256 in wei (fields with a tighter bound of their own say that bound instead)."""
        if raw is None:
            self.add(code, f"{field} is required.")
            return None
        try:
            value = parse_decimal(raw, field=field, allow_negative=True)
        except NumberFormatError as exc:
            self.add(code, f"{exc}.")
            return None
        if capped and value.copy_abs() > _MAX_AMOUNT:  # copy_abs: exact (abs() rounds to 28 digits)
            self.add(code, f"{field} is out of range: at most {_show(_MAX_AMOUNT)}, got {_show(value)}.")
            return None
        return value

    def positive(self, raw: Any, field: str, code: ErrorCode, *, capped: bool = True) -> Decimal | None:
        """A number > 0 rounded to 18 decimals (prices, leverage)."""
        value = self.number(raw, field, code, capped=capped)
        if value is None:
            return None
        if value <= 0:
            self.add(code, f"{field} must be greater than 0, got {_show(value)}.")
            return None
        rounded = round_to_wei(value)
        if rounded <= 0:
            self.add(code, f"{field} must be at least 0.000000000000000001, got {_show(value)}.")
            return None
        return rounded

    def whole(self, raw: Any, field: str, code: ErrorCode, *, lo: int, hi: int, bound: str) -> int | None:
        """A whole number in [lo, hi]; `bound` describes the range for the message."""
        if raw is None:
            self.add(code, f"{field} is required: {bound}.")
            return None
        value: int | None = None
        if isinstance(raw, int) and not isinstance(raw, bool):
            value = raw
        elif isinstance(raw, str | Decimal | float) and not isinstance(raw, bool):
            try:
                dec = parse_decimal(raw, field=field, allow_negative=True)
            except NumberFormatError:
                dec = None
            if dec is not None and dec == dec.to_integral_value():
                value = int(dec)
        if value is None:
            self.add(code, f"{field} must be a whole number ({bound}), got {_show(raw)}.")
            return None
        if not lo <= value <= hi:
            self.add(code, f"{field} must be {bound}, got {_show(Decimal(value))}.")
            return None
        return value


# --- the request ---------------------------------------------------------------------------------


def check_order(raw: Mapping[str, Any], symbol_of: Callable[[int], SymbolConfig | None]) -> Checked:
    """Every violation of a POST /strategy-orders body; `symbol_of` finds a symbol by id."""
    v = _Violations()
    kind = _type(v, raw.get("type"))
    sym = _symbol(v, raw.get("symbol_id"), symbol_of)
    side = v.whole(
        raw.get("position_type"), "position_type", ErrorCode.STRATEGY_INVALID_POSITION_TYPE,
        lo=LONG, hi=SHORT, bound="0 (LONG) or 1 (SHORT)",
    )  # fmt: skip
    leverage = _leverage(v, raw.get("leverage"), sym)
    amount = _input_amount(v, raw, sym)
    max_sub = v.whole(
        raw.get("max_suborders"), "max_suborders", ErrorCode.STRATEGY_INVALID_MAX_SUBORDERS,
        lo=1, hi=MAX_SUBORDERS, bound=f"from 1 to {MAX_SUBORDERS}",
    )  # fmt: skip
    # Its lower bound is max_suborders; while that is not valid, only [1, 255] can be judged.
    lo, bound = (
        (max_sub, f"from max_suborders ({max_sub}) to {MAX_SUBORDERS}")
        if max_sub
        else (1, f"from 1 to {MAX_SUBORDERS}")
    )
    max_inv = v.whole(
        raw.get("max_invocations"), "max_invocations", ErrorCode.STRATEGY_INVALID_MAX_INVOCATIONS,
        lo=lo, hi=MAX_SUBORDERS, bound=bound,
    )  # fmt: skip
    slippage = _slippage(v, raw.get("slippage"))
    settings = _settings(v, kind, raw.get("settings"))

    if v.items:
        return Checked(None, tuple(v.items))
    assert kind is not None and sym is not None and side is not None and leverage is not None
    assert amount is not None and max_sub is not None and max_inv is not None and slippage is not None
    assert settings is not None
    price, delay, band_from, band_to = settings
    return Checked(
        StrategyRequest(
            type=kind,
            symbol_id=sym.symbol_id,
            position_type=side,
            leverage=leverage,
            input_amount=amount,
            max_suborders=max_sub,
            max_invocations=max_inv,
            slippage=slippage,
            limit_price=price,
            delay_s=delay,
            band_from=band_from,
            band_to=band_to,
        ),
        (),
    )


def _type(v: _Violations, raw: Any) -> StrategyType | None:
    code = ErrorCode.STRATEGY_INVALID_TYPE
    if raw is None:
        v.add(code, "type is required: limit or dca.")
        return None
    if isinstance(raw, str):
        try:
            return StrategyType(raw.strip().lower())
        except ValueError:
            pass
    v.add(code, f"type must be limit or dca, got {_show(raw)}.")
    return None


def _symbol(v: _Violations, raw: Any, symbol_of: Callable[[int], SymbolConfig | None]) -> SymbolConfig | None:
    code = ErrorCode.STRATEGY_INVALID_SYMBOL
    symbol_id = v.whole(raw, "symbol_id", code, lo=1, hi=_MAX_ID, bound="a positive symbol id (see /contract-symbols)")
    if symbol_id is None:
        return None
    sym = symbol_of(symbol_id)
    if sym is None:
        v.add(code, f"symbol_id {symbol_id} is not a symbol of this solver (see /contract-symbols).")
        return None
    if not (sym.is_valid and sym.rfq_allowed):
        v.add(code, f"{sym.name} (symbol_id {symbol_id}) is not open for trading.")
        return None
    return sym


def _leverage(v: _Violations, raw: Any, sym: SymbolConfig | None) -> Decimal | None:
    code = ErrorCode.STRATEGY_INVALID_LEVERAGE
    leverage = v.positive(raw, "leverage", code, capped=sym is None)
    if leverage is None or sym is None:
        return leverage
    lo, hi = min_leverage(sym), max_leverage(sym)
    if hi == 0:
        v.add(code, f"{sym.name} allows no leverage with its current settings.")
        return None
    try:
        locked_percents(sym, leverage)
    except LeverageError:
        v.add(code, f"leverage must be from {lo} to {hi} for {sym.name}, got {_show(leverage)}.")
        return None
    return leverage


def _input_amount(v: _Violations, raw: Mapping[str, Any], sym: SymbolConfig | None) -> Decimal | None:
    """`input_amount`, or its alias `initial_input_amount`; both may be sent if they are equal."""
    code = ErrorCode.STRATEGY_INVALID_INPUT_AMOUNT
    sent = [(key, raw[key]) for key in INPUT_KEYS if raw.get(key) is not None]
    if not sent:
        v.add(code, "input_amount is required (initial_input_amount is also accepted): the margin of the order.")
        return None
    values: list[tuple[str, Decimal]] = []
    for key, value in sent:
        parsed = _amount(v, key, value, sym)
        if parsed is None:
            return None
        values.append((key, parsed))
    if len(values) == 2 and values[0][1] != values[1][1]:
        v.add(
            code,
            f"input_amount ({_show(values[0][1])}) and initial_input_amount ({_show(values[1][1])}) differ: "
            "send one of them.",
        )
        return None
    return values[0][1]


def _amount(v: _Violations, field: str, raw: Any, sym: SymbolConfig | None) -> Decimal | None:
    code = ErrorCode.STRATEGY_INVALID_INPUT_AMOUNT
    amount = v.number(raw, field, code)
    if amount is None:
        return None
    if amount <= 0:
        v.add(code, f"{field} must be greater than 0, got {_show(amount)}.")
        return None
    if not has_at_most_decimals(amount, MONEY_DECIMALS):
        v.add(code, f"{field} must have at most {MONEY_DECIMALS} decimals, got {_show(raw)}.")
        return None
    if sym is not None and amount < sym.min_acceptable_quote_value:
        v.add(
            code,
            f"{field} must be at least {fmt(sym.min_acceptable_quote_value)}, the {sym.name} minimum quote value, "
            f"got {_show(amount)}.",
        )
        return None
    return amount


def _slippage(v: _Violations, raw: Any) -> Decimal | None:
    code = ErrorCode.STRATEGY_INVALID_SLIPPAGE
    value = v.number(raw, "slippage", code, capped=False)
    if value is None:
        return None
    rounded = round_to_wei(value)
    if not Decimal(0) < rounded <= 1:
        v.add(code, f"slippage must be more than 0 and at most 1 (0.001 is 0.1 %), got {_show(value)}.")
        return None
    return rounded


_Terms = tuple[Decimal | None, int | None, Decimal | None, Decimal | None]  # price, delay, from, to


def _settings(v: _Violations, kind: StrategyType | None, raw: Any) -> _Terms | None:
    code = ErrorCode.STRATEGY_INVALID_SETTINGS
    if kind is None:
        return None  # unknown type: nothing to judge them against (type is reported)
    shape = '{"price": str}' if kind == StrategyType.LIMIT else '{"delay": seconds, "price_range_from"?, ...}'
    if raw is None:
        v.add(code, f"settings is required for a {kind.value} order: {shape}.")
        return None
    if not isinstance(raw, Mapping):
        v.add(code, f"settings must be an object for a {kind.value} order: {shape}.")
        return None
    if kind == StrategyType.LIMIT:
        price = v.positive(raw.get("price"), "settings.price", code)
        return None if price is None else (price, None, None, None)
    count = len(v.items)
    delay = v.whole(
        raw.get("delay"), "settings.delay", code, lo=1, hi=MAX_DELAY_S, bound=f"from 1 to {MAX_DELAY_S} seconds"
    )
    lo = _optional_price(v, raw.get("price_range_from"), "settings.price_range_from")
    hi = _optional_price(v, raw.get("price_range_to"), "settings.price_range_to")
    if lo is not None and hi is not None and lo > hi:
        v.add(
            code,
            f"settings.price_range_from must not be above settings.price_range_to, got {_show(lo)} > {_show(hi)}.",
        )
    if len(v.items) > count:
        return None
    return (None, delay, lo, hi)


def _optional_price(v: _Violations, raw: Any, field: str) -> Decimal | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    return v.positive(raw, field, ErrorCode.STRATEGY_INVALID_SETTINGS)


# --- GET /strategy-orders filters ----------------------------------------------------------------


def check_list_query(
    type: str | None, include_finished: str | None, size: str | None, before_id: str | None
) -> CheckedQuery:
    """The query string of the list, as sent (strings): every violation, or the filters."""
    v = _Violations()
    code = ErrorCode.STRATEGY_INVALID_QUERY
    kind: StrategyType | None = None
    if type is not None and type.strip():
        try:
            kind = StrategyType(type.strip().lower())
        except ValueError:
            v.add(code, f"type must be limit or dca, got {_show(type)}.")
    finished = False
    if include_finished is not None:
        flag = include_finished.strip().lower()
        if flag in _TRUE:
            finished = True
        elif flag not in _FALSE:
            v.add(code, f"include_finished must be true or false, got {_show(include_finished)}.")
    page = LIST_DEFAULT_SIZE
    if size is not None and size.strip():
        got = v.whole(size.strip(), "size", code, lo=1, hi=LIST_MAX_SIZE, bound=f"from 1 to {LIST_MAX_SIZE}")
        page = got if got is not None else page
    cursor: int | None = None
    if before_id is not None and before_id.strip():
        cursor = v.whole(before_id.strip(), "before_id", code, lo=1, hi=_MAX_ID, bound="a positive order id")
    if v.items:
        return CheckedQuery(None, tuple(v.items))
    return CheckedQuery(ListQuery(type=kind, include_finished=finished, size=page, before_id=cursor), ())


__all__ = [
    "INPUT_KEYS",
    "LIST_DEFAULT_SIZE",
    "LIST_MAX_SIZE",
    "MAX_DELAY_S",
    "MAX_SUBORDERS",
    "Checked",
    "CheckedQuery",
    "ListQuery",
    "StrategyRequest",
    "Violation",
    "check_list_query",
    "check_order",
]
