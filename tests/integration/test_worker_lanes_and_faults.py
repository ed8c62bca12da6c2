"""Worker behaviour that needs a chain of its own: parallel signer lanes (with the solver's
collateral topped up by allocateForPartyB), a stuck transaction replaced with a fee bump, and
sends the node silently loses. A private anvil, so pausing mining disturbs no other test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlmodel import col, select
from web3 import Web3

from solver.chain.types import QuoteStatus
from solver.core.errors import ErrorCode
from solver.core.units import WAD
from solver.db import migrate
from solver.db.engine import SessionFactory, create_engine, session_factory
from solver.db.models import ChainTx, InstantOpenStatus, IntentKind, IntentStatus, TxAttempt, TxIntent
from solver.devnet.anvil import rpc, start_anvil
from solver.devnet.artifacts import load_artifact
from solver.devnet.deploy import DELEGATED_SIGNATURES, DevnetInfo, anvil_key, deploy, selector
from solver.oracle.signer import OracleSigner
from solver.quotes.outbox import lane_for
from solver.settings import Settings, load_settings
from tests.fixtures.app import settings_for
from tests.fixtures.db import scratch_database_url
from tests.fixtures.trading import PriceKeeper, chain_quote, new_account, running_worker
from tests.integration.test_worker_flow import open_request, settled_open

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def own_database_url() -> Iterator[str]:
    """A database for this chain only: the session database holds another chain's quote ids and
    the same solver address's nonces."""
    url = scratch_database_url()
    migrate.upgrade(url)
    try:
        yield url
    finally:
        migrate.drop_database(url)


@pytest.fixture
async def own_db(own_database_url: str) -> AsyncIterator[SessionFactory]:
    engine = create_engine(own_database_url, pool_size=5, max_overflow=5)
    yield session_factory(engine)
    await engine.dispose()


@pytest.fixture(scope="module")
def own_devnet() -> Iterator[DevnetInfo]:
    settings = load_settings()
    node = start_anvil()
    try:
        yield deploy(node.url, settings.symbols, oracle=OracleSigner.generate(settings.oracle.muon_app_id))
    finally:
        node.stop()


def _worker_settings(devnet: DevnetInfo, database_url: str, redis_prefix: str, **worker: Any) -> Settings:
    return settings_for(
        devnet,
        database_url,
        redis_prefix,
        worker={"signer_private_keys": [devnet.solver_private_key], "poll_interval_s": 0.02, **worker},
    )


def _second_party_b(devnet: DevnetInfo) -> tuple[str, str]:
    """Register anvil account 9 as another PartyB with collateral deposited (none allocated)."""
    w3 = Web3(Web3.HTTPProvider(devnet.rpc_url))
    key = anvil_key(9)
    address = w3.eth.account.from_key(key).address
    symmio = w3.eth.contract(address=devnet.symmio, abi=load_artifact("LocalSymmio").abi)
    collateral = w3.eth.contract(address=devnet.collateral, abi=load_artifact("MockCollateral").abi)
    for fn, sender in (
        (symmio.functions.registerPartyB(address), devnet.admin),
        (collateral.functions.mint(address, 10**7 * WAD), address),
        (collateral.functions.approve(devnet.symmio, 10**7 * WAD), address),
        (symmio.functions.deposit(10**7 * WAD), address),
    ):
        assert w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender}))["status"] == 1
    return address, key


def _delegate(devnet: DevnetInfo, account: str, target: str) -> None:
    w3 = Web3(Web3.HTTPProvider(devnet.rpc_url))
    multi = w3.eth.contract(address=devnet.multi_account, abi=load_artifact("MultiAccount").abi)
    fn = multi.functions.delegateAccesses(account, target, [selector(s) for s in DELEGATED_SIGNATURES], True)
    assert w3.eth.wait_for_transaction_receipt(fn.transact({"from": devnet.demo_accounts[0].owner}))["status"] == 1


async def test_two_lanes_run_in_parallel_and_top_up_the_solver_collateral(
    own_devnet: DevnetInfo, own_database_url: str, redis_prefix: str, own_db: SessionFactory, redis_client: Any
) -> None:
    lane1, key1 = _second_party_b(own_devnet)
    lanes = [own_devnet.solver, lane1]
    settings = settings_for(
        own_devnet,
        own_database_url,
        redis_prefix,
        chain={"party_b_addresses": lanes},
        worker={"signer_private_keys": [own_devnet.solver_private_key, key1], "poll_interval_s": 0.02},
    )
    by_lane: dict[int, list[str]] = {0: [], 1: []}
    while min(len(v) for v in by_lane.values()) < 2:
        account = new_account(own_devnet, solver_allocation=0)  # the worker must top up itself
        _delegate(own_devnet, account, lane1)
        by_lane[lane_for(account, 2)].append(account)
    async with PriceKeeper(redis_client, settings.redis_prefix):
        ids: list[tuple[int, int]] = []
        for lane, accounts in by_lane.items():
            for account in accounts[:2]:
                ids.append((lane, await open_request(own_db, account, lane=lane)))
        async with running_worker(settings, own_devnet) as worker:
            assert [lane.address for lane in worker.lanes] == lanes
            rows = [(lane, await settled_open(own_db, i)) for lane, i in ids]
    for lane, row in rows:
        assert row.status == InstantOpenStatus.OPENED, row.error_message
        assert row.quote_id is not None
        q = chain_quote(own_devnet, row.quote_id)
        assert q["quoteStatus"] == QuoteStatus.OPENED
        assert q["partyB"] == lanes[lane]  # each account's quotes are filled by its own lane
    async with own_db() as s:
        senders = set((await s.exec(select(ChainTx.sender))).all())
        top_ups = (
            await s.exec(
                select(TxIntent).where(
                    col(TxIntent.kind) == IntentKind.ALLOCATE_FOR_PARTY_B, col(TxIntent.status) == IntentStatus.DONE
                )
            )
        ).all()
    assert senders >= set(lanes)
    assert {t.account for t in top_ups} >= {a for accounts in by_lane.values() for a in accounts[:2]}


async def test_stuck_transaction_is_replaced_with_a_fee_bump(
    own_devnet: DevnetInfo, own_database_url: str, redis_prefix: str, own_db: SessionFactory, redis_client: Any
) -> None:
    settings = _worker_settings(own_devnet, own_database_url, redis_prefix, stuck_after_s=1.0, rebroadcast_after_s=0.5)
    account = new_account(own_devnet)
    url = own_devnet.rpc_url
    async with PriceKeeper(redis_client, settings.redis_prefix), running_worker(settings, own_devnet):
        rpc(url, "evm_setAutomine", [False])
        try:
            open_id = await open_request(own_db, account)
            deadline = time.monotonic() + 30
            attempts: list[TxAttempt] = []
            while time.monotonic() < deadline:
                async with own_db() as s:
                    attempts = list(
                        (
                            await s.exec(
                                select(TxAttempt)
                                .join(ChainTx, col(ChainTx.id) == col(TxAttempt.tx_id))
                                .where(col(ChainTx.data).contains(account[2:].lower()))
                                .order_by(col(TxAttempt.id))
                            )
                        ).all()
                    )
                if len(attempts) >= 2:
                    break
                await asyncio.sleep(0.2)
        finally:
            rpc(url, "evm_setAutomine", [True])
            rpc(url, "evm_mine", [])
        assert len(attempts) >= 2, "no replacement was sent"
        first, second = attempts[0], attempts[1]
        assert second.tx_id == first.tx_id  # same nonce
        assert second.max_fee_per_gas * 8 >= first.max_fee_per_gas * 9
        assert second.max_priority_fee_per_gas * 8 >= first.max_priority_fee_per_gas * 9
        row = await settled_open(own_db, open_id)
    assert row.status == InstantOpenStatus.OPENED, row.error_message
    w3 = Web3(Web3.HTTPProvider(url))
    mined = [a.tx_hash for a in attempts if _receipt(w3, a.tx_hash) is not None]
    assert len(mined) == 1  # exactly one transaction for that nonce made it on chain


async def test_sends_the_node_loses_are_rebroadcast(
    own_devnet: DevnetInfo, own_database_url: str, redis_prefix: str, own_db: SessionFactory, redis_client: Any
) -> None:
    settings = _worker_settings(own_devnet, own_database_url, redis_prefix, rebroadcast_after_s=0.3)
    account = new_account(own_devnet)
    async with PriceKeeper(redis_client, settings.redis_prefix), running_worker(settings, own_devnet) as worker:
        node = worker.ctx.node
        real_send = node.send_raw
        dropped: list[str] = []

        async def lossy(raw: str) -> str:
            if len(dropped) < 2:  # the first two sends vanish: "accepted", never propagated
                dropped.append(raw)
                return "0x"
            return await real_send(raw)

        node.send_raw = lossy  # type: ignore[method-assign]
        open_id = await open_request(own_db, account)
        row = await settled_open(own_db, open_id)
    assert len(dropped) == 2
    assert row.status == InstantOpenStatus.OPENED, row.error_message


def _receipt(w3: Web3, tx_hash: str) -> Any:
    try:
        return w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
    except Exception:
        return None


async def test_a_nonce_taken_by_a_foreign_transaction_is_requeued_not_lost(
    own_devnet: DevnetInfo, own_database_url: str, redis_prefix: str, own_db: SessionFactory, redis_client: Any
) -> None:
    """Someone uses the signer key outside the solver and their transaction takes the nonce of
    ours: ours can never be mined, so its open is planned again on a fresh nonce and still
    opens, exactly once."""
    settings = _worker_settings(own_devnet, own_database_url, redis_prefix, stuck_after_s=120)
    account = new_account(own_devnet)
    url = own_devnet.rpc_url
    w3 = Web3(Web3.HTTPProvider(url))
    async with PriceKeeper(redis_client, settings.redis_prefix), running_worker(settings, own_devnet):
        rpc(url, "evm_setAutomine", [False])
        try:
            open_id = await open_request(own_db, account)
            ours = None
            for _ in range(200):
                async with own_db() as s:
                    ours = (
                        await s.exec(select(ChainTx).where(col(ChainTx.data).contains(account[2:].lower())))
                    ).first()
                if ours is not None:
                    break
                await asyncio.sleep(0.05)
            assert ours is not None
            # The same nonce, 10x the fees: the node keeps the foreign one.
            w3.eth.send_transaction(
                {
                    "from": own_devnet.solver,
                    "to": own_devnet.admin,
                    "value": 1,
                    "nonce": ours.nonce,
                    "maxFeePerGas": 10**12,
                    "maxPriorityFeePerGas": 10**11,
                }
            )
        finally:
            rpc(url, "evm_setAutomine", [True])
            rpc(url, "evm_mine", [])
        row = await settled_open(own_db, open_id)
    assert row.status == InstantOpenStatus.OPENED, row.error_message
    async with own_db() as s:
        lost = (await s.exec(select(ChainTx).where(col(ChainTx.id) == ours.id))).one()
        sends = (
            await s.exec(
                select(ChainTx).where(col(ChainTx.data).contains(account[2:].lower()), col(ChainTx.status) == "mined")
            )
        ).all()
    assert lost.status == "lost"
    assert row.quote_id is not None and chain_quote(own_devnet, row.quote_id)["quoteStatus"] == QuoteStatus.OPENED
    assert len([t for t in sends if t.to_address == own_devnet.multi_account]) == 1  # one sendQuote on chain


async def test_a_transaction_reverted_on_chain_fails_the_open_with_its_reason_and_releases_margin(
    own_devnet: DevnetInfo, own_database_url: str, redis_prefix: str, own_db: SessionFactory, redis_client: Any
) -> None:
    """The pre-flight passed, then the state changed before mining (PartyB actions paused in the
    same block, ahead of ours): the receipt has status 0, the open ends `failed` with the
    contract's reason, and the quote is cancelled so the user's pending margin is released."""
    settings = _worker_settings(own_devnet, own_database_url, redis_prefix, stuck_after_s=120)
    account = new_account(own_devnet)
    url = own_devnet.rpc_url
    w3 = Web3(Web3.HTTPProvider(url))
    symmio = w3.eth.contract(address=own_devnet.symmio, abi=load_artifact("LocalSymmio").abi)
    async with PriceKeeper(redis_client, settings.redis_prefix), running_worker(settings, own_devnet):
        rpc(url, "evm_setAutomine", [False])
        try:
            open_id = await open_request(own_db, account)

            async def txs_for_account() -> list[ChainTx]:
                async with own_db() as s:
                    rows = await s.exec(
                        select(ChainTx)
                        .join(TxIntent, col(TxIntent.tx_id) == col(ChainTx.id))
                        .where(col(TxIntent.account) == account)
                        .order_by(col(ChainTx.nonce))
                    )
                    return list(rows.all())

            for _ in range(400):  # the sendQuote is waiting in the mempool
                if len(await txs_for_account()) == 1:
                    break
                await asyncio.sleep(0.02)
            rpc(url, "evm_mine", [])
            for _ in range(400):  # mined; now lockAndOpenQuote waits in the mempool
                if len(await txs_for_account()) == 2:
                    break
                await asyncio.sleep(0.02)
            assert len(await txs_for_account()) == 2
            symmio.functions.setPauseFlags(False, False, True).transact(
                {"from": own_devnet.admin, "maxFeePerGas": 10**12, "maxPriorityFeePerGas": 10**11}
            )
            rpc(url, "evm_mine", [])
        finally:
            rpc(url, "evm_setAutomine", [True])
        symmio.functions.setPauseFlags(False, False, False).transact({"from": own_devnet.admin})
        row = await settled_open(own_db, open_id)
        reverted = (await txs_for_account())[1]
    assert reverted.status == "reverted"
    assert "PartyB actions paused" in (reverted.revert_reason or "")
    assert row.status == InstantOpenStatus.FAILED
    assert row.error_code == ErrorCode.TX_REVERTED.code
    assert "PartyB actions paused" in (row.error_message or "")
    assert row.quote_id is not None
    assert chain_quote(own_devnet, row.quote_id)["quoteStatus"] == QuoteStatus.CANCELED
    pending = symmio.functions.pendingLockedBalancesOfPartyA(account).call()
    assert sum(pending[:3]) == 0  # nothing of this open is still held against the user's balance
