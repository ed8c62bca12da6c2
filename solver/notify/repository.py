"""Writing and reading notifications (http-api.md §6).

Every writer passes an `event_key` naming what produced the record; the unique constraint
makes a replayed chain event or a retried worker step a no-op instead of a duplicate. A row
written is also staged for its WebSocket push, published only once the transaction commits
(solver.notify.publish).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from solver.db.models import ActionStatus, Notification, StateType, new_notification_id
from solver.db.types import checksum_address
from solver.notify.publish import stage


@dataclass(frozen=True, slots=True)
class NewNotification:
    account: str
    counterparty_address: str
    last_seen_action: str
    action_status: ActionStatus
    event_key: str
    order_type: int = 1
    state_type: StateType = StateType.REPORT
    quote_id: int | None = None
    temp_quote_id: int | None = None
    filled_amount_open: Decimal | None = None
    filled_amount_close: Decimal | None = None
    avg_price_open: Decimal | None = None
    avg_price_close: Decimal | None = None
    failure_type: str | None = None
    failure_message: str | None = None
    error_code: int | None = None


async def add(session: AsyncSession, n: NewNotification, *, now: datetime) -> bool:
    """Insert unless its event_key exists; True when a row was written (and staged for its push)."""
    stmt = (
        insert(Notification)
        .values(
            id=new_notification_id(),
            account=checksum_address(n.account),
            quote_id=n.quote_id,
            temp_quote_id=n.temp_quote_id,
            counterparty_address=checksum_address(n.counterparty_address),
            filled_amount_open=n.filled_amount_open,
            filled_amount_close=n.filled_amount_close,
            avg_price_open=n.avg_price_open,
            avg_price_close=n.avg_price_close,
            last_seen_action=n.last_seen_action,
            action_status=n.action_status.value,
            state_type=n.state_type.value,
            failure_type=n.failure_type,
            failure_message=n.failure_message,
            error_code=n.error_code,
            order_type=n.order_type,
            event_key=n.event_key,
            create_time=now,
            modify_time=now,
        )
        .on_conflict_do_nothing(index_elements=["event_key"])
        .returning(Notification)
    )
    row = (await session.exec(stmt)).first()
    if row is None:
        return False
    stage(session, row[0])
    return True


@dataclass(frozen=True, slots=True)
class NotificationQuery:
    account: str
    start: int = 0
    size: int = 100
    quote_id: int | None = None
    create_time_gte: datetime | None = None
    modify_time_gte: datetime | None = None


async def page(session: AsyncSession, q: NotificationQuery) -> tuple[int, list[Notification]]:
    """(total matching, the page newest first)."""
    where = [col(Notification.account) == q.account]
    if q.quote_id is not None:
        where.append(col(Notification.quote_id) == q.quote_id)
    if q.create_time_gte is not None:
        where.append(col(Notification.create_time) >= q.create_time_gte)
    if q.modify_time_gte is not None:
        where.append(col(Notification.modify_time) >= q.modify_time_gte)
    total = (await session.exec(select(func.count()).select_from(Notification).where(*where))).one()
    rows = await session.exec(
        select(Notification)
        .where(*where)
        .order_by(col(Notification.create_time).desc(), col(Notification.id).desc())
        .offset(q.start)
        .limit(q.size)
    )
    return int(total), list(rows.all())
