"""Stop loss / take profit API (http-api.md §4) against Postgres, Redis and anvil.

No engine runs: accepted orders stay `armed` / `waiting` in Postgres, exactly what the API must
leave behind. Positions are opened on chain by the test (tests.integration.test_instant_api's
Devnet helpers), each test with its own fresh trader.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlmodel import col, select
from web3.logs import DISCARD

from solver.app import create_app
from solver.auth.jwt import JwtCodec
from solver.core.clock import SystemClock
from solver.core.errors import ErrorCode
from solver.core.units import to_wei
from solver.db.engine import SessionFactory
from solver.db.models import InstantOpenStatus, Notification, TriggerOrder
from solver.devnet.deploy import DELEGATED_SIGNATURES, DevnetInfo
from solver.oracle.signer import OracleSigner
from solver.pricing.cache import PriceCache, PricePoint
from solver.quotes import repository as repo
from solver.settings import Settings
from tests.fixtures.app import settings_for
from tests.fixtures.db import instant_open_fields
from tests.integration.test_instant_api import MARK, Devnet, Trader

pytestmark = pytest.mark.integration

ERROR_KEYS = {"error_code", "error_message", "error_detail"}
ITEM_KEYS = {
    "id", "quote_id", "kind", "position_type", "symbol_id", "trigger_price", "requested_price", "status", "quantity",
    "close_price", "fire_mark", "fire_time", "attempts", "instant_close_id", "end_reason", "error_code",
    "error_message", "create_time", "modify_time", "version",
}  # fmt: skip


@pytest.fixture(scope="module")
def chain(devnet: DevnetInfo, oracle_signer: OracleSigner) -> Devnet:
    return Devnet(devnet, oracle_signer)


@pytest.fixture
def settings(devnet: DevnetInfo, database_url: str, redis_prefix: str) -> Settings:
    return settings_for(devnet, database_url, redis_prefix)


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


def open_short(chain: Devnet, t: Trader, qty: Decimal = Decimal("0.02")) -> int:
    """Devnet.open_position for a SHORT (BTC at 60000, opened by the solver)."""
    info, fns = chain.info, chain.symmio.functions
    chain.send(info.solver_private_key, fns.allocateForPartyB(to_wei(Decimal(1000)), t.account))
    notional = qty * MARK
    cva, lf, amm = notional * 2 / 300, notional / 300, notional / 10 - notional / 100
    sig = chain.oracle.single_upnl_and_price(
        diamond=info.symmio, chain_id=info.chain_id, party_a=t.account,
        nonce_a=fns.nonceOfPartyA(t.account).call(), upnl=0, symbol_id=1, price=to_wei(MARK),
    )  # fmt: skip
    deadline = chain.w3.eth.get_block("latest")["timestamp"] + 3600
    args = [
        [info.solver], 1, 1, 1, to_wei(MARK), to_wei(qty), to_wei(cva), to_wei(lf), to_wei(amm), 0,
        to_wei(Decimal(200)), deadline, sig.as_tuple(),
    ]  # fmt: skip
    call = chain.multi.functions._call(t.account, [chain.symmio.encode_abi("sendQuote", args=args)])
    receipt = chain.send(info.solver_private_key, call)
    quote_id = int(chain.symmio.events.SendQuote().process_receipt(receipt, errors=DISCARD)[0]["args"]["quoteId"])
    nonce_b = fns.nonceOfPartyB(info.solver, t.account).call()
    lock_sig = chain.oracle.party_b_upnl(
        diamond=info.symmio, chain_id=info.chain_id, party_b=info.solver, party_a=t.account, nonce_b=nonce_b, upnl=0
    )
    open_sig = chain.oracle.pair_upnl_and_price(
        diamond=info.symmio, chain_id=info.chain_id, party_b=info.solver, party_a=t.account, nonce_b=nonce_b,
        nonce_a=fns.nonceOfPartyA(t.account).call(), upnl_party_b=0, upnl_party_a=0, symbol_id=1, price=to_wei(MARK),
    )  # fmt: skip
    chain.send(
        info.solver_private_key,
        fns.lockAndOpenQuote(quote_id, to_wei(qty), to_wei(MARK), lock_sig.as_tuple(), open_sig.as_tuple()),
    )
    return quote_id


def body(
    t: Trader, quote_id: int, *, side: int = 0, tp: Any = "61000", sl: Any = "59000", **over: Any
) -> dict[str, Any]:
    """The stop-loss seed's payload."""
    b = {
        "userAddress": t.owner.lower(), "accountAddress": t.account, "positionSide": side, "symbolId": 1,
        "requestedPrice": "60000", "quoteId": quote_id, "tpPrice": tp, "slPrice": sl,
        "timestamp": int(time.time() * 1000),
    }  # fmt: skip
    b.update(over)
    return b


def assert_error(resp: Any, status: int, code: ErrorCode, *needles: str) -> None:
    assert resp.status_code == status, resp.text
    got = resp.json()
    assert set(got) == ERROR_KEYS and got["error_code"] == code.code, got
    for needle in needles:
        assert needle in got["error_message"], got


async def orders_of(db: SessionFactory, quote_id: int) -> list[TriggerOrder]:
    async with db() as s:
        stmt = select(TriggerOrder).where(col(TriggerOrder.quote_id) == quote_id).order_by(col(TriggerOrder.id))
        return list((await s.exec(stmt)).all())


async def notes_of(db: SessionFactory, account: str) -> list[tuple[str, str, int | None]]:
    async with db() as s:
        stmt = select(Notification).where(col(Notification.account) == account)
        rows = (await s.exec(stmt.order_by(col(Notification.create_time), col(Notification.id)))).all()
    return [(n.last_seen_action, n.action_status.value, n.quote_id) for n in rows]


# --- accept and replace --------------------------------------------------------------------


async def test_set_replace_list_cancel(
    api: AsyncTestClient[Any], prices: PriceCache, trader: Trader, chain: Devnet, db_factory: SessionFactory
) -> None:
    qid = chain.open_position(trader)
    resp = await api.post("/stop-loss", json=body(trader, qid), headers=trader.auth)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["successful"] is True and out["quote_id"] == qid
    assert "Take profit at 61000 and Stop loss at 59000 set for quote" in out["message"]
    assert [(o["kind"], o["status"], o["trigger_price"]) for o in out["orders"]] == [
        ("take_profit", "armed", "61000"), ("stop_loss", "armed", "59000"),
    ]  # fmt: skip
    assert all(set(o) == ITEM_KEYS for o in out["orders"])
    assert out["orders"][0]["requested_price"] == "60000" and out["orders"][0]["position_type"] == 0

    # The bots' underscore path, a new stop loss only: it replaces the previous one and says so.
    resp = await api.post("/stop_loss", json=body(trader, qid, tp="", sl=58000.5), headers=trader.auth)
    assert resp.status_code == 200, resp.text
    assert "replaces the previous stop loss at 59000" in resp.json()["message"]
    rows = await orders_of(db_factory, qid)
    assert [(r.kind.value, r.status.value, r.trigger_price, r.end_reason) for r in rows] == [
        ("take_profit", "armed", 61000, None),
        ("stop_loss", "cancelled", 59000, "replaced"),
        ("stop_loss", "armed", Decimal("58000.5"), None),
    ]

    listed = await api.get(f"/stop-loss/{trader.account.lower()}", headers=trader.auth)
    assert listed.status_code == 200, listed.text
    items = listed.json()
    assert [(i["kind"], i["status"]) for i in items] == [
        ("stop_loss", "armed"), ("stop_loss", "cancelled"), ("take_profit", "armed"),
    ]  # fmt: skip
    assert all(isinstance(i["create_time"], int) and isinstance(i["id"], int) for i in items)

    # Cancel only the take profit, then the rest; then nothing is left to cancel.
    resp = await api.delete(f"/stop-loss/{qid}?kind=take_profit", headers=trader.auth)
    assert resp.status_code == 200, resp.text
    assert [(c["kind"], c["status"]) for c in resp.json()["cancelled"]] == [("take_profit", "cancelled")]
    resp = await api.delete(f"/stop_loss/{qid}", headers=trader.auth)
    assert resp.status_code == 200 and resp.json()["message"] == f"The stop loss of quote {qid} was cancelled."
    assert_error(await api.delete(f"/stop-loss/{qid}", headers=trader.auth), 404, ErrorCode.TRIGGER_NOT_FOUND)
    assert {r.status.value for r in await orders_of(db_factory, qid)} == {"cancelled"}

    # One transaction writes several at the same time: compare them as a multiset.
    assert sorted(await notes_of(db_factory, trader.account)) == sorted([
        ("SetTakeProfit", "seen", qid), ("SetStopLoss", "seen", qid),
        ("CancelStopLoss", "success", qid), ("SetStopLoss", "seen", qid),
        ("CancelTakeProfit", "success", qid), ("CancelStopLoss", "success", qid),
    ])  # fmt: skip


async def test_short_and_waiting(
    api: AsyncTestClient[Any],
    prices: PriceCache,
    trader: Trader,
    chain: Devnet,
    db_factory: SessionFactory,
) -> None:
    short = open_short(chain, trader)
    # SHORT: take profit below the mark, stop loss above it.
    assert_error(await api.post("/stop-loss", json=body(trader, short, side=1), headers=trader.auth), 400,
                 ErrorCode.TRIGGER_WOULD_FIRE_NOW, "mark is 60000", "SHORT")  # fmt: skip
    resp = await api.post("/stop-loss", json=body(trader, short, side=1, tp="59000", sl="61000"), headers=trader.auth)
    assert resp.status_code == 200, resp.text

    # A quote still PENDING on chain, from one of our instant opens: accepted, armed later.
    pending = chain.open_position(trader, lock_and_open=False)
    bare = await api.post("/stop-loss", json=body(trader, pending, tp=""), headers=trader.auth)
    assert_error(bare, 400, ErrorCode.QUOTE_NOT_WITH_SOLVER)  # nobody told us this quote is ours
    async with db_factory() as s:
        row = await repo.insert_instant_open(s, **instant_open_fields(account=trader.account))
        assert row.id is not None
        assert await repo.transition_instant_open(s, row.id, InstantOpenStatus.PENDING, InstantOpenStatus.SENT,
                                                  now=datetime.now(UTC), actor="worker", quote_id=pending)  # fmt: skip
        await s.commit()
    resp = await api.post("/stop-loss", json=body(trader, pending, tp=""), headers=trader.auth)
    assert resp.status_code == 200, resp.text
    assert "armed once the position is opened" in resp.json()["message"]
    assert [o["status"] for o in resp.json()["orders"]] == ["waiting"]


# --- rejections ------------------------------------------------------------------------------


async def test_rejections(
    api: AsyncTestClient[Any],
    prices: PriceCache,
    trader: Trader,
    chain: Devnet,
    login: Any,
    db_factory: SessionFactory,
    redis_prefix: str,
    redis_client: Any,
) -> None:
    t = trader
    qid = chain.open_position(t)
    now_ms = int(time.time() * 1000)
    cases: list[tuple[str, dict[str, Any], int, ErrorCode, tuple[str, ...]]] = [
        ("temporary id", body(t, -17), 400, ErrorCode.TRIGGER_TEMP_QUOTE_ID, ("wait for the real quote id",)),
        ("zero id", body(t, 0), 400, ErrorCode.VALIDATION, ()),
        ("unknown quote", body(t, 10**12), 404, ErrorCode.QUOTE_NOT_FOUND, ()),
        ("neither", body(t, qid, tp="", sl=""), 400, ErrorCode.TRIGGER_PRICE_MISSING, ()),
        ("none at all", body(t, qid, tp=None, sl=None), 400, ErrorCode.TRIGGER_PRICE_MISSING, ()),
        ("equal", body(t, qid, tp="60500", sl="60500.000"), 400, ErrorCode.TRIGGER_PRICES_EQUAL, ()),
        ("long sl above mark", body(t, qid, tp="", sl="60001"), 400, ErrorCode.TRIGGER_WOULD_FIRE_NOW,
         ("mark is 60000", "below")),
        ("long tp below mark", body(t, qid, tp="60000", sl=""), 400, ErrorCode.TRIGGER_WOULD_FIRE_NOW,
         ("mark is 60000", "above")),
        ("side mismatch", body(t, qid, side=1, tp="59000", sl="61000"), 400, ErrorCode.TRIGGER_QUOTE_MISMATCH,
         ("LONG",)),
        ("symbol mismatch", body(t, qid, symbolId=2), 400, ErrorCode.TRIGGER_QUOTE_MISMATCH, ()),
        ("old timestamp", body(t, qid, timestamp=now_ms - 120_000), 400, ErrorCode.TRIGGER_TIMESTAMP, ()),
        ("seconds not ms", body(t, qid, timestamp=now_ms // 1000), 400, ErrorCode.TRIGGER_TIMESTAMP, ()),
        ("future timestamp", body(t, qid, timestamp=now_ms + 120_000), 400, ErrorCode.TRIGGER_TIMESTAMP, ()),
        ("other owner", body(t, qid, userAddress="0x" + "1" * 40), 403, ErrorCode.TRIGGER_OWNER_MISMATCH, ()),
        ("other account", body(t, qid, accountAddress="0x" + "2" * 40), 403, ErrorCode.FORBIDDEN_ACCOUNT, ()),
        ("bad number", body(t, qid, sl="abc"), 400, ErrorCode.VALIDATION, ()),
        ("negative", body(t, qid, sl="-1"), 400, ErrorCode.VALIDATION, ()),
        ("NaN", body(t, qid, tp="NaN"), 400, ErrorCode.VALIDATION, ()),
        ("bad address", body(t, qid, userAddress="me"), 400, ErrorCode.VALIDATION, ()),
        ("missing quote", {k: v for k, v in body(t, qid).items() if k != "quoteId"}, 400, ErrorCode.VALIDATION, ()),
    ]  # fmt: skip
    for name, payload, status, code, needles in cases:
        resp = await api.post("/stop-loss", json=payload, headers=t.auth)
        assert resp.status_code == status, (name, resp.text)
        assert resp.json()["error_code"] == code.code, (name, resp.json())
        for needle in needles:
            assert needle in resp.json()["error_message"], (name, resp.json())
    assert_error(await api.post("/stop-loss", json=body(t, qid)), 401, ErrorCode.UNAUTHORIZED)

    # Another account's token: its own addresses, this quote.
    other = login(chain.new_trader())
    assert_error(await api.post("/stop-loss", json=body(other, qid), headers=other.auth), 403, ErrorCode.NOT_YOUR_QUOTE)
    assert_error(await api.get(f"/stop-loss/{t.account}", headers=other.auth), 403, ErrorCode.FORBIDDEN_ACCOUNT)

    # A quote that ended (cancelled while pending) takes no trigger.
    gone = chain.open_position(t, lock_and_open=False)
    cancel = chain.symmio.encode_abi("requestToCancelQuote", args=[gone])
    chain.send(chain.info.solver_private_key, chain.multi.functions._call(t.account, [cancel]))
    assert_error(await api.post("/stop-loss", json=body(t, gone), headers=t.auth), 400,
                 ErrorCode.TRIGGER_QUOTE_NOT_ACTIVE, "CANCELED")  # fmt: skip

    # requestToClosePosition not delegated: the solver could not close it when it fires.
    partial = login(chain.new_trader(skip=DELEGATED_SIGNATURES[2]))
    held = chain.open_position(partial)
    assert_error(await api.post("/stop-loss", json=body(partial, held), headers=partial.auth), 403,
                 ErrorCode.NOT_DELEGATED)  # fmt: skip

    # A stale mark: no placement (the check against the mark needs a fresh one).
    await redis_client.delete(f"{redis_prefix}price:BTCUSDT")  # the cache only moves forward in time
    await PriceCache(redis_client, redis_prefix).set(PricePoint("BTCUSDT", MARK, time.time() - 60))
    assert_error(await api.post("/stop-loss", json=body(t, qid), headers=t.auth), 503, ErrorCode.PRICE_STALE)

    # Cancels: temporary id, garbage, another account's position.
    assert_error(await api.delete("/stop-loss/-3", headers=t.auth), 400, ErrorCode.TRIGGER_TEMP_QUOTE_ID)
    assert_error(await api.delete("/stop-loss/abc", headers=t.auth), 404, ErrorCode.TRIGGER_NOT_FOUND)
    assert_error(await api.delete(f"/stop-loss/{qid}?kind=trailing", headers=t.auth), 400, ErrorCode.VALIDATION)
    assert await orders_of(db_factory, qid) == []


async def test_other_account_cannot_cancel(
    api: AsyncTestClient[Any], prices: PriceCache, trader: Trader, chain: Devnet, login: Any, db_factory: Any
) -> None:
    qid = chain.open_position(trader)
    assert (await api.post("/stop-loss", json=body(trader, qid, tp=""), headers=trader.auth)).status_code == 200
    other = login(chain.new_trader())
    assert_error(await api.delete(f"/stop-loss/{qid}", headers=other.auth), 403, ErrorCode.NOT_YOUR_QUOTE)
    assert [r.status.value for r in await orders_of(db_factory, qid)] == ["armed"]
    assert (await api.get(f"/stop-loss/{other.account}", headers=other.auth)).json() == []


async def test_openapi_documents_the_routes(api: AsyncTestClient[Any]) -> None:
    paths = (await api.get("/docs/openapi.json")).json()["paths"]
    assert "post" in paths["/stop-loss"] and "/stop_loss" not in paths  # the alias is undocumented
    assert "get" in paths["/stop-loss/{account}"] and "delete" in paths["/stop-loss/{quote_id}"]
