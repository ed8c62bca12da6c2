"""Read queries of the instant trading API (some take row locks for the cancel paths).

Every function takes the caller's session: reads that feed a decision run inside the same
transaction (and advisory lock) as the write they justify.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import exists, func, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from solver.db.models import INSTANT_CLOSE_ACTIVE, InstantClose, InstantOpen, InstantOpenStatus, Quote
from solver.market.repository import UNCONFIRMED_INSTANT
from solver.risk.account import Locked

ACTIVE_OPEN = (InstantOpenStatus.PENDING, InstantOpenStatus.SENT, InstantOpenStatus.CANCEL_REQUESTED)
LIST_LIMIT = 200  # at most this many items in GET /instant_open and /instant_close


async def lock_account(session: AsyncSession, account: str) -> None:
    """Serialise this account's instant requests until the transaction ends.

    Two concurrent requests of one account can then not both pass a balance or pending-limit
    check computed from rows the other one has not committed yet.
    """
    await session.exec(select(func.pg_advisory_xact_lock(func.hashtextextended(_lock_key(account), 0))))


def _lock_key(account: str) -> str:
    return "instant:" + account.lower()


async def unconfirmed_locked(session: AsyncSession, account: str) -> Locked:
    """cva/lf/partyAmm of the account's accepted instant opens the chain does not show yet.

    The same rule as MarketStats.unconfirmed_instant_locked: one of `UNCONFIRMED_INSTANT` and
    not yet mirrored as a quote (a mirrored one is in the chain's pending locked values).
    """
    mirrored = exists().where(col(Quote.quote_id) == col(InstantOpen.quote_id))
    stmt = select(
        func.coalesce(func.sum(col(InstantOpen.cva)), 0),
        func.coalesce(func.sum(col(InstantOpen.lf)), 0),
        func.coalesce(func.sum(col(InstantOpen.party_amm)), 0),
    ).where(
        col(InstantOpen.account) == account,
        col(InstantOpen.status).in_(UNCONFIRMED_INSTANT),
        or_(col(InstantOpen.quote_id).is_(None), ~mirrored),
    )
    row = (await session.exec(stmt)).one()
    cva, lf, amm = (Decimal(str(v)) for v in row)
    return Locked(cva=cva, lf=lf, party_amm=amm)


async def pending_open_count(session: AsyncSession, account: str) -> int:
    stmt = (
        select(func.count())
        .select_from(InstantOpen)
        .where(col(InstantOpen.account) == account, col(InstantOpen.status).in_(ACTIVE_OPEN))
    )
    return int((await session.exec(stmt)).one())


async def recent_opens(session: AsyncSession, account: str, since: datetime) -> list[InstantOpen]:
    """Active opens and those changed since `since`, newest first."""
    stmt = (
        select(InstantOpen)
        .where(
            col(InstantOpen.account) == account,
            or_(col(InstantOpen.status).in_(ACTIVE_OPEN), col(InstantOpen.modify_time) >= since),
        )
        .order_by(col(InstantOpen.create_time).desc(), col(InstantOpen.id).desc())
        .limit(LIST_LIMIT)
    )
    return list((await session.exec(stmt)).all())


async def recent_closes(session: AsyncSession, account: str, since: datetime) -> list[InstantClose]:
    stmt = (
        select(InstantClose)
        .where(
            col(InstantClose.account) == account,
            or_(col(InstantClose.status).in_(INSTANT_CLOSE_ACTIVE), col(InstantClose.modify_time) >= since),
        )
        .order_by(col(InstantClose.create_time).desc(), col(InstantClose.id).desc())
        .limit(LIST_LIMIT)
    )
    return list((await session.exec(stmt)).all())


async def open_by_any_id(session: AsyncSession, some_id: int, *, lock: bool = False) -> InstantOpen | None:
    """By temp id (negative) or on-chain quote id (positive); FOR UPDATE when `lock`."""
    column = col(InstantOpen.temp_quote_id) if some_id < 0 else col(InstantOpen.quote_id)
    stmt = select(InstantOpen).where(column == some_id)
    if lock:
        stmt = stmt.with_for_update()
    return (await session.exec(stmt.execution_options(populate_existing=True))).one_or_none()


async def active_close(session: AsyncSession, quote_id: int, *, lock: bool = False) -> InstantClose | None:
    """The close in progress for a quote (at most one: a partial unique index)."""
    stmt = select(InstantClose).where(
        col(InstantClose.quote_id) == quote_id, col(InstantClose.status).in_(INSTANT_CLOSE_ACTIVE)
    )
    if lock:
        stmt = stmt.with_for_update()
    return (await session.exec(stmt.execution_options(populate_existing=True))).one_or_none()


async def close_by_idempotency_key(session: AsyncSession, account: str, key: str) -> InstantClose | None:
    stmt = select(InstantClose).where(col(InstantClose.account) == account, col(InstantClose.idempotency_key) == key)
    return (await session.exec(stmt.execution_options(populate_existing=True))).one_or_none()
