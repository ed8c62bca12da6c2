"""Queries and compare-and-set updates of trigger orders (stop loss / take profit).

Every state change is `UPDATE … WHERE id = :id AND status IN (:expected)` through a locking CTE
that also reads the prior status for the audit row (as solver.quotes.repository does): of two
racing writers exactly one sees its row come back. Each change bumps `version` and writes its
audit row in the caller's transaction; committing is the caller's.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from solver.db import audit
from solver.db.models import (
    INSTANT_CLOSE_TERMINAL,
    TRIGGER_ACTIVE,
    InstantClose,
    Quote,
    TriggerKind,
    TriggerOrder,
    TriggerStatus,
)
from solver.db.types import checksum_address
from solver.orders.fsm import TRIGGER_TRANSITIONS, check_transition

ENTITY = "trigger_order"
LIST_LIMIT = 200
_MUTABLE = frozenset(
    {
        "quantity",
        "close_price",
        "fire_mark",
        "fire_time",
        "instant_close_id",
        "attempts",
        "error_code",
        "error_message",
        "end_reason",
    }
)
PENDING_STATUSES = (TriggerStatus.WAITING, TriggerStatus.ARMED)  # not fired yet: cancellable


async def lock_quote(session: AsyncSession, quote_id: int) -> None:
    """Serialise every writer of one position's triggers (API place/cancel, engine fire/settle)
    until the transaction ends."""
    await session.exec(select(func.pg_advisory_xact_lock(func.hashtextextended(f"trigger:{quote_id}", 0))))


async def insert(
    session: AsyncSession,
    *,
    account: str,
    quote_id: int,
    kind: TriggerKind,
    position_type: int,
    symbol_id: int,
    trigger_price: Decimal,
    requested_price: Decimal | None,
    status: TriggerStatus,
    now: datetime,
    actor: audit.Actor = "api",
) -> TriggerOrder:
    """Insert a WAITING or ARMED order with its audit row; flushed, not committed."""
    row = TriggerOrder(
        account=checksum_address(account),
        quote_id=quote_id,
        kind=kind,
        position_type=position_type,
        symbol_id=symbol_id,
        trigger_price=trigger_price,
        requested_price=requested_price,
        status=status,
        create_time=now,
        modify_time=now,
    )
    session.add(row)
    await session.flush()
    await audit.record(
        session,
        entity=ENTITY,
        entity_id=str(row.id),
        from_status=None,
        to_status=row.status,
        actor=actor,
        data={"quote_id": quote_id, "kind": kind, "trigger_price": trigger_price},
        at=now,
    )
    return row


async def transition(
    session: AsyncSession,
    id: int,
    expected: TriggerStatus | Collection[TriggerStatus],
    new: TriggerStatus,
    *,
    now: datetime,
    actor: audit.Actor,
    close_id: int | None = None,
    audit_data: Mapping[str, Any] | None = None,
    **fields: Any,
) -> bool:
    """Move order `id` from `expected` to `new`; False if another writer got there first.

    `close_id`, when given, must also match the stored instant_close_id (a retry replaces the
    close it saw, never one another engine attached meanwhile).
    """
    check_transition(TRIGGER_TRANSITIONS, expected, new)
    unknown = set(fields) - _MUTABLE
    if unknown:
        raise ValueError(f"{ENTITY}: cannot set {sorted(unknown)} in a transition")
    allowed = [expected] if isinstance(expected, TriggerStatus) else list(expected)
    if not allowed:
        raise ValueError("expected must name at least one status")
    t = TriggerOrder.__table__  # type: ignore[attr-defined]
    where = [t.c.id == id, t.c.status.in_([s.value for s in allowed])]
    if close_id is not None:
        where.append(t.c.instant_close_id == close_id)
    prev = select(t.c.id, t.c.status.label("prev_status")).where(*where).with_for_update().cte("prev")
    stmt = (
        update(t)
        .where(t.c.id == prev.c.id)
        .values(status=new.value, version=t.c.version + 1, modify_time=now, **fields)
        .returning(prev.c.prev_status)
    )
    previous = (await session.exec(stmt)).scalar_one_or_none()
    if previous is None:
        return False
    await audit.record(
        session,
        entity=ENTITY,
        entity_id=str(id),
        from_status=previous,
        to_status=new,
        actor=actor,
        data={**fields, **(audit_data or {})},
        at=now,
    )
    return True


async def get(session: AsyncSession, id: int, *, lock: bool = False) -> TriggerOrder | None:
    return await session.get(TriggerOrder, id, populate_existing=True, with_for_update=lock)


async def active_of_quote(session: AsyncSession, quote_id: int, *, lock: bool = False) -> list[TriggerOrder]:
    stmt = (
        select(TriggerOrder)
        .where(col(TriggerOrder.quote_id) == quote_id, col(TriggerOrder.status).in_(TRIGGER_ACTIVE))
        .order_by(col(TriggerOrder.id))
    )
    if lock:
        stmt = stmt.with_for_update()
    return list((await session.exec(stmt.execution_options(populate_existing=True))).all())


async def of_account(session: AsyncSession, account: str, *, limit: int = LIST_LIMIT) -> list[TriggerOrder]:
    stmt = (
        select(TriggerOrder)
        .where(col(TriggerOrder.account) == account)
        .order_by(col(TriggerOrder.create_time).desc(), col(TriggerOrder.id).desc())
        .limit(limit)
    )
    return list((await session.exec(stmt)).all())


async def active(session: AsyncSession) -> list[TriggerOrder]:
    """Every waiting, armed or triggered order (the engine's books at start)."""
    stmt = select(TriggerOrder).where(col(TriggerOrder.status).in_(TRIGGER_ACTIVE)).order_by(col(TriggerOrder.id))
    return list((await session.exec(stmt)).all())


async def changed_since(session: AsyncSession, since: datetime) -> list[TriggerOrder]:
    stmt = select(TriggerOrder).where(col(TriggerOrder.modify_time) >= since).order_by(col(TriggerOrder.id))
    return list((await session.exec(stmt)).all())


async def db_now(session: AsyncSession) -> datetime:
    value = (await session.exec(select(func.now()))).one()
    assert isinstance(value, datetime)
    return value


async def fired_with_ended_close(session: AsyncSession, limit: int = 500) -> list[int]:
    """Ids of triggered orders whose current close has ended (filled, failed, cancelled)."""
    stmt = (
        select(TriggerOrder.id)
        .join(InstantClose, col(InstantClose.id) == col(TriggerOrder.instant_close_id))
        .where(
            col(TriggerOrder.status) == TriggerStatus.TRIGGERED,
            col(InstantClose.status).in_(INSTANT_CLOSE_TERMINAL),
        )
        .order_by(col(TriggerOrder.id))
        .limit(limit)
    )
    return [int(i) for i in (await session.exec(stmt)).all() if i is not None]


async def pending_with_mirrored_status(session: AsyncSession, statuses: Collection[int], limit: int = 500) -> list[int]:
    """Quote ids with a waiting/armed order whose mirrored quote is in one of `statuses`.

    The mirror (solver.quotes.mirror, filled by the worker's event follower) may lag or be
    absent: callers confirm on chain before acting.
    """
    stmt = (
        select(TriggerOrder.quote_id)
        .join(Quote, col(Quote.quote_id) == col(TriggerOrder.quote_id))
        .where(col(TriggerOrder.status).in_(PENDING_STATUSES), col(Quote.status).in_(list(statuses)))
        .distinct()
        .limit(limit)
    )
    return [int(q) for q in (await session.exec(stmt)).all()]
