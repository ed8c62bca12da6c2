"""Pure parsing and formatting of the WebSocket channels (solver.notify.ws.frames)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from solver.core.errors import ErrorCode
from solver.notify.ws.frames import (
    BinanceError,
    FrameError,
    MarkItem,
    balance_frame,
    funding_frame,
    mark_frame,
    parse_account,
    parse_addresses,
    parse_binance,
    parse_stream,
    parse_symbols,
)
from solver.notify.ws.marks import book_ticker
from solver.settings import load_settings

pytestmark = pytest.mark.unit

ACC = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


@pytest.mark.parametrize("text", [ACC, ACC.lower(), f"  {ACC}\n", f'"{ACC}"', f"'{ACC.upper().replace('0X', '0x')}'"])
def test_parse_account_tolerates_case_whitespace_quotes(text: str) -> None:
    assert parse_account(text) == ACC


@pytest.mark.parametrize("text", ["", "hello", ACC[:-1], ACC + "0", "0x" + "g" * 40, "x" * 20_000, '{"a": 1}'])
def test_parse_account_rejects(text: str) -> None:
    with pytest.raises(FrameError) as err:
        parse_account(text)
    body = json.loads(err.value.frame)
    assert set(body) == {"error_code", "error_message", "error_detail"}
    assert body["error_code"] == ErrorCode.VALIDATION.code and body["error_message"]


def test_balance_frame_numbers_are_exact_json_numbers() -> None:
    frame = balance_frame(
        upnl=Decimal("-20.5"),
        timestamp=1_700_000_000,
        available=Decimal("9899.280000000000000001"),
        allocated=Decimal("9999.28"),
        cva=Decimal(8),
        lf=Decimal(4),
        party_a_mm=Decimal(108),
        pending_cva=Decimal(0),
        pending_lf=Decimal("1E-19"),  # below one wei: rounds to 0
        pending_party_a_mm=Decimal("0.1"),
    )
    body = json.loads(frame, parse_float=Decimal)
    assert list(body) == [
        "upnl", "timestamp", "available_balance", "allocated_balance", "cva", "lf", "party_a_mm",
        "pending_cva", "pending_lf", "pending_party_a_mm",
    ]  # fmt: skip
    assert body["upnl"] == Decimal("-20.5") and body["timestamp"] == 1_700_000_000
    assert body["available_balance"] == Decimal("9899.280000000000000001")  # not rounded through a float
    assert body["pending_lf"] == 0 and body["cva"] == 8
    with pytest.raises(ValueError):
        balance_frame(
            upnl=Decimal("NaN"), timestamp=0, available=Decimal(0), allocated=Decimal(0), cva=Decimal(0),
            lf=Decimal(0), party_a_mm=Decimal(0), pending_cva=Decimal(0), pending_lf=Decimal(0),
            pending_party_a_mm=Decimal(0),
        )  # fmt: skip


def test_parse_addresses() -> None:
    assert parse_addresses(json.dumps({"address": [ACC.lower(), ACC, "nope", 5]})) == ([ACC], ["nope", "5"])
    assert parse_addresses(json.dumps({"address": []})) == ([], [])
    assert parse_addresses(json.dumps({"address": ACC})) == ([ACC], [])
    assert parse_addresses(f' "{ACC}" ') == ([ACC], [])
    assert parse_addresses(json.dumps([ACC])) == ([ACC], [])
    for bad in ["{", '{"accounts": []}', '{"address": {"a": 1}}', "[1]", "hello", '{"address": ["0x12"]}']:
        with pytest.raises(FrameError):
            parse_addresses(bad)


def test_parse_symbols_and_funding_frame() -> None:
    assert parse_symbols('{"symbols": ["BTCUSDT", "eth"]}') == ["BTCUSDT", "eth"]
    assert parse_symbols('{"symbols": []}') == []
    for bad in ["BTCUSDT", '{"symbols": "BTCUSDT"}', '{"symbols": [true]}', "{}"]:
        with pytest.raises(FrameError):
            parse_symbols(bad)
    frame = json.loads(funding_frame({"BTCUSDT": (1_700_000_000_000, Decimal("0.0001"), Decimal("-0.00005"))}))
    assert frame == {
        "BTCUSDT": {
            "next_funding_time": 1_700_000_000_000,
            "next_funding_rate_long": "0.0001",
            "next_funding_rate_short": "-0.00005",
        }
    }


def test_binance_requests() -> None:
    req = parse_binance('{"method":"SUBSCRIBE","params":["!markPrice@arr@1s"],"id":1}')
    assert (req.method, req.params, req.id) == ("SUBSCRIBE", ["!markPrice@arr@1s"], 1)
    assert parse_binance('{"method":"LIST_SUBSCRIPTIONS","id":"x"}').id == "x"
    cases = [
        ("not json", 3, None),
        ("[1]", 2, None),
        ('{"method":"PING","id":7}', 2, 7),
        ('{"method":"SUBSCRIBE","params":[],"id":8}', 2, 8),
        ('{"method":"SUBSCRIBE","params":[1],"id":9}', 2, 9),
        ('{"method":"SUBSCRIBE","params":["a"],"id":true}', 2, None),
    ]
    for text, code, rid in cases:
        with pytest.raises(BinanceError) as err:
            parse_binance(text)
        body = json.loads(err.value.frame)
        assert body["error"]["code"] == code and body["error"]["msg"] and body["id"] == rid, text


def test_streams_and_mark_frames() -> None:
    known = {"BTCUSDT", "ETHUSDT"}
    arr = parse_stream("!markPrice@arr@1s", known)
    assert (arr.symbol, arr.every_s) == (None, 1)
    assert parse_stream("!markPrice@arr", known).every_s == 3
    one = parse_stream("btcusdt@markPrice@1s", known)
    assert (one.symbol, one.name) == ("BTCUSDT", "btcusdt@markPrice@1s")
    for bad in ["btcusdt@aggTrade", "dogeusdt@markPrice", "!ticker@arr", ""]:
        with pytest.raises(ValueError):
            parse_stream(bad, known)
    item = MarkItem("BTCUSDT", Decimal("60000.5"), 1_700_000_000_123, Decimal("0.0001"), 1_700_006_400_000)
    assert mark_frame(arr, {}) is None
    assert mark_frame(one, {"ETHUSDT": item}) is None
    body = json.loads(mark_frame(arr, {"BTCUSDT": item}) or "")
    assert body["stream"] == "!markPrice@arr@1s"
    assert body["data"] == [
        {
            "e": "markPriceUpdate", "E": 1_700_000_000_123, "s": "BTCUSDT", "p": "60000.5", "i": "60000.5",
            "P": "60000.5", "r": "0.0001", "T": 1_700_006_400_000,
        }
    ]  # fmt: skip
    assert json.loads(mark_frame(one, {"BTCUSDT": item}) or "")["data"]["s"] == "BTCUSDT"


def test_book_ticker_applies_hedger_fee_with_fill_rounding() -> None:
    syms = {s.name: s for s in load_settings().symbols}
    btc = book_ticker(syms["BTCUSDT"], Decimal("60000"), 123)  # fee 0.0002, 1 decimal
    assert btc is not None
    assert (btc.bidPrice, btc.askPrice, btc.bidQty, btc.askQty, btc.time) == (
        "59988.0", "60012.0", "16.666", "16.666", 123,
    )  # fmt: skip
    xrp = book_ticker(syms["XRPUSDT"], Decimal("0.5123"), 1)  # fee 0.0005, 4 decimals: rounded for the user
    assert xrp is not None
    assert (xrp.bidPrice, xrp.askPrice, xrp.askQty) == ("0.5121", "0.5125", "390396.2")
