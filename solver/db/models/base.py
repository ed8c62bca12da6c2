"""The one SQLModel metadata every table registers on, with a constraint naming convention.

Every table module imports from here, so the convention is installed before any table is
declared (the package `__init__` imports this module first). Named constraints make
migrations deterministic: the migration and the models spell the same names, and
`alembic check` / the parity test compare them.
"""

from typing import Any

from sqlalchemy import CheckConstraint, func, text
from sqlmodel import Field, SQLModel

from solver.db.types import ADDRESS_PATTERN

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = SQLModel.metadata
metadata.naming_convention = NAMING_CONVENTION


def created_at() -> Any:
    """NOT NULL timestamptz; callers pass the injected clock's now, the DB default is a fallback."""
    return Field(nullable=False, sa_column_kwargs={"server_default": func.now()})


def modified_at() -> Any:
    """Like created_at; ORM updates that forget it still move it (onupdate)."""
    return Field(nullable=False, sa_column_kwargs={"server_default": func.now(), "onupdate": func.now()})


def version_field() -> Any:
    """Bumped on every change; clients see it in API answers and WebSocket pushes."""
    return Field(default=1, nullable=False, sa_column_kwargs={"server_default": text("1")})


def address_check(column: str) -> CheckConstraint:
    return CheckConstraint(f"{column} ~ '{ADDRESS_PATTERN}'", name=f"{column}_format")


def nullable_address_check(column: str) -> CheckConstraint:
    return CheckConstraint(f"{column} IS NULL OR {column} ~ '{ADDRESS_PATTERN}'", name=f"{column}_format")


# Fetch server-side values (ids, defaults, onupdate) with RETURNING after each flush: under
# asyncio an expired attribute would otherwise lazy-load and fail outside the greenlet.
EAGER_DEFAULTS: dict[str, Any] = {"eager_defaults": True}

__all__ = [
    "EAGER_DEFAULTS",
    "NAMING_CONVENTION",
    "address_check",
    "created_at",
    "metadata",
    "modified_at",
    "nullable_address_check",
    "version_field",
]
