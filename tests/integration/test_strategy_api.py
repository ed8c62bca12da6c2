"""Strategy orders API (http-api.md §5, trading-rules.md §3) against Postgres, Redis and anvil.

No engine runs: accepted orders stay `active` in Postgres, exactly what the API must leave
behind. States the engine would produce (sub-orders in flight, sub-orders, terminal statuses) are
written straight into the database. Accounts are fresh random addresses with a token each: the
API reads nothing about them on chain.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import event, text
from sqlmodel import col, select

from solver.core.errors import ErrorCode
from solver.db.engine import SessionFactory
from solver.db.models import AuditLog, Notification, StrategyOrder, StrategySubOrder, SubOrderStatus
from solver.devnet.deploy import DevnetInfo
from solver.quotes import repository as quotes_repo
from solver.settings import Settings, load_settings
from tests.fixtures.api import Caller, api_client, assert_error, caller, running_server
from tests.fixtures.app import settings_for
from tests.fixtures.db import instant_open_fields

pytestmark = pytest.mark.integration

E = ErrorCode
ITEM_KEYS = {
    "id", "type", "account", "wallet", "symbol_id", "symbol", "position_type", "leverage", "initial_input_amount",
    "current_input_amount", "current_output_amount", "max_suborders", "max_invocations", "suborders_executed",
    "invocations_executed", "active_transactions", "slippage", "settings", "status", "status_reason", "error_code",
    "error_message", "creation_timestamp", "close_timestamp", "quote_ids", "suborders", "version",
}  # fmt: skip
SUB_KEYS = {
    "invocation", "status", "slots", "quantity", "price", "temp_quote_id", "quote_id", "error_code", "error_message",
    "create_time",
}  # fmt: skip
TERMINAL = ["cancelled_by_user", "cancelled_by_system", "executed", "max_retries_exceeded"]


@pytest.fixture
def settings(devnet: DevnetInfo, database_url: str, redis_prefix: str) -> Settings:
    symbols = [s.model_dump() for s in load_settings().symbols]
    symbols[2]["rfq_allowed"] = False  # XRPUSDT: a configured symbol closed to new quotes
    return settings_for(devnet, database_url, redis_prefix, symbols=symbols)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    async with api_client(settings) as client:
        yield client


@pytest.fixture
def alice(settings: Settings) -> Caller:
    return caller(settings)


@pytest.fixture
def bob(settings: Settings) -> Caller:
    return caller(settings)


def limit_body(**over: Any) -> dict[str, Any]:
    """The strategy-orders seed's LIMIT order: buy BTC when it falls to 59000."""
    body: dict[str, Any] = {
        "type": "limit", "symbol_id": 1, "position_type": 0, "leverage": "10", "input_amount": "100",
        "max_suborders": 4, "max_invocations": 8, "slippage": "0.001", "settings": {"price": "59000"},
    }  # fmt: skip
    body.update(over)
    return body


def dca_body(**over: Any) -> dict[str, Any]:
    return limit_body(**{"type": "dca", "settings": {"delay": 3600}, **over})


async def create(api: AsyncTestClient[Any], who: Caller, body: dict[str, Any] | None = None) -> dict[str, Any]:
    resp = await api.post("/strategy-orders", json=body or limit_body(), headers=who.auth)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def orders_of(db: SessionFactory, account: str) -> list[StrategyOrder]:
    async with db() as s:
        stmt = select(StrategyOrder).where(col(StrategyOrder.account) == account).order_by(col(StrategyOrder.id))
        return list((await s.exec(stmt)).all())


async def order(db: SessionFactory, order_id: int) -> StrategyOrder:
    async with db() as s:
        row = await s.get(StrategyOrder, order_id)
        assert row is not None
        return row


async def notes_of(db: SessionFactory, account: str) -> list[tuple[str, str, str | None]]:
    async with db() as s:
        stmt = select(Notification).where(col(Notification.account) == account)
        rows = (await s.exec(stmt.order_by(col(Notification.create_time), col(Notification.id)))).all()
    return [(n.last_seen_action, n.action_status.value, n.event_key) for n in rows]


async def set_state(db: SessionFactory, order_id: int, status: str, *, active_transactions: int = 0) -> None:
    """What the engine would have done: a status (close_time iff terminal) and transactions in flight."""
    closed = None if status in ("active", "requested_cancellation") else datetime.now(UTC)
    async with db() as s:
        await (await s.connection()).execute(
            text(
                "UPDATE strategy_order SET status = :st, active_transactions = :at, version = version + 1, "
                "close_time = :ct WHERE id = :id"
            ),
            {"st": status, "at": active_transactions, "ct": closed, "id": order_id},
        )
        await s.commit()


@contextmanager
def statements(api: AsyncTestClient[Any]) -> Iterator[list[str]]:
    """The SQL the app's engine runs inside the block."""
    engine = api.app.state.services.engine.sync_engine
    seen: list[str] = []

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)


# --- POST /strategy-orders -------------------------------------------------------------------------


async def test_create_limit(api: AsyncTestClient[Any], alice: Caller, db_factory: SessionFactory) -> None:
    t0 = int(time.time())
    item = await create(api, alice)
    t1 = int(time.time())
    assert set(item) == ITEM_KEYS
    oid = item["id"]
    assert isinstance(oid, int) and oid > 0 and t0 <= item["creation_timestamp"] <= t1
    assert item == {
        "id": oid, "type": "limit", "account": alice.account, "wallet": alice.account, "symbol_id": 1,
        "symbol": "BTCUSDT", "position_type": 0, "leverage": "10", "initial_input_amount": "100",
        "current_input_amount": "100", "current_output_amount": "0", "max_suborders": 4, "max_invocations": 8,
        "suborders_executed": 0, "invocations_executed": 0, "active_transactions": 0, "slippage": "0.001",
        "settings": {"price": "59000"}, "status": "active", "status_reason": None, "error_code": None,
        "error_message": None, "creation_timestamp": item["creation_timestamp"], "close_timestamp": None,
        "quote_ids": [], "suborders": [], "version": 1,
    }  # fmt: skip
    (row,) = await orders_of(db_factory, alice.account)
    assert (row.id, row.status, row.limit_price, row.dca_delay_s, row.next_due_time) == (
        oid, "active", 59000, None, None,
    )  # fmt: skip
    assert (row.initial_input_amount, row.current_input_amount, row.current_output_amount) == (100, 100, 0)
    assert (row.idempotency_key, row.request_hash, row.close_time) == (None, None, None)
    assert await notes_of(db_factory, alice.account) == [
        ("StrategyOrderCreated", "seen", f"strategy_order:{oid}:created")
    ]
    async with db_factory() as s:
        stmt = select(AuditLog).where(col(AuditLog.entity) == "strategy_order", col(AuditLog.entity_id) == str(oid))
        (audit,) = (await s.exec(stmt)).all()
    assert (audit.from_status, audit.to_status, audit.actor) == (None, "active", "api")

    assert (await api.get(f"/strategy-orders/{oid}", headers=alice.auth)).json() == item


async def test_create_dca_alias_and_exact_numbers(
    api: AsyncTestClient[Any], alice: Caller, db_factory: SessionFactory
) -> None:
    body = dca_body(
        position_type=1, leverage=12.5, max_suborders=10, max_invocations=255, slippage="5E-3",
        settings={"delay": "60", "price_range_from": 58000, "price_range_to": "61000.5"},
    )  # fmt: skip
    del body["input_amount"]
    body["initial_input_amount"] = "__AMOUNT__"  # the seed's key, as a JSON number with 18 decimals
    content = httpx.Request("POST", "/", json=body).content.replace(b'"__AMOUNT__"', b"1234.567890123456789012")
    resp = await api.post(
        "/strategy-orders", content=content, headers={**alice.auth, "Content-Type": "application/json"}
    )
    assert resp.status_code == 200, resp.text
    item = resp.json()
    assert (item["type"], item["position_type"], item["leverage"], item["slippage"]) == ("dca", 1, "12.5", "0.005")
    assert item["initial_input_amount"] == item["current_input_amount"] == "1234.567890123456789012"
    assert item["settings"] == {
        "delay": 60, "delay_millis": 60_000, "price_range_from": "58000", "price_range_to": "61000.5",
    }  # fmt: skip
    (row,) = await orders_of(db_factory, alice.account)
    assert row.initial_input_amount == Decimal("1234.567890123456789012")
    # Due at once: the engine sends the first sub-order on its next pass.
    assert row.next_due_time is not None and row.next_due_time == row.create_time
    assert (row.dca_delay_s, row.band_from, row.band_to, row.limit_price) == (60, 58000, Decimal("61000.5"), None)

    # Without a price range its bounds are null, not absent.
    item = await create(api, alice, dca_body())
    assert item["settings"] == {"delay": 3600, "delay_millis": 3_600_000, "price_range_from": None,
                                "price_range_to": None}  # fmt: skip
    assert [n[0] for n in await notes_of(db_factory, alice.account)] == ["StrategyOrderCreated"] * 2


REJECTIONS: list[tuple[str, dict[str, Any], int, ErrorCode, tuple[str, ...]]] = [
    ("no type", limit_body(type=None), 400, E.STRATEGY_INVALID_TYPE, ("type is required",)),
    ("bad type", limit_body(type="market"), 400, E.STRATEGY_INVALID_TYPE, ("type must be limit or dca",)),
    ("unknown symbol", limit_body(symbol_id=999), 400, E.STRATEGY_INVALID_SYMBOL, ("symbol_id 999",)),
    ("closed symbol", limit_body(symbol_id=3, leverage="5"), 400, E.STRATEGY_INVALID_SYMBOL,
     ("XRPUSDT", "not open for trading")),
    ("position type", limit_body(position_type=2), 400, E.STRATEGY_INVALID_POSITION_TYPE, ("position_type",)),
    ("leverage high", limit_body(leverage="50.5"), 400, E.STRATEGY_INVALID_LEVERAGE,
     ("leverage", "from 1 to 50 for BTCUSDT")),
    ("leverage low", limit_body(leverage="0.5"), 400, E.STRATEGY_INVALID_LEVERAGE, ("from 1 to 50",)),
    ("input below min", limit_body(input_amount="9.99"), 400, E.STRATEGY_INVALID_INPUT_AMOUNT,
     ("input_amount", "at least 10")),
    ("input 40 decimals", limit_body(input_amount="10." + "1" * 40), 400, E.STRATEGY_INVALID_INPUT_AMOUNT,
     ("input_amount", "18 decimals")),
    ("input NaN", limit_body(input_amount="NaN"), 400, E.STRATEGY_INVALID_INPUT_AMOUNT, ("input_amount",)),
    ("input 1e80", limit_body(input_amount=1e80), 400, E.STRATEGY_INVALID_INPUT_AMOUNT,
     ("input_amount", "out of range")),
    ("input negative", limit_body(input_amount="-100"), 400, E.STRATEGY_INVALID_INPUT_AMOUNT, ("greater than 0",)),
    ("input zero", limit_body(input_amount=0), 400, E.STRATEGY_INVALID_INPUT_AMOUNT, ("greater than 0",)),
    ("input missing", limit_body(input_amount=None), 400, E.STRATEGY_INVALID_INPUT_AMOUNT,
     ("input_amount is required",)),
    ("alias differs", limit_body(initial_input_amount="101"), 400, E.STRATEGY_INVALID_INPUT_AMOUNT,
     ("initial_input_amount", "differ")),
    ("max_suborders 0", limit_body(max_suborders=0), 400, E.STRATEGY_INVALID_MAX_SUBORDERS,
     ("max_suborders", "from 1 to 255")),
    ("max_suborders 256", limit_body(max_suborders=256, max_invocations=255), 400, E.STRATEGY_INVALID_MAX_SUBORDERS,
     ("max_suborders", "from 1 to 255", "got 256")),
    ("invocations < suborders", limit_body(max_suborders=5, max_invocations=4), 400,
     E.STRATEGY_INVALID_MAX_INVOCATIONS, ("max_invocations", "from max_suborders (5) to 255")),
    ("slippage 0", limit_body(slippage="0"), 400, E.STRATEGY_INVALID_SLIPPAGE, ("slippage", "at most 1")),
    ("slippage 1.01", limit_body(slippage="1.01"), 400, E.STRATEGY_INVALID_SLIPPAGE, ("slippage",)),
    ("limit no price", limit_body(settings={}), 400, E.STRATEGY_INVALID_SETTINGS, ("settings.price",)),
    ("limit price 0", limit_body(settings={"price": "0"}), 400, E.STRATEGY_INVALID_SETTINGS, ("settings.price",)),
    ("no settings", limit_body(settings=None), 400, E.STRATEGY_INVALID_SETTINGS, ("settings is required",)),
    ("dca delay 0", dca_body(settings={"delay": 0}), 400, E.STRATEGY_INVALID_SETTINGS,
     ("settings.delay", "from 1 to 2592000 seconds")),
    ("dca delay too long", dca_body(settings={"delay": 2_592_001}), 400, E.STRATEGY_INVALID_SETTINGS,
     ("settings.delay",)),
    ("dca range", dca_body(settings={"delay": 60, "price_range_from": "61000", "price_range_to": "60000"}), 400,
     E.STRATEGY_INVALID_SETTINGS, ("settings.price_range_from", "settings.price_range_to")),
    ("not an object", [limit_body()], 400, E.VALIDATION, ()),  # type: ignore[list-item]
]  # fmt: skip


async def test_rejections_store_nothing(api: AsyncTestClient[Any], alice: Caller, db_factory: SessionFactory) -> None:
    for name, body, status, code, needles in REJECTIONS:
        resp = await api.post("/strategy-orders", json=body, headers=alice.auth)
        got = assert_error(resp, status, code, *needles)
        if code != E.VALIDATION:
            assert got["error_detail"] == [got["error_message"]], (name, got)

    # Every violation at once: the message is the first one's, the detail lists them all.
    bad = limit_body(position_type=9, leverage="99", input_amount="1", max_suborders=0, slippage="2",
                     settings={"price": "-1"})  # fmt: skip
    got = assert_error(
        await api.post("/strategy-orders", json=bad, headers=alice.auth), 400, E.STRATEGY_INVALID_POSITION_TYPE
    )
    assert got["error_message"] == got["error_detail"][0]
    assert [d.split(" ")[0] for d in got["error_detail"]] == [
        "position_type", "leverage", "input_amount", "max_suborders", "slippage", "settings.price",
    ]  # fmt: skip

    broken = await api.post("/strategy-orders", content=b'{"type": "limit",', headers=alice.auth)
    assert_error(broken, 400, E.VALIDATION)
    assert_error(await api.post("/strategy-orders", json=limit_body()), 401, E.UNAUTHORIZED)
    long_key = {**alice.auth, "Idempotency-Key": "k" * 256}
    assert_error(await api.post("/strategy-orders", json=limit_body(), headers=long_key), 400,
                 E.INVALID_IDEMPOTENCY_KEY)  # fmt: skip
    assert await orders_of(db_factory, alice.account) == []
    assert await notes_of(db_factory, alice.account) == []


async def test_idempotency(
    api: AsyncTestClient[Any], alice: Caller, bob: Caller, db_factory: SessionFactory, settings: Settings
) -> None:
    headers = {**alice.auth, "Idempotency-Key": "order-1"}
    first = await api.post("/strategy-orders", json=limit_body(), headers=headers)
    assert first.status_code == 200, first.text
    # The same request with numbers written differently, and the alias: the same order.
    same = limit_body(leverage=10, input_amount=None, initial_input_amount="1E+2", settings={"price": 59000})
    again = await api.post("/strategy-orders", json=same, headers=headers)
    assert again.status_code == 200 and again.json() == first.json()
    (row,) = await orders_of(db_factory, alice.account)
    assert row.idempotency_key == "order-1" and row.request_hash is not None
    # Another body under the key: a client bug, refused; nothing new.
    other = await api.post("/strategy-orders", json=limit_body(input_amount="200"), headers=headers)
    assert_error(other, 409, E.IDEMPOTENCY_KEY_REUSED)
    # Once the order changed, a replay answers it as it is now.
    oid = first.json()["id"]
    assert (await api.delete(f"/strategy-orders/{oid}", headers=alice.auth)).status_code == 200
    replay = await api.post("/strategy-orders", json=limit_body(), headers=headers)
    assert replay.status_code == 200 and replay.json()["id"] == oid
    assert (replay.json()["status"], replay.json()["version"]) == ("cancelled_by_user", 2)
    # Keys belong to one account.
    theirs = await api.post("/strategy-orders", json=limit_body(), headers={**bob.auth, "Idempotency-Key": "order-1"})
    assert theirs.status_code == 200 and theirs.json()["id"] != oid
    assert len(await orders_of(db_factory, alice.account)) == 1
    assert [n[0] for n in await notes_of(db_factory, alice.account)] == ["StrategyOrderCreated", "StrategyOrderStatus"]

    # Parallel retries on a real server: one order, every answer is it.
    carol = caller(settings)
    race = {**carol.auth, "Idempotency-Key": "race"}
    async with running_server(settings) as url, httpx.AsyncClient(base_url=url, timeout=60) as client:
        answers = await asyncio.gather(*(client.post("/strategy-orders", json=dca_body(), headers=race)
                                         for _ in range(8)))  # fmt: skip
    assert [r.status_code for r in answers] == [200] * 8, [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    assert len(await orders_of(db_factory, carol.account)) == 1
    assert len(await notes_of(db_factory, carol.account)) == 1


# --- GET -------------------------------------------------------------------------------------------


async def test_get_is_scoped_to_the_account(api: AsyncTestClient[Any], alice: Caller, bob: Caller) -> None:
    oid = (await create(api, alice))["id"]
    mine = await api.get(f"/strategy-orders/{oid}", headers=alice.auth)
    assert mine.status_code == 200 and mine.json()["id"] == oid
    # Another account's order and a missing one are answered alike (existence is not told).
    theirs = assert_error(await api.get(f"/strategy-orders/{oid}", headers=bob.auth), 404, E.STRATEGY_NOT_FOUND)
    missing = assert_error(await api.get(f"/strategy-orders/{oid + 10**9}", headers=bob.auth), 404,
                           E.STRATEGY_NOT_FOUND)  # fmt: skip
    assert theirs["error_message"].replace(str(oid), "N") == missing["error_message"].replace(str(oid + 10**9), "N")
    for bad in ("abc", "0", "-1", "1.5", "9" * 30):
        assert_error(await api.get(f"/strategy-orders/{bad}", headers=alice.auth), 404, E.STRATEGY_NOT_FOUND)
    assert_error(await api.get(f"/strategy-orders/{oid}"), 401, E.UNAUTHORIZED)
    assert_error(await api.delete(f"/strategy-orders/{oid}", headers=bob.auth), 404, E.STRATEGY_NOT_FOUND)
    assert (await api.get(f"/strategy-orders/{oid}", headers=alice.auth)).json() == mine.json()  # unchanged


async def test_suborders_in_the_item(api: AsyncTestClient[Any], alice: Caller, db_factory: SessionFactory) -> None:
    oid = (await create(api, alice, dca_body(max_suborders=3, max_invocations=5)))["id"]
    now = datetime.now(UTC)
    async with db_factory() as s:
        opens = [await quotes_repo.insert_instant_open(s, **instant_open_fields(account=alice.account))
                 for _ in range(3)]  # fmt: skip
        q1, q2 = 7_000_000 + oid * 10, 7_000_000 + oid * 10 + 1

        def sub(invocation: int, status: SubOrderStatus, open_id: int | None, **kw: Any) -> StrategySubOrder:
            return StrategySubOrder(
                order_id=oid, invocation=invocation, status=status, margin=Decimal("33.3"), quantity=Decimal("0.005"),
                price=Decimal("60060.1"), mark=Decimal("60000"), body={}, instant_open_id=open_id,
                idempotency_key=f"strategy:{oid}:{invocation}", create_time=now, modify_time=now, **kw,
            )  # fmt: skip

        # Written out of invocation order: the answer sorts them.
        s.add(sub(4, SubOrderStatus.OPENED, opens[2].id, quote_id=q2))
        s.add(sub(1, SubOrderStatus.FAILED, None, error_code=1411, error_message="The market moved."))
        s.add(sub(3, SubOrderStatus.SENT, opens[1].id))
        s.add(sub(2, SubOrderStatus.OPENED, opens[0].id, quote_id=q1, slots=2))
        await s.commit()
    item = (await api.get(f"/strategy-orders/{oid}", headers=alice.auth)).json()
    assert item["quote_ids"] == [q1, q2]
    subs = item["suborders"]
    assert all(set(x) == SUB_KEYS for x in subs)
    assert [(x["invocation"], x["status"], x["slots"], x["quote_id"], x["temp_quote_id"]) for x in subs] == [
        (1, "failed", 1, None, None),
        (2, "opened", 2, q1, opens[0].temp_quote_id),
        (3, "sent", 1, None, opens[1].temp_quote_id),
        (4, "opened", 1, q2, opens[2].temp_quote_id),
    ]
    assert (subs[0]["error_code"], subs[0]["error_message"]) == (1411, "The market moved.")
    assert (subs[1]["quantity"], subs[1]["price"], subs[1]["create_time"]) == ("0.005", "60060.1", int(now.timestamp()))
    listed = (await api.get("/strategy-orders", headers=alice.auth)).json()
    assert listed == [item]


async def test_list_filters_and_cursor(
    api: AsyncTestClient[Any], alice: Caller, bob: Caller, db_factory: SessionFactory
) -> None:
    limits = [(await create(api, alice))["id"] for _ in range(5)]
    dcas = [(await create(api, alice, dca_body()))["id"] for _ in range(4)]
    theirs = (await create(api, bob))["id"]
    await set_state(db_factory, limits[1], "executed")
    await set_state(db_factory, dcas[0], "cancelled_by_system")
    await set_state(db_factory, dcas[2], "requested_cancellation", active_transactions=1)
    everything = sorted(limits + dcas, reverse=True)
    finished = {limits[1], dcas[0]}
    live = [i for i in everything if i not in finished]

    async def ids(query: str = "", who: Caller = alice) -> list[int]:
        resp = await api.get(f"/strategy-orders{query}", headers=who.auth)
        assert resp.status_code == 200, resp.text
        return [i["id"] for i in resp.json()]

    assert await ids() == live  # newest first, active and requested_cancellation only
    assert await ids("?include_finished=true") == everything
    assert await ids("?include_finished=false") == live
    assert await ids("?type=limit") == [i for i in live if i in limits]
    assert await ids("?type=dca&include_finished=true") == sorted(dcas, reverse=True)
    assert await ids("?type=DCA") == [i for i in live if i in dcas]
    assert await ids(who=bob) == [theirs]
    statuses = {i["id"]: i["status"] for i in (await api.get("/strategy-orders?include_finished=1",
                                                                headers=alice.auth)).json()}  # fmt: skip
    assert statuses[dcas[2]] == "requested_cancellation" and statuses[limits[1]] == "executed"

    # size: 1 and 100 are the bounds; the default is 20.
    assert await ids("?size=1&include_finished=true") == everything[:1]
    assert await ids("?size=100&include_finished=true") == everything
    for bad, needle in [("size=0", "size must be from 1 to 100, got 0"), ("size=101", "from 1 to 100, got 101"),
                        ("size=abc", "size must be a whole number"), ("before_id=0", "before_id"),
                        ("before_id=-5", "before_id"), ("before_id=x", "before_id"), ("type=market", "type"),
                        ("include_finished=maybe", "include_finished")]:  # fmt: skip
        assert_error(await api.get(f"/strategy-orders?{bad}", headers=alice.auth), 400, E.STRATEGY_INVALID_QUERY,
                     needle)  # fmt: skip

    # The cursor walks every page: no repeats, no gaps, then an empty page.
    for query, expected in [("include_finished=true", everything), ("type=dca&include_finished=true",
                            sorted(dcas, reverse=True)), ("", live)]:  # fmt: skip
        walked: list[int] = []
        pages: list[int] = []
        cursor = ""
        while True:
            page = await ids(f"?size=2&{query}{cursor}")
            if not page:
                break
            pages.append(len(page))
            walked += page
            cursor = f"&before_id={page[-1]}"
        assert walked == expected, query
        assert pages == [2] * (len(expected) // 2) + [1] * (len(expected) % 2)
    assert await ids(f"?before_id={max(everything) + 10**6}&include_finished=true") == everything

    # One query for the orders and one for their sub-orders, however many orders.
    with statements(api) as seen:
        assert len(await ids("?include_finished=true")) == 9
    assert len([q for q in seen if "strategy_" in q]) == 2, seen


# --- DELETE ----------------------------------------------------------------------------------------


async def test_cancel_in_each_state(api: AsyncTestClient[Any], alice: Caller, db_factory: SessionFactory) -> None:
    # active, nothing in flight: cancelled now, closed.
    idle = (await create(api, alice))["id"]
    t0 = int(time.time())
    resp = await api.delete(f"/strategy-orders/{idle}", headers=alice.auth)
    assert resp.status_code == 200, resp.text
    item = resp.json()
    assert set(item) == ITEM_KEYS
    assert (item["status"], item["version"]) == ("cancelled_by_user", 2)
    assert t0 <= item["close_timestamp"] <= int(time.time()) + 1
    row = await order(db_factory, idle)
    assert row.status == "cancelled_by_user" and row.close_time is not None and row.modify_time >= row.create_time

    # active with a sub-order in flight: requested, the engine ends it when it settles.
    busy = (await create(api, alice, dca_body()))["id"]
    await set_state(db_factory, busy, "active", active_transactions=1)
    resp = await api.delete(f"/strategy-orders/{busy}", headers=alice.auth)
    assert resp.status_code == 200, resp.text
    assert (resp.json()["status"], resp.json()["close_timestamp"], resp.json()["version"]) == (
        "requested_cancellation", None, 3,
    )  # fmt: skip
    # Asked again: 200, unchanged, no second notification.
    again = await api.delete(f"/strategy-orders/{busy}", headers=alice.auth)
    assert again.status_code == 200 and again.json() == resp.json()

    # Terminal: 409, unchanged.
    for status in TERMINAL:
        oid = (await create(api, alice))["id"]
        await set_state(db_factory, oid, status)
        before = (await api.get(f"/strategy-orders/{oid}", headers=alice.auth)).json()
        assert before["status"] == status and isinstance(before["close_timestamp"], int)
        assert_error(await api.delete(f"/strategy-orders/{oid}", headers=alice.auth), 409, E.STRATEGY_ALREADY_CLOSED,
                     status)  # fmt: skip
        assert (await api.get(f"/strategy-orders/{oid}", headers=alice.auth)).json() == before
    assert_error(await api.delete(f"/strategy-orders/{idle}", headers=alice.auth), 409, E.STRATEGY_ALREADY_CLOSED)

    notes = [n for n in await notes_of(db_factory, alice.account) if n[0] == "StrategyOrderStatus"]
    assert notes == [
        ("StrategyOrderStatus", "success", f"strategy_order:{idle}:status:cancelled_by_user"),
        ("StrategyOrderStatus", "success", f"strategy_order:{busy}:status:requested_cancellation"),
    ]
    async with db_factory() as s:
        stmt = select(AuditLog).where(col(AuditLog.entity) == "strategy_order",
                                      col(AuditLog.entity_id).in_([str(idle), str(busy)]))  # fmt: skip
        audits = (await s.exec(stmt.order_by(col(AuditLog.id)))).all()
    assert [(a.entity_id, a.from_status, a.to_status) for a in audits] == [
        (str(idle), None, "active"),
        (str(idle), "active", "cancelled_by_user"),
        (str(busy), None, "active"),
        (str(busy), "active", "requested_cancellation"),
    ]


async def test_cancel_waits_for_the_engines_row_lock(
    api: AsyncTestClient[Any], alice: Caller, db_factory: SessionFactory, settings: Settings
) -> None:
    """The engine sends a sub-order under the order's row lock: a cancel arriving meanwhile waits,
    then sees the sub-order in flight and only requests the cancellation. (A real server: the
    in-process client would block this event loop, which holds the lock.)"""
    oid = (await create(api, alice, dca_body()))["id"]
    async with running_server(settings) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        async with db_factory() as s:
            await s.exec(select(StrategyOrder).where(col(StrategyOrder.id) == oid).with_for_update())
            cancel = asyncio.create_task(client.delete(f"/strategy-orders/{oid}", headers=alice.auth))
            await asyncio.sleep(0.5)
            assert not cancel.done()
            await (await s.connection()).execute(
                text("UPDATE strategy_order SET active_transactions = 1, invocations_executed = 1, "
                     "version = version + 1 WHERE id = :id"), {"id": oid},
            )  # fmt: skip
            await s.commit()
        resp = await asyncio.wait_for(cancel, timeout=10)
    assert resp.status_code == 200, resp.text
    assert (resp.json()["status"], resp.json()["active_transactions"], resp.json()["version"]) == (
        "requested_cancellation", 1, 3,
    )  # fmt: skip


async def test_openapi_documents_the_routes(api: AsyncTestClient[Any]) -> None:
    doc = (await api.get("/docs/openapi.json")).json()
    paths = doc["paths"]
    assert {"post", "get"} <= set(paths["/strategy-orders"]) and {"get", "delete"} <= set(
        paths["/strategy-orders/{order_id}"]
    )
    params = {p["name"] for p in paths["/strategy-orders"]["get"]["parameters"]}
    assert {"type", "include_finished", "size", "before_id"} <= params
    codes = (await api.get("/error_codes")).json()
    assert all(str(c) in codes for c in range(1700, 1712))
