"""The worker's side of the outbox: queue reads, compare-and-set claims, tx records, settling.

Every function runs inside the caller's transaction; the lane commits. Claims and settlements
are compare-and-set: an intent moves QUEUED -> IN_TX only once, a tx SIGNED -> MINED only once,
so a restarted or duplicated worker cannot apply an effect twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from solver.db.models import ChainTx, IntentStatus, TxAttempt, TxIntent, TxStatus
from solver.db.types import checksum_address


@dataclass(frozen=True, slots=True)
class OpenTx:
    tx: ChainTx
    attempts: list[TxAttempt]  # oldest first
    accounts: frozenset[str]


async def queued(session: AsyncSession, lane: int, limit: int) -> list[TxIntent]:
    stmt = (
        select(TxIntent)
        .where(col(TxIntent.lane) == lane, col(TxIntent.status) == IntentStatus.QUEUED)
        .order_by(col(TxIntent.id))
        .limit(limit)
        .execution_options(populate_existing=True)
    )
    return list((await session.exec(stmt)).all())


async def lock_queued(session: AsyncSession, ids: Sequence[int]) -> list[TxIntent]:
    """Lock these intents if all are still QUEUED (else an empty list: someone else moved one)."""
    stmt = (
        select(TxIntent)
        .where(col(TxIntent.id).in_(list(ids)), col(TxIntent.status) == IntentStatus.QUEUED)
        .order_by(col(TxIntent.id))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    rows = list((await session.exec(stmt)).all())
    return rows if len(rows) == len(ids) else []


async def open_txs(session: AsyncSession, sender: str) -> list[OpenTx]:
    sender = checksum_address(sender)
    txs = list(
        (
            await session.exec(
                select(ChainTx)
                .where(col(ChainTx.sender) == sender, col(ChainTx.status) == TxStatus.SIGNED)
                .order_by(col(ChainTx.nonce))
                .execution_options(populate_existing=True)
            )
        ).all()
    )
    if not txs:
        return []
    ids = [t.id for t in txs]
    attempts = (
        await session.exec(select(TxAttempt).where(col(TxAttempt.tx_id).in_(ids)).order_by(col(TxAttempt.id)))
    ).all()
    accounts = (await session.exec(select(TxIntent.tx_id, TxIntent.account).where(col(TxIntent.tx_id).in_(ids)))).all()
    by_tx: dict[int, list[TxAttempt]] = {}
    for a in attempts:
        by_tx.setdefault(a.tx_id, []).append(a)
    acc: dict[int, set[str]] = {}
    for tx_id, account in accounts:
        if tx_id is not None:
            acc.setdefault(tx_id, set()).add(account)
    return [OpenTx(t, by_tx.get(t.id or 0, []), frozenset(acc.get(t.id or 0, set()))) for t in txs]


async def max_open_nonce(session: AsyncSession, sender: str) -> int | None:
    """Highest nonce of this sender's transactions still waiting for the chain (SIGNED)."""
    value = (
        await session.exec(
            select(func.max(ChainTx.nonce)).where(
                col(ChainTx.sender) == checksum_address(sender), col(ChainTx.status) == TxStatus.SIGNED
            )
        )
    ).one()
    return None if value is None else int(value)


async def tx_at_nonce(session: AsyncSession, sender: str, nonce: int) -> ChainTx | None:
    stmt = select(ChainTx).where(col(ChainTx.sender) == checksum_address(sender), col(ChainTx.nonce) == nonce)
    return (await session.exec(stmt)).one_or_none()


async def record_tx(
    session: AsyncSession,
    *,
    lane: int,
    sender: str,
    nonce: int,
    to: str,
    data: str,
    gas_limit: int,
    intents: Sequence[TxIntent],
    now: datetime,
) -> ChainTx:
    """Insert the tx for `nonce` and move its (locked, QUEUED) intents to IN_TX."""
    tx = ChainTx(
        lane=lane,
        sender=checksum_address(sender),
        nonce=nonce,
        to_address=checksum_address(to),
        data=data,
        gas_limit=gas_limit,
        status=TxStatus.SIGNED,
        create_time=now,
        modify_time=now,
    )
    session.add(tx)
    await session.flush()
    for position, intent in enumerate(intents):
        await session.exec(
            update(TxIntent)
            .where(col(TxIntent.id) == intent.id, col(TxIntent.status) == IntentStatus.QUEUED)
            .values(
                status=IntentStatus.IN_TX,
                tx_id=tx.id,
                position_in_tx=position,
                modify_time=now,
                version=col(TxIntent.version) + 1,
            )
        )
    return tx


async def add_attempt(
    session: AsyncSession, *, tx_id: int, tx_hash: str, max_fee: int, max_priority: int, raw: str, now: datetime
) -> TxAttempt:
    attempt = TxAttempt(
        tx_id=tx_id,
        tx_hash=tx_hash,
        max_fee_per_gas=max_fee,
        max_priority_fee_per_gas=max_priority,
        raw=raw,
        create_time=now,
    )
    session.add(attempt)
    await session.flush()
    return attempt


async def mark_broadcast(session: AsyncSession, attempt_id: int, now: datetime) -> None:
    await session.exec(update(TxAttempt).where(col(TxAttempt.id) == attempt_id).values(broadcast_time=now))


async def settle_tx(
    session: AsyncSession,
    tx_id: int,
    status: TxStatus,
    *,
    now: datetime,
    mined_hash: str | None = None,
    block_number: int | None = None,
    gas_used: int | None = None,
    revert_reason: str | None = None,
) -> bool:
    stmt = (
        update(ChainTx)
        .where(col(ChainTx.id) == tx_id, col(ChainTx.status) == TxStatus.SIGNED)
        .values(
            status=status,
            mined_hash=mined_hash,
            block_number=block_number,
            gas_used=gas_used,
            revert_reason=revert_reason,
            modify_time=now,
        )
        .returning(col(ChainTx.id))
    )
    return (await session.exec(stmt)).first() is not None


_SETTLED = (TxStatus.MINED, TxStatus.REVERTED)


async def settled_from_nonce(session: AsyncSession, sender: str, nonce: int) -> list[ChainTx]:
    """This sender's transactions recorded as mined or reverted at `nonce` or above, lowest first.

    A node's nonce for a sender counts the sender's transactions on its chain, so with the
    chain's nonce as `nonce` these are the ones a reorganisation dropped (normally none).
    """
    stmt = (
        select(ChainTx)
        .where(
            col(ChainTx.sender) == checksum_address(sender),
            col(ChainTx.nonce) >= nonce,
            col(ChainTx.status).in_(_SETTLED),
        )
        .order_by(col(ChainTx.nonce))
        .execution_options(populate_existing=True)
    )
    return list((await session.exec(stmt)).all())


async def unsettle_tx(session: AsyncSession, tx_id: int, *, now: datetime) -> bool:
    """MINED/REVERTED -> SIGNED: the block holding it was reorganised away, so it is in flight
    again (rebroadcast, replaced, settled) like any other. Its intents keep their status: their
    effects were applied when it was first mined and are not applied twice."""
    stmt = (
        update(ChainTx)
        .where(col(ChainTx.id) == tx_id, col(ChainTx.status).in_(_SETTLED))
        .values(
            status=TxStatus.SIGNED,
            mined_hash=None,
            block_number=None,
            gas_used=None,
            revert_reason=None,
            modify_time=now,
        )
        .returning(col(ChainTx.id))
    )
    return (await session.exec(stmt)).first() is not None


async def intents_of_tx(session: AsyncSession, tx_id: int) -> list[TxIntent]:
    stmt = (
        select(TxIntent)
        .where(col(TxIntent.tx_id) == tx_id)
        .order_by(col(TxIntent.position_in_tx))
        .execution_options(populate_existing=True)
    )
    return list((await session.exec(stmt)).all())


async def finish_intent(
    session: AsyncSession,
    intent_id: int,
    status: IntentStatus,
    *,
    now: datetime,
    error_code: int | None = None,
    error_message: str | None = None,
) -> bool:
    """QUEUED/IN_TX -> DONE/FAILED/CANCELLED (compare-and-set)."""
    stmt = (
        update(TxIntent)
        .where(
            col(TxIntent.id) == intent_id,
            col(TxIntent.status).in_([IntentStatus.QUEUED, IntentStatus.IN_TX]),
        )
        .values(
            status=status,
            error_code=error_code,
            error_message=error_message,
            modify_time=now,
            version=col(TxIntent.version) + 1,
        )
        .returning(col(TxIntent.id))
    )
    return (await session.exec(stmt)).first() is not None


async def requeue_intents_of_tx(session: AsyncSession, tx_id: int, *, now: datetime) -> int:
    """IN_TX -> QUEUED for the intents of a transaction that can never be mined (lost nonce)."""
    stmt = (
        update(TxIntent)
        .where(col(TxIntent.tx_id) == tx_id, col(TxIntent.status) == IntentStatus.IN_TX)
        .values(
            status=IntentStatus.QUEUED,
            tx_id=None,
            position_in_tx=None,
            modify_time=now,
            version=col(TxIntent.version) + 1,
        )
        .returning(col(TxIntent.id))
    )
    return len((await session.exec(stmt)).all())
