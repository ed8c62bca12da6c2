"""Enqueueing transaction intents (the API and the worker's effect handlers use this).

An intent is written in the same DB transaction as the state change that needs it; its `key`
names the request and the step (`open:17:send`), so enqueueing the same step twice is a no-op.
The worker-side queries (claim, record, settle) live in solver.quotes.outbox_worker.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eth_utils.crypto import keccak
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from solver.db.models import IntentKind, IntentStatus, TxIntent
from solver.db.types import checksum_address


def lane_for(account: str, n_lanes: int) -> int:
    """The signer lane of an account: stable, so one account's transactions stay in order."""
    if n_lanes <= 1:
        return 0
    return int.from_bytes(keccak(bytes.fromhex(account[2:].lower()))[:8], "big") % n_lanes


def intent_key(entity: str, entity_id: int, step: str) -> str:
    return f"{entity}:{entity_id}:{step}"


async def enqueue(
    session: AsyncSession,
    *,
    key: str,
    kind: IntentKind,
    account: str,
    lane: int,
    now: datetime,
    instant_open_id: int | None = None,
    instant_close_id: int | None = None,
    quote_id: int | None = None,
    payload: dict[str, Any] | None = None,
) -> TxIntent:
    """Insert a QUEUED intent unless one with this key exists; return the stored row."""
    stmt = (
        insert(TxIntent)
        .values(
            key=key,
            kind=kind.value,
            status=IntentStatus.QUEUED.value,
            lane=lane,
            account=checksum_address(account),
            instant_open_id=instant_open_id,
            instant_close_id=instant_close_id,
            quote_id=quote_id,
            payload=payload or {},
            create_time=now,
            modify_time=now,
        )
        .on_conflict_do_nothing(index_elements=["key"])
    )
    await session.exec(stmt)
    row = (
        await session.exec(select(TxIntent).where(col(TxIntent.key) == key).execution_options(populate_existing=True))
    ).one()
    return row


async def cancel_if_queued(session: AsyncSession, intent_id: int, *, now: datetime) -> bool:
    """QUEUED -> CANCELLED; False if the worker already took it (it is then in a transaction)."""
    stmt = (
        update(TxIntent)
        .where(col(TxIntent.id) == intent_id, col(TxIntent.status) == IntentStatus.QUEUED)
        .values(status=IntentStatus.CANCELLED, modify_time=now, version=col(TxIntent.version) + 1)
        .returning(col(TxIntent.id))
    )
    return (await session.exec(stmt)).first() is not None


async def intents_of_open(session: AsyncSession, instant_open_id: int) -> list[TxIntent]:
    stmt = (
        select(TxIntent)
        .where(col(TxIntent.instant_open_id) == instant_open_id)
        .order_by(col(TxIntent.id))
        .execution_options(populate_existing=True)
    )
    return list((await session.exec(stmt)).all())


async def intents_of_close(session: AsyncSession, instant_close_id: int) -> list[TxIntent]:
    stmt = (
        select(TxIntent)
        .where(col(TxIntent.instant_close_id) == instant_close_id)
        .order_by(col(TxIntent.id))
        .execution_options(populate_existing=True)
    )
    return list((await session.exec(stmt)).all())
