"""A chain reorganisation under the real processes: anvil drops the blocks of an open the solver
had already confirmed (confirmations = 2) and mirrored.

`anvil_reorg(depth, [])` replaces the last `depth` blocks with as many empty ones: the dropped
transactions are gone (anvil does not put them back in its pool, unlike geth), so the solver's
signer nonce on chain goes back. The worker has to notice its own settled transactions vanished
(solver.quotes.lane.Lane._unsettle_reorged). Before it did, the open stayed `opened` with no quote
on chain, and every later transaction of the signer waited behind the nonce gap forever (replaced
with a fee bump every stuck_after_s, never mined), so every later open stayed `sent`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
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
from tests.e2e.processes import Stack, stack_settings
from tests.e2e.trader import Trader, open_body
from tests.fixtures.trading import PriceKeeper, new_account

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

CONFIRMATIONS = 2
WAD = Decimal(10**18)


@pytest.fixture(scope="module")
def accounts(e2e_devnet: DevnetInfo) -> list[str]:
    """Funded while anvil mines instantly and before any worker signs; then a block a second."""
    out = [new_account(e2e_devnet) for _ in range(3)]
    rpc(e2e_devnet.rpc_url, "evm_setIntervalMining", [1])
    return out


@pytest.fixture
def stack(
    e2e_devnet: DevnetInfo, e2e_database_url: str, redis_prefix: str, log_dir: Path, accounts: list[str]
) -> Iterator[Stack]:
    settings = stack_settings(
        e2e_devnet,
        e2e_database_url,
        redis_prefix,
        chain={"confirmations": CONFIRMATIONS},
        worker={"stuck_after_s": 4, "rebroadcast_after_s": 1},
    )
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


async def test_an_open_reorged_away_after_confirmation_is_sent_again_and_matches_the_chain(
    stack: Stack,
    http: httpx.AsyncClient,
    e2e_devnet: DevnetInfo,
    prices: PriceKeeper,
    e2e_database_url: str,
    accounts: list[str],
) -> None:
    """Open over HTTP until `opened` and mirrored, then reorg away every block from its sendQuote
    on (3-4 blocks: both of the solver's transactions vanish, the quote id is unused again and the
    signer's nonce on chain goes back by 2). The follower rewinds and drops the mirror row; the
    worker sees its two settled transactions gone, sends them again (same nonces and calldata)
    and they are mined within a few seconds: the same quote id is OPENED again, the instant open,
    the mirror and the chain agree, and a later open goes through (the nonce is not wedged)."""
    w3 = Web3(Web3.HTTPProvider(e2e_devnet.rpc_url))
    t = _trader(stack, http, e2e_devnet, accounts[0])
    temp, quote_id, txs = await _open_and_mirror(t, e2e_database_url)
    nonce_before = w3.eth.get_transaction_count(to_checksum_address(e2e_devnet.solver))

    base = _reorg(w3, e2e_devnet.rpc_url, from_block=min(x["block_number"] for x in txs))
    assert (
        w3.eth.get_transaction_count(to_checksum_address(e2e_devnet.solver)) == nonce_before - 2
    )  # both sends are gone
    assert _chain_quote(w3, e2e_devnet, quote_id)[0] == 0  # no such quote on this chain
    reorg_at = time.monotonic()

    await _wait(lambda: _consistent(e2e_database_url, w3, e2e_devnet, t.account), True, "DB agrees with chain", 60)
    print(f"reorg after block {base}: consistent again after {time.monotonic() - reorg_at:.1f} s")
    final = next(i for i in await t.opens() if i["temp_quote_id"] == temp)
    assert (final["status"], final["quote_id"]) == ("opened", quote_id)
    q = _chain_quote(w3, e2e_devnet, quote_id)
    assert (q[14], q[15], q[16]) == (t.account, e2e_devnet.solver, QuoteStatus.OPENED)

    # The chain can agree before the worker records the receipts of its re-mined transactions.
    async def settled() -> bool:
        return all(x["status"] == "mined" for x in await _txs(e2e_database_url, t.account))

    await _wait(settled, True, "the re-sent transactions recorded as mined", 60)
    again = await _txs(e2e_database_url, t.account)
    assert [x["nonce"] for x in again] == [x["nonce"] for x in txs]  # the same two nonces, not new ones
    assert all(x["status"] == "mined" and x["block_number"] > base for x in again), again
    log = stack.worker.tail(5000)
    assert log.count("is no longer on chain after a reorg") == 2
    assert "reorg below block" in log  # the follower rewound

    t2 = _trader(stack, http, e2e_devnet, accounts[1])
    r2 = await t2.open(open_body(quantity="0.002"))
    assert r2.status_code == 200, r2.text
    item2 = await t2.wait_open(r2.json()["temp_quote_id"], timeout=60)
    assert item2["status"] == "opened", item2
    await _wait(lambda: _consistent(e2e_database_url, w3, e2e_devnet, t2.account), True, "consistent", 30)


async def test_a_reorg_that_drops_only_the_fill_leaves_the_quote_pending_until_it_is_sent_again(
    stack: Stack,
    http: httpx.AsyncClient,
    e2e_devnet: DevnetInfo,
    prices: PriceKeeper,
    e2e_database_url: str,
    accounts: list[str],
) -> None:
    """The sendQuote block survives, the lockAndOpenQuote block does not: the quote is PENDING on
    the new chain, the follower rewinds the mirror row to PENDING, and the worker's re-sent fill
    opens it again."""
    w3 = Web3(Web3.HTTPProvider(e2e_devnet.rpc_url))
    t = _trader(stack, http, e2e_devnet, accounts[2])
    temp, quote_id, txs = await _open_and_mirror(t, e2e_database_url)
    send_block, fill_block = (x["block_number"] for x in txs)
    assert send_block < fill_block

    _reorg(w3, e2e_devnet.rpc_url, from_block=fill_block)
    assert _chain_quote(w3, e2e_devnet, quote_id)[16] == QuoteStatus.PENDING
    await _wait(lambda: _consistent(e2e_database_url, w3, e2e_devnet, t.account), True, "DB agrees with chain", 60)
    final = next(i for i in await t.opens() if i["temp_quote_id"] == temp)
    assert (final["status"], final["quote_id"]) == ("opened", quote_id)

    async def settled() -> bool:
        return all(x["status"] == "mined" for x in await _txs(e2e_database_url, t.account))

    await _wait(settled, True, "the re-sent fill recorded as mined", 60)
    again = await _txs(e2e_database_url, t.account)
    assert again[0]["block_number"] == send_block and again[1]["block_number"] > fill_block, again
    assert _chain_quote(w3, e2e_devnet, quote_id)[16] == QuoteStatus.OPENED


# --- helpers -----------------------------------------------------------------------------------


def _trader(stack: Stack, http: httpx.AsyncClient, devnet: DevnetInfo, account: str) -> Trader:
    return Trader(http, account, stack.token(account, devnet.demo_accounts[0].owner))


async def _open_and_mirror(t: Trader, url: str) -> tuple[int, int, list[dict[str, Any]]]:
    """Open over HTTP; wait until `opened` and the mirror shows it OPENED. Returns the temp id,
    the quote id and the two settled transactions (sendQuote, lockAndOpenQuote)."""
    r = await t.open(open_body(quantity="0.002"))
    assert r.status_code == 200, r.text
    temp = r.json()["temp_quote_id"]
    item = await t.wait_open(temp, timeout=60)
    assert item["status"] == "opened", item
    quote_id = int(item["quote_id"])
    await _wait(lambda: _mirror_status(url, quote_id), QuoteStatus.OPENED, "mirrored as OPENED")
    txs = await _txs(url, t.account)
    assert [x["status"] for x in txs] == ["mined", "mined"], txs
    return temp, quote_id, txs


def _reorg(w3: Web3, url: str, *, from_block: int) -> int:
    """Replace every block from `from_block` to the head by as many empty ones; returns the last
    block kept."""
    head = w3.eth.block_number
    old = w3.eth.get_block(head)["hash"]
    rpc(url, "anvil_reorg", [head - from_block + 1, []])
    assert w3.eth.get_block(head)["hash"] != old
    return from_block - 1


async def _wait(probe: Any, expected: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last == expected:
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"not {what} after {timeout} s: {last!r}")


async def _query(url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(text(sql), params)).mappings()]
    finally:
        await engine.dispose()


async def _mirror_status(url: str, quote_id: int) -> int | None:
    rows = await _query(url, "SELECT status FROM quote WHERE quote_id = :q", q=quote_id)
    return rows[0]["status"] if rows else None


async def _txs(url: str, account: str) -> list[dict[str, Any]]:
    return await _query(
        url,
        "SELECT DISTINCT t.id, t.nonce, t.status, t.block_number, t.mined_hash FROM chain_tx t"
        " JOIN tx_intent i ON i.tx_id = t.id WHERE i.account = :a ORDER BY t.nonce",
        a=account,
    )


def _symmio(w3: Web3, devnet: DevnetInfo) -> Any:
    return w3.eth.contract(address=to_checksum_address(devnet.symmio), abi=load_artifact("LocalSymmio").abi)


def _chain_quote(w3: Web3, devnet: DevnetInfo, quote_id: int) -> Any:
    return _symmio(w3, devnet).functions.getQuote(quote_id).call()


def _chain_quotes_of(w3: Web3, devnet: DevnetInfo, account: str) -> dict[int, Any]:
    symmio = _symmio(w3, devnet)
    out = {}
    for qid in range(1, symmio.functions.getNextQuoteId().call() + 1):
        q = symmio.functions.getQuote(qid).call()
        if q[0] and q[14] == account:
            out[qid] = q
    return out


async def _consistent(url: str, w3: Web3, devnet: DevnetInfo, account: str) -> Any:
    """True, or what differs: instant opens vs the chain, and the quote mirror vs getQuote."""
    opens = await _query(url, "SELECT temp_quote_id, quote_id, status FROM instant_open WHERE account = :a", a=account)
    mirror = {
        r["quote_id"]: r
        for r in await _query(
            url, "SELECT quote_id, status, quantity, party_b FROM quote WHERE party_a = :a", a=account
        )
    }
    chain = _chain_quotes_of(w3, devnet, account)
    problems: list[Any] = []
    if any(o["status"] not in ("opened", "failed", "cancelled") for o in opens):
        problems.append(("not final", opens))
    ids = [o["quote_id"] for o in opens if o["quote_id"] is not None]
    if sorted(ids) != sorted(chain):
        problems.append(("db ids vs chain", sorted(ids), sorted(chain)))
    for o in opens:
        q = chain.get(o["quote_id"])
        if o["status"] == "opened" and (q is None or q[16] != QuoteStatus.OPENED):
            problems.append(("opened but on chain", o, None if q is None else q[16]))
    if set(mirror) != set(chain):
        problems.append(("mirror ids vs chain", sorted(mirror), sorted(chain)))
    for qid, row in mirror.items():
        q = chain.get(qid)
        if q is not None and (row["status"] != q[16] or row["quantity"] != Decimal(q[9]) / WAD):
            problems.append(("mirror row", qid, row["status"], q[16]))
    return problems or True
