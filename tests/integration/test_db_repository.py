"""Instant open/close persistence: constraints, compare-and-set transitions, audit rows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from eth_utils.address import to_checksum_address
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from solver.db.engine import SessionFactory, session_scope
from solver.db.models import (
    ActionStatus,
    AuditLog,
    InstantCloseStatus,
    InstantOpen,
    InstantOpenStatus,
    Notification,
    Quote,
    StateType,
)
from solver.quotes import repository as repo
from solver.quotes.fsm import IllegalTransition
from tests.fixtures.db import TEST_ACCOUNT, instant_open_fields, next_temp_quote_id

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


async def _audit(session: AsyncSession, entity: str, entity_id: int) -> list[AuditLog]:
    stmt = (
        select(AuditLog)
        .where(col(AuditLog.entity) == entity, col(AuditLog.entity_id) == str(entity_id))
        .order_by(col(AuditLog.id))
    )
    return list((await session.exec(stmt)).all())


async def test_insert_round_trips_exact_money_and_checksums(db_session: AsyncSession) -> None:
    big = Decimal("123456789012345678901234567890123456789012345678901234567890.123456789012345678")
    row = await repo.insert_instant_open(
        db_session,
        **instant_open_fields(quantity=big),
    )
    assert row.id is not None
    assert row.status is InstantOpenStatus.PENDING
    assert row.version == 1
    db_session.expunge_all()
    stored = await repo.get_instant_open(db_session, row.id)
    assert stored is not None
    assert stored.quantity == big
    assert stored.requested_open_price == Decimal("0.512300000000000001")
    assert stored.status is InstantOpenStatus.PENDING
    assert stored.create_time.tzinfo is not None
    assert stored.account == "0x1111111111111111111111111111111111111111"  # digits only: same in EIP-55


async def test_addresses_are_checksummed_and_matched_in_any_case(db_session: AsyncSession) -> None:
    mixed = "0xAbCdEf0123456789aBcDeF0123456789AbCdEf01"
    row = await repo.insert_instant_open(
        db_session, **instant_open_fields(account=mixed.lower(), idempotency_key="k-case", request_hash="h" * 64)
    )
    db_session.expunge_all()
    stored = await repo.get_instant_open(db_session, row.id or 0)
    assert stored is not None
    assert stored.account == to_checksum_address(mixed.lower())
    assert stored.account != mixed.lower()
    for spelling in (mixed.lower(), mixed.upper().replace("0X", "0x"), stored.account):
        found = await repo.get_instant_open_by_idempotency_key(db_session, spelling, "k-case")
        assert found is not None and found.id == row.id


async def test_duplicate_temp_id_keeps_transaction_usable(db_session: AsyncSession) -> None:
    fields = instant_open_fields()
    await repo.insert_instant_open(db_session, **fields)
    with pytest.raises(repo.DuplicateTempQuoteId):
        await repo.insert_instant_open(db_session, **{**fields, "now": NOW})
    # The SAVEPOINT rolled back only the failed insert: retry with a fresh id succeeds.
    again = await repo.insert_instant_open(db_session, **{**fields, "temp_quote_id": next_temp_quote_id()})
    assert again.id is not None


async def test_duplicate_idempotency_key_is_reported(db_session: AsyncSession) -> None:
    first = await repo.insert_instant_open(
        db_session, **instant_open_fields(idempotency_key="retry-1", request_hash="a" * 64)
    )
    with pytest.raises(repo.DuplicateIdempotencyKey) as info:
        await repo.insert_instant_open(
            db_session, **instant_open_fields(idempotency_key="retry-1", request_hash="b" * 64)
        )
    assert info.value.code.status == 409
    stored = await repo.get_instant_open_by_idempotency_key(db_session, TEST_ACCOUNT, "retry-1")
    assert stored is not None and stored.id == first.id and stored.request_hash == "a" * 64


async def test_database_rejects_invalid_rows(db_session: AsyncSession) -> None:
    bad: list[dict[str, Any]] = [
        {"temp_quote_id": 5},  # temp ids are negative
        {"quantity": Decimal(0)},
        {"cva": Decimal(-1)},
        {"position_type": 2},
        {"idempotency_key": "no-hash"},  # a key without its request hash
    ]
    for override in bad:
        with pytest.raises(IntegrityError):
            await repo.insert_instant_open(db_session, **instant_open_fields(**override))
    with pytest.raises(ValueError, match="address"):
        await repo.insert_instant_open(db_session, **instant_open_fields(account="0x1234"))


async def test_transition_bumps_version_and_audits(db_session: AsyncSession) -> None:
    row = await repo.insert_instant_open(db_session, **instant_open_fields())
    assert row.id is not None
    later = NOW + timedelta(seconds=3)
    ok = await repo.transition_instant_open(
        db_session, row.id, InstantOpenStatus.PENDING, InstantOpenStatus.SENT, now=later, actor="worker"
    )
    assert ok
    ok = await repo.transition_instant_open(
        db_session,
        row.id,
        {InstantOpenStatus.SENT, InstantOpenStatus.CANCEL_REQUESTED},
        InstantOpenStatus.OPENED,
        now=later,
        actor="worker",
        quote_id=4242 + abs(row.temp_quote_id),
    )
    assert ok
    stored = await repo.get_instant_open(db_session, row.id)
    assert stored is not None
    assert stored.status is InstantOpenStatus.OPENED
    assert stored.version == 3
    assert stored.modify_time == later
    assert stored.quote_id == 4242 + abs(row.temp_quote_id)
    trail = await _audit(db_session, "instant_open", row.id)
    assert [(a.from_status, a.to_status, a.actor) for a in trail] == [
        (None, "pending", "api"),
        ("pending", "sent", "worker"),
        ("sent", "opened", "worker"),  # the exact prior status, although two were allowed
    ]
    assert trail[2].data == {"quote_id": 4242 + abs(row.temp_quote_id)}


async def test_transition_loser_gets_false(db_session: AsyncSession) -> None:
    row = await repo.insert_instant_open(db_session, **instant_open_fields())
    assert row.id is not None
    args = (db_session, row.id, InstantOpenStatus.PENDING)
    assert await repo.transition_instant_open(*args, InstantOpenStatus.SENT, now=NOW, actor="worker")
    assert not await repo.transition_instant_open(*args, InstantOpenStatus.CANCELLED, now=NOW, actor="api")
    assert not await repo.transition_instant_open(
        db_session, 10**15, InstantOpenStatus.PENDING, InstantOpenStatus.SENT, now=NOW, actor="api"
    )
    stored = await repo.get_instant_open(db_session, row.id)
    assert stored is not None and stored.status is InstantOpenStatus.SENT and stored.version == 2


async def test_transition_refuses_identity_fields(db_session: AsyncSession) -> None:
    row = await repo.insert_instant_open(db_session, **instant_open_fields())
    with pytest.raises(ValueError, match="cannot set"):
        await repo.transition_instant_open(
            db_session, row.id or 0, InstantOpenStatus.PENDING, InstantOpenStatus.SENT, now=NOW, actor="api", quantity=1
        )


async def test_opened_requires_quote_id(db_session: AsyncSession) -> None:
    row = await repo.insert_instant_open(db_session, **instant_open_fields())
    await repo.transition_instant_open(
        db_session, row.id or 0, InstantOpenStatus.PENDING, InstantOpenStatus.SENT, now=NOW, actor="worker"
    )
    with pytest.raises(IntegrityError):  # the database CHECK, not only the transition table
        async with db_session.begin_nested():
            await repo.transition_instant_open(
                db_session, row.id or 0, InstantOpenStatus.SENT, InstantOpenStatus.OPENED, now=NOW, actor="worker"
            )


async def test_illegal_transition_is_refused_before_the_database(db_session: AsyncSession) -> None:
    row = await repo.insert_instant_open(db_session, **instant_open_fields())
    with pytest.raises(IllegalTransition):
        await repo.transition_instant_open(
            db_session, row.id or 0, InstantOpenStatus.PENDING, InstantOpenStatus.OPENED, now=NOW, actor="worker"
        )


async def test_concurrent_transitions_have_one_winner(db_factory: SessionFactory) -> None:
    """Many connections race the same PENDING row to different targets: exactly one wins."""
    async with session_scope(db_factory) as session:
        row = await repo.insert_instant_open(session, **instant_open_fields())
    assert row.id is not None
    targets = [InstantOpenStatus.SENT, InstantOpenStatus.CANCELLED, InstantOpenStatus.FAILED] * 4

    async def attempt(target: InstantOpenStatus) -> bool:
        async with session_scope(db_factory) as session:
            return await repo.transition_instant_open(
                session, row.id or 0, InstantOpenStatus.PENDING, target, now=NOW, actor="worker"
            )

    results = await asyncio.gather(*(attempt(t) for t in targets))
    assert results.count(True) == 1
    async with db_factory() as session:
        stored = await repo.get_instant_open(session, row.id)
        assert stored is not None and stored.version == 2
        assert stored.status is targets[results.index(True)]
        assert len(await _audit(session, "instant_open", row.id)) == 2


async def test_one_active_close_per_quote(db_session: AsyncSession) -> None:
    quote_id = abs(next_temp_quote_id())
    fields: dict[str, Any] = {
        "quote_id": quote_id,
        "account": TEST_ACCOUNT,
        "quantity_to_close": Decimal("1.5"),
        "close_price": Decimal("100.25"),
        "deadline": 2_000_000_000,
        "now": NOW,
    }
    first = await repo.insert_instant_close(db_session, **fields)
    with pytest.raises(repo.CloseAlreadyPending):
        await repo.insert_instant_close(db_session, **fields)
    assert await repo.transition_instant_close(
        db_session, first.id or 0, InstantCloseStatus.PENDING, InstantCloseStatus.SENT, now=NOW, actor="worker"
    )
    with pytest.raises(repo.CloseAlreadyPending):
        await repo.insert_instant_close(db_session, **fields)
    assert await repo.transition_instant_close(
        db_session,
        first.id or 0,
        InstantCloseStatus.SENT,
        InstantCloseStatus.FILLED,
        now=NOW,
        actor="worker",
        close_id=7,
    )
    # Terminal closes do not block a new one.
    second = await repo.insert_instant_close(db_session, **fields)
    assert second.id != first.id


async def test_min_temp_quote_id_spans_tables(db_session: AsyncSession) -> None:
    base = await repo.min_temp_quote_id(db_session)
    lowest = (base or 0) - 10**6
    await repo.insert_instant_open(db_session, **instant_open_fields(temp_quote_id=lowest + 10))
    assert await repo.min_temp_quote_id(db_session) == lowest + 10
    db_session.add(
        Quote(
            quote_id=abs(lowest) + 1,
            party_a=TEST_ACCOUNT,
            symbol_id=1,
            position_type=0,
            order_type=1,
            status=0,
            requested_open_price=Decimal(1),
            quantity=Decimal(1),
            cva=Decimal(0),
            lf=Decimal(0),
            party_amm=Decimal(0),
            party_bmm=Decimal(0),
            trading_fee=Decimal("0.0005"),
            deadline=2_000_000_000,
            temp_quote_id=lowest + 5,
            block_number=1,
            create_time=NOW,
            modify_time=NOW,
        )
    )
    await db_session.flush()
    assert await repo.min_temp_quote_id(db_session) == lowest + 5
    db_session.add(
        Notification(
            account=TEST_ACCOUNT,
            temp_quote_id=lowest,
            counterparty_address=TEST_ACCOUNT,
            last_seen_action="InstantRFQ",
            action_status=ActionStatus.SEEN,
            state_type=StateType.REPORT,
            order_type=1,
            create_time=NOW,
            modify_time=NOW,
        )
    )
    await db_session.flush()
    assert await repo.min_temp_quote_id(db_session) == lowest


async def test_lookup_by_temp_id(db_session: AsyncSession) -> None:
    row = await repo.insert_instant_open(db_session, **instant_open_fields())
    found = await repo.get_instant_open_by_temp_id(db_session, row.temp_quote_id)
    assert isinstance(found, InstantOpen) and found.id == row.id
    assert await repo.get_instant_open_by_temp_id(db_session, next_temp_quote_id()) is None
