"""The engine (`solver engine`) end to end with real processes: `solver api`, `solver worker`,
`solver oracle` and `solver engine` on the module's anvil, PostgreSQL and Redis.

Prices come only from a local WebSocket server speaking Binance's `!markPrice@arr@1s` protocol
(tests/fixtures/binance.py, pump mode: a frame with every symbol every 0.25 s, `E` = now): the
engine runs with `pricing.source = "binance"` pointed at it and is the only writer of prices,
so everything below (the API's stale gate, stop loss / take profit triggers, the health loop's
reduce-only flags) runs on what the engine published. `risk.max_price_age_s` is 2 s and the
feed's heartbeat (`pricing.silence_timeout_s`) 1 s, so staleness shows in seconds.

One stack per module; each test uses its own accounts (all created before the stack starts:
the harness funds them with the solver's key, which the worker signs with) and starts from a
fresh BTCUSDT mark of 60000.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from redis import Redis as SyncRedis
from sqlalchemy import text
from web3 import Web3

from solver.chain.types import QuoteStatus
from solver.core.errors import ErrorCode
from solver.db.engine import create_engine
from solver.devnet.deploy import DevnetInfo
from solver.pricing.cache import PriceCache
from solver.risk.flags import health_key, reduce_only_key
from tests.e2e.conftest import _bounded
from tests.e2e.processes import Stack, stack_settings
from tests.e2e.trader import CN, Trader, open_body
from tests.fixtures.binance import FakeBinance, now_ms, pumped_binance
from tests.fixtures.redis import REDIS_URL
from tests.fixtures.trading import chain_quote, new_account

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

MARKS = {"BTCUSDT": "60000", "ETHUSDT": "3000", "XRPUSDT": "0.5123"}
MAX_PRICE_AGE_S = 2
CROSSING = "58500"  # below every stop loss (59000) and liquidation price (~59400) used here
# Accounts by test, created before the stack starts. The liquidation one holds just enough for
# a 50x LONG of 0.1 BTC (margin 121.2 + fee 3.636).
ACCOUNTS = {
    "sl": {},
    "tp": {},
    "placement": {},
    "stale_sl": {},
    "stale_liq": {"allocate": 126},
    "kill": {},
    **{f"random_kill_{i}": {} for i in range(3)},
}
REQUEST_TO_CLOSE = [
    Web3.to_hex(Web3.keccak(text=sig))
    for sig in (
        "RequestToClosePosition(address,address,uint256,uint256,uint256,uint8,uint256,uint8)",
        "RequestToClosePosition(address,address,uint256,uint256,uint256,uint8,uint256,uint8,uint256)",
    )
]


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def binance() -> Iterator[FakeBinance]:
    with pumped_binance(MARKS, interval=0.25) as fake:
        yield fake


@pytest.fixture(scope="module")
def accounts(e2e_devnet: DevnetInfo) -> dict[str, str]:
    return {name: new_account(e2e_devnet, **kw) for name, kw in ACCOUNTS.items()}


@pytest.fixture(scope="module")
def stack(
    e2e_devnet: DevnetInfo,
    e2e_database_url: str,
    binance: FakeBinance,
    accounts: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    settings = stack_settings(
        e2e_devnet,
        e2e_database_url,
        prefix,
        risk={"max_pending_instant_opens": 50, "max_price_age_s": MAX_PRICE_AGE_S},
        pricing={
            "source": "binance",
            "binance_ws_url": f"ws://127.0.0.1:{binance.port}/stream?streams=!markPrice@arr@1s",
            "silence_timeout_s": 1.0,
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 0.5,
        },
        triggers={"poll_interval_s": 0.1},
        health={"poll_interval_s": 0.2},
    )
    s = Stack(settings, tmp_path_factory.mktemp("engine-e2e"), engine=True)
    try:
        yield s.start()
    except BaseException:
        print(s.logs())
        raise
    finally:
        s.stop()
        with SyncRedis.from_url(REDIS_URL) as client:
            for key in client.scan_iter(match=f"{prefix}*", count=500):
                client.delete(key)


@pytest.fixture
async def redis() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(REDIS_URL)
    yield client
    await _bounded(client.aclose(), "redis close")


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    client = httpx.AsyncClient(base_url=stack.base_url, timeout=30)
    yield client
    await _bounded(client.aclose(), "http client close")


@pytest.fixture(autouse=True)
async def fresh_market(stack: Stack, binance: FakeBinance, redis: aioredis.Redis) -> AsyncIterator[None]:
    """Every process up, the feed pumping the default marks, BTCUSDT fresh at 60000 in Redis.
    The logs are printed at teardown: pytest shows them for a failed test only."""
    assert stack.engine is not None
    for proc in (stack.engine, stack.worker):
        if not proc.alive():
            proc.start()
    binance.set_many(MARKS)
    binance.resume()
    await wait_price(redis, stack, "60000", timeout=20)
    yield
    print(stack.logs())


# --- helpers ----------------------------------------------------------------------------------


async def until(what: str, cond: Callable[[], Awaitable[Any]], timeout: float = 20.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await cond()
        if value:
            return value
        await asyncio.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def wait_price(redis: aioredis.Redis, stack: Stack, price: str, *, timeout: float = 10.0) -> None:
    """Until the engine published `price` for BTCUSDT with a fresh source time."""
    cache = PriceCache(redis, stack.settings.redis_prefix)

    async def fresh() -> bool:
        p = await cache.get("BTCUSDT")
        return p is not None and p.price == Decimal(price) and time.time() - p.ts < 1.0

    await until(f"a fresh BTCUSDT price of {price}", fresh, timeout)


def trader(stack: Stack, devnet: DevnetInfo, http: httpx.AsyncClient, account: str) -> Trader:
    return Trader(http, account, stack.token(account, devnet.demo_accounts[0].owner))


def levered_body(*, quantity: str, price: str, leverage: int, side: int = 0) -> dict[str, Any]:
    """open_body at another leverage (trading-rules.md §1)."""
    body = open_body(quantity=quantity, price=price, side=side)
    notional = Decimal(quantity) * Decimal(price)
    amm = notional / leverage - notional * CN
    body["partyAmm"] = f"{amm:.18f}"
    return body


async def opened(t: Trader, body: dict[str, Any] | None = None) -> int:
    """Open over HTTP and wait until the position is OPENED on chain; its quote id."""
    r = await t.open(body)
    assert r.status_code == 200, r.text
    item = await t.wait_open(r.json()["temp_quote_id"])
    assert item["status"] == "opened", item
    return int(item["quote_id"])


def sl_body(
    t: Trader, devnet: DevnetInfo, quote_id: int, *, side: int = 0, sl: str = "", tp: str = ""
) -> dict[str, Any]:
    return {
        "userAddress": devnet.demo_accounts[0].owner,
        "accountAddress": t.account,
        "positionSide": side,
        "symbolId": 1,
        "requestedPrice": "60000",
        "quoteId": quote_id,
        "tpPrice": tp,
        "slPrice": sl,
        "timestamp": now_ms(),
    }


async def place(t: Trader, devnet: DevnetInfo, quote_id: int, **kw: Any) -> dict[str, int]:
    """POST /stop-loss; the new orders' ids by kind."""
    r = await t.client.post("/stop-loss", json=sl_body(t, devnet, quote_id, **kw), headers=t.headers)
    assert r.status_code == 200, r.text
    orders = r.json()["orders"]
    assert all(o["status"] == "armed" for o in orders), orders
    return {o["kind"]: o["id"] for o in orders}


async def trigger_orders(t: Trader) -> dict[int, dict[str, Any]]:
    r = await t.client.get(f"/stop-loss/{t.account}", headers=t.headers)
    assert r.status_code == 200, r.text
    return {o["id"]: o for o in r.json()}


async def wait_order(t: Trader, order_id: int, status: str, timeout: float = 30.0) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        o = (await trigger_orders(t))[order_id]
        return o if o["status"] == status else None

    found: dict[str, Any] = await until(f"trigger order {order_id} {status}", reached, timeout, every=0.1)
    return found


async def actions(http: httpx.AsyncClient, account: str) -> list[str]:
    r = await http.post("/position-state/0/50", json={"address": account})
    assert r.status_code == 200, r.text
    return [n["last_seen_action"] for n in r.json()["position_state"]]


async def sql(url: str, query: str, **params: Any) -> list[Any]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text(query), params)).all())
    finally:
        await engine.dispose()


async def closes_of(url: str, quote_id: int) -> list[Any]:
    """The instant_close rows of a quote (id, status, actor-independent)."""
    return await sql(url, "SELECT id, status FROM instant_close WHERE quote_id = :q ORDER BY id", q=quote_id)


def close_requests_on_chain(devnet: DevnetInfo, quote_id: int) -> int:
    """Transactions that requested a close of `quote_id`: those emitting RequestToClosePosition
    (Symmio emits the legacy event and the one with the close id for each request; quoteId is
    the third word of the data in both)."""
    w3 = Web3(Web3.HTTPProvider(devnet.rpc_url))
    logs = w3.eth.get_logs(
        {"address": devnet.symmio, "fromBlock": 0, "toBlock": "latest", "topics": [REQUEST_TO_CLOSE]}
    )
    mine = [log for log in logs if int.from_bytes(bytes(log["data"])[64:96], "big") == quote_id]
    return len({bytes(log["transactionHash"]) for log in mine})


def fired_in_log(stack: Stack, order_id: int) -> int:
    """How many times an engine process logged this order firing (across restarts)."""
    assert stack.engine is not None
    return stack.engine.log_path.read_text(errors="replace").count(f"trigger {order_id} fired:")


async def flagged(redis: aioredis.Redis, stack: Stack, account: str) -> bool:
    return bool(await redis.exists(reduce_only_key(stack.settings.redis_prefix, account)))


async def liquidation_price(redis: aioredis.Redis, stack: Stack, account: str) -> Decimal:
    """BTCUSDT liquidation price from the engine's health hash, once the account is loaded."""

    async def loaded() -> str | None:
        raw = await redis.hget(health_key(stack.settings.redis_prefix, account), "liquidation_prices")
        return json.loads(raw).get("BTCUSDT") if raw else None

    return Decimal(await until(f"the health of {account}", loaded, timeout=20))


async def ticks_consumed_after(redis: aioredis.Redis, stack: Stack, group: str, since_ms: int) -> None:
    """Until the consumer group read a stream entry added after `since_ms` (a live consumer)."""
    key = f"{stack.settings.redis_prefix}prices:stream"

    async def moved() -> bool:
        for g in await redis.xinfo_groups(key):
            name = g["name"].decode() if isinstance(g["name"], bytes) else g["name"]
            last = g["last-delivered-id"]
            last = last.decode() if isinstance(last, bytes) else last
            if name == group and int(last.split("-")[0]) > since_ms:
                return True
        return False

    await until(f"group {group} reading ticks after {since_ms}", moved, timeout=20)


async def assert_closed_once(
    stack: Stack,
    devnet: DevnetInfo,
    url: str,
    t: Trader,
    quote_id: int,
    order_id: int,
    kind: str,
    *,
    killed: bool = False,
) -> dict[str, Any]:
    """The trigger fired once and its one close filled: CLOSED on chain, one close request."""
    close = await t.wait_close(quote_id)
    assert close["status"] == "filled", close
    order = await wait_order(t, order_id, "filled")
    rows = await closes_of(url, quote_id)
    assert [status for _, status in rows] == ["filled"]  # the one instant close of this quote
    assert (order["attempts"], order["instant_close_id"]) == (1, rows[0][0]), order
    assert order["close_price"] == close["close_price"], (order, close)
    assert chain_quote(devnet, quote_id)["quoteStatus"] == QuoteStatus.CLOSED
    assert close_requests_on_chain(devnet, quote_id) == 1
    # Logged once; with SIGKILLs around, possibly never (killed between the commit and the log line).
    assert fired_in_log(stack, order_id) in ((0, 1) if killed else (1,))
    seen = await actions(t.client, t.account)
    name = "StopLoss" if kind == "stop_loss" else "TakeProfit"
    for action in (f"Set{name}", f"{name}Triggered", f"{name}Filled", "FillOrderInstantClose"):
        assert seen.count(action) == 1, (action, seen)
    return order


# --- tests ------------------------------------------------------------------------------------


async def test_stop_loss_closes_a_long_once_when_the_feed_crosses_it(
    stack: Stack, http: httpx.AsyncClient, e2e_devnet: DevnetInfo, e2e_database_url: str,
    binance: FakeBinance, accounts: dict[str, str],
) -> None:  # fmt: skip
    """LONG 0.01 BTC opened at mark 60000, stop loss at 59000. The feed moves to 58900: the engine
    fires the stop loss once, the MARKET close (58900 × 0.99 = 58311) fills, the quote is CLOSED
    on chain with exactly one RequestToClosePosition, and the notifications report
    SetStopLoss, StopLossTriggered, StopLossFilled once each."""
    t = trader(stack, e2e_devnet, http, accounts["sl"])
    qid = await opened(t)
    sl = (await place(t, e2e_devnet, qid, sl="59000"))["stop_loss"]
    binance.set("BTCUSDT", "59100")  # not crossed yet: nothing happens
    await asyncio.sleep(1.0)
    assert (await trigger_orders(t))[sl]["status"] == "armed"
    binance.set("BTCUSDT", "58900")
    order = await assert_closed_once(stack, e2e_devnet, e2e_database_url, t, qid, sl, "stop_loss")
    assert Decimal(order["fire_mark"]) == Decimal(58900)
    assert Decimal(order["close_price"]) == Decimal(58311)  # LONG: mark × (1 − 1 %), 1 decimal, down
    assert Decimal(order["quantity"]) == Decimal("0.01")


async def test_take_profit_closes_a_short_once_and_cancels_its_stop_loss(
    stack: Stack, http: httpx.AsyncClient, e2e_devnet: DevnetInfo, e2e_database_url: str,
    binance: FakeBinance, accounts: dict[str, str],
) -> None:  # fmt: skip
    """SHORT 0.01 BTC at mark 60000 with a take profit at 59000 and a stop loss at 61000. The
    feed falls to 58900: the take profit fires once (close at 58900 × 1.01 = 59489), the stop
    loss is cancelled (one-cancels-other), the quote is CLOSED with one close request."""
    t = trader(stack, e2e_devnet, http, accounts["tp"])
    qid = await opened(t, open_body(side=1, price="59400"))
    ids = await place(t, e2e_devnet, qid, side=1, tp="59000", sl="61000")
    binance.set("BTCUSDT", "58900")
    order = await assert_closed_once(stack, e2e_devnet, e2e_database_url, t, qid, ids["take_profit"], "take_profit")
    assert Decimal(order["close_price"]) == Decimal(59489)  # SHORT: mark × (1 + 1 %), 1 decimal, up
    other = (await trigger_orders(t))[ids["stop_loss"]]
    assert (other["status"], other["end_reason"]) == ("cancelled", "oco")
    seen = await actions(http, t.account)
    assert seen.count("StopLossCancelled") == 1 and "StopLossTriggered" not in seen


async def test_placement_is_checked_against_the_engines_mark(
    stack: Stack, http: httpx.AsyncClient, e2e_devnet: DevnetInfo, accounts: dict[str, str]
) -> None:
    """With the mark at 60000 (published by the engine): a LONG stop loss at 60500 would fire at
    once, so it is refused (400, 1605) with a message giving the mark 60000; a take profit at
    59500 likewise; the temporary (negative) quote id is refused (400, 1600) with a message
    saying to wait for the real id. Nothing is stored."""
    t = trader(stack, e2e_devnet, http, accounts["placement"])
    r = await t.open()
    assert r.status_code == 200, r.text
    temp = r.json()["temp_quote_id"]
    assert temp < 0
    qid = int((await t.wait_open(temp))["quote_id"])

    for kw, what in (({"sl": "60500"}, "stop loss is 60500"), ({"tp": "59500"}, "take profit is 59500")):
        r = await http.post("/stop-loss", json=sl_body(t, e2e_devnet, qid, **kw), headers=t.headers)
        assert r.status_code == 400, r.text
        body = r.json()
        assert body["error_code"] == ErrorCode.TRIGGER_WOULD_FIRE_NOW.code, body
        assert "mark is 60000" in body["error_message"] and what in body["error_message"], body

    r = await http.post("/stop-loss", json=sl_body(t, e2e_devnet, temp, sl="59000"), headers=t.headers)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error_code"] == ErrorCode.TRIGGER_TEMP_QUOTE_ID.code, body
    assert str(temp) in body["error_message"] and "wait for the real quote id" in body["error_message"], body
    assert await trigger_orders(t) == {}


async def test_stale_feed_blocks_opens_triggers_and_flags_until_fresh_ticks_resume(
    stack: Stack, http: httpx.AsyncClient, e2e_devnet: DevnetInfo, e2e_database_url: str,
    binance: FakeBinance, accounts: dict[str, str], redis: aioredis.Redis,
) -> None:  # fmt: skip
    """max_price_age_s = 2. Account A: LONG 0.01 with a stop loss at 59000. Account B: LONG 0.1
    at 50x on an allocation of 126, liquidation price ≈ 59394 (entry 60012 − (126 − 3.636 fee −
    60.6 cva+lf) / 0.1).

    1. The feed goes silent: once the last price is > 2 s old, POST /instant_open answers 503
       with code 1204 and stores nothing.
    2. The feed comes back lagging 3 s behind (every tick dated 3 s ago) at 58500, which crosses
       both: the engine publishes it (the latest price is 58500), but on a stale price the stop
       loss does not fire, B is not flagged, and opens are still refused.
    3. Fresh ticks resume at 58500: B is flagged reduce-only (with a LiquidatePosition alert)
       within a couple of ticks, the stop loss fires and its close fills, and opens are
       accepted again."""
    a = trader(stack, e2e_devnet, http, accounts["stale_sl"])
    b = trader(stack, e2e_devnet, http, accounts["stale_liq"])
    qa = await opened(a)
    await opened(b, levered_body(quantity="0.1", price="60600", leverage=50))
    sl = (await place(a, e2e_devnet, qa, sl="59000"))["stop_loss"]
    liq = await liquidation_price(redis, stack, b.account)
    assert Decimal(59300) < liq < Decimal(59500), liq
    assert not await flagged(redis, stack, b.account)
    cache = PriceCache(redis, stack.settings.redis_prefix)

    # 1. Silence.
    binance.pause()

    async def stale() -> bool:
        p = await cache.get("BTCUSDT")
        return p is not None and time.time() - p.ts > MAX_PRICE_AGE_S + 0.2

    await until("the BTCUSDT price to go stale", stale, timeout=10)
    r = await a.open()
    assert r.status_code == 503, r.text
    assert r.json()["error_code"] == ErrorCode.PRICE_STALE.code, r.json()
    assert len(await a.opens()) == 1  # the first open only: nothing stored

    # 2. A crossing price that only arrives with a stale source time.
    binance.set("BTCUSDT", CROSSING)
    binance.resume(lag_s=3)

    async def crossed_but_stale() -> bool:
        p = await cache.get("BTCUSDT")
        return p is not None and p.price == Decimal(CROSSING)

    await until("the lagging feed's price in Redis", crossed_but_stale, timeout=10)
    point = await cache.get("BTCUSDT")
    assert point is not None and time.time() - point.ts > MAX_PRICE_AGE_S
    since = now_ms()
    await ticks_consumed_after(redis, stack, "triggers", since)  # the engine handled stale crossing ticks
    await ticks_consumed_after(redis, stack, "health", since)
    await asyncio.sleep(0.5)
    assert (await trigger_orders(a))[sl]["status"] == "armed"
    assert await closes_of(e2e_database_url, qa) == []
    assert not await flagged(redis, stack, b.account)
    r = await a.open(open_body(price="59000"))
    assert (r.status_code, r.json()["error_code"]) == (503, ErrorCode.PRICE_STALE.code), r.text

    # 3. Fresh ticks.
    resumed = time.monotonic()
    binance.resume()
    await until("B flagged reduce-only", lambda: flagged(redis, stack, b.account), timeout=10, every=0.02)
    flag_delay = time.monotonic() - resumed
    print(f"flagged {flag_delay:.2f} s after fresh ticks resumed")
    assert flag_delay < 2.0, flag_delay  # the fresh ticks come every 0.25 s
    await assert_closed_once(stack, e2e_devnet, e2e_database_url, a, qa, sl, "stop_loss")
    r = await b.open(levered_body(quantity="0.01", price="59000", leverage=10))
    assert (r.status_code, r.json()["error_code"]) == (403, ErrorCode.REDUCE_ONLY.code), r.text
    assert (await actions(http, b.account)).count("LiquidatePosition") == 1
    await opened(a, open_body(price="59000"))  # fresh again: accepted and opened


async def test_engine_sigkilled_between_trigger_and_close_closes_once(
    stack: Stack, http: httpx.AsyncClient, e2e_devnet: DevnetInfo, e2e_database_url: str,
    binance: FakeBinance, accounts: dict[str, str], redis: aioredis.Redis,
) -> None:  # fmt: skip
    """Worker stopped, stop loss at 59000, the feed at 58500: the engine fires (the trigger order
    is `triggered`, its instant_close row exists), is SIGKILLed and restarted, and reads more
    crossing ticks (58500, then 58400). Then the worker starts: one instant_close row, one
    RequestToClosePosition on chain, the order `filled` after one attempt, the quote CLOSED."""
    assert stack.engine is not None
    t = trader(stack, e2e_devnet, http, accounts["kill"])
    qid = await opened(t)
    sl = (await place(t, e2e_devnet, qid, sl="59000"))["stop_loss"]
    stack.worker.stop()
    binance.set("BTCUSDT", CROSSING)

    async def fired() -> bool:
        return (await trigger_orders(t))[sl]["status"] == "triggered" and len(
            await closes_of(e2e_database_url, qid)
        ) == 1

    await until("the stop loss to fire", fired, timeout=20)
    stack.engine.kill()
    stack.engine.start()
    restarted = now_ms()
    await ticks_consumed_after(redis, stack, "triggers", restarted + 500)
    binance.set("BTCUSDT", "58400")
    await ticks_consumed_after(redis, stack, "triggers", now_ms() + 500)
    assert stack.engine.alive()
    assert [s for _, s in await closes_of(e2e_database_url, qid)] == ["pending"]
    assert (await trigger_orders(t))[sl]["status"] == "triggered"
    stack.worker.start()
    await assert_closed_once(stack, e2e_devnet, e2e_database_url, t, qid, sl, "stop_loss", killed=True)
    assert stack.engine.starts == 2


async def test_engine_sigkilled_at_random_moments_after_the_crossing_closes_once(
    stack: Stack, http: httpx.AsyncClient, e2e_devnet: DevnetInfo, e2e_database_url: str,
    binance: FakeBinance, accounts: dict[str, str], redis: aioredis.Redis,
) -> None:  # fmt: skip
    """Three rounds, worker running: stop loss at 59000, the feed to 58500, the engine SIGKILLed
    0 to 0.8 s later (the next tick comes within 0.25 s and the close fills about 0.5 s after the
    fire: so before the fire, during it, while the close runs, or after the fill before the
    order settles), restarted 0 to 0.3 s after that. Every round ends the same way: one close, one
    RequestToClosePosition, the order filled once, the quote CLOSED."""
    assert stack.engine is not None
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    print(f"random kill seed: {seed}")
    for i in range(3):
        t = trader(stack, e2e_devnet, http, accounts[f"random_kill_{i}"])
        qid = await opened(t)
        sl = (await place(t, e2e_devnet, qid, sl="59000"))["stop_loss"]
        binance.set("BTCUSDT", CROSSING)
        await asyncio.sleep(rng.uniform(0, 0.8))
        stack.engine.kill()
        before = [s for _, s in await closes_of(e2e_database_url, qid)]
        await asyncio.sleep(rng.uniform(0, 0.3))
        stack.engine.start()
        order = await assert_closed_once(stack, e2e_devnet, e2e_database_url, t, qid, sl, "stop_loss", killed=True)
        print(f"round {i}: closes when killed {before}, fired logged {fired_in_log(stack, sl)}, order {order}")
        binance.set("BTCUSDT", "60000")
        await wait_price(redis, stack, "60000")
