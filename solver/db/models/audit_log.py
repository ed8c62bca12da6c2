"""Append-only audit trail of every state change (the migration installs a trigger that makes
UPDATE, DELETE and TRUNCATE fail, so not even a buggy or hostile query can rewrite history)."""

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from solver.db.models.base import EAGER_DEFAULTS


class AuditLog(SQLModel, table=True):
    __tablename__ = "audit_log"
    __mapper_args__ = EAGER_DEFAULTS
    __table_args__ = (Index("ix_audit_log_entity_entity_id", "entity", "entity_id"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInteger())
    at: datetime = Field(nullable=False, sa_column_kwargs={"server_default": text("now()")})
    entity: str = Field(sa_type=String(32))  # table name, e.g. 'instant_open'
    entity_id: str = Field(sa_type=Text())
    from_status: str | None = Field(default=None, sa_type=String(32))
    to_status: str = Field(sa_type=String(32))
    actor: str = Field(sa_type=String(16))  # api | worker | engine
    data: dict[str, Any] = Field(
        default_factory=dict, sa_type=JSONB(), nullable=False, sa_column_kwargs={"server_default": text("'{}'")}
    )
