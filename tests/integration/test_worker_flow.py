"""The chain worker against anvil, Postgres and Redis: opens, closes, cancels, failures.

Requests are inserted the way the API stores them (row + outbox intent in one transaction);
the real lanes run in this event loop with the local oracle in-process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlmodel import col, select

from solver.chain.types import QuoteStatus
from solver.core.errors import ErrorCode
from solver.db.engine import SessionFactory
from solver.db.models import (
    ChainTx,
    InstantClose,
    InstantCloseStatus,
    InstantOpen,
    InstantOpenStatus,
    IntentKind,
    Notification,
    TxIntent,
)
from solver.devnet.deploy import DevnetInfo
from solver.pricing.cache import PriceCache, PricePoint
from solver.quotes import outbox
from solver.quotes import repository as repo
from solver.settings import Settings
from tests.fixtures.app import settings_for
from tests.fixtures.db import next_temp_quote_id
from tests.fixtures.trading import PriceKeeper, chain_quote, new_account, running_worker

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(devnet: DevnetInfo, database_url: str, redis_prefix: str) -> Settings:
    return settings_for(
        devnet,
        database_url,
        redis_prefix,
        worker={"signer_private_keys": [devnet.solver_private_key], "poll_interval_s": 0.02},
    )


def _now() -> datetime:
    return datetime.now(UTC)


async def open_request(
    db: SessionFactory,
    account: str,
    *,
    side: int = 0,
    price: str = "60600",
    quantity: str = "0.01",
    deadline: int | None = None,
    symbol_id: int = 1,
    lane: int = 0,
) -> int:
    """Store an instant open and its SEND_QUOTE intent as the API does; returns its row id."""
    qty, px = Decimal(quantity), Decimal(price)
    notional = qty * Decimal("60000")
    cva, lf = notional * Decimal("0.01") * 2 / 3, notional * Decimal("0.01") / 3
    amm = notional / 10 - cva - lf
    async with db() as s:
        row = await repo.insert_instant_open(
            s,
            temp_quote_id=next_temp_quote_id(),
            account=account,
            symbol_id=symbol_id,
            position_type=side,
            order_type=1,
            requested_open_price=px,
            quantity=qty,
            cva=round(cva, 18),
            lf=round(lf, 18),
            party_amm=round(amm, 18),
            party_bmm=Decimal(0),
            max_funding_rate=Decimal(200),
            deadline=deadline or int(time.time()) + 600,
            now=_now(),
        )
        assert row.id is not None
        await outbox.enqueue(
            s,
            key=outbox.intent_key("open", row.id, "send"),
            kind=IntentKind.SEND_QUOTE,
            account=account,
            lane=lane,
            now=_now(),
            instant_open_id=row.id,
        )
        await s.commit()
        return row.id


async def close_request(db: SessionFactory, account: str, quote_id: int, quantity: str, price: str) -> int:
    async with db() as s:
        row = await repo.insert_instant_close(
            s,
            quote_id=quote_id,
            account=account,
            quantity_to_close=Decimal(quantity),
            close_price=Decimal(price),
            deadline=int(time.time()) + 600,
            now=_now(),
        )
        assert row.id is not None
        await outbox.enqueue(
            s,
            key=outbox.intent_key("close", row.id, "request"),
            kind=IntentKind.CLOSE_REQUEST,
            account=account,
            lane=0,
            now=_now(),
            instant_close_id=row.id,
            quote_id=quote_id,
        )
        await s.commit()
        return row.id


async def wait_for(check: Callable[[], Awaitable[Any]], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


async def open_row(db: SessionFactory, id: int) -> InstantOpen:
    async with db() as s:
        row = await s.get(InstantOpen, id)
        assert row is not None
        return row


async def settled_open(db: SessionFactory, id: int) -> InstantOpen:
    async def check() -> InstantOpen | None:
        row = await open_row(db, id)
        return (
            row
            if row.status in (InstantOpenStatus.OPENED, InstantOpenStatus.FAILED, InstantOpenStatus.CANCELLED)
            else None
        )

    result: InstantOpen = await wait_for(check)
    return result


async def settled_close(db: SessionFactory, id: int) -> InstantClose:
    async def check() -> InstantClose | None:
        async with db() as s:
            row = await s.get(InstantClose, id)
        assert row is not None
        done = (InstantCloseStatus.FILLED, InstantCloseStatus.FAILED, InstantCloseStatus.CANCELLED)
        return row if row.status in done else None

    result: InstantClose = await wait_for(check)
    return result


async def test_open_then_close_end_to_end(
    settings: Settings, devnet: DevnetInfo, db_factory: SessionFactory, redis_client: Any
) -> None:
    account = new_account(devnet)
    async with PriceKeeper(redis_client, settings.redis_prefix), running_worker(settings, devnet):
        open_id = await open_request(db_factory, account)
        row = await settled_open(db_factory, open_id)
        assert row.status == InstantOpenStatus.OPENED, row.error_message
        assert row.quote_id is not None and row.quote_id > 0
        q = chain_quote(devnet, row.quote_id)
        assert q["quoteStatus"] == QuoteStatus.OPENED
        assert q["partyB"] == devnet.solver and q["partyA"] == account
        assert q["openedPrice"] == 60012 * 10**18  # mark 60000 + 0.02 % hedger fee, 1 decimal

        close_id = await close_request(db_factory, account, row.quote_id, "0.01", "59000")
        closed = await settled_close(db_factory, close_id)
        assert closed.status == InstantCloseStatus.FILLED, closed.error_message
        q = chain_quote(devnet, row.quote_id)
        assert q["quoteStatus"] == QuoteStatus.CLOSED
        assert q["avgClosedPrice"] == 59988 * 10**18  # mark 60000 - 0.02 %

    async with db_factory() as s:
        notes = (await s.exec(select(Notification).where(col(Notification.account) == account))).all()
        actions = [n.last_seen_action for n in notes]
        assert actions.count("SendQuoteTransaction") == 1
        sent = next(n for n in notes if n.last_seen_action == "SendQuoteTransaction")
        assert sent.quote_id == row.quote_id and sent.temp_quote_id == row.temp_quote_id
        assert "FillOrderInstantClose" in actions


async def test_batch_of_opens_shares_one_call_and_each_gets_its_quote_id(
    settings: Settings, devnet: DevnetInfo, db_factory: SessionFactory, redis_client: Any
) -> None:
    account = new_account(devnet)
    async with PriceKeeper(redis_client, settings.redis_prefix):
        ids = [await open_request(db_factory, account, quantity=f"0.0{i + 1}") for i in range(4)]
        async with running_worker(settings, devnet):
            rows = [await settled_open(db_factory, i) for i in ids]
    assert all(r.status == InstantOpenStatus.OPENED for r in rows), [r.error_message for r in rows]
    quote_ids = [r.quote_id for r in rows]
    assert len(set(quote_ids)) == 4
    for r in rows:
        assert r.quote_id is not None
        assert chain_quote(devnet, r.quote_id)["quantity"] == int(r.quantity * 10**18)
    async with db_factory() as s:
        send_txs = (
            await s.exec(
                select(TxIntent.tx_id).where(
                    col(TxIntent.instant_open_id).in_(ids), col(TxIntent.kind) == IntentKind.SEND_QUOTE
                )
            )
        ).all()
    assert len(set(send_txs)) == 1  # one _call carried all four sendQuotes


async def test_price_moved_fails_and_releases_margin(
    settings: Settings, devnet: DevnetInfo, db_factory: SessionFactory, redis_client: Any
) -> None:
    account = new_account(devnet)
    async with PriceKeeper(redis_client, settings.redis_prefix) as prices:
        # A LONG willing to pay at most 60020: the fill would be 60012 at 60000, but the mark jumps.
        open_id = await open_request(db_factory, account, price="60020")
        await prices.set("BTCUSDT", Decimal("60100"))
        async with running_worker(settings, devnet):
            row = await settled_open(db_factory, open_id)
    assert row.status == InstantOpenStatus.FAILED
    assert row.error_code == ErrorCode.PRICE_MOVED.code
    assert row.quote_id is not None
    # The quote was cancelled on chain: nothing stays pending against the user's balance.
    assert chain_quote(devnet, row.quote_id)["quoteStatus"] == QuoteStatus.CANCELED


async def test_revert_on_chain_fails_with_reason(
    settings: Settings, devnet: DevnetInfo, db_factory: SessionFactory, redis_client: Any
) -> None:
    account = new_account(devnet, delegate=False)  # not delegated: MultiAccount refuses the solver
    async with PriceKeeper(redis_client, settings.redis_prefix), running_worker(settings, devnet):
        open_id = await open_request(db_factory, account)
        row = await settled_open(db_factory, open_id)
    assert row.status == InstantOpenStatus.FAILED
    assert row.error_code == ErrorCode.TX_REVERTED.code
    assert "Unauthorized" in (row.error_message or "")
    async with db_factory() as s:
        sent = (await s.exec(select(ChainTx).where(col(ChainTx.data).contains(account[2:].lower())))).all()
    assert sent == []  # refused by the pre-flight: no nonce spent


async def test_expired_deadline_fails_without_sending(
    settings: Settings, devnet: DevnetInfo, db_factory: SessionFactory, redis_client: Any
) -> None:
    account = new_account(devnet)
    async with PriceKeeper(redis_client, settings.redis_prefix), running_worker(settings, devnet):
        open_id = await open_request(db_factory, account, deadline=int(time.time()) - 1)
        row = await settled_open(db_factory, open_id)
    assert row.status == InstantOpenStatus.FAILED
    assert row.error_code == ErrorCode.REQUEST_EXPIRED.code


async def test_oracle_refusal_fails_the_open_with_its_reason(
    settings: Settings, devnet: DevnetInfo, db_factory: SessionFactory, redis_client: Any
) -> None:
    """A stale ETHUSDT price: the oracle refuses to sign, nothing is sent, the open fails. (A
    missing price is not a refusal: the worker waits for it, solver.oracle.local.)"""
    account = new_account(devnet)
    marks = {"BTCUSDT": Decimal(60000)}  # ETHUSDT only has the minute-old price below
    await PriceCache(redis_client, settings.redis_prefix).set(PricePoint("ETHUSDT", Decimal(3000), time.time() - 60))
    async with PriceKeeper(redis_client, settings.redis_prefix, marks), running_worker(settings, devnet):
        open_id = await open_request(db_factory, account, symbol_id=2, price="3030", quantity="0.1")
        row = await settled_open(db_factory, open_id)
    assert row.status == InstantOpenStatus.FAILED
    assert row.error_code == ErrorCode.ORACLE_REFUSED.code
    assert "ETHUSDT" in (row.error_message or "")
    assert row.quote_id is None
