"""The pure check of strategy order requests (trading-rules.md §3, http-api.md §5): every bound at,
just inside and just outside; LIMIT and DCA settings; the `initial_input_amount` alias; numbers
that have no meaning; every violation reported at once, each naming its field and bound."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from solver.core.errors import ErrorCode
from solver.core.units import from_wei
from solver.db.models import StrategyType
from solver.quotes.service import request_hash
from solver.settings import SymbolConfig
from solver.strategy.validation import (
    LIST_DEFAULT_SIZE,
    Checked,
    CheckedQuery,
    ListQuery,
    check_list_query,
    check_order,
)

pytestmark = pytest.mark.unit

D = Decimal
E = ErrorCode


def _sym(symbol_id: int, name: str, **over: object) -> SymbolConfig:
    base: dict[str, object] = {
        "symbol_id": symbol_id,
        "name": name,
        "symbol": name.removesuffix("USDT"),
        "price_precision": 1,
        "quantity_precision": 3,
        "maintenance_ratio": D("0.01"),  # leverage 1 to floor(0.6 / 0.01) = 60, capped below
        "max_leverage_cap": 50,
        "min_acceptable_quote_value": D(10),
        "min_acceptable_portion_lf": D("0.001"),
        "trading_fee": D("0.0006"),
        "max_notional_value": D(1_000_000),
        "notional_cap": D(5_000_000),
    }
    base.update(over)
    return SymbolConfig.model_validate(base)


SYMBOLS = {
    s.symbol_id: s
    for s in [
        _sym(1, "BTCUSDT"),
        _sym(2, "OFFUSDT", is_valid=False),
        _sym(3, "NORFQUSDT", rfq_allowed=False),
        # lf ≥ 0.015 of the margin ⇔ cn·L ≥ 0.045: leverages below 4.5 are refused, so 5 to 50.
        _sym(4, "HILFUSDT", min_acceptable_portion_lf=D("0.015")),
        _sym(5, "NOLEVUSDT", maintenance_ratio=D("0.9"), max_leverage_cap=None),  # floor(0.6 / 0.9) = 0
    ]
}


def symbol_of(symbol_id: int) -> SymbolConfig | None:
    return SYMBOLS.get(symbol_id)


def limit(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "limit", "symbol_id": 1, "position_type": 0, "leverage": "10", "input_amount": "100",
        "max_suborders": 4, "max_invocations": 8, "slippage": "0.001", "settings": {"price": "59000"},
    }  # fmt: skip
    body.update(over)
    return body


def dca(**over: Any) -> dict[str, Any]:
    return limit(**{"type": "dca", "settings": {"delay": 60}, **over})


def check(body: dict[str, Any]) -> Checked:
    return check_order(body, symbol_of)


def codes(body: dict[str, Any]) -> list[ErrorCode]:
    return [v.code for v in check(body).violations]


def messages(body: dict[str, Any]) -> list[str]:
    return [v.message for v in check(body).violations]


def assert_one(body: dict[str, Any], code: ErrorCode, *needles: str) -> None:
    got = check(body)
    assert got.request is None
    assert [v.code for v in got.violations] == [code], got.violations
    for needle in needles:
        assert needle in got.violations[0].message, got.violations[0].message


# --- sound requests -------------------------------------------------------------------------------


def test_a_sound_limit_order_is_parsed() -> None:
    got = check(limit(position_type="1", max_suborders="4", leverage=D("12.5"), settings={"price": 59000.5}))
    assert got.violations == ()
    req = got.request
    assert req is not None
    assert (req.type, req.symbol_id, req.position_type, req.max_suborders, req.max_invocations) == (
        StrategyType.LIMIT, 1, 1, 4, 8,
    )  # fmt: skip
    assert (req.leverage, req.input_amount, req.slippage, req.limit_price) == (D("12.5"), 100, D("0.001"), D("59000.5"))
    assert (req.delay_s, req.band_from, req.band_to) == (None, None, None)


def test_a_sound_dca_order_with_and_without_its_price_range() -> None:
    req = check(dca()).request
    assert req is not None and req.type == StrategyType.DCA and req.delay_s == 60
    assert (req.limit_price, req.band_from, req.band_to) == (None, None, None)
    req = check(dca(settings={"delay": "3600", "price_range_from": "58000", "price_range_to": 61000})).request
    assert req is not None and (req.delay_s, req.band_from, req.band_to) == (3600, 58000, 61000)
    # One side only; "" and null are "not set".
    req = check(dca(settings={"delay": 1, "price_range_from": "", "price_range_to": "61000"})).request
    assert req is not None and (req.band_from, req.band_to) == (None, 61000)
    req = check(dca(settings={"delay": 1, "price_range_from": "58000", "price_range_to": None})).request
    assert req is not None and (req.band_from, req.band_to) == (58000, None)


def test_type_is_case_insensitive_and_extra_keys_are_ignored() -> None:
    req = check(limit(type=" LIMIT ", wallet="0xabc", max_path_length=2, settings={"price": "1", "delay": 5})).request
    assert req is not None and req.type == StrategyType.LIMIT and req.delay_s is None
    req = check(dca(type="DCA", settings={"delay": 5, "price": "1"})).request
    assert req is not None and req.limit_price is None


def test_prices_leverage_and_slippage_are_rounded_to_18_decimals() -> None:
    req = check(
        limit(leverage="10.0000000000000000004", slippage="0.0010000000000000000004",
              settings={"price": "60600.1234567890123456789012345"})
    ).request  # fmt: skip
    assert req is not None
    assert req.limit_price == D("60600.123456789012345679")
    assert req.leverage == 10 and req.slippage == D("0.001")


def test_the_fingerprint_ignores_how_numbers_are_written() -> None:
    a = check(limit(leverage="10", input_amount="100", slippage="0.001", settings={"price": "59000"})).request
    b = check(limit(leverage=10, input_amount=D("1E+2"), slippage=D("1E-3"), settings={"price": 59000.0})).request
    c = check(limit(input_amount="100.5")).request
    assert a is not None and b is not None and c is not None
    assert request_hash(a.fingerprint()) == request_hash(b.fingerprint()) != request_hash(c.fingerprint())


# --- bounds: at, just inside, just outside ------------------------------------------------------------


BOUNDS: list[tuple[str, dict[str, Any], ErrorCode | None]] = [
    # max_suborders in [1, 255] (max_invocations 255 so only this bound is tested)
    ("max_suborders 0", limit(max_suborders=0, max_invocations=255), E.STRATEGY_INVALID_MAX_SUBORDERS),
    ("max_suborders 1", limit(max_suborders=1, max_invocations=255), None),
    ("max_suborders 2", limit(max_suborders=2, max_invocations=255), None),
    ("max_suborders 254", limit(max_suborders=254, max_invocations=255), None),
    ("max_suborders 255", limit(max_suborders=255, max_invocations=255), None),
    ("max_suborders 256", limit(max_suborders=256, max_invocations=255), E.STRATEGY_INVALID_MAX_SUBORDERS),
    ("max_suborders -1", limit(max_suborders=-1, max_invocations=255), E.STRATEGY_INVALID_MAX_SUBORDERS),
    ("max_suborders 2.5", limit(max_suborders="2.5", max_invocations=255), E.STRATEGY_INVALID_MAX_SUBORDERS),
    ("max_suborders 3.0", limit(max_suborders=D("3.0"), max_invocations=255), None),
    ("max_suborders true", limit(max_suborders=True, max_invocations=255), E.STRATEGY_INVALID_MAX_SUBORDERS),
    # max_invocations in [max_suborders, 255]
    ("max_invocations below", limit(max_suborders=5, max_invocations=4), E.STRATEGY_INVALID_MAX_INVOCATIONS),
    ("max_invocations at", limit(max_suborders=5, max_invocations=5), None),
    ("max_invocations inside", limit(max_suborders=5, max_invocations=6), None),
    ("max_invocations 254", limit(max_suborders=5, max_invocations=254), None),
    ("max_invocations 255", limit(max_suborders=5, max_invocations=255), None),
    ("max_invocations 256", limit(max_suborders=5, max_invocations=256), E.STRATEGY_INVALID_MAX_INVOCATIONS),
    # slippage in (0, 1]
    ("slippage 0", limit(slippage="0"), E.STRATEGY_INVALID_SLIPPAGE),
    ("slippage 1 wei", limit(slippage="0.000000000000000001"), None),
    ("slippage rounds to 0", limit(slippage="0.0000000000000000004"), E.STRATEGY_INVALID_SLIPPAGE),
    ("slippage 0.5", limit(slippage=0.5), None),
    ("slippage 1 - wei", limit(slippage="0.999999999999999999"), None),
    ("slippage 1", limit(slippage=1), None),
    ("slippage 1 + wei", limit(slippage="1.000000000000000001"), E.STRATEGY_INVALID_SLIPPAGE),
    ("slippage negative", limit(slippage="-0.001"), E.STRATEGY_INVALID_SLIPPAGE),
    # leverage in [min, max] of the symbol: BTCUSDT 1 to 50
    ("leverage 0", limit(leverage="0"), E.STRATEGY_INVALID_LEVERAGE),
    ("leverage 0.999", limit(leverage="0.999"), E.STRATEGY_INVALID_LEVERAGE),
    ("leverage 1", limit(leverage="1"), None),
    ("leverage 1.5", limit(leverage="1.5"), None),
    ("leverage 49.999", limit(leverage="49.999"), None),
    ("leverage 50", limit(leverage=50), None),
    ("leverage 50 + wei", limit(leverage="50.000000000000000001"), E.STRATEGY_INVALID_LEVERAGE),
    ("leverage 51", limit(leverage="51"), E.STRATEGY_INVALID_LEVERAGE),
    # HILFUSDT: its LF portion rule refuses leverage below 4.5, whole leverages 5 to 50
    ("min leverage 4.99", limit(symbol_id=4, leverage="4.99"), E.STRATEGY_INVALID_LEVERAGE),
    ("min leverage 5", limit(symbol_id=4, leverage="5"), None),
    ("min leverage 5.01", limit(symbol_id=4, leverage="5.01"), None),
    ("no leverage at all", limit(symbol_id=5, leverage="1"), E.STRATEGY_INVALID_LEVERAGE),
    # input amount: > 0, at most 18 decimals, at least the minimum quote value (10)
    ("input below min", limit(input_amount="9.999999999999999999"), E.STRATEGY_INVALID_INPUT_AMOUNT),
    ("input at min", limit(input_amount="10"), None),
    ("input min + wei", limit(input_amount="10.000000000000000001"), None),
    ("input 19 decimals", limit(input_amount="10.0000000000000000001"), E.STRATEGY_INVALID_INPUT_AMOUNT),
    ("input trailing zeros", limit(input_amount="10.000000000000000000000000"), None),  # 10, exactly
    ("input 40 decimals", limit(input_amount="12." + "3" * 40), E.STRATEGY_INVALID_INPUT_AMOUNT),
    ("input uint256 max", limit(input_amount=str(from_wei(2**256 - 1))), None),
    ("input beyond uint256", limit(input_amount=str(from_wei(2**256))), E.STRATEGY_INVALID_INPUT_AMOUNT),
    ("input 1e80", limit(input_amount="1e80"), E.STRATEGY_INVALID_INPUT_AMOUNT),
    ("input 1e80 number", limit(input_amount=D("1E+80")), E.STRATEGY_INVALID_INPUT_AMOUNT),
    ("input zero", limit(input_amount="0"), E.STRATEGY_INVALID_INPUT_AMOUNT),
    ("input 0E-21", limit(input_amount="0E-21"), E.STRATEGY_INVALID_INPUT_AMOUNT),
    ("input negative", limit(input_amount="-100"), E.STRATEGY_INVALID_INPUT_AMOUNT),
    ("input NaN", limit(input_amount="NaN"), E.STRATEGY_INVALID_INPUT_AMOUNT),
    ("input Decimal NaN", limit(input_amount=D("NaN")), E.STRATEGY_INVALID_INPUT_AMOUNT),
    ("input Infinity", limit(input_amount="Infinity"), E.STRATEGY_INVALID_INPUT_AMOUNT),
    ("input garbage", limit(input_amount="100 USD"), E.STRATEGY_INVALID_INPUT_AMOUNT),
    ("input boolean", limit(input_amount=True), E.STRATEGY_INVALID_INPUT_AMOUNT),
    ("input exponent", limit(input_amount="1.01E+2"), None),
    # position_type 0 or 1
    ("position -1", limit(position_type=-1), E.STRATEGY_INVALID_POSITION_TYPE),
    ("position 0", limit(position_type=0), None),
    ("position 1", limit(position_type=1), None),
    ("position 2", limit(position_type=2), E.STRATEGY_INVALID_POSITION_TYPE),
    ("position true", limit(position_type=True), E.STRATEGY_INVALID_POSITION_TYPE),
    # symbol: known, valid, rfq allowed
    ("symbol unknown", limit(symbol_id=99), E.STRATEGY_INVALID_SYMBOL),
    ("symbol 0", limit(symbol_id=0), E.STRATEGY_INVALID_SYMBOL),
    ("symbol text", limit(symbol_id="BTCUSDT"), E.STRATEGY_INVALID_SYMBOL),
    ("symbol not valid", limit(symbol_id=2), E.STRATEGY_INVALID_SYMBOL),
    ("symbol rfq off", limit(symbol_id=3), E.STRATEGY_INVALID_SYMBOL),
    ("symbol as string", limit(symbol_id="1"), None),
    # type
    ("type market", limit(type="market"), E.STRATEGY_INVALID_TYPE),
    ("type number", limit(type=1), E.STRATEGY_INVALID_TYPE),
    # LIMIT settings: price > 0
    ("limit price 0", limit(settings={"price": "0"}), E.STRATEGY_INVALID_SETTINGS),
    ("limit price 1 wei", limit(settings={"price": "0.000000000000000001"}), None),
    ("limit price below 1 wei", limit(settings={"price": "0.0000000000000000001"}), E.STRATEGY_INVALID_SETTINGS),
    ("limit price negative", limit(settings={"price": "-59000"}), E.STRATEGY_INVALID_SETTINGS),
    ("limit price NaN", limit(settings={"price": "NaN"}), E.STRATEGY_INVALID_SETTINGS),
    ("limit price 1e80", limit(settings={"price": "1e80"}), E.STRATEGY_INVALID_SETTINGS),
    ("limit price missing", limit(settings={}), E.STRATEGY_INVALID_SETTINGS),
    ("limit settings missing", limit(settings=None), E.STRATEGY_INVALID_SETTINGS),
    ("limit settings a list", limit(settings=["59000"]), E.STRATEGY_INVALID_SETTINGS),
    ("limit settings a string", limit(settings="59000"), E.STRATEGY_INVALID_SETTINGS),
    # DCA settings: delay in [1, 2592000]; range > 0 and from ≤ to
    ("delay 0", dca(settings={"delay": 0}), E.STRATEGY_INVALID_SETTINGS),
    ("delay 1", dca(settings={"delay": 1}), None),
    ("delay 2", dca(settings={"delay": 2}), None),
    ("delay 30 days - 1", dca(settings={"delay": 2_591_999}), None),
    ("delay 30 days", dca(settings={"delay": 2_592_000}), None),
    ("delay 30 days + 1", dca(settings={"delay": 2_592_001}), E.STRATEGY_INVALID_SETTINGS),
    ("delay fraction", dca(settings={"delay": D("1.5")}), E.STRATEGY_INVALID_SETTINGS),
    ("delay missing", dca(settings={"price_range_from": "1"}), E.STRATEGY_INVALID_SETTINGS),
    ("range equal", dca(settings={"delay": 60, "price_range_from": "60000", "price_range_to": "60000"}), None),
    ("range from above to", dca(settings={"delay": 60, "price_range_from": "60000.1", "price_range_to": "60000"}),
     E.STRATEGY_INVALID_SETTINGS),
    ("range from 0", dca(settings={"delay": 60, "price_range_from": "0"}), E.STRATEGY_INVALID_SETTINGS),
    ("range to negative", dca(settings={"delay": 60, "price_range_to": "-1"}), E.STRATEGY_INVALID_SETTINGS),
    ("range to NaN", dca(settings={"delay": 60, "price_range_to": "NaN"}), E.STRATEGY_INVALID_SETTINGS),
]  # fmt: skip


@pytest.mark.parametrize(("body", "code"), [(b, c) for _, b, c in BOUNDS], ids=[n for n, _, _ in BOUNDS])
def test_bounds(body: dict[str, Any], code: ErrorCode | None) -> None:
    got = check(body)
    if code is None:
        assert got.violations == () and got.request is not None
    else:
        assert got.request is None
        assert [v.code for v in got.violations] == [code], got.violations
        assert all(v.code.status == 400 for v in got.violations)


MESSAGES: list[tuple[dict[str, Any], tuple[str, ...]]] = [
    (limit(max_suborders=0, max_invocations=255), ("max_suborders", "from 1 to 255", "got 0")),
    (limit(max_suborders=5, max_invocations=4), ("max_invocations", "from max_suborders (5) to 255", "got 4")),
    (limit(max_suborders=300, max_invocations=256), ("max_invocations", "from 1 to 255", "got 256")),
    (limit(slippage="1.5"), ("slippage", "more than 0 and at most 1", "got 1.5")),
    (limit(leverage="51"), ("leverage", "from 1 to 50 for BTCUSDT", "got 51")),
    (limit(symbol_id=4, leverage="2"), ("leverage", "from 5 to 50 for HILFUSDT", "got 2")),
    (limit(input_amount="9.5"), ("input_amount", "at least 10", "BTCUSDT minimum quote value", "got 9.5")),
    (limit(input_amount="10." + "1" * 40), ("input_amount", "at most 18 decimals")),
    (limit(input_amount="-1"), ("input_amount", "greater than 0", "got -1")),
    (limit(input_amount="1e80"), ("input_amount", "out of range")),
    (limit(input_amount="NaN"), ("input_amount", "must be a number")),
    (limit(position_type=2), ("position_type", "0 (LONG) or 1 (SHORT)", "got 2")),
    (limit(symbol_id=99), ("symbol_id 99", "not a symbol")),
    (limit(symbol_id=2), ("OFFUSDT", "not open for trading")),
    (limit(type="market"), ("type must be limit or dca", "'market'")),
    (limit(settings={"price": "0"}), ("settings.price", "greater than 0")),
    (limit(settings=None), ("settings is required", '{"price": str}')),
    (dca(settings={"delay": 2_592_001}), ("settings.delay", "from 1 to 2592000 seconds", "got 2592001")),
    (dca(settings={"delay": 1, "price_range_from": "3", "price_range_to": "2"}),
     ("settings.price_range_from", "settings.price_range_to", "3 > 2")),
    (limit(max_suborders=None), ("max_suborders is required", "from 1 to 255")),
]  # fmt: skip


@pytest.mark.parametrize(("body", "needles"), MESSAGES, ids=[m[1][0] + f"-{i}" for i, m in enumerate(MESSAGES)])
def test_messages_name_the_field_and_the_bound(body: dict[str, Any], needles: tuple[str, ...]) -> None:
    # The one about the field named first (a body may break a second rule on purpose).
    (message,) = [m for m in messages(body) if m.startswith(needles[0])]
    for needle in needles:
        assert needle in message, message


# --- the input amount alias ------------------------------------------------------------------------


def test_initial_input_amount_is_an_alias_of_input_amount() -> None:
    body = limit()
    del body["input_amount"]
    req = check({**body, "initial_input_amount": "250"}).request
    assert req is not None and req.input_amount == 250
    # Both, equal in value however written: fine. A null one is not sent.
    for pair in [("250", 250), ("250", "2.5E+2"), ("250.000", D("250"))]:
        req = check({**body, "input_amount": pair[0], "initial_input_amount": pair[1]}).request
        assert req is not None and req.input_amount == 250
    req = check({**body, "input_amount": None, "initial_input_amount": "250"}).request
    assert req is not None and req.input_amount == 250
    req = check({**body, "input_amount": "250", "initial_input_amount": None}).request
    assert req is not None and req.input_amount == 250


def test_the_alias_is_judged_under_its_own_name_and_they_must_agree() -> None:
    body = limit()
    del body["input_amount"]
    assert_one(
        {**body, "initial_input_amount": "5"}, E.STRATEGY_INVALID_INPUT_AMOUNT, "initial_input_amount", "at least 10"
    )
    assert_one({**body, "initial_input_amount": "NaN"}, E.STRATEGY_INVALID_INPUT_AMOUNT, "initial_input_amount")
    assert_one(
        {**body, "input_amount": "250", "initial_input_amount": "251"},
        E.STRATEGY_INVALID_INPUT_AMOUNT, "input_amount (250)", "initial_input_amount (251)", "differ",
    )  # fmt: skip
    assert_one(body, E.STRATEGY_INVALID_INPUT_AMOUNT, "input_amount is required", "initial_input_amount")


# --- every violation at once -----------------------------------------------------------------------


def test_every_violation_is_reported_in_body_order() -> None:
    body = {
        "type": "limit", "symbol_id": 1, "position_type": 7, "leverage": "0", "input_amount": "0." + "9" * 40,
        "max_suborders": 0, "max_invocations": 300, "slippage": "NaN", "settings": {"price": "-1"},
    }  # fmt: skip
    assert codes(body) == [
        E.STRATEGY_INVALID_POSITION_TYPE,
        E.STRATEGY_INVALID_LEVERAGE,
        E.STRATEGY_INVALID_INPUT_AMOUNT,
        E.STRATEGY_INVALID_MAX_SUBORDERS,
        E.STRATEGY_INVALID_MAX_INVOCATIONS,
        E.STRATEGY_INVALID_SLIPPAGE,
        E.STRATEGY_INVALID_SETTINGS,
    ]
    assert [m.split(" ")[0] for m in messages(body)] == [
        "position_type", "leverage", "input_amount", "max_suborders", "max_invocations", "slippage",
        "settings.price",
    ]  # fmt: skip


def test_an_empty_body_names_every_required_field() -> None:
    assert codes({}) == [
        E.STRATEGY_INVALID_TYPE,
        E.STRATEGY_INVALID_SYMBOL,
        E.STRATEGY_INVALID_POSITION_TYPE,
        E.STRATEGY_INVALID_LEVERAGE,
        E.STRATEGY_INVALID_INPUT_AMOUNT,
        E.STRATEGY_INVALID_MAX_SUBORDERS,
        E.STRATEGY_INVALID_MAX_INVOCATIONS,
        E.STRATEGY_INVALID_SLIPPAGE,
    ]  # settings are not judged without a type
    assert all("required" in m for m in messages({}))


def test_dca_settings_report_each_problem() -> None:
    body = dca(settings={"delay": 0, "price_range_from": "0", "price_range_to": "NaN"})
    assert codes(body) == [E.STRATEGY_INVALID_SETTINGS] * 3
    assert [m.split(" ")[0] for m in messages(body)] == [
        "settings.delay", "settings.price_range_from", "settings.price_range_to",
    ]  # fmt: skip


def test_an_unknown_symbol_still_gets_its_other_fields_judged() -> None:
    # Without a symbol the leverage and the minimum quote value cannot be judged; the rest is.
    body = limit(symbol_id=99, leverage="500", input_amount="1", max_suborders=0)
    assert codes(body) == [E.STRATEGY_INVALID_SYMBOL, E.STRATEGY_INVALID_MAX_SUBORDERS]


# --- the list filters ------------------------------------------------------------------------------


def query(
    type: str | None = None, finished: str | None = None, size: str | None = None, before: str | None = None
) -> CheckedQuery:
    return check_list_query(type, finished, size, before)


def test_list_defaults() -> None:
    assert query().query == ListQuery(type=None, include_finished=False, size=LIST_DEFAULT_SIZE, before_id=None)
    assert query("", "", "", "").query == ListQuery()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("limit",), ListQuery(type=StrategyType.LIMIT)),
        (("DCA",), ListQuery(type=StrategyType.DCA)),
        ((None, "true"), ListQuery(include_finished=True)),
        ((None, "TRUE"), ListQuery(include_finished=True)),
        ((None, "1"), ListQuery(include_finished=True)),
        ((None, "false"), ListQuery()),
        ((None, "0"), ListQuery()),
        ((None, None, "1"), ListQuery(size=1)),
        ((None, None, "2"), ListQuery(size=2)),
        ((None, None, "99"), ListQuery(size=99)),
        ((None, None, "100"), ListQuery(size=100)),
        ((None, None, None, "1"), ListQuery(before_id=1)),
        ((None, None, None, "2"), ListQuery(before_id=2)),
        ((None, None, None, str(2**63 - 1)), ListQuery(before_id=2**63 - 1)),
    ],
)
def test_list_filters(args: tuple[str | None, ...], expected: ListQuery) -> None:
    got = query(*args)
    assert got.violations == () and got.query == expected


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("market",), "type must be limit or dca"),
        ((None, "maybe"), "include_finished must be true or false"),
        ((None, None, "0"), "size must be from 1 to 100, got 0"),
        ((None, None, "101"), "size must be from 1 to 100, got 101"),
        ((None, None, "-1"), "size must be from 1 to 100"),
        ((None, None, "ten"), "size must be a whole number (from 1 to 100)"),
        ((None, None, "2.5"), "size must be a whole number"),
        ((None, None, None, "0"), "before_id must be a positive order id, got 0"),
        ((None, None, None, "-5"), "before_id must be a positive order id"),
        ((None, None, None, str(2**63)), "before_id must be a positive order id"),
        ((None, None, None, "abc"), "before_id must be a whole number"),
    ],
)
def test_list_filter_rejections(args: tuple[str | None, ...], needle: str) -> None:
    got = query(*args)
    assert got.query is None
    assert [v.code for v in got.violations] == [E.STRATEGY_INVALID_QUERY]
    assert needle in got.violations[0].message, got.violations[0].message


def test_list_reports_every_bad_filter() -> None:
    got = query("x", "y", "0", "0")
    assert len(got.violations) == 4 and got.query is None
