"""Oversize bodies, absurd numbers and junk in the POST routes (and address path parameters).

Against the real app, Postgres, Redis and anvil. The trader is real (funded, delegated, with an
open position on chain) and fresh marks are published before every request; a positive control
shows each base body is accepted as is, so every rejection below is caused by the one hostile
value it carries. Each request must get a 4xx with the http-api.md error body (the exact status
and code where the meaning is fixed) and must leave every table the API writes exactly as it was
(global row counts, and the trader's rows compared whole).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import redis.asyncio as aioredis
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from solver.app import create_app
from solver.auth.jwt import JwtCodec
from solver.core.clock import SystemClock
from solver.core.errors import ErrorCode
from solver.devnet.deploy import DevnetInfo
from solver.oracle.signer import OracleSigner
from solver.settings import Settings
from tests.fixtures.api import BASE_URL, ERROR_KEYS, running_server
from tests.fixtures.app import settings_for
from tests.fixtures.redis import REDIS_URL
from tests.fixtures.trading import PriceKeeper
from tests.integration.test_auth_attacks import account_rows, table_counts
from tests.integration.test_auth_login import ORIGIN, nonce_for, signed_login
from tests.integration.test_instant_api import Devnet, Trader, close_body, open_body
from tests.integration.test_stop_loss_api import body as stop_loss_body
from tests.integration.test_strategy_api import limit_body

pytestmark = pytest.mark.integration

E = ErrorCode
V = E.VALIDATION


class Raw(str):
    """A JSON literal written into the body as is (numbers beyond float, NaN, Infinity, lone surrogates)."""

    __slots__ = ()


# --- the stage: one real trader with an open position ------------------------------------------


@dataclass
class Stage:
    api: AsyncTestClient[Any]
    settings: Settings
    engine: AsyncEngine
    keeper: PriceKeeper
    trader: Trader
    quote_id: int  # the trader's open position
    multi_account: str


def encode(body: dict[str, Any]) -> bytes:
    """JSON with `Raw` values inlined verbatim; ASCII only, so lone surrogates travel escaped."""
    marks: dict[str, str] = {}

    def walk(v: Any) -> Any:
        if isinstance(v, Raw):
            key = f"__raw_{len(marks)}__"
            marks[key] = str(v)
            return key
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        return v

    text = json.dumps(walk(body), ensure_ascii=True)
    for key, literal in marks.items():
        text = text.replace(f'"{key}"', literal)
    return text.encode()


@pytest.fixture(scope="module")
async def stage(devnet: DevnetInfo, oracle_signer: OracleSigner, database_url: str, db_engine: AsyncEngine) -> Any:
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    settings = settings_for(devnet, database_url, prefix)
    chain = Devnet(devnet, oracle_signer)
    t = chain.new_trader()
    t.token = JwtCodec(settings.auth, SystemClock()).issue(
        account=t.account, owner=t.owner, expires_at=datetime.now(UTC) + timedelta(hours=1)
    )
    quote_id = chain.open_position(t)
    redis = aioredis.from_url(REDIS_URL)
    try:
        async with (
            PriceKeeper(redis, prefix) as keeper,
            AsyncTestClient(app=create_app(settings), base_url=BASE_URL) as api,
        ):
            s = Stage(api, settings, db_engine, keeper, t, quote_id, devnet.multi_account)
            await positive_controls(s)
            yield s
    finally:
        async for k in redis.scan_iter(match=f"{prefix}*", count=500):
            await redis.delete(k)
        await redis.aclose()


async def positive_controls(s: Stage) -> None:
    """Every base body is accepted as is (then undone), so each rejection below is the hostile value's."""
    api, t = s.api, s.trader

    async def ok(method: str, path: str, body: Any = None) -> Any:
        await s.keeper.publish()
        resp = await api.request(method, path, json=body, headers=t.auth)
        assert resp.status_code == 200, (path, resp.text)
        return resp.json()

    temp_id = (await ok("POST", "/instant_open", open_body()))["temp_quote_id"]
    await ok("DELETE", f"/instant_open/{temp_id}")
    await ok("POST", "/instant_close", close_body(s.quote_id))
    await ok("DELETE", f"/instant_close/{s.quote_id}")
    await ok("POST", "/stop-loss", stop_loss_body(t, s.quote_id))
    await ok("DELETE", f"/stop-loss/{s.quote_id}")
    order_id = (await ok("POST", "/strategy-orders", limit_body()))["id"]
    await ok("DELETE", f"/strategy-orders/{order_id}")
    nonce = await nonce_for(api, t.account)
    login = signed_login(account=t.account, owner=t.owner, key=t.owner_key, nonce=nonce)
    resp = await api.post("/login", json=login.body, headers=ORIGIN)
    assert resp.status_code == 200, resp.text


async def send_hostile(
    s: Stage, method: str, path: str, *, content: bytes | None = None, headers: dict[str, str] | None = None
) -> Any:
    """Send one hostile request; the database must not change."""
    counts = await table_counts(s.engine)
    rows = await account_rows(s.engine, s.trader.account)
    await s.keeper.publish()
    hdrs = {**s.trader.auth, "Content-Type": "application/json", **(headers or {})}
    resp = await s.api.request(method, path, content=content, headers=hdrs)
    assert await table_counts(s.engine) == counts, (path, resp.status_code, resp.text[:300])
    assert await account_rows(s.engine, s.trader.account) == rows, (path, resp.status_code, resp.text[:300])
    return resp


def assert_rejected(resp: Any, status: int | None, code: ErrorCode | None) -> None:
    """A 4xx with the spec's error body; the exact status and code when given."""
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text[:500])
    body = resp.json()
    assert isinstance(body, dict) and set(body) == ERROR_KEYS, body
    assert isinstance(body["error_code"], int) and isinstance(body["error_message"], str) and body["error_message"]
    assert body["error_detail"] is None or all(isinstance(d, str) for d in body["error_detail"]), body
    assert E.by_code(body["error_code"]) is not None, body
    if code is not None:
        assert body["error_code"] == code.code, (code, body)
        assert resp.status_code == code.status, (code, resp.status_code)
    if status is not None:
        assert resp.status_code == status, (status, resp.status_code, body)


# --- the hostile values --------------------------------------------------------------------------

FORTY_DIGITS = "0." + "1234567890" * 4
BAD_NUMBERS: list[tuple[str, Any]] = [
    ("negative", "-1"),
    ("negative number", -1),
    ("negative wei", "-0.000000000000000001"),
    ("1e80", "1e80"),
    ("1e80 number", Raw("1e80")),
    ("just beyond uint256 in wei", "1.16e59"),
    ("10^100 integer", Raw("1" + "0" * 100)),
    ("5000-digit integer", Raw("9" * 5000)),
    ("exponent 9999999", Raw("1e9999999")),
    ("NaN", "NaN"),
    ("NaN literal", Raw("NaN")),
    ("sNaN", "sNaN"),
    ("Infinity", "Infinity"),
    ("Infinity literal", Raw("Infinity")),
    ("-Infinity literal", Raw("-Infinity")),
    ("inf", "inf"),
    ("letters", "abc"),
    ("comma decimal", "1,5"),
    ("hex", "0x10"),
    ("underscores", "1_000"),
    ("arabic-indic digits", "١٢٣"),
    ("fullwidth digits", "１２３"),
    ("two numbers", "1 2"),
    ("trailing junk", "1.5abc"),
    ("percent", "5%"),
    ("300 digits", "1" * 300),
    ("empty", ""),
    ("blank", "   "),
    ("true", True),
    ("array", [1]),
    ("object", {"value": 1}),
    ("null", None),
]
BAD_INTS: list[tuple[str, Any]] = [
    ("2^63", 2**63),
    ("10^40", 10**40),
    ("-10^40", -(10**40)),
    ("1e80 number", Raw("1e80")),
    ("5000-digit integer", Raw("9" * 5000)),
    ("exponent 9999999", Raw("1e9999999")),
    ("fraction", 1.5),
    ("fraction string", "1.5"),
    ("NaN literal", Raw("NaN")),
    ("Infinity literal", Raw("Infinity")),
    ("letters", "abc"),
    ("underscores", "1_000"),
    ("arabic-indic digits", "١"),
    ("empty", ""),
    ("true", True),
    ("false", False),
    ("array", [1]),
    ("object", {}),
    ("null", None),
]
_ADDR = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
BAD_ADDRESSES: list[tuple[str, Any]] = [
    ("fullwidth 0x", "０ｘ" + _ADDR[2:]),
    ("fullwidth hex", "0x" + "".join(chr(ord(c) + 0xFEE0) for c in _ADDR[2:])),
    ("arabic-indic digits", "0x" + "٠" * 40),
    ("cyrillic a", _ADDR.replace("a", "а")),
    ("right-to-left override", "\u202e" + _ADDR),
    ("zero-width space", _ADDR[:10] + "\u200b" + _ADDR[10:]),
    ("NUL byte", _ADDR + "\u0000"),
    ("combining accent", _ADDR + "\u0301"),
    ("emoji", "0x" + "😀" * 40),
    ("lone surrogates", Raw('"' + "\\ud800" * 42 + '"')),
    ("not hex", "0x" + "g" * 40),
    ("41 hex digits", _ADDR + "a"),
    ("39 hex digits", _ADDR[:-1]),
    ("10000 characters", "0x" + "a" * 10_000),
    ("a number", 1234),
    ("null", None),
    ("array", [_ADDR]),
]
# Well-formed values with no meaning here, judged by the business rules: (field, value, code).
OPEN_SEMANTIC: list[tuple[str, Any, ErrorCode]] = [
    ("price", "0", V),  # "price and quantity must be greater than zero."
    ("price", FORTY_DIGITS, E.PRICE_OUT_OF_RANGE),
    ("price", "1e40", E.PRICE_OUT_OF_RANGE),
    ("quantity", "0", V),
    ("quantity", FORTY_DIGITS, E.QUANTITY_PRECISION),
    ("quantity", "1e40", E.LOCKED_VALUES_TOO_LOW),
    ("cva", "0", E.LOCKED_VALUES_TOO_LOW),
    ("cva", FORTY_DIGITS, E.LOCKED_VALUES_TOO_LOW),
    ("cva", "1e40", E.LF_PORTION_TOO_LOW),
    ("lf", "0", E.LOCKED_VALUES_TOO_LOW),
    ("lf", "1e40", E.INSUFFICIENT_BALANCE),
    ("partyAmm", "0", E.LEVERAGE_TOO_HIGH),
    ("partyAmm", "1e40", E.LF_PORTION_TOO_LOW),
    ("symbolId", 0, E.UNKNOWN_SYMBOL),
    ("symbolId", -1, E.UNKNOWN_SYMBOL),
    ("symbolId", 2**63 - 1, E.UNKNOWN_SYMBOL),
    ("positionType", -1, E.INVALID_ORDER),
    ("positionType", 2, E.INVALID_ORDER),
    ("orderType", 127, E.INVALID_ORDER),
    ("deadline", 0, E.DEADLINE_PASSED),
    ("deadline", 1, E.DEADLINE_PASSED),
]
CLOSE_SEMANTIC: list[tuple[str, Any, ErrorCode]] = [
    ("quantity_to_close", "0", E.CLOSE_QUANTITY_INVALID),
    ("quantity_to_close", FORTY_DIGITS, E.CLOSE_QUANTITY_INVALID),
    ("quantity_to_close", "1e40", E.CLOSE_QUANTITY_INVALID),
    ("close_price", "0", E.VALIDATION),
    ("close_price", FORTY_DIGITS, E.PRICE_OUT_OF_RANGE),
    ("close_price", "1e40", E.PRICE_OUT_OF_RANGE),
    ("quote_id", 0, E.VALIDATION),
    ("quote_id", -1, E.VALIDATION),
    ("quote_id", 2**63 - 1, E.QUOTE_NOT_FOUND),
    ("deadline", 0, E.DEADLINE_PASSED),
]
STOP_LOSS_SEMANTIC: list[tuple[str, Any, ErrorCode]] = [
    ("tpPrice", FORTY_DIGITS, E.TRIGGER_WOULD_FIRE_NOW),
    ("slPrice", "1e40", E.TRIGGER_WOULD_FIRE_NOW),
    ("tpPrice", "59000", E.TRIGGER_PRICES_EQUAL),
    ("symbolId", 0, E.TRIGGER_QUOTE_MISMATCH),
    ("positionSide", 2, V),  # "positionSide must be 0 (LONG) or 1 (SHORT)."
    ("quoteId", -1, E.TRIGGER_TEMP_QUOTE_ID),
    ("quoteId", 2**63 - 1, E.QUOTE_NOT_FOUND),
    ("timestamp", 0, E.TRIGGER_TIMESTAMP),
    ("timestamp", 2**63 - 1, E.TRIGGER_TIMESTAMP),
]
STRATEGY_CODES = {
    "type": E.STRATEGY_INVALID_TYPE,
    "symbol_id": E.STRATEGY_INVALID_SYMBOL,
    "position_type": E.STRATEGY_INVALID_POSITION_TYPE,
    "leverage": E.STRATEGY_INVALID_LEVERAGE,
    "input_amount": E.STRATEGY_INVALID_INPUT_AMOUNT,
    "max_suborders": E.STRATEGY_INVALID_MAX_SUBORDERS,
    "max_invocations": E.STRATEGY_INVALID_MAX_INVOCATIONS,
    "slippage": E.STRATEGY_INVALID_SLIPPAGE,
    "settings": E.STRATEGY_INVALID_SETTINGS,
}
STRATEGY_SEMANTIC: list[tuple[str, Any, ErrorCode]] = [
    ("leverage", "0", E.STRATEGY_INVALID_LEVERAGE),
    ("leverage", "1e40", E.STRATEGY_INVALID_LEVERAGE),
    ("input_amount", "0", E.STRATEGY_INVALID_INPUT_AMOUNT),
    ("input_amount", FORTY_DIGITS, E.STRATEGY_INVALID_INPUT_AMOUNT),
    ("slippage", "0", E.STRATEGY_INVALID_SLIPPAGE),
    ("slippage", "1.000000000000000001", E.STRATEGY_INVALID_SLIPPAGE),
    ("max_suborders", 0, E.STRATEGY_INVALID_MAX_SUBORDERS),
    ("max_suborders", 256, E.STRATEGY_INVALID_MAX_SUBORDERS),
    ("max_invocations", 2**63, E.STRATEGY_INVALID_MAX_INVOCATIONS),
    ("symbol_id", 2**63 - 1, E.STRATEGY_INVALID_SYMBOL),
    ("position_type", 2, E.STRATEGY_INVALID_POSITION_TYPE),
]

OPEN_DECIMALS = ["price", "quantity", "cva", "lf", "partyAmm"]
OPEN_OPTIONAL = ["partyBmm", "maxFundingRate"]  # null (and absent) are valid: the solver's own values
OPEN_INTS = ["symbolId", "positionType", "orderType", "deadline"]
CLOSE_DECIMALS = ["quantity_to_close", "close_price"]
SL_PRICES = ["tpPrice", "slPrice", "requestedPrice"]  # "", blank and null mean none: valid
SL_INTS = ["positionSide", "symbolId", "quoteId", "timestamp"]
SL_ADDRESSES = ["userAddress", "accountAddress"]
STRATEGY_DECIMALS = ["leverage", "input_amount", "slippage"]
STRATEGY_INTS = ["symbol_id", "position_type", "max_suborders", "max_invocations"]
NONE_MEANS_ABSENT = {"null", "empty", "blank"}
# Not JSON a strict parser reads (or beyond its limits): refused before any route's own rules.
NOT_JSON = {"NaN literal", "Infinity literal", "-Infinity literal", "5000-digit integer", "exponent 9999999"}


@dataclass(frozen=True)
class Case:
    route: str  # /instant_open, /instant_close, /stop-loss, /strategy-orders, /login
    field: str
    value: Any
    code: ErrorCode | None  # None: any 4xx with the error body

    @property
    def id(self) -> str:
        return f"{self.route} {self.field}={_label(self.value)}"


def _label(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 24 else text[:21] + "..."


def _cases() -> Iterator[Case]:
    def bad(route: str, fields: list[str], values: list[tuple[str, Any]], code: Callable[[str], ErrorCode | None],
            skip: set[str] = frozenset()) -> Iterator[Case]:  # fmt: skip
        for field in fields:
            for name, value in values:
                if name not in skip:
                    yield Case(route, field, value, code(field))

    yield from bad("/instant_open", OPEN_DECIMALS, BAD_NUMBERS, lambda f: V)
    yield from bad("/instant_open", OPEN_INTS, BAD_INTS, lambda f: V)
    yield from bad("/instant_open", OPEN_OPTIONAL, BAD_NUMBERS, lambda f: V, skip={"null"})
    yield from (Case("/instant_open", f, v, c) for f, v, c in OPEN_SEMANTIC)
    yield from bad("/instant_close", CLOSE_DECIMALS, BAD_NUMBERS, lambda f: V)
    yield from bad("/instant_close", ["quote_id"], BAD_INTS, lambda f: V)
    yield from bad("/instant_close", ["deadline"], BAD_INTS, lambda f: V, skip={"null"})  # null: the default
    yield from (Case("/instant_close", f, v, c) for f, v, c in CLOSE_SEMANTIC)
    yield from bad("/stop-loss", SL_PRICES, BAD_NUMBERS, lambda f: V, skip=NONE_MEANS_ABSENT)
    yield from bad("/stop-loss", SL_INTS, BAD_INTS, lambda f: V)
    yield from bad("/stop-loss", SL_ADDRESSES, BAD_ADDRESSES, lambda f: V)
    yield from (Case("/stop-loss", f, v, c) for f, v, c in STOP_LOSS_SEMANTIC)
    yield from bad("/strategy-orders", STRATEGY_DECIMALS, BAD_NUMBERS, STRATEGY_CODES.get, skip=NOT_JSON)
    yield from bad("/strategy-orders", STRATEGY_INTS, BAD_INTS, STRATEGY_CODES.get, skip=NOT_JSON)
    yield from bad("/strategy-orders", ["settings.price"], BAD_NUMBERS, lambda f: E.STRATEGY_INVALID_SETTINGS,
                   skip=NOT_JSON)  # fmt: skip
    not_json = [(n, v) for n, v in BAD_NUMBERS + BAD_INTS if n in NOT_JSON]
    yield from bad("/strategy-orders", [*STRATEGY_DECIMALS, *STRATEGY_INTS, "settings.price"], not_json, lambda f: V)
    yield from (Case("/strategy-orders", f, v, c) for f, v, c in STRATEGY_SEMANTIC)


CASES = list(_cases())


def hostile_body(s: Stage, case: Case) -> dict[str, Any]:
    t = s.trader
    base: dict[str, Any] = {
        "/instant_open": open_body,
        "/instant_close": lambda: close_body(s.quote_id),
        "/stop-loss": lambda: stop_loss_body(t, s.quote_id),
        "/strategy-orders": limit_body,
    }[case.route]()
    if case.field == "settings.price":
        base["settings"] = {"price": case.value}
    else:
        base[case.field] = case.value
    return base


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_hostile_value(stage: Stage, case: Case) -> None:
    resp = await send_hostile(stage, "POST", case.route, content=encode(hostile_body(stage, case)))
    assert_rejected(resp, None, case.code)


# --- login -----------------------------------------------------------------------------------------

LOGIN_CASES: list[tuple[str, str, Any, ErrorCode]] = [
    *[("account_address", name, v, V) for name, v in BAD_ADDRESSES],
    ("signature", "not hex", "0x" + "zz" * 65, V),
    ("signature", "odd length", "0x" + "1" * 131, V),
    ("signature", "8 KB", "0x" + "11" * 4096, V),
    ("signature", "a number", 1234, V),
    ("signature", "64 bytes of zeros", "0x" + "00" * 64, E.INVALID_SIGNATURE),
    ("signature", "65 bytes of ff", "0x" + "ff" * 65, E.INVALID_SIGNATURE),
    ("nonce", "unicode digits", "١٢٣٤٥٦٧٨٩", E.INVALID_NONCE),
    ("nonce", "NUL inside", "abcd\u0000efgh", E.INVALID_NONCE),
    ("nonce", "a number", 12345678, V),
    ("nonce", "200 characters", "a" * 200, V),
    ("issued_at", "1e80", "1e80", V),
    ("issued_at", "NaN", "NaN", V),
    ("issued_at", "40 fractional digits", "2025-08-04T22:19:42." + "1" * 40 + "Z", V),
    ("issued_at", "month 13", "2025-13-04T22:19:42.123Z", V),
    ("issued_at", "year 0", "0000-01-01T00:00:00Z", V),
    ("issued_at", "year 1 east of UTC", "0001-01-01T00:00:00+23:59", V),
    ("issued_at", "year 9999 west of UTC", "9999-12-31T23:59:59-23:59", V),
    ("issued_at", "far future", "9999-12-31T23:59:59.999Z", E.MESSAGE_NOT_YET_VALID),
    ("issued_at", "unix seconds", 1754345982, V),
    ("expiration_time", "year 9999 west of UTC", "9999-12-31T23:59:59-23:59", V),
    ("expiration_time", "year 9999", "9999-12-31T23:59:59.999Z", V),
    ("expiration_time", "year 1", "0001-01-01T00:00:00Z", E.MESSAGE_EXPIRED),
    ("expiration_time", "arabic-indic digits", "٢٠٢٥-٠٨-٠٤T22:19:42.123Z", V),
    ("sign_type", "10000 characters", "E" * 10_000, V),
]


@pytest.mark.parametrize(
    ("field", "name", "value", "code"), LOGIN_CASES, ids=[f"{f} {n}" for f, n, _, _ in LOGIN_CASES]
)
async def test_hostile_login(stage: Stage, field: str, name: str, value: Any, code: ErrorCode) -> None:
    """A correctly signed login for a fresh nonce, with one field replaced."""
    t = stage.trader
    nonce = await nonce_for(stage.api, t.account)
    body = signed_login(account=t.account, owner=t.owner, key=t.owner_key, nonce=nonce).body
    body[field] = value
    resp = await send_hostile(stage, "POST", "/login", content=encode(body), headers=ORIGIN)
    assert_rejected(resp, None, code)
    assert "access_token" not in resp.text


# --- addresses in paths ------------------------------------------------------------------------------

PATH_ROUTES = [
    "/nonce/{}",
    "/stop-loss/{}",
    "/instant_open/{}",
    "/instant_close/{}",
    "/partyA_upnl/{}",
    "/get_balance_info/{}/{multi}",
    "/get_balance_info/{owner}/{}",
]
PATH_JUNK = [(n, v) for n, v in BAD_ADDRESSES if isinstance(v, str) and not isinstance(v, Raw)] + [
    ("percent-encoded invalid UTF-8", Raw("%ff%fe")),
    ("percent-encoded surrogate", Raw("%ED%A0%80")),
    ("percent-encoded NUL", Raw("0x%00")),
]


@pytest.mark.parametrize("route", PATH_ROUTES)
@pytest.mark.parametrize(("name", "value"), PATH_JUNK, ids=[n for n, _ in PATH_JUNK])
async def test_hostile_path_address(stage: Stage, route: str, name: str, value: str) -> None:
    segment = str(value) if isinstance(value, Raw) else quote(value, safe="")
    path = route.replace("{multi}", stage.multi_account).replace("{owner}", stage.trader.owner).replace("{}", segment)
    resp = await send_hostile(stage, "GET", path)
    assert_rejected(resp, None, None)


# --- oversize bodies -----------------------------------------------------------------------------------

POST_ROUTES = ["/instant_open", "/instant_close", "/stop-loss", "/strategy-orders", "/login"]


@pytest.mark.parametrize("route", POST_ROUTES)
async def test_oversize_body_413(stage: Stage, route: str) -> None:
    limit = stage.settings.api.max_body_bytes
    content = encode({"quote_id": stage.quote_id, "pad": "x" * limit})  # valid JSON, just too long
    assert len(content) > limit
    resp = await send_hostile(stage, "POST", route, content=content, headers=ORIGIN)
    assert_rejected(resp, 413, E.PAYLOAD_TOO_LARGE)


async def test_oversize_chunked_body_413(stage: Stage) -> None:
    """Through a real server, streamed without Content-Length: the limit holds while reading (1 MiB sent)."""
    content = encode({"pad": "x" * (1 << 20)})

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(content), 16_384):
            yield content[i : i + 16_384]

    counts = await table_counts(stage.engine)
    headers = {**stage.trader.auth, **ORIGIN, "Content-Type": "application/json"}
    async with running_server(stage.settings) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
        for route in POST_ROUTES:
            resp = await client.post(route, content=chunks(), headers=headers)
            assert resp.request.headers.get("transfer-encoding") == "chunked"
            assert_rejected(resp, 413, E.PAYLOAD_TOO_LARGE)
    assert await table_counts(stage.engine) == counts


async def test_body_at_the_limit_is_read(stage: Stage) -> None:
    """Just under the limit the body is read and judged (here: a bad quote id), not refused as too large."""
    limit = stage.settings.api.max_body_bytes
    body = close_body(0)
    body["pad"] = ""
    body["pad"] = "x" * (limit - len(encode(body)))
    content = encode(body)
    assert len(content) == limit
    resp = await send_hostile(stage, "POST", "/instant_close", content=content)
    assert_rejected(resp, 400, E.VALIDATION)


def test_case_counts() -> None:
    """The size of the matrix (for the report): every case above is one request."""
    assert len(CASES) > 400
    assert len(LOGIN_CASES) > 30
