"""Write audit rows inside the caller's transaction, so a state change and its record of
itself commit (or vanish) together."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Literal, cast

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession

from solver.db.models.audit_log import AuditLog

Actor = Literal["api", "worker", "engine"]


def jsonable(value: Any) -> Any:
    """Make `value` JSON-safe without losing money precision: Decimals become strings."""
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, Decimal):
        return format(value, "f")  # plain digits; str() could give "1E-18"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


async def record(
    session: AsyncSession,
    *,
    entity: str,
    entity_id: str | int,
    from_status: str | None,
    to_status: str,
    actor: Actor,
    data: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditLog:
    """Add one audit row to the session (flushed with the caller's next flush/commit).

    `at` defaults to the database's transaction time; pass the injected clock's now to keep
    audit times consistent with the row's own timestamps.
    """
    row = AuditLog(
        entity=entity,
        entity_id=str(entity_id),
        from_status=None if from_status is None else str(jsonable(from_status)),
        to_status=str(jsonable(to_status)),
        actor=actor,
        data=jsonable(dict(data or {})),
        # A SQL expression is evaluated at flush and read back (eager_defaults).
        at=at if at is not None else cast(datetime, func.now()),
    )
    session.add(row)
    return row
