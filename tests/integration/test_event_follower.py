"""The event follower against a real anvil with the project's contracts and a real Postgres.

Lifecycle, idempotent replays and confirmation depth run on the session devnet with fresh
sub-accounts and a follower name per test. The reorg test reverts anvil snapshots, so it runs on
its own anvil (a private deploy) and leaves the shared one alone.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from eth_utils.address import to_checksum_address
from sqlalchemy import update
from sqlmodel import col, func, select
from web3 import Web3

from solver.chain.events.decoder import EventDecoder
from solver.chain.events.source import LogSource
from solver.chain.web3_reader import Web3ChainReader
from solver.core.clock import SystemClock
from solver.db import migrate
from solver.db.engine import SessionFactory, create_engine, session_factory
from solver.db.models import FollowerBlock, FollowerCursor, InstantOpen, InstantOpenStatus, Notification, Quote
from solver.devnet.anvil import rpc, start_anvil
from solver.devnet.artifacts import load_artifact
from solver.devnet.deploy import DELEGATED_SIGNATURES, DevnetInfo, deploy, selector
from solver.oracle.signer import OracleSigner
from solver.quotes.follower import EventFollower
from solver.settings import Settings, load_settings
from tests.fixtures.app import settings_for
from tests.fixtures.db import instant_open_fields, next_temp_quote_id, scratch_database_url
from tests.integration.test_contracts import LIMIT, MARKET, PRICE, QTY, SHORT, WAD, Chain, _topic_index

pytestmark = pytest.mark.integration

CLOSED, OPENED, LOCKED = 7, 4, 1


def make_chain(info: DevnetInfo) -> Chain:
    w3 = Web3(Web3.HTTPProvider(info.rpc_url))
    symmio = w3.eth.contract(address=info.symmio, abi=load_artifact("LocalSymmio").abi)
    multi = w3.eth.contract(address=info.multi_account, abi=load_artifact("MultiAccount").abi)
    collateral = w3.eth.contract(address=info.collateral, abi=load_artifact("MockCollateral").abi)
    return Chain(w3, info, info.oracle_signer(), symmio, multi, collateral, _topic_index(symmio, multi))


def fund(chain: Chain) -> str:
    """Collateral for the first demo owner and the solver (see test_contracts.owner)."""
    owner = chain.info.demo_accounts[0].owner
    budget = 1_000_000 * WAD
    chain.send(chain.collateral.functions.mint(owner, budget), owner)
    chain.send(chain.collateral.functions.approve(chain.multi.address, budget), owner)
    chain.send(chain.collateral.functions.mint(chain.solver, budget), chain.solver)
    chain.send(chain.collateral.functions.approve(chain.symmio.address, budget), chain.solver)
    chain.send(chain.symmio.functions.deposit(budget), chain.solver)
    return owner


def new_account(chain: Chain, owner: str) -> str:
    """A sub-account with 100,000 allocated, the six selectors delegated, 10,000 from the solver."""
    receipt = chain.send(chain.multi.functions.addAccount("follower"), owner)
    acct = to_checksum_address(chain.logs(receipt, "AddAccount")[0].args["account"])
    chain.send(chain.multi.functions.depositAndAllocateForAccount(acct, 100_000 * WAD), owner)
    selectors = [selector(s) for s in DELEGATED_SIGNATURES]
    chain.send(chain.multi.functions.delegateAccesses(acct, chain.solver, selectors, True), owner)
    chain.send(chain.symmio.functions.allocateForPartyB(10_000 * WAD, acct), chain.solver)
    return acct


def lock_and_open(chain: Chain, quote_id: int, account: str, price: int = PRICE) -> None:
    lock_sig = chain.lock_sig(account).as_tuple()
    pair_sig = chain.pair_sig(account, price).as_tuple()
    chain.send(chain.symmio.functions.lockAndOpenQuote(quote_id, QTY, price, lock_sig, pair_sig), chain.solver)


@dataclass
class Harness:
    chain: Chain
    settings: Settings
    factory: SessionFactory
    source: LogSource
    reader: Web3ChainReader

    def follower(self, **kw: Any) -> EventFollower:
        return EventFollower(
            f"test-{secrets.token_hex(4)}",
            self.source,
            self.reader,
            self.factory,
            self.settings,
            clock=SystemClock(),
            **kw,
        )

    def with_chain(self, **chain: Any) -> Harness:
        """The same harness with settings.chain fields replaced (start block, confirmations)."""
        settings = self.settings.model_copy(update={"chain": self.settings.chain.model_copy(update=chain)})
        return Harness(self.chain, settings, self.factory, self.source, self.reader)

    def next_block(self) -> int:
        return int(self.chain.w3.eth.block_number) + 1

    async def notifications(self, account: str) -> list[Notification]:
        async with self.factory() as s:
            rows = await s.exec(
                select(Notification)
                .where(col(Notification.account) == account)
                .order_by(col(Notification.create_time), col(Notification.id))
            )
            return list(rows.all())

    async def mirror(self, quote_id: int) -> Quote | None:
        async with self.factory() as s:
            return await s.get(Quote, quote_id, populate_existing=True)


async def _harness(
    chain: Chain, info: DevnetInfo, database_url: str, factory: SessionFactory
) -> AsyncIterator[Harness]:
    settings = settings_for(info, database_url, "unused:", chain={"confirmations": 0})
    source = LogSource.connect(info.rpc_url, chunk_blocks=50)
    reader = Web3ChainReader.from_settings(settings.chain)
    try:
        yield Harness(chain, settings, factory, source, reader)
    finally:
        await source.close()
        await reader.close()


@pytest.fixture(scope="module")
def shared_chain(devnet: DevnetInfo) -> tuple[Chain, str]:
    chain = make_chain(devnet)
    return chain, fund(chain)


@pytest.fixture
async def h(
    shared_chain: tuple[Chain, str], devnet: DevnetInfo, database_url: str, db_factory: SessionFactory
) -> AsyncIterator[Harness]:
    async for harness in _harness(shared_chain[0], devnet, database_url, db_factory):
        yield harness


@pytest.fixture
def account(shared_chain: tuple[Chain, str]) -> str:
    chain, owner = shared_chain
    return new_account(chain, owner)


def _human(wei: int) -> Decimal:
    return Decimal(wei) / Decimal(WAD)


def assert_mirrors_chain(row: Quote | None, chain_quote: dict[str, Any]) -> None:
    assert row is not None
    assert row.quote_id == chain_quote["id"]
    assert row.party_a == chain_quote["partyA"]
    assert row.party_b == (chain_quote["partyB"] if int(chain_quote["partyB"], 16) else None)
    assert (row.status, row.symbol_id, row.position_type, row.order_type) == (
        chain_quote["quoteStatus"],
        chain_quote["symbolId"],
        chain_quote["positionType"],
        chain_quote["orderType"],
    )
    assert row.quantity == _human(chain_quote["quantity"])
    assert row.closed_amount == _human(chain_quote["closedAmount"])
    assert row.requested_open_price == _human(chain_quote["requestedOpenPrice"])
    assert row.opened_price == (_human(chain_quote["openedPrice"]) if chain_quote["openedPrice"] else None)
    if chain_quote["closedAmount"]:
        assert row.avg_closed_price == _human(chain_quote["avgClosedPrice"])
    assert (row.cva, row.lf, row.party_amm, row.party_bmm) == tuple(_human(v) for v in chain_quote["lockedValues"])
    assert row.trading_fee == _human(chain_quote["tradingFee"])
    assert row.deadline == chain_quote["deadline"]
    assert row.quantity_to_close == _human(chain_quote["quantityToClose"])
    assert row.requested_close_price == _human(chain_quote["requestedClosePrice"])
    assert row.parent_id == chain_quote["parentId"]


def _actions(notes: list[Notification]) -> list[str]:
    return [n.last_seen_action for n in notes]


# ---------------------------------------------------------------------------------------------
# the session devnet
# ---------------------------------------------------------------------------------------------


async def test_open_and_close_are_mirrored_and_notified_once(h: Harness, account: str) -> None:
    chain = h.chain
    h = h.with_chain(start_block=h.next_block())
    follower = h.follower()
    quote_id = chain.send_quote(account)
    lock_and_open(chain, quote_id, account)
    close = chain.encode("requestToClosePosition", quote_id, 60_900 * WAD, QTY, MARKET, chain.now() + 600)
    chain.call_as_solver(account, close)
    sig = chain.pair_sig(account, 61_000 * WAD).as_tuple()
    chain.send(chain.symmio.functions.fillCloseRequest(quote_id, QTY, 61_000 * WAD, sig), chain.solver)

    assert await follower.sync() == 5
    assert follower.caught_up
    cursor = await follower.cursor()
    assert cursor is not None and cursor.block_number == chain.w3.eth.block_number

    on_chain = chain.quote(quote_id)
    assert on_chain["quoteStatus"] == CLOSED
    row = await h.mirror(quote_id)
    assert_mirrors_chain(row, on_chain)
    assert row is not None and row.temp_quote_id is None

    notes = await h.notifications(account)
    assert _actions(notes) == ["SendQuote", "LockQuote", "OpenPosition", "RequestToClosePosition", "FillCloseRequest"]
    for n in notes:
        assert (n.quote_id, n.counterparty_address, n.order_type) == (quote_id, chain.solver, MARKET)
        assert (n.action_status, n.state_type) == ("success", "report")
        assert n.event_key is not None and n.event_key.startswith("0x")
    opened = notes[2]
    assert (opened.filled_amount_open, opened.avg_price_open) == (Decimal("0.1"), Decimal(60_000))
    filled = notes[4]
    assert (filled.filled_amount_close, filled.avg_price_close) == (Decimal("0.1"), Decimal(61_000))
    # The closeId form was kept: its log comes after the legacy twin in the same transaction.
    tx_hash, log_index = filled.event_key.split(":")
    kept = next(r for r in chain.w3.eth.get_transaction_receipt(tx_hash)["logs"] if r["logIndex"] == int(log_index))
    decoded = EventDecoder.symmio().decode(kept)
    assert decoded is not None and not decoded.is_legacy_form and "closeId" in decoded.args

    # Stepping again finds nothing; a second follower over the same blocks adds nothing either.
    assert await follower.step() == 0
    again = h.follower()
    assert await again.sync() == 5  # re-applied (mirror refreshed) ...
    assert _actions(await h.notifications(account)) == _actions(notes)  # ... but not re-notified


async def test_lost_cursor_hashes_resync_from_the_start_without_duplicates(h: Harness, account: str) -> None:
    chain = h.chain
    h = h.with_chain(start_block=h.next_block())
    follower = h.follower(batch_blocks=2)  # several batches, several saved blocks
    quote_id = chain.send_quote(account, side=SHORT, price=PRICE * 99 // 100)
    lock_and_open(chain, quote_id, account)
    chain.call_as_solver(account, chain.encode("requestToCancelQuote", chain.send_quote(account)))
    await follower.sync()
    before = await h.notifications(account)
    assert _actions(before) == ["SendQuote", "LockQuote", "OpenPosition"]  # the cancelled one was never ours

    # Every saved hash now disagrees with the node: the follower must start over from start_block.
    async with h.factory() as s:
        bogus = "0x" + "11" * 32
        await s.exec(update(FollowerCursor).where(col(FollowerCursor.name) == follower.name).values(block_hash=bogus))
        await s.exec(update(FollowerBlock).where(col(FollowerBlock.name) == follower.name).values(block_hash=bogus))
        await s.commit()
    assert await follower.step() == 3  # rewound to start_block, first batch re-applied
    await follower.sync()
    assert [n.id for n in await h.notifications(account)] == [n.id for n in before]
    assert_mirrors_chain(await h.mirror(quote_id), chain.quote(quote_id))


async def test_two_processes_under_one_name_apply_each_batch_once(h: Harness, account: str) -> None:
    chain = h.chain
    h = h.with_chain(start_block=h.next_block())
    first = h.follower()
    second = EventFollower(first.name, h.source, h.reader, h.factory, h.settings, clock=SystemClock())
    quote_id = chain.send_quote(account)
    lock_and_open(chain, quote_id, account)
    applied = await asyncio.gather(first.step(), second.step())
    applied += await asyncio.gather(first.sync(), second.sync())
    assert sum(applied) == 3  # the loser of the cursor compare-and-set rolled its batch back
    assert _actions(await h.notifications(account)) == ["SendQuote", "LockQuote", "OpenPosition"]


async def test_events_wait_for_the_confirmation_depth(h: Harness, account: str) -> None:
    chain = h.chain
    # 3 confirmations: the block itself and two on top of it (the worker counts receipts alike).
    h = h.with_chain(start_block=h.next_block(), confirmations=3)
    follower = h.follower()
    await follower.sync()
    quote_id = chain.send_quote(account)  # block B
    lock_and_open(chain, quote_id, account)  # block B + 1 = head

    assert await follower.sync() == 0
    assert await h.mirror(quote_id) is None
    assert await h.notifications(account) == []

    chain.w3.provider.make_request("evm_mine", [])  # head B + 2: B has 3 confirmations
    assert await follower.sync() == 1
    assert _actions(await h.notifications(account)) == ["SendQuote"]
    row = await h.mirror(quote_id)
    assert row is not None and row.status == OPENED  # the row is the quote as it stands now

    chain.w3.provider.make_request("evm_mine", [])
    assert await follower.sync() == 2
    assert _actions(await h.notifications(account)) == ["SendQuote", "LockQuote", "OpenPosition"]


async def test_instant_open_quote_gets_its_temp_id(h: Harness, account: str) -> None:
    chain = h.chain
    h = h.with_chain(start_block=h.next_block())
    follower = h.follower()
    quote_id = chain.send_quote(account, order=LIMIT, price=PRICE)  # nobody locks it: ours by instant open
    temp_id = next_temp_quote_id()
    async with h.factory() as s:
        fields = instant_open_fields(temp_quote_id=temp_id, account=account)
        fields.pop("now")
        now = datetime.now(UTC)
        s.add(InstantOpen(**fields, quote_id=quote_id, status=InstantOpenStatus.SENT, create_time=now, modify_time=now))
        await s.commit()
    assert await follower.sync() == 1
    row = await h.mirror(quote_id)
    assert row is not None and row.temp_quote_id == temp_id and row.party_b is None
    [note] = await h.notifications(account)
    assert (note.last_seen_action, note.temp_quote_id, note.order_type) == ("SendQuote", temp_id, LIMIT)
    assert note.counterparty_address == chain.solver


async def test_quotes_of_other_party_bs_are_ignored(h: Harness, account: str) -> None:
    chain = h.chain
    h = h.with_chain(start_block=h.next_block(), solver_address="0x000000000000000000000000000000000000dEaD")
    follower = h.follower()
    quote_id = chain.send_quote(account)
    lock_and_open(chain, quote_id, account)
    assert await follower.sync() == 0
    assert await h.mirror(quote_id) is None
    async with h.factory() as s:
        count = (
            await s.exec(select(func.count()).select_from(Notification).where(col(Notification.account) == account))
        ).one()
    assert count == 0


# ---------------------------------------------------------------------------------------------
# reorg, on a private anvil
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def private_devnet() -> Iterator[DevnetInfo]:
    settings = load_settings()
    node = start_anvil()
    try:
        yield deploy(
            node.url, settings.symbols, oracle=OracleSigner.generate(settings.oracle.muon_app_id), n_demo_accounts=1
        )
    finally:
        node.stop()


@pytest.fixture(scope="module")
def private_database_url() -> Iterator[str]:
    """A database of its own: the mirror holds one chain, and this is a second chain."""
    url = scratch_database_url()
    migrate.upgrade(url)
    try:
        yield url
    finally:
        migrate.drop_database(url)


@pytest.fixture
async def private(private_devnet: DevnetInfo, private_database_url: str) -> AsyncIterator[Harness]:
    chain = make_chain(private_devnet)
    fund(chain)
    engine = create_engine(private_database_url, pool_size=2, max_overflow=2)
    try:
        async for harness in _harness(chain, private_devnet, private_database_url, session_factory(engine)):
            yield harness
    finally:
        await engine.dispose()


async def test_reorg_rewinds_and_drops_the_reverted_quote(private: Harness) -> None:
    chain = private.chain
    url = chain.info.rpc_url
    account = new_account(chain, chain.info.demo_accounts[0].owner)
    h = private.with_chain(start_block=private.next_block())
    follower = h.follower()
    rpc(url, "evm_mine")
    await follower.sync()
    fork_point = await follower.cursor()
    assert fork_point is not None

    snapshot = rpc(url, "evm_snapshot")
    quote_id = chain.send_quote(account)
    chain.lock(quote_id, account)
    assert await follower.sync() == 2
    assert (await h.mirror(quote_id)) is not None
    old_cursor = await follower.cursor()
    assert old_cursor is not None

    # The chain drops those blocks and grows past the old height with other ones.
    assert rpc(url, "evm_revert", [snapshot]) is True
    assert await follower.step() == 0  # the node is now shorter than the cursor: wait for it
    assert follower.caught_up and await follower.cursor() == old_cursor
    rpc(url, "anvil_mine", [hex(old_cursor.block_number - fork_point.block_number + 2)])
    assert chain.w3.eth.get_block(old_cursor.block_number)["hash"].to_0x_hex() != old_cursor.block_hash

    assert await follower.sync() == 0
    assert await h.mirror(quote_id) is None  # getQuote no longer knows it
    cursor = await follower.cursor()
    assert cursor is not None and cursor.block_number == chain.w3.eth.block_number
    assert cursor.block_hash == chain.w3.eth.get_block(cursor.block_number)["hash"].to_0x_hex()

    # The same id names a new quote on the new chain: the mirror follows it.
    reused = chain.send_quote(account, quantity=QTY * 2, locked=(80 * WAD, 40 * WAD, 1080 * WAD, 0))
    assert reused == quote_id
    chain.lock(reused, account)
    assert await follower.sync() == 2
    row = await h.mirror(reused)
    assert_mirrors_chain(row, chain.quote(reused))
    assert row is not None and (row.quantity, row.status) == (Decimal("0.2"), LOCKED)
    cursor = await follower.cursor()
    async with h.factory() as s:
        saved = (await s.exec(select(FollowerBlock.block_number).where(col(FollowerBlock.name) == follower.name))).all()
    assert cursor is not None and max(saved) == cursor.block_number == chain.w3.eth.block_number
    assert fork_point.block_number in saved


async def test_reorg_deeper_than_saved_hashes_resyncs(private: Harness) -> None:
    chain = private.chain
    url = chain.info.rpc_url
    account = new_account(chain, chain.info.demo_accounts[0].owner)
    h = private.with_chain(start_block=private.next_block())
    follower = h.follower(keep_blocks=1)  # only the newest saved hash survives
    snapshot = rpc(url, "evm_snapshot")
    quote_id = chain.send_quote(account)
    chain.lock(quote_id, account)
    await follower.sync()
    assert await h.mirror(quote_id) is not None
    async with h.factory() as s:
        saved = (await s.exec(select(FollowerBlock).where(col(FollowerBlock.name) == follower.name))).all()
    assert [b.block_number for b in saved] == [chain.w3.eth.block_number]  # pruned to the newest

    rpc(url, "evm_revert", [snapshot])
    rpc(url, "anvil_mine", [hex(5)])
    await follower.sync()
    assert await h.mirror(quote_id) is None
    cursor = await follower.cursor()
    assert cursor is not None and cursor.block_number == chain.w3.eth.block_number
