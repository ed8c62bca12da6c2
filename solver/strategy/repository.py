"""Queries and writes of strategy orders for the API (http-api.md §5).

Every read is scoped to one account. A state change is made on a row locked `FOR UPDATE` (the
engine locks the order row the same way when it sends a sub-order, so the API never sees
`active_transactions` move under it); each bumps `version`, moves `modify_time` and writes its
audit row in the caller's transaction. Committing is the caller's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from solver.db import audit
from solver.db.models import (
    STRATEGY_LIVE,
    InstantOpen,
    StrategyOrder,
    StrategyStatus,
    StrategySubOrder,
    StrategyType,
)
from solver.db.types import checksum_address
from solver.strategy.validation import ListQuery, StrategyRequest

ENTITY = "strategy_order"
SubOrders = dict[int, list[tuple[StrategySubOrder, int | None]]]  # order id -> (sub-order, temp quote id)


async def lock_account(session: AsyncSession, account: str) -> None:
    """Serialise this account's strategy order creations until the transaction ends (a second
    request with the same Idempotency-Key then finds the first one's row instead of racing it)."""
    key = "strategy:" + account.lower()
    await session.exec(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))


async def insert(
    session: AsyncSession,
    req: StrategyRequest,
    *,
    account: str,
    now: datetime,
    idempotency_key: str | None,
    request_hash: str | None,
) -> StrategyOrder:
    """Insert an `active` order with its audit row; flushed, not committed. A DCA order is due at
    once (its first sub-order goes now); a LIMIT order waits for its price."""
    row = StrategyOrder(
        account=checksum_address(account),
        type=req.type,
        symbol_id=req.symbol_id,
        position_type=req.position_type,
        leverage=req.leverage,
        initial_input_amount=req.input_amount,
        current_input_amount=req.input_amount,
        max_suborders=req.max_suborders,
        max_invocations=req.max_invocations,
        slippage=req.slippage,
        limit_price=req.limit_price,
        dca_delay_s=req.delay_s,
        band_from=req.band_from,
        band_to=req.band_to,
        next_due_time=now if req.type == StrategyType.DCA else None,
        status=StrategyStatus.ACTIVE,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        create_time=now,
        modify_time=now,
    )
    session.add(row)
    await session.flush()
    assert row.id is not None
    await audit.record(
        session,
        entity=ENTITY,
        entity_id=row.id,
        from_status=None,
        to_status=row.status,
        actor="api",
        data=req.fingerprint(),
        at=now,
    )
    return row


async def by_idempotency_key(session: AsyncSession, account: str, key: str) -> StrategyOrder | None:
    stmt = select(StrategyOrder).where(
        col(StrategyOrder.account) == checksum_address(account), col(StrategyOrder.idempotency_key) == key
    )
    return (await session.exec(stmt.execution_options(populate_existing=True))).first()


async def get(session: AsyncSession, order_id: int, account: str, *, lock: bool = False) -> StrategyOrder | None:
    """The account's order `order_id` (None for another account's: its existence is not told)."""
    stmt = select(StrategyOrder).where(
        col(StrategyOrder.id) == order_id, col(StrategyOrder.account) == checksum_address(account)
    )
    if lock:
        stmt = stmt.with_for_update()
    return (await session.exec(stmt.execution_options(populate_existing=True))).first()


async def page(session: AsyncSession, account: str, q: ListQuery) -> list[StrategyOrder]:
    """One page of the account's orders, newest (highest id) first."""
    where = [col(StrategyOrder.account) == checksum_address(account)]
    if q.type is not None:
        where.append(col(StrategyOrder.type) == q.type)
    if not q.include_finished:
        where.append(col(StrategyOrder.status).in_([s.value for s in STRATEGY_LIVE]))
    if q.before_id is not None:
        where.append(col(StrategyOrder.id) < q.before_id)
    stmt = select(StrategyOrder).where(*where).order_by(col(StrategyOrder.id).desc()).limit(q.size)
    return list((await session.exec(stmt)).all())


async def suborders_of(session: AsyncSession, order_ids: Sequence[int]) -> SubOrders:
    """The sub-orders of these orders in one query, each with the temp quote id of its instant
    open (None before it has one), in invocation order."""
    out: SubOrders = {i: [] for i in order_ids}
    if not order_ids:
        return out
    stmt = (
        select(StrategySubOrder, InstantOpen.temp_quote_id)
        .join(InstantOpen, col(InstantOpen.id) == col(StrategySubOrder.instant_open_id), isouter=True)
        .where(col(StrategySubOrder.order_id).in_(list(order_ids)))
        .order_by(col(StrategySubOrder.order_id), col(StrategySubOrder.invocation))
    )
    for sub, temp_id in (await session.exec(stmt)).all():
        out[sub.order_id].append((sub, temp_id))
    return out


async def set_status(
    session: AsyncSession,
    row: StrategyOrder,
    new: StrategyStatus,
    *,
    now: datetime,
    actor: audit.Actor = "api",
    close: bool = False,
) -> None:
    """Move a row the caller holds `FOR UPDATE` to `new` (with close_time when `close`): version
    bumped, modify_time moved, audit row written; flushed."""
    assert row.id is not None
    old = row.status
    row.status = new
    row.version += 1
    row.modify_time = now
    if close:
        row.close_time = now
    session.add(row)
    await session.flush()
    await audit.record(
        session,
        entity=ENTITY,
        entity_id=row.id,
        from_status=old,
        to_status=new,
        actor=actor,
        data={"active_transactions": row.active_transactions},
        at=now,
    )
