"""The real processes with a misbehaving node between the worker and anvil.

`solver worker` (lanes and event follower) reaches anvil only through tests.fixtures.rpc_proxy;
the API and the oracle talk to anvil directly. anvil mines a block every second, so a sent
transaction waits in the pool and one the proxy "lost" stays unmined until the worker sends it
again (rebroadcast, same bytes) or replaces it (same nonce, fees bumped).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_utils.address import to_checksum_address
from sqlalchemy import text
from web3 import Web3

from solver.chain.types import QuoteStatus
from solver.db.engine import create_engine
from solver.devnet.anvil import rpc
from solver.devnet.artifacts import load_artifact
from solver.devnet.deploy import DevnetInfo
from tests.e2e.conftest import _bounded
from tests.e2e.processes import Proc, Stack, stack_settings
from tests.e2e.trader import Trader, open_body
from tests.fixtures.rpc_proxy import SEND_RAW, Fault, ProxyStats, RpcProxy, only, summary
from tests.fixtures.trading import PriceKeeper, new_account

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ACCOUNTS = 12
CYCLES = 2  # open -> opened -> close -> filled, per account
STUCK_AFTER_S = 3.0
REBROADCAST_AFTER_S = 1.0
FEE_BUMP_PERCENT = 20
RECEIPT = "eth_getTransactionReceipt"


@dataclass(frozen=True)
class Phase:
    """Faults for at least `min_s` and until `enough` were injected (kind -> count), at most `max_s`:
    a lane backing off after errors would otherwise let a short phase pass without traffic."""

    name: str
    rules: tuple[Fault, ...]
    min_s: float
    max_s: float
    enough: tuple[tuple[tuple[str, ...], int], ...] = ()  # ((kinds, count), ...): kinds summed


# Every phase runs while the accounts trade; the faults end after the last.
PHASES = [
    Phase("latency", (Fault(latency_s=0.05, jitter_s=0.3),), 4, 4),
    Phase("drops", (Fault(drop=0.08),), 4, 10, ((("drop",), 5),)),
    # One receipt request held past the client's 10 s timeout: the lane waits that long.
    Phase("hang", (Fault(methods=only(RECEIPT), hang=1.0, hang_s=11, limit=1),), 0, 14, ((("hang",), 1),)),
    Phase("errors", (Fault(rpc_error=0.07, http_502=0.05),), 4, 15, ((("rpc_error", "http_502"), 5),)),
    # Every send vanishes for longer than stuck_after_s (replacements), then most of them.
    Phase(
        "lost sends (all)", (Fault(methods=only(SEND_RAW), lose_sends=1.0),), STUCK_AFTER_S + 2.5, 15, ((("lose",), 8),)
    ),
    Phase("lost sends (60 %)", (Fault(methods=only(SEND_RAW), lose_sends=0.6),), 4, 10, ((("lose",), 5),)),
    Phase(
        "combined",
        (
            Fault(methods=only(SEND_RAW), lose_sends=0.4, drop_after_forward=0.25),
            Fault(latency_s=0.02, jitter_s=0.15, drop=0.03, rpc_error=0.03, http_502=0.02),
        ),
        6,
        6,
    ),
]


@pytest.fixture
def proxy(e2e_devnet: DevnetInfo) -> Iterator[RpcProxy]:
    with RpcProxy(e2e_devnet.rpc_url, seed=2026) as p:
        yield p


@pytest.fixture
def accounts(e2e_devnet: DevnetInfo) -> list[str]:
    """Funded before the worker starts (the harness signs with the solver key) and while anvil
    still mines instantly; then one block per second."""
    out = [new_account(e2e_devnet) for _ in range(ACCOUNTS)]
    rpc(e2e_devnet.rpc_url, "evm_setIntervalMining", [1])
    return out


@pytest.fixture
def stack(
    e2e_devnet: DevnetInfo,
    e2e_database_url: str,
    redis_prefix: str,
    log_dir: Path,
    proxy: RpcProxy,
    accounts: list[str],
) -> Iterator[Stack]:
    settings = stack_settings(
        e2e_devnet,
        e2e_database_url,
        redis_prefix,
        risk={"max_pending_instant_opens": 50},
        worker={
            "stuck_after_s": STUCK_AFTER_S,
            "rebroadcast_after_s": REBROADCAST_AFTER_S,
            "fee_bump_percent": FEE_BUMP_PERCENT,
        },
    )
    s = Stack(settings, log_dir)
    chain = settings.chain.model_copy(update={"rpc_urls": [proxy.url]})
    s.worker = Proc("worker", ["worker"], settings.model_copy(update={"chain": chain}), log_dir)
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


@dataclass
class Run:
    opens: list[tuple[str, int]] = field(default_factory=list)  # (account, temp id)
    closes: list[tuple[str, int]] = field(default_factory=list)  # (account, quote id)
    open_status: dict[int, dict[str, Any]] = field(default_factory=dict)
    close_status: dict[int, dict[str, Any]] = field(default_factory=dict)
    phases: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


async def test_opens_and_closes_survive_a_misbehaving_node(
    stack: Stack,
    http: httpx.AsyncClient,
    e2e_devnet: DevnetInfo,
    prices: PriceKeeper,
    e2e_database_url: str,
    proxy: RpcProxy,
    accounts: list[str],
) -> None:
    """12 accounts each open and close twice (24 opens + 24 closes = 48 requests, 96
    transactions, ~2000-2300 JSON-RPC calls from the worker) while its node adds latency, drops
    and hangs requests, answers JSON-RPC errors and 502s and loses sends, phase by phase. Five
    runs injected 45-75 faults each: 20-48 lost sends, 8-16 dropped connections, one hang past
    the client's 10 s timeout, 7-9 JSON-RPC errors / 502s, 1-3 sends forwarded whose answer was
    dropped; the worker replaced stuck transactions 12-18 times on 7-17 nonces. Afterwards:
    every open is `opened` (or `failed`) and every close `filled` (or `failed`), none stuck; the
    chain holds exactly the quotes the DB names, one per open, none twice; every lost send's
    nonce was mined (the same bytes sent again, a replacement, or an earlier attempt already in
    the pool), each replacement raised both fees by at least fee_bump_percent, and the follower,
    behind the same node, mirrors the chain."""
    owner = e2e_devnet.demo_accounts[0].owner
    traders = [Trader(http, a, stack.token(a, owner)) for a in accounts]
    run = Run()
    done = asyncio.Event()

    async def trade(t: Trader) -> None:
        for _ in range(CYCLES):
            r = await t.open(open_body(quantity="0.002"))
            assert r.status_code == 200, r.text
            temp = r.json()["temp_quote_id"]
            run.opens.append((t.account, temp))
            item = await t.wait_open(temp, timeout=120)
            run.open_status[temp] = item
            if item["status"] != "opened":
                continue
            c = await t.close(item["quote_id"], "0.002", "59000")
            assert c.status_code == 200, c.text
            run.closes.append((t.account, item["quote_id"]))
            run.close_status[item["quote_id"]] = await t.wait_close(item["quote_id"], timeout=120)

    async def chaos() -> None:
        while proxy.stats().calls[SEND_RAW] == 0:  # the worker is up and sending
            await asyncio.sleep(0.05)
        before = proxy.stats()
        for phase in PHASES:
            proxy.set_faults(*phase.rules)
            started = time.monotonic()
            while not done.is_set():
                elapsed = time.monotonic() - started
                injected = proxy.stats().injected - before.injected
                enough = all(sum(injected[k] for k in kinds) >= n for kinds, n in phase.enough)
                if elapsed >= phase.max_s or (elapsed >= phase.min_s and enough):
                    break
                await _sleep_unless(done, 0.1)
            after = proxy.stats()
            run.phases.append((phase.name, {"s": round(time.monotonic() - started, 1), **_delta(before, after)}))
            before = after
        proxy.clear()

    async def traders_then_flag() -> None:
        try:
            await asyncio.gather(*(trade(t) for t in traders))
        finally:
            done.set()

    started = time.monotonic()
    await asyncio.gather(chaos(), traders_then_flag())
    proxy.clear()
    elapsed = time.monotonic() - started
    stats = proxy.stats()
    for name, figures in run.phases:
        print(f"phase {name}: {figures}")
    print(f"total: {summary(stats, (SEND_RAW, RECEIPT))}, workload {elapsed:.1f} s")

    # 1. Nothing stuck: every request ended.
    assert len(run.opens) == ACCOUNTS * CYCLES
    assert {i["status"] for i in run.open_status.values()} <= {"opened", "failed"}
    assert {c["status"] for c in run.close_status.values()} <= {"filled", "failed"}
    opened = [i for i in run.open_status.values() if i["status"] == "opened"]
    assert len(opened) >= ACCOUNTS * CYCLES * 0.9, run.open_status  # faults cost time, not trades
    assert len(run.closes) == len(opened)

    # 2. No duplicate on chain: the account's quotes on chain are exactly the DB's quote ids.
    db = await _db_state(e2e_database_url, accounts)
    by_party_a = _quotes_by_party_a(e2e_devnet)
    for account in accounts:
        mine = [o for o in db.opens if o["account"] == account]
        assert len(mine) == CYCLES
        ids = [o["quote_id"] for o in mine if o["quote_id"] is not None]
        assert len(ids) == len(set(ids))
        assert sorted(by_party_a.get(account, [])) == sorted(ids), account
    symmio = _symmio(e2e_devnet)
    for o in db.opens:
        if o["quote_id"] is None:
            continue
        status = symmio.functions.getQuote(o["quote_id"]).call()[16]
        if o["status"] == "opened":
            closed = run.close_status.get(o["quote_id"], {}).get("status") == "filled"
            assert status == (QuoteStatus.CLOSED if closed else QuoteStatus.OPENED), o
        else:
            assert status in (QuoteStatus.CANCELED, QuoteStatus.EXPIRED), o
    assert db.tx_status.get("signed", 0) == 0 and db.tx_status.get("lost", 0) == 0, db.tx_status
    assert db.duplicate_nonces == 0

    # 3. No nonce was abandoned after a lost send: the same bytes went out again, a replacement
    # followed, or an earlier attempt for that nonce (already in the node's pool) was mined.
    attempts_by_hash = {a["tx_hash"]: a for a in db.attempts}
    fate = {"rebroadcast": 0, "replaced": 0, "earlier attempt mined": 0}
    for h in stats.lost_hashes:
        a = attempts_by_hash[h]
        tx = db.tx_by_id[a["tx_id"]]
        assert tx["status"] in ("mined", "reverted"), tx
        if any(b["tx_id"] == a["tx_id"] and b["id"] > a["id"] for b in db.attempts):
            fate["replaced"] += 1
        elif stats.sent_hashes[h] > 0:
            fate["rebroadcast"] += 1
        else:
            mined = attempts_by_hash[tx["mined_hash"]]
            assert mined["id"] < a["id"], f"lost send {h} was never sent again nor replaced: {tx}"
            fate["earlier attempt mined"] += 1
    injected = stats.injected
    assert stats.lost_hashes and injected["drop"] and injected["hang"], injected  # every phase did its part
    assert injected["rpc_error"] + injected["http_502"] > 0, injected

    # 4. Stuck transactions were replaced, each time with both fees up by >= fee_bump_percent.
    bumps = 0
    by_tx: dict[int, list[dict[str, Any]]] = {}
    for a in db.attempts:
        by_tx.setdefault(a["tx_id"], []).append(a)
    for tx_attempts in by_tx.values():
        for old, new in itertools.pairwise(tx_attempts):
            bumps += 1
            assert new["max_fee_per_gas"] * 100 >= old["max_fee_per_gas"] * (100 + FEE_BUMP_PERCENT)
            assert new["max_priority_fee_per_gas"] * 100 >= old["max_priority_fee_per_gas"] * (100 + FEE_BUMP_PERCENT)
        mined = db.tx_by_id[tx_attempts[0]["tx_id"]]["mined_hash"]
        assert mined in {a["tx_hash"] for a in tx_attempts}  # one of our hashes for that nonce
    assert bumps >= 1, "no stuck transaction was replaced"
    print(
        f"requests {len(run.opens)} opens + {len(run.closes)} closes; transactions {len(db.tx_by_id)}; "
        f"lost sends {len(stats.lost_hashes)} {fate}; "
        f"replacements {bumps} on {sum(1 for v in by_tx.values() if len(v) > 1)} nonces"
    )

    # 5. The follower went through the same faults and still mirrors the chain.
    await _wait_mirror(e2e_database_url, e2e_devnet, accounts, timeout=45)


# --- helpers -----------------------------------------------------------------------------------


async def _sleep_unless(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=seconds)


def _delta(a: ProxyStats, b: ProxyStats) -> dict[str, Any]:
    injected = {k: v - a.injected.get(k, 0) for k, v in b.injected.items() if v - a.injected.get(k, 0)}
    return {
        "calls": sum(b.calls.values()) - sum(a.calls.values()),
        "sends": b.calls[SEND_RAW] - a.calls[SEND_RAW],
        "injected": injected,
    }


def _w3(devnet: DevnetInfo) -> Web3:
    return Web3(Web3.HTTPProvider(devnet.rpc_url, request_kwargs={"timeout": 30}))


def _symmio(devnet: DevnetInfo) -> Any:
    return _w3(devnet).eth.contract(address=to_checksum_address(devnet.symmio), abi=load_artifact("LocalSymmio").abi)


def _quotes_by_party_a(devnet: DevnetInfo) -> dict[str, list[int]]:
    symmio = _symmio(devnet)
    out: dict[str, list[int]] = {}
    for qid in range(1, symmio.functions.getNextQuoteId().call() + 1):
        q = symmio.functions.getQuote(qid).call()
        if q[0]:
            out.setdefault(q[14], []).append(qid)
    return out


@dataclass
class DbState:
    opens: list[dict[str, Any]]
    attempts: list[dict[str, Any]]
    tx_by_id: dict[int, dict[str, Any]]
    tx_status: dict[str, int]
    duplicate_nonces: int


async def _db_state(url: str, accounts: list[str]) -> DbState:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            opens = (
                await conn.execute(
                    text(
                        "SELECT account, temp_quote_id, quote_id, status FROM instant_open"
                        " WHERE account = ANY(:a) ORDER BY id"
                    ),
                    {"a": accounts},
                )
            ).mappings()
            open_rows = [dict(r) for r in opens]
            txs = [dict(r) for r in (await conn.execute(text("SELECT * FROM chain_tx ORDER BY id"))).mappings()]
            attempts = [
                dict(r)
                for r in (
                    await conn.execute(
                        text(
                            "SELECT id, tx_id, tx_hash, max_fee_per_gas, max_priority_fee_per_gas"
                            " FROM tx_attempt ORDER BY id"
                        )
                    )
                ).mappings()
            ]
            dup = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM (SELECT sender, nonce FROM chain_tx GROUP BY 1, 2 HAVING count(*) > 1) d"
                    )
                )
            ).scalar()
    finally:
        await engine.dispose()
    status: dict[str, int] = {}
    for t in txs:
        status[t["status"]] = status.get(t["status"], 0) + 1
    return DbState(open_rows, attempts, {t["id"]: t for t in txs}, status, int(dup or 0))


async def _wait_mirror(url: str, devnet: DevnetInfo, accounts: list[str], timeout: float) -> None:
    """The quote mirror rows of these accounts equal getQuote (status, quantities)."""
    symmio = _symmio(devnet)
    deadline = time.monotonic() + timeout
    mismatch: list[Any] = []
    while time.monotonic() < deadline:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                rows = (
                    await conn.execute(
                        text("SELECT quote_id, status, closed_amount FROM quote WHERE party_a = ANY(:a)"),
                        {"a": accounts},
                    )
                ).mappings()
                mirror = {r["quote_id"]: r for r in rows}
        finally:
            await engine.dispose()
        expected = {q: a for a, ids in _quotes_by_party_a(devnet).items() if a in accounts for q in ids}
        mismatch = []
        if set(mirror) != set(expected):
            mismatch.append(("ids", sorted(set(mirror) ^ set(expected))))
        for qid, row in mirror.items():
            q = symmio.functions.getQuote(qid).call()
            if row["status"] != q[16] or row["closed_amount"] != Decimal(q[10]) / Decimal(10**18):
                mismatch.append((qid, row["status"], q[16]))
        if not mismatch:
            return
        await asyncio.sleep(1)
    raise AssertionError(f"the quote mirror does not match the chain: {mismatch[:10]}")
