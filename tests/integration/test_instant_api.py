"""Instant trading (http-api.md §3) and notification history (§6) against Postgres, Redis and anvil.

No chain worker runs: accepted requests stay queued in the outbox, which is exactly what the
API must leave behind. Every test that changes chain state or accumulates pending requests uses
its own fresh sub-account, so tests do not disturb each other or the shared demo accounts.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import uvicorn
from eth_account import Account
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlmodel import col, select
from web3 import Web3
from web3.logs import DISCARD

from solver.app import create_app
from solver.auth.jwt import JwtCodec
from solver.core.clock import SystemClock
from solver.core.errors import ErrorCode
from solver.core.units import to_wei
from solver.db.engine import SessionFactory
from solver.db.models import InstantClose, InstantOpen, InstantOpenStatus, IntentKind, Notification, TxIntent
from solver.devnet.anvil import free_port
from solver.devnet.artifacts import load_artifact
from solver.devnet.deploy import DELEGATED_SIGNATURES, DevnetInfo, selector
from solver.oracle.signer import OracleSigner
from solver.pricing.cache import PriceCache, PricePoint
from solver.quotes import repository as repo
from solver.settings import Settings, load_settings
from tests.fixtures.app import settings_for

pytestmark = pytest.mark.integration

ERROR_KEYS = {"error_code", "error_message", "error_detail"}
OPEN_OUT_KEYS = {
    "temp_quote_id", "quote_id", "symbol_id", "position_type", "order_type", "requested_open_price", "quantity",
    "party_a_address", "cva", "lf", "partyAmm", "partyBmm",
}  # fmt: skip
OPEN_ITEM_KEYS = OPEN_OUT_KEYS | {
    "id",
    "status",
    "create_time",
    "modify_time",
    "version",
    "error_code",
    "error_message",
}
NOTIFICATION_KEYS = {
    "id", "quote_id", "temp_quote_id", "create_time", "modify_time", "counterparty_address", "filled_amount_open",
    "filled_amount_close", "avg_price_open", "avg_price_close", "last_seen_action", "action_status", "state_type",
    "failure_type", "failure_message", "error_code", "order_type", "version",
}  # fmt: skip
MARK = Decimal(60000)
PENDING_LIMIT = 5


# --- chain helpers -----------------------------------------------------------------------------


@dataclass
class Trader:
    owner: str
    owner_key: str
    account: str
    token: str = ""

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Devnet:
    """Sync web3 helpers on the session's anvil (fresh owners and sub-accounts per test)."""

    def __init__(self, info: DevnetInfo, oracle: OracleSigner) -> None:
        self.info = info
        self.oracle = oracle
        self.w3 = Web3(Web3.HTTPProvider(info.rpc_url))
        self.symmio = self.w3.eth.contract(address=info.symmio, abi=load_artifact("LocalSymmio").abi)
        self.multi = self.w3.eth.contract(address=info.multi_account, abi=load_artifact("MultiAccount").abi)
        self.collateral = self.w3.eth.contract(address=info.collateral, abi=load_artifact("MockCollateral").abi)

    def send(self, key: str, call: Any) -> Any:
        acct = Account.from_key(key)
        params = {"from": acct.address, "nonce": self.w3.eth.get_transaction_count(acct.address, "pending")}
        tx = call.build_transaction({**params, "chainId": self.info.chain_id})
        tx["gas"] = int(tx["gas"] * 3 // 2)
        raw = acct.sign_transaction(tx).raw_transaction
        receipt = self.w3.eth.wait_for_transaction_receipt(self.w3.eth.send_raw_transaction(raw), poll_latency=0.02)
        assert receipt["status"] == 1
        return receipt

    def new_trader(self, *, deposit: Decimal = Decimal(10_000), delegate: bool = True, skip: str = "") -> Trader:
        """A fresh owner and funded sub-account; `delegate` grants chain.md's selectors but `skip`."""
        owner = Account.create()
        key = owner.key.to_0x_hex()
        admin = Account.from_key(self.info.admin_private_key)
        fund = {
            "from": admin.address, "to": owner.address, "value": 10**18, "gas": 21_000,
            "gasPrice": self.w3.eth.gas_price, "chainId": self.info.chain_id,
            "nonce": self.w3.eth.get_transaction_count(admin.address, "pending"),
        }  # fmt: skip
        self.w3.eth.wait_for_transaction_receipt(
            self.w3.eth.send_raw_transaction(admin.sign_transaction(fund).raw_transaction), poll_latency=0.02
        )
        receipt = self.send(key, self.multi.functions.addAccount("instant-api-test"))
        account = self.multi.events.AddAccount().process_receipt(receipt)[0]["args"]["account"]
        account = Web3.to_checksum_address(account)
        amount = to_wei(deposit)
        self.send(key, self.collateral.functions.mint(owner.address, amount))
        self.send(key, self.collateral.functions.approve(self.info.multi_account, amount))
        self.send(key, self.multi.functions.depositAndAllocateForAccount(account, amount))
        if delegate:
            selectors = [selector(s) for s in DELEGATED_SIGNATURES if s != skip]
            self.send(key, self.multi.functions.delegateAccesses(account, self.info.solver, selectors, True))
        return Trader(owner.address, key, account)

    def open_position(self, t: Trader, qty: Decimal = Decimal("0.02"), *, lock_and_open: bool = True) -> int:
        """A LONG BTC position at 60000, opened by the solver; locked 8 + 4 + 108 (leverage 10).

        With `lock_and_open=False` the quote stays PENDING on chain."""
        info, fns = self.info, self.symmio.functions
        self.send(info.solver_private_key, fns.allocateForPartyB(to_wei(Decimal(1000)), t.account))
        notional = qty * MARK
        cva, lf, amm = notional * 2 / 300, notional / 300, notional / 10 - notional / 100
        sig = self.oracle.single_upnl_and_price(
            diamond=info.symmio, chain_id=info.chain_id, party_a=t.account,
            nonce_a=fns.nonceOfPartyA(t.account).call(), upnl=0, symbol_id=1, price=to_wei(MARK),
        )  # fmt: skip
        deadline = self.w3.eth.get_block("latest")["timestamp"] + 3600
        args = [
            [info.solver], 1, 0, 1, to_wei(MARK), to_wei(qty), to_wei(cva), to_wei(lf), to_wei(amm), 0,
            to_wei(Decimal(200)), deadline, sig.as_tuple(),
        ]  # fmt: skip
        call = self.multi.functions._call(t.account, [self.symmio.encode_abi("sendQuote", args=args)])
        receipt = self.send(info.solver_private_key, call)
        quote_id = int(self.symmio.events.SendQuote().process_receipt(receipt, errors=DISCARD)[0]["args"]["quoteId"])
        if not lock_and_open:
            return quote_id
        nonce_b = fns.nonceOfPartyB(info.solver, t.account).call()
        lock_sig = self.oracle.party_b_upnl(
            diamond=info.symmio, chain_id=info.chain_id, party_b=info.solver, party_a=t.account, nonce_b=nonce_b, upnl=0
        )
        open_sig = self.oracle.pair_upnl_and_price(
            diamond=info.symmio, chain_id=info.chain_id, party_b=info.solver, party_a=t.account, nonce_b=nonce_b,
            nonce_a=fns.nonceOfPartyA(t.account).call(), upnl_party_b=0, upnl_party_a=0, symbol_id=1,
            price=to_wei(MARK),
        )  # fmt: skip
        self.send(
            info.solver_private_key,
            fns.lockAndOpenQuote(quote_id, to_wei(qty), to_wei(MARK), lock_sig.as_tuple(), open_sig.as_tuple()),
        )
        return quote_id


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chain(devnet: DevnetInfo, oracle_signer: OracleSigner) -> Devnet:
    return Devnet(devnet, oracle_signer)


@pytest.fixture
def settings(devnet: DevnetInfo, database_url: str, redis_prefix: str) -> Settings:
    symbols = [s.model_dump() for s in load_settings().symbols]
    symbols[0]["party_bmm_percent"] = Decimal("0.5")  # BTCUSDT: the stored partyBmm is the server's
    return settings_for(
        devnet, database_url, redis_prefix, risk={"max_pending_instant_opens": PENDING_LIMIT}, symbols=symbols
    )


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=create_app(settings), base_url="http://testserver.local") as client:
        yield client


@pytest.fixture
async def prices(redis_client: Any, redis_prefix: str) -> PriceCache:
    cache = PriceCache(redis_client, redis_prefix)
    await cache.set(PricePoint("BTCUSDT", MARK, time.time()))
    return cache


@pytest.fixture
def login(settings: Settings) -> Any:
    codec = JwtCodec(settings.auth, SystemClock())

    def issue(t: Trader) -> Trader:
        t.token = codec.issue(account=t.account, owner=t.owner, expires_at=datetime.now(UTC) + timedelta(hours=1))
        return t

    return issue


@pytest.fixture
def trader(chain: Devnet, login: Any) -> Trader:
    return login(chain.new_trader())


def open_body(qty: str = "0.01", price: str = "60600", leverage: int = 10, **over: Any) -> dict[str, Any]:
    """A valid MARKET LONG BTC request: cva/lf/partyAmm as clients compute them for `leverage`."""
    n = Decimal(qty) * Decimal(price)
    body = {
        "symbolId": 1, "positionType": 0, "orderType": 1, "price": price, "quantity": qty,
        "cva": str(n * Decimal("0.01") * 2 / 3), "lf": str(n * Decimal("0.01") / 3),
        "partyAmm": str(n / leverage - n * Decimal("0.01")), "partyBmm": "0", "maxFundingRate": "200",
        "deadline": int(time.time()) + 120,
    }  # fmt: skip
    body.update(over)
    return body


def assert_error(resp: Any, status: int, code: ErrorCode) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == ERROR_KEYS
    assert body["error_code"] == code.code, body
    assert isinstance(body["error_message"], str) and body["error_message"]


async def rows_of(db: SessionFactory, model: Any, **where: Any) -> list[Any]:
    async with db() as s:
        stmt = select(model).where(*[col(getattr(model, k)) == v for k, v in where.items()])
        return list((await s.exec(stmt.order_by(col(model.id)))).all())


async def open_ok(api: AsyncTestClient[Any], t: Trader, **kw: Any) -> dict[str, Any]:
    resp = await api.post("/instant_open", json=open_body(**kw), headers=t.auth)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def move_open(db: SessionFactory, temp_id: int, old: Any, new: Any, **fields: Any) -> None:
    async with db() as s:
        row = await repo.get_instant_open_by_temp_id(s, temp_id)
        assert row is not None and row.id is not None
        assert await repo.transition_instant_open(s, row.id, old, new, now=datetime.now(UTC), actor="worker", **fields)
        await s.commit()


# --- POST /instant_open ------------------------------------------------------------------------


async def test_open_accepted_persisted_with_intent_and_notification(
    api: AsyncTestClient[Any], prices: PriceCache, trader: Trader, db_factory: SessionFactory
) -> None:
    resp = await api.post("/instant_open", json=open_body(), headers=trader.auth)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == OPEN_OUT_KEYS
    temp = body["temp_quote_id"]
    assert isinstance(temp, int) and temp < 0 and body["quote_id"] == temp
    assert body == {
        "temp_quote_id": temp, "quote_id": temp, "symbol_id": 1, "position_type": 0, "order_type": 1,
        "requested_open_price": "60600", "quantity": "0.01", "party_a_address": trader.account,
        "cva": "4.04", "lf": "2.02", "partyAmm": "54.54", "partyBmm": "3.03",  # 606 × 0.5 %
    }  # fmt: skip
    (row,) = await rows_of(db_factory, InstantOpen, account=trader.account)
    assert row.status == InstantOpenStatus.PENDING and row.temp_quote_id == temp and row.party_bmm == Decimal("3.03")
    (intent,) = await rows_of(db_factory, TxIntent, instant_open_id=row.id)
    assert (intent.kind, intent.status, intent.key, intent.lane) == ("send_quote", "queued", f"open:{row.id}:send", 0)
    (note,) = await rows_of(db_factory, Notification, account=trader.account)
    assert (note.last_seen_action, note.action_status, note.temp_quote_id) == ("InstantRFQ", "seen", temp)
    assert note.counterparty_address == api.app.state.services.settings.chain.lanes[0]

    # A JSON number with 25 decimals is read exactly and rounded to 18, not cut to a float.
    raw = open_body(cva="5", lf="3", partyAmm="53")
    raw["price"] = "__P__"
    content = httpx.Request("POST", "/", json=raw).content.replace(b'"__P__"', b"60600.1234567890123456789012345")
    resp = await api.post("/instant_open", content=content, headers={**trader.auth, "Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["requested_open_price"] == "60600.123456789012345679"
    assert resp.json()["temp_quote_id"] < temp


async def test_open_idempotency(
    api: AsyncTestClient[Any], prices: PriceCache, trader: Trader, db_factory: SessionFactory
) -> None:
    headers = {**trader.auth, "Idempotency-Key": "order-1"}
    body = open_body()
    first = await api.post("/instant_open", json=body, headers=headers)
    assert first.status_code == 200, first.text
    # The same request with numbers written differently is the same request.
    again = await api.post("/instant_open", json={**body, "price": 60600, "quantity": "1E-2"}, headers=headers)
    assert again.status_code == 200 and again.json() == first.json()
    rows = await rows_of(db_factory, InstantOpen, account=trader.account)
    assert len(rows) == 1
    assert len(await rows_of(db_factory, TxIntent, instant_open_id=rows[0].id)) == 1
    # Even once the open has progressed, the replay answers from the stored row.
    await move_open(db_factory, first.json()["temp_quote_id"], InstantOpenStatus.PENDING, InstantOpenStatus.CANCELLED)
    assert (await api.post("/instant_open", json=body, headers=headers)).json() == first.json()
    other = await api.post("/instant_open", json=open_body(qty="0.02"), headers=headers)
    assert_error(other, 409, ErrorCode.IDEMPOTENCY_KEY_REUSED)
    assert_error(
        await api.post("/instant_open", json=body, headers={**trader.auth, "Idempotency-Key": "x" * 300}),
        400,
        ErrorCode.INVALID_IDEMPOTENCY_KEY,
    )
    assert len(await rows_of(db_factory, InstantOpen, account=trader.account)) == 1


GATE_CASES: list[tuple[str, dict[str, Any], int, ErrorCode]] = [
    ("price too far", {"price": "70000", "cva": "4.666666666666666667", "lf": "2.333333333333333334",
                       "partyAmm": "63"}, 400, ErrorCode.PRICE_OUT_OF_RANGE),
    ("market long below mark+fee", {"price": "60000", "cva": "4", "lf": "2", "partyAmm": "54"}, 400,
     ErrorCode.PRICE_OUT_OF_RANGE),
    ("quantity precision", {"quantity": "0.0101"}, 400, ErrorCode.QUANTITY_PRECISION),
    ("cva too low", {"cva": "0"}, 400, ErrorCode.LOCKED_VALUES_TOO_LOW),
    ("leverage too high", {"partyAmm": "0"}, 400, ErrorCode.LEVERAGE_TOO_HIGH),
    ("deadline passed", {"deadline": 1_000}, 400, ErrorCode.DEADLINE_PASSED),
    ("unknown symbol", {"symbolId": 999}, 404, ErrorCode.UNKNOWN_SYMBOL),
    ("bad position type", {"positionType": 3}, 400, ErrorCode.INVALID_ORDER),
    ("NaN", {"price": "NaN"}, 400, ErrorCode.VALIDATION),
    ("negative", {"quantity": "-1"}, 400, ErrorCode.VALIDATION),
    ("beyond uint256", {"price": "1e80"}, 400, ErrorCode.VALIDATION),
    ("garbage", {"cva": "1,5"}, 400, ErrorCode.VALIDATION),
    ("missing field", {"quantity": None}, 400, ErrorCode.VALIDATION),
]  # fmt: skip


async def test_open_gate_rejections(
    api: AsyncTestClient[Any], prices: PriceCache, trader: Trader, chain: Devnet, login: Any, db_factory: Any
) -> None:
    for name, over, status, code in GATE_CASES:
        body = {k: v for k, v in open_body(**over).items() if v is not None}
        resp = await api.post("/instant_open", json=body, headers=trader.auth)
        assert resp.status_code == status, (name, resp.text)
        assert resp.json()["error_code"] == code.code, (name, resp.json())
    # 0.2 BTC at leverage 1 needs 12 120 + fee; the account has 10 000.
    insufficient = await api.post("/instant_open", json=open_body(qty="0.2", leverage=1), headers=trader.auth)
    assert_error(insufficient, 400, ErrorCode.INSUFFICIENT_BALANCE)
    assert_error(await api.post("/instant_open", json=open_body()), 401, ErrorCode.UNAUTHORIZED)
    undelegated = login(chain.new_trader(delegate=False))
    assert_error(
        await api.post("/instant_open", json=open_body(), headers=undelegated.auth), 403, ErrorCode.NOT_DELEGATED
    )
    assert await rows_of(db_factory, InstantOpen, account=trader.account) == []


async def test_open_stale_and_missing_price(api: AsyncTestClient[Any], redis_client: Any, redis_prefix: str) -> None:
    t = Trader("0x" + "1" * 40, "", "0x" + "2" * 40)
    t.token = JwtCodec(api.app.state.services.settings.auth, SystemClock()).issue(
        account=t.account, owner=t.owner, expires_at=datetime.now(UTC) + timedelta(hours=1)
    )
    assert_error(await api.post("/instant_open", json=open_body(), headers=t.auth), 503, ErrorCode.PRICE_UNAVAILABLE)
    await PriceCache(redis_client, redis_prefix).set(PricePoint("BTCUSDT", MARK, time.time() - 60))
    assert_error(await api.post("/instant_open", json=open_body(), headers=t.auth), 503, ErrorCode.PRICE_STALE)


async def test_open_pending_limit_under_concurrency(
    settings: Settings, prices: PriceCache, trader: Trader, db_factory: SessionFactory
) -> None:
    """20 parallel requests of one account on a real server, limit 5: exactly 5 are accepted."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.05)
        assert server.started
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            answers = await asyncio.gather(
                *(client.post("/instant_open", json=open_body(), headers=trader.auth) for _ in range(20))
            )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    codes = sorted(r.status_code for r in answers)
    assert codes == [200] * PENDING_LIMIT + [429] * (20 - PENDING_LIMIT), [r.text for r in answers]
    assert all(r.json()["error_code"] == ErrorCode.TOO_MANY_PENDING.code for r in answers if r.status_code == 429)
    assert len(await rows_of(db_factory, InstantOpen, account=trader.account)) == PENDING_LIMIT


# --- GET lists and the temp id lookup ----------------------------------------------------------


async def test_open_list_and_quote_id(
    api: AsyncTestClient[Any], prices: PriceCache, trader: Trader, db_factory: SessionFactory
) -> None:
    a, b, c = [await open_ok(api, trader) for _ in range(3)]
    quote_id = 10**12 + secrets.randbelow(10**12)
    await move_open(
        db_factory, b["temp_quote_id"], InstantOpenStatus.PENDING, InstantOpenStatus.SENT, quote_id=quote_id
    )
    await move_open(db_factory, c["temp_quote_id"], InstantOpenStatus.PENDING, InstantOpenStatus.CANCELLED)
    resp = await api.get(f"/instant_open/{trader.account.lower()}")
    assert resp.status_code == 200
    items = resp.json()
    assert [i["temp_quote_id"] for i in items] == [c["temp_quote_id"], b["temp_quote_id"], a["temp_quote_id"]]
    for item in items:
        assert set(item) == OPEN_ITEM_KEYS
        assert all(isinstance(item[k], int) for k in ("id", "create_time", "modify_time", "version", "symbol_id"))
        assert item["error_code"] is None and item["error_message"] is None
    assert [i["status"] for i in items] == ["cancelled", "sent", "pending"]
    assert items[1]["quote_id"] == quote_id and items[2]["quote_id"] == a["temp_quote_id"]

    # Finished more than 5 minutes ago: no longer listed.
    async with db_factory() as s:
        await (await s.connection()).execute(
            text("UPDATE instant_open SET modify_time = now() - interval '6 minutes' WHERE temp_quote_id = :t"),
            {"t": c["temp_quote_id"]},
        )
        await s.commit()
    assert len((await api.get(f"/instant_open/{trader.account}")).json()) == 2

    pending = await api.get(f"/instant_quote_id/{a['temp_quote_id']}")
    assert pending.json() == {"quote_id": None, "status": "pending"}
    assert (await api.get(f"/instant_quote_id/{b['temp_quote_id']}")).json() == {"quote_id": quote_id, "status": "sent"}
    assert_error(await api.get("/instant_quote_id/-999999999999"), 404, ErrorCode.INSTANT_NOT_FOUND)
    assert_error(await api.get("/instant_quote_id/abc"), 404, ErrorCode.INSTANT_NOT_FOUND)
    assert_error(await api.get("/instant_open/0x123"), 400, ErrorCode.VALIDATION)
    assert (await api.get(f"/instant_close/{trader.account}")).json() == []


# --- DELETE /instant_open ----------------------------------------------------------------------


async def test_cancel_open(
    api: AsyncTestClient[Any], prices: PriceCache, trader: Trader, chain: Devnet, login: Any, db_factory: Any
) -> None:
    pending, sent, opened, in_tx, failed = [await open_ok(api, trader) for _ in range(5)]
    other = login(chain.new_trader(delegate=False))
    assert_error(await api.delete(f"/instant_open/{pending['temp_quote_id']}", headers=other.auth), 403,
                 ErrorCode.NOT_YOUR_QUOTE)  # fmt: skip
    assert_error(await api.delete("/instant_open/-987654321987", headers=trader.auth), 404, ErrorCode.INSTANT_NOT_FOUND)

    # PENDING: the queued intent is dropped and the request cancelled.
    resp = await api.delete(f"/instant_open/{pending['temp_quote_id']}", headers=trader.auth)
    assert resp.status_code == 200 and resp.json()["successful"] is True and resp.json()["message"]
    (row,) = await rows_of(db_factory, InstantOpen, temp_quote_id=pending["temp_quote_id"])
    assert row.status == InstantOpenStatus.CANCELLED
    (intent,) = await rows_of(db_factory, TxIntent, instant_open_id=row.id)
    assert intent.status == "cancelled"
    again = await api.delete(f"/instant_open/{pending['temp_quote_id']}", headers=trader.auth)
    assert again.status_code == 200 and again.json()["successful"] is True

    # SENT with a known quote id: cancel requested on chain (shown as "sent").
    qid = 10**12 + secrets.randbelow(10**12)
    await move_open(db_factory, sent["temp_quote_id"], InstantOpenStatus.PENDING, InstantOpenStatus.SENT, quote_id=qid)
    assert (await api.delete(f"/instant_open/{sent['temp_quote_id']}", headers=trader.auth)).status_code == 200
    async with db_factory() as s:
        row = await repo.get_instant_open_by_temp_id(s, sent["temp_quote_id"])
    assert row is not None and row.status == InstantOpenStatus.CANCEL_REQUESTED
    cancel = [
        i for i in await rows_of(db_factory, TxIntent, instant_open_id=row.id) if i.kind == IntentKind.CANCEL_QUOTE
    ]
    assert [(i.key, i.quote_id, i.status) for i in cancel] == [(f"open:{row.id}:cancel", qid, "queued")]
    listed = {i["temp_quote_id"]: i for i in (await api.get(f"/instant_open/{trader.account}")).json()}
    assert listed[sent["temp_quote_id"]]["status"] == "sent"
    assert (await api.delete(f"/instant_open/{qid}", headers=trader.auth)).status_code == 200  # by real id too

    # SENT while the solver's open is already in a transaction: too late.
    await move_open(db_factory, in_tx["temp_quote_id"], InstantOpenStatus.PENDING, InstantOpenStatus.SENT)
    async with db_factory() as s:
        row = await repo.get_instant_open_by_temp_id(s, in_tx["temp_quote_id"])
        assert row is not None
        conn = await s.connection()
        tx_id = (
            await conn.execute(
                text(
                    "INSERT INTO chain_tx (lane, sender, nonce, to_address, data, gas_limit) "
                    "VALUES (0, :a, :n, :a, '0x', 1) RETURNING id"
                ),
                # Not the solver's address: a made-up nonce must never reach a real lane's counter.
                {"a": "0x00000000000000000000000000000000000000a1", "n": 10**9 + secrets.randbelow(10**9)},
            )
        ).scalar_one()
        await conn.execute(
            text(
                "INSERT INTO tx_intent (key, kind, status, lane, account, instant_open_id, tx_id) "
                "VALUES (:k, 'open_quote', 'in_tx', 0, :a, :i, :t)"
            ),
            {"k": f"open:{row.id}:open", "a": trader.account, "i": row.id, "t": tx_id},
        )
        await s.commit()
    too_late = await api.delete(f"/instant_open/{in_tx['temp_quote_id']}", headers=trader.auth)
    assert_error(too_late, 409, ErrorCode.CANCEL_TOO_LATE)

    # OPENED and FAILED: nothing to cancel.
    await move_open(db_factory, opened["temp_quote_id"], InstantOpenStatus.PENDING, InstantOpenStatus.SENT,
                    quote_id=qid + 1)  # fmt: skip
    await move_open(db_factory, opened["temp_quote_id"], InstantOpenStatus.SENT, InstantOpenStatus.OPENED)
    assert_error(await api.delete(f"/instant_open/{opened['temp_quote_id']}", headers=trader.auth), 409,
                 ErrorCode.CANCEL_TOO_LATE)  # fmt: skip
    await move_open(db_factory, failed["temp_quote_id"], InstantOpenStatus.PENDING, InstantOpenStatus.FAILED)
    assert_error(await api.delete(f"/instant_open/{failed['temp_quote_id']}", headers=trader.auth), 409,
                 ErrorCode.ALREADY_FAILED)  # fmt: skip


# --- instant close -----------------------------------------------------------------------------


@pytest.fixture
def position(chain: Devnet, trader: Trader) -> tuple[Trader, int]:
    return trader, chain.open_position(trader)


def close_body(quote_id: int, qty: str = "0.01", price: str = "59400", **over: Any) -> dict[str, Any]:
    return {"quote_id": quote_id, "quantity_to_close": qty, "close_price": price, "order_type": 1, **over}


async def test_close_validation(
    api: AsyncTestClient[Any],
    prices: PriceCache,
    position: tuple[Trader, int],
    chain: Devnet,
    login: Any,
    settings: Settings,
) -> None:
    t, qid = position
    cases: list[tuple[dict[str, Any], int, ErrorCode]] = [
        (close_body(qid, qty="0.03"), 400, ErrorCode.CLOSE_QUANTITY_INVALID),  # open is 0.02
        (close_body(qid, qty="0.0005"), 400, ErrorCode.CLOSE_QUANTITY_INVALID),  # BTC: 3 decimals
        (close_body(qid, qty="0"), 400, ErrorCode.CLOSE_QUANTITY_INVALID),
        (close_body(qid, qty="0.019"), 400, ErrorCode.REMAINDER_TOO_SMALL),  # 6 of margin left < 10
        (close_body(qid, price="50000"), 400, ErrorCode.PRICE_OUT_OF_RANGE),  # > 5 % from the mark
        (close_body(qid, price="60000"), 400, ErrorCode.PRICE_OUT_OF_RANGE),  # above mark − fee
        (close_body(qid, deadline=1000), 400, ErrorCode.DEADLINE_PASSED),
        (close_body(10**12), 404, ErrorCode.QUOTE_NOT_FOUND),
        (close_body(-5), 400, ErrorCode.VALIDATION),
        (close_body(qid, close_price="NaN"), 400, ErrorCode.VALIDATION),
    ]
    for body, status, code in cases:
        resp = await api.post("/instant_close", json=body, headers=t.auth)
        assert resp.status_code == status, (body, resp.text)
        assert resp.json()["error_code"] == code.code, (body, resp.json())
    other = login(chain.new_trader(delegate=False))
    assert_error(await api.post("/instant_close", json=close_body(qid), headers=other.auth), 403,
                 ErrorCode.NOT_YOUR_QUOTE)  # fmt: skip
    pending = chain.open_position(t, lock_and_open=False)
    assert_error(await api.post("/instant_close", json=close_body(pending), headers=t.auth), 400,
                 ErrorCode.QUOTE_NOT_OPEN)  # fmt: skip

    # A solver whose lanes are other PartyB addresses does not hold this position.
    elsewhere = settings.model_copy(
        update={"chain": settings.chain.model_copy(update={"party_b_addresses": ["0x" + "ab" * 20]})}
    )
    async with AsyncTestClient(app=create_app(elsewhere), base_url="http://testserver.local") as client:
        assert_error(await client.post("/instant_close", json=close_body(qid), headers=t.auth), 400,
                     ErrorCode.QUOTE_NOT_WITH_SOLVER)  # fmt: skip

    # An account that delegated everything but requestToClosePosition: refused, nothing stored.
    partial = login(chain.new_trader(skip=DELEGATED_SIGNATURES[2]))
    held = chain.open_position(partial)
    assert_error(
        await api.post("/instant_close", json=close_body(held), headers=partial.auth), 403, ErrorCode.NOT_DELEGATED
    )
    assert (await api.get(f"/instant_close/{partial.account}")).json() == []
    assert (await api.get(f"/instant_close/{t.account}")).json() == []


async def test_close_accept_idempotency_cancel(
    api: AsyncTestClient[Any], prices: PriceCache, position: tuple[Trader, int], db_factory: SessionFactory
) -> None:
    t, qid = position
    headers = {**t.auth, "Idempotency-Key": "close-1"}
    resp = await api.post("/instant_close", json=close_body(qid), headers=headers)
    assert resp.status_code == 200, resp.text
    assert set(resp.json()) == {"successful", "message"} and resp.json()["successful"] is True
    replay = await api.post("/instant_close", json=close_body(qid, qty="0.010"), headers=headers)
    assert replay.status_code == 200 and replay.json() == resp.json()
    assert_error(await api.post("/instant_close", json=close_body(qid, qty="0.02"), headers=headers), 409,
                 ErrorCode.IDEMPOTENCY_KEY_REUSED)  # fmt: skip
    assert_error(await api.post("/instant_close", json=close_body(qid), headers=t.auth), 409,
                 ErrorCode.CLOSE_ALREADY_PENDING)  # fmt: skip

    (row,) = await rows_of(db_factory, InstantClose, account=t.account)
    assert (row.quote_id, row.status, row.quantity_to_close, row.close_price) == (
        qid,
        "pending",
        Decimal("0.01"),
        59400,
    )
    assert row.deadline > time.time()
    (intent,) = await rows_of(db_factory, TxIntent, instant_close_id=row.id)
    assert (intent.kind, intent.status, intent.key, intent.quote_id, intent.lane) == (
        "close_request", "queued", f"close:{row.id}:request", qid, 0,
    )  # fmt: skip
    notes = await rows_of(db_factory, Notification, account=t.account)
    assert [(n.last_seen_action, n.action_status, n.quote_id) for n in notes] == [
        ("InstantRequestToClosePosition", "seen", qid)
    ]
    listed = (await api.get(f"/instant_close/{t.account}")).json()
    assert listed == [
        {"quote_id": qid, "quantity_to_close": "0.01", "close_price": "59400", "status": "pending",
         "create_time": listed[0]["create_time"], "modify_time": listed[0]["modify_time"]}
    ]  # fmt: skip
    assert isinstance(listed[0]["create_time"], int)

    assert_error(await api.delete("/instant_close/123456789", headers=t.auth), 404, ErrorCode.CLOSE_NOT_FOUND)
    resp = await api.delete(f"/instant_close/{qid}", headers=t.auth)
    assert resp.status_code == 200 and resp.json()["successful"] is True
    (row,) = await rows_of(db_factory, InstantClose, account=t.account)
    assert row.status == "cancelled"
    (intent,) = await rows_of(db_factory, TxIntent, instant_close_id=row.id)
    assert intent.status == "cancelled"
    assert_error(await api.delete(f"/instant_close/{qid}", headers=t.auth), 404, ErrorCode.CLOSE_NOT_FOUND)
    # With the first one cancelled, a new close is accepted (closing everything is always allowed).
    full = await api.post("/instant_close", json=close_body(qid, qty="0.02"), headers=t.auth)
    assert full.status_code == 200, full.text


# --- POST /position-state ----------------------------------------------------------------------


async def test_position_state(api: AsyncTestClient[Any], prices: PriceCache, trader: Trader) -> None:
    first = await open_ok(api, trader)
    second = await open_ok(api, trader)
    await api.delete(f"/instant_open/{first['temp_quote_id']}", headers=trader.auth)
    resp = await api.post("/position-state/0/10", json={"address": trader.account.lower()})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["count"] == 3 and len(body["position_state"]) == 3
    for n in body["position_state"]:
        assert set(n) == NOTIFICATION_KEYS
        assert isinstance(n["id"], str) and isinstance(n["quote_id"], int)
        assert isinstance(n["create_time"], int) and isinstance(n["version"], int)
        assert n["counterparty_address"] == api.app.state.services.settings.chain.lanes[0]
    actions = [(n["last_seen_action"], n["temp_quote_id"]) for n in body["position_state"]]
    assert actions[0] == ("RequestToCancelQuote", first["temp_quote_id"])
    assert sorted(actions[1:]) == sorted(
        [("InstantRFQ", first["temp_quote_id"]), ("InstantRFQ", second["temp_quote_id"])]
    )
    rfq = body["position_state"][1]
    assert rfq["quote_id"] == rfq["temp_quote_id"] and rfq["action_status"] == "seen" and rfq["state_type"] == "report"

    page = (await api.post("/position-state/1/1", json={"address": trader.account})).json()
    assert page["count"] == 3 and [n["id"] for n in page["position_state"]] == [body["position_state"][1]["id"]]
    by_temp = await api.post(
        "/position-state/0/10", json={"address": trader.account, "quote_id": second["temp_quote_id"]}
    )
    assert [n["last_seen_action"] for n in by_temp.json()["position_state"]] == ["InstantRFQ"]
    future = int(time.time()) + 3600
    later = await api.post("/position-state/0/10", json={"address": trader.account, "create_time_gte": future})
    assert later.json() == {"count": 0, "position_state": []}
    since_ms = await api.post(
        "/position-state/0/10", json={"address": trader.account, "modify_time_gte": future * 1000}
    )
    assert since_ms.json()["count"] == 0
    for path in ("/position-state/0/0", "/position-state/0/101", "/position-state/-1/10", "/position-state/a/10"):
        assert_error(await api.post(path, json={"address": trader.account}), 400, ErrorCode.INVALID_PAGE)
    assert_error(await api.post("/position-state/0/10", json={"address": "0x12"}), 400, ErrorCode.VALIDATION)


def test_spec_statuses_only() -> None:
    """Every internal status maps to one the spec names (cancel_requested is shown as sent)."""
    from solver.quotes.schemas import public_status

    shown = {public_status(s.value) for s in InstantOpenStatus}
    assert shown == {"pending", "sent", "opened", "failed", "cancelled"}


async def test_openapi_documents_the_routes(api: AsyncTestClient[Any]) -> None:
    paths = (await api.get("/docs/openapi.json")).json()["paths"]
    assert {"post"} <= set(paths["/instant_open"]) and {"post"} <= set(paths["/instant_close"])
    assert "get" in paths["/instant_open/{account}"] and "delete" in paths["/instant_open/{temp_quote_id}"]
    assert "post" in paths["/position-state/{start}/{size}"]
    params = {p["name"] for p in paths["/instant_open"]["post"].get("parameters", [])}
    assert "Idempotency-Key" in params
