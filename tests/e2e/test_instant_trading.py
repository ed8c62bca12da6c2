"""Instant trading with the real processes (`solver api`, `solver worker`, `solver oracle`)
against anvil, PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from solver.chain.types import QuoteStatus
from solver.core.errors import ErrorCode
from solver.db.engine import create_engine
from solver.devnet.deploy import DevnetInfo
from tests.e2e.conftest import _bounded
from tests.e2e.processes import Stack, stack_settings
from tests.e2e.trader import Trader, open_body
from tests.fixtures.trading import PriceKeeper, chain_quote, new_account

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


@pytest.fixture
def stack(e2e_devnet: DevnetInfo, e2e_database_url: str, redis_prefix: str, log_dir: Path) -> Iterator[Stack]:
    settings = stack_settings(e2e_devnet, e2e_database_url, redis_prefix, risk={"max_pending_instant_opens": 50})
    s = Stack(settings, log_dir)
    try:
        yield s.start()
    except BaseException:
        print(s.logs())
        raise
    finally:
        s.stop()


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    client = httpx.AsyncClient(base_url=stack.base_url, timeout=30)
    yield client
    await _bounded(client.aclose(), "http client close")


def trader(stack: Stack, devnet: DevnetInfo, client: httpx.AsyncClient, **kw: Any) -> Trader:
    account = new_account(devnet, **kw)
    return Trader(client, account, stack.token(account, devnet.demo_accounts[0].owner))


async def test_open_resolves_quote_id_then_close(
    stack: Stack, http: httpx.AsyncClient, e2e_devnet: DevnetInfo, prices: PriceKeeper
) -> None:
    t = trader(stack, e2e_devnet, http)
    r = await t.open()
    assert r.status_code == 200, r.text
    temp = r.json()["temp_quote_id"]
    assert temp < 0 and r.json()["quote_id"] == temp
    item = await t.wait_open(temp)
    assert item["status"] == "opened", item
    quote_id = item["quote_id"]
    assert quote_id > 0
    q = chain_quote(e2e_devnet, quote_id)
    assert q["quoteStatus"] == QuoteStatus.OPENED and q["partyB"] == e2e_devnet.solver

    r = await http.get(f"/instant_quote_id/{temp}")
    assert r.json() == {"quote_id": quote_id, "status": "opened"}

    r = await t.close(quote_id, "0.01", "59000")
    assert r.status_code == 200, r.text
    done = await t.wait_close(quote_id)
    assert done["status"] == "filled", done
    assert chain_quote(e2e_devnet, quote_id)["quoteStatus"] == QuoteStatus.CLOSED


async def test_retry_with_same_idempotency_key_opens_once(
    stack: Stack, http: httpx.AsyncClient, e2e_devnet: DevnetInfo, prices: PriceKeeper
) -> None:
    t = trader(stack, e2e_devnet, http)
    body = open_body()
    first = await t.open(body, key="retry-1")
    second = await t.open(body, key="retry-1")
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    item = await t.wait_open(first.json()["temp_quote_id"])
    assert item["status"] == "opened"
    assert len(await t.opens()) == 1
    positions = _on_chain_quotes(e2e_devnet, t.account)
    assert len(positions) == 1


async def test_failure_on_chain_ends_failed_and_releases_margin(
    stack: Stack, http: httpx.AsyncClient, e2e_devnet: DevnetInfo, prices: PriceKeeper
) -> None:
    t = trader(stack, e2e_devnet, http)
    stack.worker.stop()  # accept while the worker is down, then move the market past the price
    r = await t.open(open_body(price="60020"))
    assert r.status_code == 200, r.text
    await prices.set("BTCUSDT", Decimal("60100"))
    stack.worker.start()
    item = await t.wait_open(r.json()["temp_quote_id"])
    await prices.set("BTCUSDT", Decimal("60000"))
    assert item["status"] == "failed"
    assert item["error_code"] == ErrorCode.PRICE_MOVED.code
    assert "moved" in item["error_message"]
    assert chain_quote(e2e_devnet, item["quote_id"])["quoteStatus"] == QuoteStatus.CANCELED
    balances = await _available(http, e2e_devnet)
    assert Decimal(balances[t.account]) == Decimal(100_000)  # nothing pending, nothing locked


async def test_cancel_before_sending_and_after_opening(
    stack: Stack, http: httpx.AsyncClient, e2e_devnet: DevnetInfo, prices: PriceKeeper
) -> None:
    t = trader(stack, e2e_devnet, http)
    stack.worker.stop()
    r = await t.open()
    temp = r.json()["temp_quote_id"]
    d = await http.delete(f"/instant_open/{temp}", headers=t.headers)
    assert d.status_code == 200 and d.json()["successful"] is True
    stack.worker.start()
    r2 = await t.open()
    item = await t.wait_open(r2.json()["temp_quote_id"])
    assert item["status"] == "opened"
    too_late = await http.delete(f"/instant_open/{r2.json()['temp_quote_id']}", headers=t.headers)
    assert too_late.status_code == 409
    cancelled = next(i for i in await t.opens() if i["temp_quote_id"] == temp)
    assert cancelled["status"] == "cancelled"
    assert len(_on_chain_quotes(e2e_devnet, t.account)) == 1  # the cancelled one never reached the chain


async def test_fifty_concurrent_opens_from_ten_accounts_through_one_signer(
    stack: Stack, http: httpx.AsyncClient, e2e_devnet: DevnetInfo, prices: PriceKeeper, e2e_database_url: str
) -> None:
    stack.worker.stop()  # the harness funds new accounts with the solver key: not while the worker signs
    traders = [trader(stack, e2e_devnet, http) for _ in range(10)]
    stack.worker.start()
    responses = await asyncio.gather(*(t.open(open_body(quantity="0.002")) for t in traders for _ in range(5)))
    assert [r.status_code for r in responses] == [200] * 50, [r.text for r in responses if r.status_code != 200]
    by_account: dict[str, list[int]] = {}
    for r in responses:
        by_account.setdefault(r.json()["party_a_address"], []).append(r.json()["temp_quote_id"])
    results = []
    for t in traders:
        for temp in by_account[t.account]:
            results.append(await t.wait_open(temp, timeout=120))
    assert [i["status"] for i in results] == ["opened"] * 50
    assert len({i["quote_id"] for i in results}) == 50
    engine = create_engine(e2e_database_url)
    async with engine.connect() as conn:
        lost = (await conn.execute(text("SELECT count(*) FROM chain_tx WHERE status = 'lost'"))).scalar()
        reverted = (await conn.execute(text("SELECT count(*) FROM chain_tx WHERE status = 'reverted'"))).scalar()
    await engine.dispose()
    assert (lost, reverted) == (0, 0)  # no nonce went to waste, nothing failed on chain
    assert "Traceback" not in stack.worker.tail(5000)


async def test_worker_killed_at_random_points_during_200_opens(
    stack: Stack, http: httpx.AsyncClient, e2e_devnet: DevnetInfo, prices: PriceKeeper, e2e_database_url: str
) -> None:
    """200 opens from 20 accounts; the worker is SIGKILLed 4 times at random moments and restarted.
    Afterwards every open is `opened` or `failed`, and the chain holds exactly one quote per
    instant open that has a quote id (none twice, none unknown)."""
    rng = random.Random(2026)
    stack.worker.stop()
    traders = [trader(stack, e2e_devnet, http) for _ in range(20)]
    stack.worker.start()
    temps: dict[str, list[int]] = {t.account: [] for t in traders}

    async def submit(t: Trader) -> None:
        for _ in range(10):
            r = await t.open(open_body(quantity="0.002"))
            assert r.status_code == 200, r.text
            temps[t.account].append(r.json()["temp_quote_id"])

    async def chaos() -> None:
        for _ in range(4):
            await asyncio.sleep(rng.uniform(0.3, 2.5))
            stack.worker.kill()
            await asyncio.sleep(rng.uniform(0.0, 0.5))
            stack.worker.start()

    await asyncio.gather(chaos(), *(submit(t) for t in traders))
    assert stack.worker.starts == 6
    final: list[dict[str, Any]] = []
    for t in traders:
        for temp in temps[t.account]:
            final.append(await t.wait_open(temp, timeout=240))
    assert len(final) == 200
    failed = [i for i in final if i["status"] != "opened"]
    assert failed == []  # crashes cost time, never a trade

    by_party_a = _quotes_by_party_a(e2e_devnet)
    for t in traders:
        on_chain = by_party_a.get(t.account, [])
        mine = [i for i in final if i["party_a_address"] == t.account and i["quote_id"] > 0]
        assert sorted(q for q in on_chain) == sorted(i["quote_id"] for i in mine), t.account
        for i in mine:
            status = chain_quote(e2e_devnet, i["quote_id"])["quoteStatus"]
            assert (status == QuoteStatus.OPENED) == (i["status"] == "opened"), i
    engine = create_engine(e2e_database_url)
    async with engine.connect() as conn:
        dup = (
            await conn.execute(
                text("SELECT count(*) FROM (SELECT sender, nonce FROM chain_tx GROUP BY 1, 2 HAVING count(*) > 1) d")
            )
        ).scalar()
        open_txs = (await conn.execute(text("SELECT count(*) FROM chain_tx WHERE status = 'signed'"))).scalar()
    await engine.dispose()
    assert dup == 0 and open_txs == 0


async def test_api_killed_mid_request_loses_nothing_acknowledged(
    stack: Stack, http: httpx.AsyncClient, e2e_devnet: DevnetInfo, prices: PriceKeeper
) -> None:
    """40 opens in flight while the API is SIGKILLed: every open that got a 200 is executed; the
    others either never happened or are executed as well (never half-written)."""
    stack.worker.stop()
    traders = [trader(stack, e2e_devnet, http) for _ in range(4)]
    stack.worker.start()
    acked: list[tuple[Trader, int]] = []

    async def one(t: Trader) -> None:
        try:
            r = await t.open(open_body(quantity="0.002"))
        except httpx.HTTPError:
            return
        if r.status_code == 200:
            acked.append((t, r.json()["temp_quote_id"]))

    async def kill_soon() -> None:
        await asyncio.sleep(0.15)
        stack.api.kill()

    await asyncio.gather(kill_soon(), *(one(t) for t in traders for _ in range(10)))
    stack.api.start()
    from tests.e2e.processes import wait_http

    wait_http(f"{stack.base_url}/health", stack.api)
    for t, temp in acked:
        assert (await t.wait_open(temp))["status"] == "opened"
    for t in traders:
        items = await t.opens()
        assert all(i["status"] == "opened" for i in items), items  # nothing left half-done
        assert sorted(_on_chain_quotes(e2e_devnet, t.account)) == sorted(i["quote_id"] for i in items)


# --- chain reads ---------------------------------------------------------------------------


def _quotes_by_party_a(devnet: DevnetInfo) -> dict[str, list[int]]:
    """Every quote id on chain by partyA (scans all ids: tests are small)."""
    from web3 import Web3

    from solver.devnet.artifacts import load_artifact

    w3 = Web3(Web3.HTTPProvider(devnet.rpc_url))
    symmio = w3.eth.contract(address=devnet.symmio, abi=load_artifact("LocalSymmio").abi)
    out: dict[str, list[int]] = {}
    for qid in range(1, symmio.functions.getNextQuoteId().call() + 1):
        out.setdefault(symmio.functions.getQuote(qid).call()[14], []).append(qid)
    return out


def _on_chain_quotes(devnet: DevnetInfo, account: str) -> list[int]:
    return _quotes_by_party_a(devnet).get(account, [])


async def _available(http: httpx.AsyncClient, devnet: DevnetInfo) -> dict[str, str]:
    owner = devnet.demo_accounts[0].owner
    r = await http.get(f"/get_balance_info/{owner}/{devnet.multi_account}")
    assert r.status_code == 200, r.text
    return {acct: v["party_a"]["available_balance"] for acct, v in r.json().items()}
