"""Strategy orders (LIMIT and DCA, trading-rules.md §3) end to end with real processes: `solver
api`, `solver worker`, `solver oracle` and `solver engine` (whose strategy loop sends the
sub-orders) on the module's anvil, PostgreSQL and Redis.

Orders are created, read, listed and cancelled over HTTP (http-api.md §5) with a Bearer token;
sub-orders become real quotes through the instant open flow and the worker. Prices come only
from the local Binance-protocol feed (tests/fixtures/binance.py, pump mode, a frame every
0.25 s): the engine runs with `pricing.source = "binance"` and is the only writer of prices, so
the test moves the mark with `binance.set(...)`.

One stack per module; each test uses its own accounts (created before the stack starts) and
starts from a fresh BTCUSDT mark of 60000. The module has its own database: the strategy loop
steps every live order it can see.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from eth_account import Account
from redis import Redis as SyncRedis
from web3 import Web3

from solver.chain.types import QuoteStatus
from solver.core.errors import ErrorCode
from solver.devnet.artifacts import load_artifact
from solver.devnet.deploy import DevnetInfo
from solver.pricing.cache import PriceCache
from tests.e2e.conftest import _bounded
from tests.e2e.processes import Stack, stack_settings
from tests.fixtures.binance import FakeBinance, pumped_binance
from tests.fixtures.redis import REDIS_URL
from tests.fixtures.trading import chain_quote, new_account

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

MARKS = {"BTCUSDT": "60000", "ETHUSDT": "3000", "XRPUSDT": "0.5123"}
MAX_PRICE_AGE_S = 2
TERMINAL = {"cancelled_by_user", "cancelled_by_system", "executed", "max_retries_exceeded"}
# Accounts by test, created before the stack starts. "retries" holds enough for one ~100 USD
# sub-order only.
ACCOUNTS: dict[str, dict[str, Any]] = {
    "limit": {},
    "dca": {},
    "retries": {"allocate": 150},
    "cancel": {},
    "kill_0": {},
    "kill_1": {},
}


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
        strategy={"poll_interval_s": 0.1},
    )
    s = Stack(settings, tmp_path_factory.mktemp("strategy-e2e"), engine=True)
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


class Strategist:
    """A user of the strategy order routes, over plain HTTP."""

    def __init__(self, client: httpx.AsyncClient, account: str, token: str) -> None:
        self.client = client
        self.account = account
        self.headers = {"Authorization": f"Bearer {token}"}

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        r = await self.client.post("/strategy-orders", json=body, headers=self.headers)
        assert r.status_code == 200, r.text
        item: dict[str, Any] = r.json()
        assert item["status"] == "active" and item["account"] == self.account, item
        return item

    async def get(self, order_id: int) -> dict[str, Any]:
        r = await self.client.get(f"/strategy-orders/{order_id}", headers=self.headers)
        assert r.status_code == 200, r.text
        item: dict[str, Any] = r.json()
        return item

    async def cancel(self, order_id: int) -> httpx.Response:
        return await self.client.delete(f"/strategy-orders/{order_id}", headers=self.headers)

    async def orders(self, **params: Any) -> list[dict[str, Any]]:
        r = await self.client.get("/strategy-orders", params=params, headers=self.headers)
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()
        return items

    async def ended(self, order_id: int, timeout: float = 60.0) -> dict[str, Any]:
        async def done() -> dict[str, Any] | None:
            item = await self.get(order_id)
            return item if item["status"] in TERMINAL else None

        found: dict[str, Any] = await until(f"strategy order {order_id} to end", done, timeout, every=0.1)
        return found

    async def instant_opens(self) -> list[dict[str, Any]]:
        r = await self.client.get(f"/instant_open/{self.account}")
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()
        return items

    async def actions(self) -> list[dict[str, Any]]:
        r = await self.client.post("/position-state/0/100", json={"address": self.account})
        assert r.status_code == 200, r.text
        notes: list[dict[str, Any]] = r.json()["position_state"]
        return notes


def strategist(stack: Stack, devnet: DevnetInfo, http: httpx.AsyncClient, account: str) -> Strategist:
    return Strategist(http, account, stack.token(account, devnet.demo_accounts[0].owner))


def limit_body(price: str, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "limit", "symbol_id": 1, "position_type": 0, "leverage": "10", "input_amount": "300",
        "max_suborders": 3, "max_invocations": 5, "slippage": "0.001", "settings": {"price": price},
    }  # fmt: skip
    body.update(over)
    return body


def dca_body(delay: int, **over: Any) -> dict[str, Any]:
    return limit_body("0", **{"type": "dca", "settings": {"delay": delay}, **over})


def count(notes: list[dict[str, Any]], action: str) -> int:
    return sum(1 for n in notes if n["last_seen_action"] == action)


def open_positions(devnet: DevnetInfo, account: str) -> list[int]:
    """Ids of the account's OPENED quotes on chain, and nothing may be pending."""
    w3 = Web3(Web3.HTTPProvider(devnet.rpc_url))
    symmio = w3.eth.contract(address=Web3.to_checksum_address(devnet.symmio), abi=load_artifact("LocalSymmio").abi)
    assert symmio.functions.getPartyAPendingQuotes(account).call() == []
    return sorted(int(q[0]) for q in symmio.functions.getPartyAOpenPositions(account, 0, 100).call())


def assert_opened_with_solver(devnet: DevnetInfo, quote_ids: list[int], account: str) -> list[dict[str, Any]]:
    quotes = [chain_quote(devnet, qid) for qid in quote_ids]
    for q in quotes:
        assert q["quoteStatus"] == QuoteStatus.OPENED, q
        assert q["partyA"].lower() == account.lower(), q
        assert q["partyB"].lower() == devnet.solver.lower(), q
    return quotes


def assert_books_balance(item: dict[str, Any], leverage: Decimal = Decimal(10)) -> None:
    """The counters of trading-rules.md §3 against the sub-order list: every attempt consumed an
    invocation, the margins of opened sub-orders left current_input (each exactly quantity ×
    price / leverage: no rounding at these sizes), current_output is their quantities."""
    subs = item["suborders"]
    opened = [s for s in subs if s["status"] == "opened"]
    assert item["invocations_executed"] == len(subs), item
    assert item["suborders_executed"] == sum(s["slots"] for s in opened), item
    assert item["active_transactions"] == 0, item
    assert item["quote_ids"] == [s["quote_id"] for s in opened], item
    assert len(set(item["quote_ids"])) == len(opened)
    used = sum((Decimal(s["quantity"]) * Decimal(s["price"]) / leverage for s in opened), Decimal(0))
    assert Decimal(item["current_input_amount"]) == Decimal(item["initial_input_amount"]) - used, item
    assert Decimal(item["current_output_amount"]) == sum((Decimal(s["quantity"]) for s in opened), Decimal(0)), item


# --- tests ------------------------------------------------------------------------------------


async def test_limit_order_waits_for_its_price_then_fills_in_sub_orders(
    stack: Stack, http: httpx.AsyncClient, e2e_devnet: DevnetInfo, binance: FakeBinance,
    accounts: dict[str, str], redis: aioredis.Redis,
) -> None:  # fmt: skip
    """LONG LIMIT at 59800, slippage 0.001 (eligible at mark ≤ 59740.2), 300 USD in 3 sub-orders.
    At 60000 and at 59760 nothing is sent; at 59700 it fills in three sub-orders, each a quote
    OPENED on chain at 59800 with the solver as PartyB; the order ends `executed` with its
    counters, amounts and notifications."""
    u = strategist(stack, e2e_devnet, http, accounts["limit"])
    oid = (await u.create(limit_body("59800")))["id"]
    await asyncio.sleep(1.0)
    binance.set("BTCUSDT", "59760")  # just above the threshold
    await wait_price(redis, stack, "59760")
    await asyncio.sleep(1.0)
    item = await u.get(oid)
    assert (item["status"], item["suborders"], item["invocations_executed"]) == ("active", [], 0), item
    assert await u.instant_opens() == []

    binance.set("BTCUSDT", "59700")
    item = await u.ended(oid)
    assert item["status"] == "executed", item
    assert item["status_reason"] is None and item["error_code"] is None, item
    assert item["close_timestamp"] is not None and item["close_timestamp"] >= item["creation_timestamp"]
    subs = item["suborders"]
    assert [s["status"] for s in subs] == ["opened"] * 3, subs
    assert [s["invocation"] for s in subs] == [1, 2, 3]
    assert all(Decimal(s["price"]) == Decimal(59800) for s in subs)
    # 300 / 3 = 100 USD at 10x on 59800: 0.016 BTC; the rounding's rest carries over.
    assert [Decimal(s["quantity"]) for s in subs] == [Decimal("0.016"), Decimal("0.017"), Decimal("0.017")]
    assert (item["suborders_executed"], item["invocations_executed"]) == (3, 3)
    assert Decimal(item["current_output_amount"]) == Decimal("0.05")
    assert Decimal(item["current_input_amount"]) == Decimal(1)  # 300 − 0.05 × 59800 / 10
    assert_books_balance(item)
    assert len(set(item["quote_ids"])) == 3
    quotes = assert_opened_with_solver(e2e_devnet, item["quote_ids"], u.account)
    assert all(q["openedPrice"] == 59800 * 10**18 for q in quotes)  # a LIMIT fills at the user's price
    assert [Decimal(q["quantity"]) / 10**18 for q in quotes] == [Decimal(s["quantity"]) for s in subs]
    assert open_positions(e2e_devnet, u.account) == sorted(item["quote_ids"])
    # Each sub-order is one instant open, the one the sub-order names.
    opens = await u.instant_opens()
    assert sorted(o["temp_quote_id"] for o in opens) == sorted(s["temp_quote_id"] for s in subs)
    assert sorted(o["quote_id"] for o in opens) == sorted(item["quote_ids"])

    notes = await u.actions()
    assert count(notes, "StrategyOrderCreated") == 1
    assert count(notes, "StrategySubOrderSent") == 3
    assert count(notes, "StrategySubOrderOpened") == 3
    assert count(notes, "StrategySubOrderFailed") == 0
    status = [n for n in notes if n["last_seen_action"] == "StrategyOrderStatus"]
    assert len(status) == 1 and status[0]["action_status"] == "success", status
    opened_notes = [n for n in notes if n["last_seen_action"] == "StrategySubOrderOpened"]
    assert sorted(n["quote_id"] for n in opened_notes) == sorted(item["quote_ids"])


async def test_dca_order_waits_for_its_price_range_then_spaces_sub_orders_by_its_delay(
    stack: Stack, http: httpx.AsyncClient, e2e_devnet: DevnetInfo, binance: FakeBinance,
    accounts: dict[str, str],
) -> None:  # fmt: skip
    """SHORT DCA, delay 3 s, range [60500, 61500], 3 sub-orders. At 60000 it is due but waits
    without consuming an invocation for ~4 s (more than a delay). At 61000 the first sub-order
    goes at once; being a whole delay late it restarts the grid from its own send time, so the
    next ones come at +3 s and +6 s from it. Each sells at 61000 × (1 − 0.005) = 60695."""
    delay = 3
    u = strategist(stack, e2e_devnet, http, accounts["dca"])
    body = dca_body(
        delay,
        position_type=1,
        slippage="0.005",
        settings={"delay": delay, "price_range_from": "60500", "price_range_to": "61500"},
    )
    created = await u.create(body)
    oid = created["id"]
    assert created["settings"] == {
        "delay": 3, "delay_millis": 3000, "price_range_from": "60500", "price_range_to": "61500",
    }  # fmt: skip
    waited_until = time.monotonic() + delay + 1
    while time.monotonic() < waited_until:
        item = await u.get(oid)
        assert (item["invocations_executed"], item["suborders"]) == (0, []), item
        assert Decimal(item["current_input_amount"]) == Decimal(300), item
        await asyncio.sleep(0.5)

    moved = int(time.time())
    binance.set("BTCUSDT", "61000")
    item = await u.ended(oid)
    assert item["status"] == "executed", item
    assert item["close_timestamp"] is not None
    subs = item["suborders"]
    assert [s["status"] for s in subs] == ["opened"] * 3, subs
    assert all(Decimal(s["price"]) == Decimal("60695") for s in subs), subs
    assert_books_balance(item)
    assert item["suborders_executed"] == 3
    times = [s["create_time"] for s in subs]
    print(f"created {item['creation_timestamp']}, moved into the range {moved}, sub-orders {times}")
    assert times[0] >= moved
    assert times[0] - item["creation_timestamp"] >= delay  # waited more than a whole delay
    # The grid from the late first one (unix seconds, floored: exact for whole-second offsets);
    # consecutive ones at least a delay apart less the grid's catch-up and the flooring.
    for k, t in enumerate(times):
        assert t >= times[0] + k * delay, times
    for a, b in itertools.pairwise(times):
        assert b - a >= delay - 1, times
    quotes = assert_opened_with_solver(e2e_devnet, item["quote_ids"], u.account)
    assert all(q["positionType"] == 1 for q in quotes)
    assert open_positions(e2e_devnet, u.account) == sorted(item["quote_ids"])


async def test_failed_sub_orders_consume_invocations_until_max_retries_exceeded(
    stack: Stack, http: httpx.AsyncClient, e2e_devnet: DevnetInfo, accounts: dict[str, str],
) -> None:  # fmt: skip
    """The account holds 150 USD: a DCA of 300 USD in 3 sub-orders (delay 1 s, 4 invocations)
    opens its first ~97 USD sub-order, then every retry is refused (insufficient available
    balance) and consumes an invocation: `max_retries_exceeded` with the partial fill kept."""
    u = strategist(stack, e2e_devnet, http, accounts["retries"])
    oid = (await u.create(dca_body(1, max_invocations=4, slippage="0.01")))["id"]
    item = await u.ended(oid)
    assert item["status"] == "max_retries_exceeded", item
    subs = item["suborders"]
    assert [s["status"] for s in subs] == ["opened", "failed", "failed", "failed"], subs
    assert subs[0]["error_code"] is None and subs[0]["quote_id"] is not None
    for s in subs[1:]:
        assert s["error_code"] == ErrorCode.INSUFFICIENT_BALANCE.code, s
        assert s["error_message"], s
        assert s["quote_id"] is None and s["temp_quote_id"] is None, s  # refused before the chain
    assert (item["suborders_executed"], item["invocations_executed"]) == (1, 4)
    assert item["error_code"] == ErrorCode.INSUFFICIENT_BALANCE.code and item["error_message"], item
    assert item["status_reason"] and "4 invocations" in item["status_reason"], item
    assert item["close_timestamp"] is not None
    assert Decimal(item["current_output_amount"]) == Decimal(subs[0]["quantity"]) > 0  # the partial fill
    assert_books_balance(item)
    assert_opened_with_solver(e2e_devnet, item["quote_ids"], u.account)
    assert open_positions(e2e_devnet, u.account) == item["quote_ids"]
    assert len(await u.instant_opens()) == 1  # refused sub-orders never reached the chain

    notes = await u.actions()
    assert count(notes, "StrategySubOrderSent") == 1
    assert count(notes, "StrategySubOrderOpened") == 1
    failed = [n for n in notes if n["last_seen_action"] == "StrategySubOrderFailed"]
    assert len(failed) == 3 and all(n["error_code"] == ErrorCode.INSUFFICIENT_BALANCE.code for n in failed), failed
    status = [n for n in notes if n["last_seen_action"] == "StrategyOrderStatus"]
    assert len(status) == 1, status
    assert (status[0]["action_status"], status[0]["failure_type"]) == ("failed", "max_retries_exceeded"), status


async def test_cancel_with_a_sub_order_in_flight_waits_for_it_then_ends_cancelled_by_user(
    stack: Stack, http: httpx.AsyncClient, e2e_devnet: DevnetInfo, accounts: dict[str, str],
) -> None:  # fmt: skip
    """Worker stopped. A LONG LIMIT at 60500 (eligible at 60000) sends its first sub-order, which
    stays `sent` (nobody fills it). DELETE answers `requested_cancellation`; the worker starts,
    the sub-order opens, and the order ends `cancelled_by_user` with that one quote and no
    further sub-order."""
    stack.worker.stop()
    u = strategist(stack, e2e_devnet, http, accounts["cancel"])
    oid = (await u.create(limit_body("60500")))["id"]

    async def in_flight() -> dict[str, Any] | None:
        item = await u.get(oid)
        return item if [s["status"] for s in item["suborders"]] == ["sent"] else None

    await until("the first sub-order sent", in_flight)
    await asyncio.sleep(1.0)  # nothing settles it, nothing else is sent
    item = await u.get(oid)
    assert [s["status"] for s in item["suborders"]] == ["sent"], item
    assert (item["active_transactions"], item["invocations_executed"]) == (1, 1), item
    assert [o["status"] for o in await u.instant_opens()] == ["pending"]

    r = await u.cancel(oid)
    assert r.status_code == 200, r.text
    cancelled = r.json()
    assert cancelled["status"] == "requested_cancellation", cancelled
    assert cancelled["close_timestamp"] is None
    r = await u.cancel(oid)  # asked again: the order as it is
    assert (r.status_code, r.json()["status"]) == (200, "requested_cancellation"), r.text
    assert [o["status"] for o in await u.orders()] == ["requested_cancellation"]  # still listed as live

    stack.worker.start()
    item = await u.ended(oid)
    assert item["status"] == "cancelled_by_user", item
    assert item["close_timestamp"] is not None
    assert [s["status"] for s in item["suborders"]] == ["opened"], item
    assert (item["suborders_executed"], item["invocations_executed"]) == (1, 1), item
    assert_books_balance(item)
    assert_opened_with_solver(e2e_devnet, item["quote_ids"], u.account)
    await asyncio.sleep(1.0)  # still eligible at 60000: nothing more is sent after the cancel
    after = await u.get(oid)
    assert (after["status"], len(after["suborders"])) == ("cancelled_by_user", 1), after
    assert open_positions(e2e_devnet, u.account) == item["quote_ids"]
    assert len(await u.instant_opens()) == 1
    r = await u.cancel(oid)
    assert r.status_code == 409 and r.json()["error_code"] == ErrorCode.STRATEGY_ALREADY_CLOSED.code, r.text

    notes = await u.actions()
    status = [n for n in notes if n["last_seen_action"] == "StrategyOrderStatus"]
    assert len(status) == 2 and all(n["action_status"] == "success" for n in status), status


async def test_engine_sigkilled_while_sending_sub_orders_fills_each_once(
    stack: Stack, http: httpx.AsyncClient, e2e_devnet: DevnetInfo, binance: FakeBinance,
    accounts: dict[str, str], redis: aioredis.Redis,
) -> None:  # fmt: skip
    """Two rounds. A LONG LIMIT at 59800 of 400 USD in 4 sub-orders; the feed crosses (59700).
    Once its first sub-order exists the engine is SIGKILLed: at once in round 0 (the first
    sub-order being written or submitted), 0 to 1.5 s later in round 1 (a later one being
    written, submitted, filled or settled); it is restarted 0 to 0.3 s after. The order still
    ends `executed`: one instant open per submitted sub-order, one on-chain quote per opened
    one, every attempt one invocation, the counters consistent."""
    assert stack.engine is not None
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    print(f"random kill seed: {seed}")
    for round_ in range(2):
        starts = stack.engine.starts
        u = strategist(stack, e2e_devnet, http, accounts[f"kill_{round_}"])
        oid = (await u.create(limit_body("59800", input_amount="400", max_suborders=4, max_invocations=8)))["id"]
        binance.set("BTCUSDT", "59700")

        async def first_sub(u: Strategist = u, oid: int = oid) -> bool:
            return bool((await u.get(oid))["suborders"])

        await until("the first sub-order", first_sub, every=0.01)
        await asyncio.sleep(0 if round_ == 0 else rng.uniform(0, 1.5))
        stack.engine.kill()
        at_kill = await u.get(oid)
        print(f"round {round_}: killed with {[(s['invocation'], s['status']) for s in at_kill['suborders']]}")
        await asyncio.sleep(rng.uniform(0, 0.3))
        stack.engine.start()

        item = await u.ended(oid, timeout=90)
        assert stack.engine.starts == starts + 1 and stack.engine.alive()
        assert item["status"] == "executed", item
        subs = item["suborders"]
        opened = [s for s in subs if s["status"] == "opened"]
        assert {s["status"] for s in subs} <= {"opened", "failed"}, subs
        assert sum(s["slots"] for s in opened) == 4 == item["suborders_executed"], item
        assert [s["invocation"] for s in subs] == list(range(1, len(subs) + 1))
        assert_books_balance(item)
        # No duplicate instant open: exactly one per sub-order that reached the flow.
        opens = await u.instant_opens()
        submitted = [s["temp_quote_id"] for s in subs if s["temp_quote_id"] is not None]
        assert len(opens) == len(submitted), (opens, subs)
        assert sorted(o["temp_quote_id"] for o in opens) == sorted(submitted)
        assert all(s["temp_quote_id"] is not None for s in opened)
        # One on-chain quote per opened sub-order, and no other position of the account.
        assert sorted(o["quote_id"] for o in opens if o["status"] == "opened") == sorted(item["quote_ids"])
        assert_opened_with_solver(e2e_devnet, item["quote_ids"], u.account)
        assert open_positions(e2e_devnet, u.account) == sorted(item["quote_ids"])
        notes = await u.actions()
        assert count(notes, "StrategySubOrderOpened") == len(opened)
        assert count(notes, "StrategySubOrderSent") == len(submitted)
        assert count(notes, "StrategyOrderStatus") == 1
        print(f"round {round_}: sub-orders {[(s['invocation'], s['status'], s['quantity']) for s in subs]}")
        binance.set("BTCUSDT", "60000")
        await wait_price(redis, stack, "60000", timeout=20)


async def test_list_filters_by_type_and_finished_with_a_before_id_cursor(
    stack: Stack, http: httpx.AsyncClient, e2e_devnet: DevnetInfo,
) -> None:  # fmt: skip
    """Five orders of a fresh account (none can send: LIMIT prices far below the mark, DCA ranges
    far above it), two of them cancelled. The list is newest first; `type` and
    `include_finished` filter it; `size` + `before_id` page through it; another account sees
    none of them."""
    owner = e2e_devnet.demo_accounts[0].owner
    u = Strategist(http, acct := Account.create().address, stack.token(acct, owner))
    far = {"delay": 60, "price_range_from": "100000", "price_range_to": "120000"}
    l1 = (await u.create(limit_body("30000")))["id"]
    d1 = (await u.create(dca_body(60, settings=far)))["id"]
    l2 = (await u.create(limit_body("31000")))["id"]
    d2 = (await u.create(dca_body(60, settings=far)))["id"]
    l3 = (await u.create(limit_body("32000")))["id"]
    assert l1 < d1 < l2 < d2 < l3
    for oid in (d1, l2):
        r = await u.cancel(oid)
        assert r.status_code == 200 and r.json()["status"] == "cancelled_by_user", r.text
        assert r.json()["close_timestamp"] is not None

    def ids(items: list[dict[str, Any]]) -> list[int]:
        return [i["id"] for i in items]

    assert ids(await u.orders()) == [l3, d2, l1]  # live only, newest first
    assert ids(await u.orders(include_finished="false")) == [l3, d2, l1]
    assert ids(await u.orders(type="limit")) == [l3, l1]
    assert ids(await u.orders(type="dca")) == [d2]
    every = await u.orders(include_finished="true")
    assert ids(every) == [l3, d2, l2, d1, l1]
    assert {i["id"]: i["status"] for i in every} == {
        l3: "active", d2: "active", l2: "cancelled_by_user", d1: "cancelled_by_user", l1: "active",
    }  # fmt: skip
    assert all((i["close_timestamp"] is None) == (i["status"] == "active") for i in every), every
    assert all(i["suborders"] == [] and i["invocations_executed"] == 0 for i in every), every
    assert ids(await u.orders(type="limit", include_finished="true")) == [l3, l2, l1]
    assert ids(await u.orders(type="dca", include_finished="true")) == [d2, d1]
    # The cursor: pages of 2 over every order.
    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"include_finished": "true", "size": 2}
        if cursor is not None:
            params["before_id"] = cursor
        page = ids(await u.orders(**params))
        if not page:
            break
        pages.append(page)
        cursor = page[-1]
    assert pages == [[l3, d2], [l2, d1], [l1]]
    assert ids(await u.orders(before_id=d2)) == [l1]  # the cursor with the live filter
    assert ids(await u.orders(type="limit", include_finished="true", before_id=l3, size=1)) == [l2]
    r = await http.get("/strategy-orders", params={"size": 0}, headers=u.headers)
    assert r.status_code == 400 and r.json()["error_code"] == ErrorCode.STRATEGY_INVALID_QUERY.code, r.text
    r = await http.get("/strategy-orders", headers={})
    assert r.status_code == 401, r.text

    other = Strategist(http, acct2 := Account.create().address, stack.token(acct2, owner))
    assert await other.orders(include_finished="true") == []
    r = await http.get(f"/strategy-orders/{l3}", headers=other.headers)
    assert r.status_code == 404, r.text
    r = await other.cancel(l3)
    assert r.status_code == 404, r.text

    for oid in (l1, d2, l3):  # leave nothing live for the engine
        r = await u.cancel(oid)
        assert r.status_code == 200 and r.json()["status"] == "cancelled_by_user", r.text
    assert await u.orders() == []
