"""Notification history (http-api.md §6): POST /position-state/{start}/{size}."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlmodel import col, func, select

from solver.core.errors import ErrorCode, SolverError
from solver.db.engine import SessionFactory
from solver.db.models import Notification
from solver.market.balances import checksum

MAX_PAGE = 100
_MS_THRESHOLD = Decimal(10**11)  # a "seconds" value this large is in fact milliseconds (year 5138)


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    address: str
    start: str
    size: str
    quote_id: int | None = None
    create_time_gte: Decimal | None = None
    modify_time_gte: Decimal | None = None


class NotificationHistory:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    async def page(self, q: HistoryQuery) -> tuple[int, list[Notification]]:
        """(total matching, one page newest first). A negative quote_id matches the temp id."""
        start, size = _page(q.start, q.size)
        where = [col(Notification.account) == checksum(q.address, "address")]
        if q.quote_id is not None:
            column = Notification.temp_quote_id if q.quote_id < 0 else Notification.quote_id
            where.append(col(column) == q.quote_id)
        if q.create_time_gte is not None:
            where.append(col(Notification.create_time) >= _time(q.create_time_gte))
        if q.modify_time_gte is not None:
            where.append(col(Notification.modify_time) >= _time(q.modify_time_gte))
        async with self._sessions() as session:
            total = (await session.exec(select(func.count()).select_from(Notification).where(*where))).one()
            rows = await session.exec(
                select(Notification)
                .where(*where)
                .order_by(col(Notification.create_time).desc(), col(Notification.id).desc())
                .offset(start)
                .limit(size)
            )
            return int(total), list(rows.all())


def _page(start: str, size: str) -> tuple[int, int]:
    s, n = start.strip(), size.strip()
    if not (s.isascii() and s.isdigit() and n.isascii() and n.isdigit()) or len(s) > 12 or len(n) > 4:
        raise SolverError(
            ErrorCode.INVALID_PAGE, f"start and size must be whole numbers, got {s[:20]!r} and {n[:20]!r}."
        )
    first, count = int(s), int(n)
    if not 1 <= count <= MAX_PAGE:
        raise SolverError(ErrorCode.INVALID_PAGE, f"The page size must be from 1 to {MAX_PAGE}, got {count}.")
    return first, count


def _time(value: Decimal) -> datetime:
    seconds = value / 1000 if value >= _MS_THRESHOLD else value
    if seconds > Decimal(253402300799):  # 9999-12-31: beyond what datetime holds
        raise SolverError(ErrorCode.VALIDATION, "create_time_gte / modify_time_gte must be unix seconds.")
    return datetime.fromtimestamp(float(seconds), UTC)
