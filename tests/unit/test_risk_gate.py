"""The pure pre-trade gate: each rule of trading-rules.md §2 fires alone, with its own code."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from solver.core.errors import ErrorCode
from solver.market.locked_params import locked_amounts, locked_percents
from solver.risk.account import Locked
from solver.risk.gate import AccountSnapshot, Limits, OpenRequest, check_open
from solver.settings import load_settings

pytestmark = pytest.mark.unit

BTC = load_settings().symbol("BTCUSDT")
assert BTC is not None
MARK = Decimal(60000)
NOW = 1_800_000_000
D = Decimal


def request(leverage: int = 10, qty: str = "0.1", price: str = "60600", **kw: object) -> OpenRequest:
    notional = D(qty) * D(price)
    cva, lf, amm = locked_amounts(locked_percents(BTC, D(leverage)), notional)
    base = OpenRequest(
        position_type=0, order_type=1, price=D(price), quantity=D(qty), cva=cva, lf=lf, party_amm=amm, deadline=NOW + 60
    )
    return replace(base, **kw)  # type: ignore[arg-type]


ACCOUNT = AccountSnapshot(
    allocated=D(10_000),
    upnl=D(0),
    locked=Locked(),
    pending=Locked(),
    pending_instant_opens=0,
    open_positions=0,
    delegated=True,
    reduce_only=False,
)
LIMITS = Limits(
    max_pending_instant_opens=10,
    max_open_positions=100,
    total_notional_cap=D(10_000_000),
    used_notional_symbol=D(0),
    used_notional_total=D(0),
)


def codes(
    req: OpenRequest, account: AccountSnapshot = ACCOUNT, limits: Limits = LIMITS, mark: Decimal = MARK
) -> list[ErrorCode]:
    return [v.code for v in check_open(BTC, req, mark=mark, now=NOW, account=account, limits=limits)]


def test_a_sound_request_passes() -> None:
    assert codes(request()) == []
    assert codes(request(position_type=1, price="59400")) == []


@pytest.mark.parametrize(
    ("req", "code"),
    [
        (request(deadline=NOW), ErrorCode.DEADLINE_PASSED),
        (request(qty="0.1234"), ErrorCode.QUANTITY_PRECISION),
        (request(price="66000"), ErrorCode.PRICE_OUT_OF_RANGE),  # 10 % away
        (request(price="59990"), ErrorCode.PRICE_OUT_OF_RANGE),  # MARKET LONG below mark + fee
        (request(position_type=1, price="60010"), ErrorCode.PRICE_OUT_OF_RANGE),  # MARKET SHORT above
        (request(position_type=7), ErrorCode.INVALID_ORDER),
        (request(leverage=10, cva=D(1)), ErrorCode.LOCKED_VALUES_TOO_LOW),
        (request(party_amm=D(0)), ErrorCode.LEVERAGE_TOO_HIGH),
        (request(qty="20"), ErrorCode.POSITION_TOO_LARGE),
    ],
)
def test_each_rule_fires_alone(req: OpenRequest, code: ErrorCode) -> None:
    got = codes(req, account=replace(ACCOUNT, allocated=D(10**9)))
    assert code in got, got


def test_limit_order_below_mark_is_fine() -> None:
    assert codes(request(order_type=0, price="59000")) == []


@pytest.mark.parametrize(
    ("account", "limits", "code"),
    [
        (replace(ACCOUNT, delegated=False), LIMITS, ErrorCode.NOT_DELEGATED),
        (replace(ACCOUNT, reduce_only=True), LIMITS, ErrorCode.REDUCE_ONLY),
        (replace(ACCOUNT, pending_instant_opens=10), LIMITS, ErrorCode.TOO_MANY_PENDING),
        (replace(ACCOUNT, open_positions=100), LIMITS, ErrorCode.TOO_MANY_POSITIONS),
        (ACCOUNT, replace(LIMITS, used_notional_symbol=D(4_999_000)), ErrorCode.SYMBOL_CAP_REACHED),
        (ACCOUNT, replace(LIMITS, used_notional_total=D(9_999_000)), ErrorCode.TOTAL_CAP_REACHED),
        (replace(ACCOUNT, allocated=D(600)), LIMITS, ErrorCode.INSUFFICIENT_BALANCE),
        (replace(ACCOUNT, upnl=D(-9_500)), LIMITS, ErrorCode.INSUFFICIENT_BALANCE),
        (replace(ACCOUNT, pending=Locked(cva=D(9_500))), LIMITS, ErrorCode.INSUFFICIENT_BALANCE),
        (replace(ACCOUNT, locked=Locked(party_amm=D(9_500))), LIMITS, ErrorCode.INSUFFICIENT_BALANCE),
    ],
)
def test_account_and_cap_rules(account: AccountSnapshot, limits: Limits, code: ErrorCode) -> None:
    assert codes(request(), account=account, limits=limits) == [code]


def test_balance_covers_margin_plus_fee_exactly() -> None:
    req = request()
    margin = req.cva + req.lf + req.party_amm
    fee = req.quantity * req.price * BTC.trading_fee
    assert codes(req, account=replace(ACCOUNT, allocated=margin + fee)) == []
    short = replace(ACCOUNT, allocated=margin + fee - D("0.000001"))
    assert codes(req, account=short) == [ErrorCode.INSUFFICIENT_BALANCE]


def test_messages_name_the_numbers() -> None:
    [v] = check_open(BTC, request(), mark=MARK, now=NOW, account=replace(ACCOUNT, allocated=D(600)), limits=LIMITS)
    assert "available balance is 600" in v.message
