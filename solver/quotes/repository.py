"""Queries and compare-and-set updates for instant opens and closes.

Every state change is `UPDATE … WHERE id = :id AND status IN (:expected)` (with a locking CTE
that also reads the exact prior status for the audit row): of two racing writers exactly one
sees a row come back; the other gets False and must stop (re-read, or
report a conflict), never retry blindly. Each successful change bumps `version` and writes its
audit row in the same transaction. Commit is the caller's (one unit of work with its outbox
intent).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from solver.core.errors import ErrorCode, SolverError
from solver.db import audit
from solver.db.engine import SessionFactory
from solver.db.models import (
    InstantClose,
    InstantCloseStatus,
    InstantOpen,
    InstantOpenStatus,
    Notification,
    Quote,
    metadata,
)
from solver.db.types import checksum_address
from solver.quotes.fsm import CLOSE_TRANSITIONS, OPEN_TRANSITIONS, check_transition

# Columns a transition may set besides status/version/modify_time. Identity and request
# fields never change after insert.
_OPEN_MUTABLE = frozenset({"quote_id", "error_code", "error_message"})
_CLOSE_MUTABLE = frozenset({"close_id", "error_code", "error_message"})


class DuplicateTempQuoteId(SolverError):
    """The temp id is already stored: allocate a fresh one (after `TempIdAllocator.resync()`)."""

    def __init__(self, temp_quote_id: int) -> None:
        super().__init__(ErrorCode.INTERNAL, detail=[f"temp_quote_id {temp_quote_id} already exists"])
        self.temp_quote_id = temp_quote_id


class DuplicateIdempotencyKey(SolverError):
    """This account already used this Idempotency-Key: return the stored answer (same body)
    or reject (different `request_hash`)."""

    def __init__(self, account: str, key: str) -> None:
        super().__init__(ErrorCode.CONFLICT, "This Idempotency-Key was already used for another request.")
        self.account = account
        self.key = key


class CloseAlreadyPending(SolverError):
    def __init__(self, quote_id: int) -> None:
        super().__init__(ErrorCode.CONFLICT, "A close request for this position is already in progress.")
        self.quote_id = quote_id


def _constraint(exc: IntegrityError) -> str | None:
    diag = getattr(exc.orig, "diag", None)
    name = getattr(diag, "constraint_name", None)
    return name if isinstance(name, str) else None


# --- temp ids -------------------------------------------------------------------------------


async def _insert_audited(
    session: AsyncSession,
    row: InstantOpen | InstantClose,
    *,
    entity: str,
    errors: dict[str, Callable[[], SolverError]],
    actor: audit.Actor,
    now: datetime,
    data: dict[str, Any],
) -> None:
    """Insert inside a SAVEPOINT (a unique violation leaves the caller's transaction usable),
    map known constraint names to domain errors, and write the audit row in the same transaction."""
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError as exc:
        make = errors.get(_constraint(exc) or "")
        if make is not None:
            raise make() from exc
        raise
    await audit.record(
        session,
        entity=entity,
        entity_id=str(row.id),
        from_status=None,
        to_status=row.status,
        actor=actor,
        data=data,
        at=now,
    )


async def min_temp_quote_id(session: AsyncSession) -> int | None:
    """Smallest temp id stored anywhere (each lookup is an index scan), or None if none."""
    candidates = [
        select(func.min(InstantOpen.temp_quote_id)).scalar_subquery(),
        select(func.min(Quote.temp_quote_id)).scalar_subquery(),
        select(func.min(Notification.temp_quote_id)).scalar_subquery(),
    ]
    # LEAST ignores NULLs in Postgres: an empty table does not hide the others.
    value = (await session.exec(select(func.least(*candidates)))).one_or_none()
    return None if value is None else int(value)


def temp_id_seed_source(factory: SessionFactory) -> Callable[[], Awaitable[int | None]]:
    """The `seed_source` for solver.quotes.temp_ids.TempIdAllocator."""

    async def seed() -> int | None:
        async with factory() as session:
            return await min_temp_quote_id(session)

    return seed


# --- instant opens ----------------------------------------------------------------------------


async def insert_instant_open(
    session: AsyncSession,
    *,
    temp_quote_id: int,
    account: str,
    symbol_id: int,
    position_type: int,
    order_type: int,
    requested_open_price: Decimal,
    quantity: Decimal,
    cva: Decimal,
    lf: Decimal,
    party_amm: Decimal,
    party_bmm: Decimal,
    max_funding_rate: Decimal,
    deadline: int,
    now: datetime,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    actor: audit.Actor = "api",
) -> InstantOpen:
    """Insert a PENDING instant open and its audit row; flushed, not committed.

    Runs in a SAVEPOINT so a unique violation leaves the caller's transaction usable: it can
    retry with a fresh temp id, or load the row stored under the idempotency key.
    """
    row = InstantOpen(
        temp_quote_id=temp_quote_id,
        account=checksum_address(account),  # ValueError now, and the caller's answer is EIP-55
        symbol_id=symbol_id,
        position_type=position_type,
        order_type=order_type,
        requested_open_price=requested_open_price,
        quantity=quantity,
        cva=cva,
        lf=lf,
        party_amm=party_amm,
        party_bmm=party_bmm,
        max_funding_rate=max_funding_rate,
        deadline=deadline,
        status=InstantOpenStatus.PENDING,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        create_time=now,
        modify_time=now,
    )
    errors: dict[str, Callable[[], SolverError]] = {
        "uq_instant_open_temp_quote_id": lambda: DuplicateTempQuoteId(temp_quote_id),
    }
    if idempotency_key is not None:
        errors["uq_instant_open_account_idempotency_key"] = lambda: DuplicateIdempotencyKey(account, idempotency_key)
    await _insert_audited(
        session,
        row,
        entity="instant_open",
        errors=errors,
        actor=actor,
        now=now,
        data={"temp_quote_id": temp_quote_id, "account": row.account},
    )
    return row


async def get_instant_open(session: AsyncSession, id: int) -> InstantOpen | None:
    return await session.get(InstantOpen, id, populate_existing=True)


async def get_instant_open_by_temp_id(session: AsyncSession, temp_quote_id: int) -> InstantOpen | None:
    stmt = select(InstantOpen).where(col(InstantOpen.temp_quote_id) == temp_quote_id)
    return (await session.exec(stmt.execution_options(populate_existing=True))).one_or_none()


async def get_instant_open_by_idempotency_key(session: AsyncSession, account: str, key: str) -> InstantOpen | None:
    stmt = select(InstantOpen).where(
        col(InstantOpen.account) == account,  # any case: the column type checksums the literal
        col(InstantOpen.idempotency_key) == key,
    )
    return (await session.exec(stmt.execution_options(populate_existing=True))).one_or_none()


async def transition_instant_open(
    session: AsyncSession,
    id: int,
    expected: InstantOpenStatus | Collection[InstantOpenStatus],
    new: InstantOpenStatus,
    *,
    now: datetime,
    actor: audit.Actor,
    audit_data: Mapping[str, Any] | None = None,
    **fields: Any,
) -> bool:
    """Move instant open `id` from `expected` to `new`; False if another writer got there first
    (or the row does not exist). `fields` may set quote_id, error_code, error_message."""
    check_transition(OPEN_TRANSITIONS, expected, new)
    return await _transition(
        session,
        entity="instant_open",
        mutable=_OPEN_MUTABLE,
        id=id,
        expected=expected,
        new=new,
        now=now,
        actor=actor,
        audit_data=audit_data,
        fields=fields,
    )


# --- instant closes ---------------------------------------------------------------------------


async def insert_instant_close(
    session: AsyncSession,
    *,
    quote_id: int,
    account: str,
    quantity_to_close: Decimal,
    close_price: Decimal,
    deadline: int,
    now: datetime,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    actor: audit.Actor = "api",
) -> InstantClose:
    """Insert a PENDING close (SAVEPOINT as for opens); CloseAlreadyPending if one is active."""
    row = InstantClose(
        quote_id=quote_id,
        account=checksum_address(account),
        quantity_to_close=quantity_to_close,
        close_price=close_price,
        deadline=deadline,
        status=InstantCloseStatus.PENDING,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        create_time=now,
        modify_time=now,
    )
    errors: dict[str, Callable[[], SolverError]] = {
        "uq_instant_close_active_quote_id": lambda: CloseAlreadyPending(quote_id),
    }
    if idempotency_key is not None:
        errors["uq_instant_close_account_idempotency_key"] = lambda: DuplicateIdempotencyKey(account, idempotency_key)
    await _insert_audited(
        session,
        row,
        entity="instant_close",
        errors=errors,
        actor=actor,
        now=now,
        data={"quote_id": quote_id, "account": row.account},
    )
    return row


async def transition_instant_close(
    session: AsyncSession,
    id: int,
    expected: InstantCloseStatus | Collection[InstantCloseStatus],
    new: InstantCloseStatus,
    *,
    now: datetime,
    actor: audit.Actor,
    audit_data: Mapping[str, Any] | None = None,
    **fields: Any,
) -> bool:
    """Compare-and-set for closes; `fields` may set close_id, error_code, error_message."""
    check_transition(CLOSE_TRANSITIONS, expected, new)
    return await _transition(
        session,
        entity="instant_close",
        mutable=_CLOSE_MUTABLE,
        id=id,
        expected=expected,
        new=new,
        now=now,
        actor=actor,
        audit_data=audit_data,
        fields=fields,
    )


# --- shared ----------------------------------------------------------------------------------


async def _transition(
    session: AsyncSession,
    *,
    entity: str,
    mutable: frozenset[str],
    id: int,
    expected: StrEnum | Collection[StrEnum],
    new: StrEnum,
    now: datetime,
    actor: audit.Actor,
    audit_data: Mapping[str, Any] | None,
    fields: Mapping[str, Any],
) -> bool:
    unknown = set(fields) - mutable
    if unknown:
        raise ValueError(f"{entity}: cannot set {sorted(unknown)} in a transition")
    allowed = [expected] if isinstance(expected, StrEnum) else list(expected)
    if not allowed:
        raise ValueError("expected must name at least one status")
    table = metadata.tables[entity]
    # The CTE locks the row and reads its status as of the lock, so the audit row names the
    # exact prior status even when several are allowed; a racing writer that got the lock first
    # makes the CTE (and so the UPDATE) match nothing.
    prev = (
        select(table.c.id, table.c.status.label("prev_status"))
        .where(table.c.id == id, table.c.status.in_(allowed))
        .with_for_update()
        .cte("prev")
    )
    stmt = (
        update(table)
        .where(table.c.id == prev.c.id)
        .values(status=new, version=table.c.version + 1, modify_time=now, **fields)
        .returning(prev.c.prev_status)
    )
    previous = (await session.exec(stmt)).scalar_one_or_none()
    changed = previous is not None
    if changed:
        await audit.record(
            session,
            entity=entity,
            entity_id=str(id),
            from_status=previous,
            to_status=new,
            actor=actor,
            data={**fields, **(audit_data or {})},
            at=now,
        )
    return changed
