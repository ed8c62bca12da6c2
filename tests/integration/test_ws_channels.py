"""WebSocket channels (http-api.md §7) on two real API replicas (uvicorn, each its own event loop,
Redis pool and DB engine) sharing Redis, Postgres and the anvil devnet.

A notification written by any process (a worker-like session factory in the test, or the API of
replica A) reaches clients connected to either replica; a rolled-back one reaches nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import uvicorn
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection, connect

from solver.app import create_app
from solver.auth.jwt import JwtCodec
from solver.core.clock import SystemClock
from solver.core.errors import ErrorCode
from solver.core.redis_keys import notify_channel
from solver.db.engine import session_factory, session_scope
from solver.devnet.anvil import free_port
from solver.devnet.deploy import DevnetInfo
from solver.market.feeds import MarketFeeds
from solver.notify import repository as notify
from solver.notify.publish import NotificationPublisher, enable_publishing
from solver.oracle.signer import OracleSigner
from solver.pricing.cache import PriceCache, PricePoint
from solver.settings import Settings
from tests.fixtures.app import settings_for
from tests.fixtures.trading import PriceKeeper, new_account, running_worker
from tests.integration.test_instant_api import open_body
from tests.integration.test_market_api import _open_devnet_position
from tests.integration.test_ws_publish import new_account as random_account
from tests.integration.test_ws_publish import note

pytestmark = pytest.mark.integration

FAST = {"upnl_interval_s": 0.3, "upnl_cache_ttl_s": 1, "funding_interval_s": 0.2, "mark_interval_s": 0.2}


@contextlib.asynccontextmanager
async def serving(app: Litestar) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(400):
            if server.started:
                break
            await asyncio.sleep(0.025)
        assert server.started
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 10)


class Replicas:
    def __init__(self, settings: Settings, apps: list[Litestar], hosts: list[str]) -> None:
        self.settings = settings
        self.apps = apps
        self.hosts = hosts

    def ws(self, replica: int, path: str) -> Any:
        return connect(f"ws://{self.hosts[replica]}{path}", open_timeout=5, close_timeout=2)

    def http(self, replica: int) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=f"http://{self.hosts[replica]}", timeout=30)

    def streams(self, replica: int) -> Any:
        return self.apps[replica].state.services.streams


@pytest.fixture
def ws_settings(devnet: DevnetInfo, database_url: str, redis_prefix: str) -> Settings:
    worker = {"signer_private_keys": [devnet.solver_private_key], "poll_interval_s": 0.02}
    return settings_for(devnet, database_url, redis_prefix, ws=FAST, worker=worker)


@pytest.fixture
async def replicas(ws_settings: Settings) -> AsyncIterator[Replicas]:
    apps = [create_app(ws_settings), create_app(ws_settings)]
    async with serving(apps[0]) as a, serving(apps[1]) as b:
        yield Replicas(ws_settings, apps, [a, b])


async def recv(ws: ClientConnection, timeout: float = 5.0) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout), parse_float=Decimal)


async def recv_until(ws: ClientConnection, pred: Callable[[Any], bool], timeout: float = 5.0) -> Any:
    """The first message matching `pred`, skipping pushes already in flight."""
    deadline = time.monotonic() + timeout
    while True:
        msg = await recv(ws, max(0.01, deadline - time.monotonic()))
        if pred(msg):
            return msg


async def silent(ws: ClientConnection, wait_s: float) -> None:
    with pytest.raises(TimeoutError):
        msg = await asyncio.wait_for(ws.recv(), wait_s)
        pytest.fail(f"unexpected push: {msg}")


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def assert_error(frame: dict[str, Any], code: ErrorCode) -> None:
    assert set(frame) == {"error_code", "error_message", "error_detail"}, frame
    assert frame["error_code"] == code.code and frame["error_message"], frame


# --- position-state-ws3 --------------------------------------------------------------------------


async def subscribers(redis_client: aioredis.Redis, channel: str) -> int:
    return int(dict(await redis_client.pubsub_numsub(channel)).get(channel.encode(), 0))


async def test_position_state_fan_out_across_replicas(
    replicas: Replicas, db_engine: AsyncEngine, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    account = random_account()
    channel = notify_channel(redis_prefix, account)
    # Another process (a worker, say) writing through its own publishing session factory.
    sessions = session_factory(db_engine)
    publisher = NotificationPublisher(redis_client, redis_prefix)
    enable_publishing(sessions, publisher)
    try:
        async with (
            replicas.ws(1, "/ws/position-state-ws3") as on_b,
            replicas.ws(0, "/position-state-ws3") as on_a,
            replicas.ws(0, "/ws/position-state-ws3") as other,
        ):
            await on_b.send(json.dumps({"address": [account.lower()]}))
            await on_a.send(json.dumps({"address": [account]}))
            await other.send(json.dumps({"address": [random_account()]}))
            await until(lambda: _eq(subscribers(redis_client, channel), 2))  # one connection per replica

            async with sessions() as s:  # rolled back: nobody ever sees it
                assert await notify.add(s, note(account, "RolledBack"), now=datetime.now(UTC))
                await s.rollback()
            async with session_scope(sessions) as s:
                assert await notify.add(s, note(account, "Committed"), now=datetime.now(UTC))

            got_b, got_a = await recv(on_b), await recv(on_a)
            assert got_b == got_a and got_b["last_seen_action"] == "Committed"
            async with replicas.http(0) as http:
                history = (await http.post("/position-state/0/10", json={"address": account})).json()
            assert history["count"] == 1
            assert json.loads(json.dumps(history["position_state"][0]), parse_float=Decimal) == got_b  # §6 object
            await silent(on_b, 0.4)
            await silent(other, 0.1)

            # Bad input: an error frame, the connection and its subscription stay.
            await on_b.send("not an address")
            assert_error(await recv(on_b), ErrorCode.VALIDATION)
            await on_b.send(json.dumps({"address": [account, "0x1234"]}))
            frame = await recv(on_b)
            assert_error(frame, ErrorCode.VALIDATION)
            assert frame["error_detail"] == ["0x1234"]
            async with session_scope(sessions) as s:
                assert await notify.add(s, note(account, "Again"), now=datetime.now(UTC))
            assert (await recv(on_b))["last_seen_action"] == "Again"
            assert (await recv(on_a))["last_seen_action"] == "Again"

            # An empty list stops the pushes; the replica unsubscribes once its last client leaves.
            await on_b.send(json.dumps({"address": []}))
            await until(lambda: _eq(subscribers(redis_client, channel), 1))
            async with session_scope(sessions) as s:
                assert await notify.add(s, note(account, "OnlyA"), now=datetime.now(UTC))
            assert (await recv(on_a))["last_seen_action"] == "OnlyA"
            await silent(on_b, 0.4)
        await until(lambda: _eq(subscribers(redis_client, channel), 0))  # disconnect cleans up
    finally:
        await publisher.close()


async def _eq(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def test_instant_open_pushes_from_the_api_and_the_worker(
    replicas: Replicas, devnet: DevnetInfo, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    account = await asyncio.to_thread(new_account, devnet)
    owner = devnet.demo_accounts[0].owner
    token = JwtCodec(replicas.settings.auth, SystemClock()).issue(
        account=account, owner=owner, expires_at=datetime.now(UTC) + timedelta(hours=1)
    )
    async with PriceKeeper(redis_client, redis_prefix), replicas.ws(1, "/position-state-ws3") as ws:
        await ws.send(json.dumps({"address": [account]}))
        await until(lambda: _eq(subscribers(redis_client, notify_channel(redis_prefix, account)), 1))
        async with replicas.http(0) as http:
            resp = await http.post("/instant_open", json=open_body(), headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 200, resp.text
        pushed = await recv(ws)
        assert pushed["last_seen_action"] == "InstantRFQ"  # written by replica A's API
        temp_id = resp.json()["temp_quote_id"]
        assert pushed["temp_quote_id"] == temp_id == pushed["quote_id"]
        assert pushed["counterparty_address"] == devnet.solver
        # The chain worker (its own process root, build_worker) publishes what it commits too.
        async with running_worker(replicas.settings, devnet):
            sent = await recv_until(ws, lambda m: m["last_seen_action"] == "SendQuoteTransaction", timeout=30)
    assert sent["temp_quote_id"] == temp_id and sent["quote_id"] > 0 and sent["action_status"] == "success"


# --- upnl-ws -------------------------------------------------------------------------------------


async def test_upnl_ws_pushes_balances_shared_by_replicas(
    replicas: Replicas, devnet: DevnetInfo, oracle_signer: OracleSigner, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    pos = await asyncio.to_thread(_open_devnet_position, devnet, oracle_signer)
    keeper = PriceKeeper(redis_client, redis_prefix, {"BTCUSDT": Decimal(61000)})
    async with keeper, replicas.ws(0, "/ws/upnl-ws") as on_a, replicas.ws(1, "/upnl-ws") as on_b:
        await on_a.send(f'  "{pos.account.lower()}"\n')
        await on_b.send(pos.account)
        first = await recv(on_a)
        assert list(first) == [
            "upnl", "timestamp", "available_balance", "allocated_balance", "cva", "lf", "party_a_mm",
            "pending_cva", "pending_lf", "pending_party_a_mm",
        ]  # fmt: skip
        assert all(isinstance(v, int | Decimal) for v in first.values())  # JSON numbers, not strings
        assert abs(first.pop("timestamp") - time.time()) < 5
        assert first == {
            "upnl": 20, "available_balance": Decimal("9899.28"), "allocated_balance": Decimal("9999.28"),
            "cva": 8, "lf": 4, "party_a_mm": 108, "pending_cva": 0, "pending_lf": 0, "pending_party_a_mm": 0,
        }  # fmt: skip
        assert (await recv(on_b))["upnl"] == 20

        # About every interval, on both replicas, while the chain is read about once per cache TTL.
        computed = sum(replicas.streams(i).balances.computed for i in (0, 1))
        started = time.monotonic()
        frames = 0
        while time.monotonic() - started < 2.0:
            await recv(on_a)
            await recv(on_b)
            frames += 2
        elapsed = time.monotonic() - started
        assert frames >= 2 * int(elapsed / 0.3) - 2
        reads = sum(replicas.streams(i).balances.computed for i in (0, 1)) - computed
        assert 1 <= reads <= elapsed / 1.0 + 2, (reads, frames)

        await keeper.set("BTCUSDT", Decimal(59000))
        await until(lambda: _frame_upnl(on_a, -20), timeout=5)

        # An invalid address: an error frame, no more pushes for the old account, connection open.
        await on_a.send("0x1234")
        assert_error(await recv_until(on_a, lambda m: "error_code" in m), ErrorCode.VALIDATION)
        await silent(on_a, 0.7)
        await on_a.send(pos.account)
        assert (await recv(on_a))["upnl"] == -20


async def _frame_upnl(ws: ClientConnection, expected: int) -> bool:
    return bool((await recv(ws))["upnl"] == expected)


async def test_upnl_ws_stale_price_sends_the_reason_once_never_zeros(
    replicas: Replicas, devnet: DevnetInfo, oracle_signer: OracleSigner, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    pos = await asyncio.to_thread(_open_devnet_position, devnet, oracle_signer)
    prices = PriceCache(redis_client, redis_prefix)
    await prices.set(PricePoint("BTCUSDT", Decimal(61000), time.time() - 60))
    async with replicas.ws(0, "/upnl-ws") as ws:
        await ws.send(pos.account)
        assert_error(await recv(ws), ErrorCode.PRICE_STALE)
        await silent(ws, 1.0)  # the same reason is not repeated, and no zeros are pushed
        async with PriceKeeper(redis_client, redis_prefix, {"BTCUSDT": Decimal(61000)}):
            assert (await recv(ws))["upnl"] == 20


# --- funding-rate-ws -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/ws/funding-rate-ws", "/funding-rate-ws"])
async def test_funding_rate_ws(replicas: Replicas, redis_client: aioredis.Redis, redis_prefix: str, path: str) -> None:
    await MarketFeeds(redis_client, redis_prefix).set_funding_rates("BTCUSDT", Decimal("0.0001"), Decimal("-0.00005"))
    async with replicas.ws(1, path) as ws:
        await ws.send(json.dumps({"symbols": ["btcusdt"]}))
        frame = await recv(ws)
        assert list(frame) == ["BTCUSDT"]
        btc = frame["BTCUSDT"]
        assert set(btc) == {"next_funding_time", "next_funding_rate_long", "next_funding_rate_short"}
        assert (btc["next_funding_rate_long"], btc["next_funding_rate_short"]) == ("0.0001", "-0.00005")
        assert btc["next_funding_time"] % (28800 * 1000) == 0 and btc["next_funding_time"] > time.time() * 1000
        assert list(await recv(ws, 1)) == ["BTCUSDT"]  # periodically

        await ws.send(json.dumps({"symbols": ["BTCUSDT", "DOGEUSDT"]}))
        frame = await recv(ws)
        while "error_code" not in frame:
            frame = await recv(ws)
        assert_error(frame, ErrorCode.UNKNOWN_SYMBOL)
        assert list(await recv(ws)) == ["BTCUSDT"]  # the previous choice stays

        await ws.send(json.dumps({"symbols": ["ETHUSDT", "BTCUSDT"]}))
        frame = await recv(ws)
        while list(frame) == ["BTCUSDT"]:
            frame = await recv(ws)
        assert list(frame) == ["ETHUSDT", "BTCUSDT"]
        assert frame["ETHUSDT"]["next_funding_rate_long"] == "0"

        await ws.send(json.dumps({"symbols": []}))  # pause
        with contextlib.suppress(TimeoutError):
            while True:
                await recv(ws, 0.1)
        await silent(ws, 0.6)
        await ws.send("nonsense")
        assert_error(await recv(ws), ErrorCode.VALIDATION)


# --- mark price stream and bookTicker ------------------------------------------------------------


async def seed_marks(redis_client: aioredis.Redis, redis_prefix: str) -> dict[str, float]:
    now = time.time()
    ts = {"BTCUSDT": now - 0.5, "ETHUSDT": now - 60, "XRPUSDT": now - 1.25}  # ETH is stale
    prices = PriceCache(redis_client, redis_prefix)
    for name, price in (("BTCUSDT", "60000"), ("ETHUSDT", "3000"), ("XRPUSDT", "0.5123")):
        await prices.set(PricePoint(name, Decimal(price), ts[name]))
    await MarketFeeds(redis_client, redis_prefix).set_funding_rates("BTCUSDT", Decimal("0.0002"), Decimal(0))
    return ts


@pytest.mark.parametrize("path", ["/ws/mark-price-ws", "/mark-price-ws", "/stream"])
async def test_mark_price_stream_binance_protocol(
    replicas: Replicas, redis_client: aioredis.Redis, redis_prefix: str, path: str
) -> None:
    ts = await seed_marks(redis_client, redis_prefix)
    async with replicas.ws(0, path) as ws:
        await silent(ws, 0.5)  # nothing before a subscription
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["!markPrice@arr@1s"], "id": 1}))
        assert await recv(ws) == {"result": None, "id": 1}
        push = await recv(ws)
        assert push["stream"] == "!markPrice@arr@1s"
        by_symbol = {d["s"]: d for d in push["data"]}
        assert list(by_symbol) == ["BTCUSDT", "XRPUSDT"]  # only fresh prices
        btc = by_symbol["BTCUSDT"]
        assert set(btc) == {"e", "E", "s", "p", "i", "P", "r", "T"}
        assert (btc["e"], btc["p"], btc["i"], btc["r"]) == ("markPriceUpdate", "60000", "60000", "0.0002")
        assert btc["E"] == int(ts["BTCUSDT"] * 1000)  # the source time, not the push time
        assert btc["T"] % (28800 * 1000) == 0
        again = await recv(ws)
        assert {d["s"]: d["E"] for d in again["data"]} == {d["s"]: d["E"] for d in push["data"]}  # not re-stamped

        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": "list"}))
        msg = await recv(ws)
        while "result" not in msg:
            msg = await recv(ws)
        assert msg == {"result": ["!markPrice@arr@1s"], "id": "list"}

        await ws.send("{oops")
        msg = await recv(ws)
        while "stream" in msg:
            msg = await recv(ws)
        assert msg["error"]["code"] == 3 and msg["id"] is None
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade"], "id": 5}))
        msg = await recv(ws)
        while "stream" in msg:
            msg = await recv(ws)
        assert msg["error"]["code"] == 2 and msg["id"] == 5 and "btcusdt@aggTrade" in msg["error"]["msg"]

        await ws.send(json.dumps({"method": "UNSUBSCRIBE", "params": ["!markPrice@arr@1s"], "id": 2}))
        msg = await recv(ws)
        while "stream" in msg:
            msg = await recv(ws)
        assert msg == {"result": None, "id": 2}
        await silent(ws, 0.8)  # not a single push after the UNSUBSCRIBE was answered

        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["xrpusdt@markPrice@1s"], "id": 3}))
        assert await recv(ws) == {"result": None, "id": 3}
        single = await recv(ws)
        assert single["stream"] == "xrpusdt@markPrice@1s"
        assert (single["data"]["s"], single["data"]["p"]) == ("XRPUSDT", "0.5123")


async def test_combined_stream_url_subscribes_from_the_query(
    replicas: Replicas, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    await seed_marks(redis_client, redis_prefix)
    async with replicas.ws(1, "/stream?streams=btcusdt@markPrice@1s/ethusdt@markPrice@1s") as ws:
        push = await recv(ws)
        assert push["stream"] == "btcusdt@markPrice@1s" and push["data"]["s"] == "BTCUSDT"
        await recv(ws)
        assert (await recv(ws))["stream"] == "btcusdt@markPrice@1s"  # ETH is stale: never pushed


async def test_book_ticker(replicas: Replicas, redis_client: aioredis.Redis, redis_prefix: str) -> None:
    ts = await seed_marks(redis_client, redis_prefix)
    async with replicas.http(0) as http:
        books = (await http.get("/fapi/v1/ticker/bookTicker")).json()
        assert [b["symbol"] for b in books] == ["BTCUSDT", "XRPUSDT"]
        assert books[0] == {
            "symbol": "BTCUSDT", "bidPrice": "59988.0", "bidQty": "16.666", "askPrice": "60012.0",
            "askQty": "16.666", "time": int(ts["BTCUSDT"] * 1000),
        }  # fmt: skip
        assert (books[1]["bidPrice"], books[1]["askPrice"]) == ("0.5121", "0.5125")
        one = await http.get("/fapi/v1/ticker/bookTicker", params={"symbol": "btcusdt"})
        assert one.status_code == 200 and one.json() == books[0]
        stale = await http.get("/fapi/v1/ticker/bookTicker", params={"symbol": "ETHUSDT"})
        assert stale.status_code == 503 and stale.json()["error_code"] == ErrorCode.PRICE_STALE.code
        unknown = await http.get("/fapi/v1/ticker/bookTicker", params={"symbol": "DOGEUSDT"})
        assert unknown.status_code == 404 and unknown.json()["error_code"] == ErrorCode.UNKNOWN_SYMBOL.code
