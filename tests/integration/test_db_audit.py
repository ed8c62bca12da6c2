"""The audit log is append-only in the database, and commits with the change it records."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlmodel import col, select

from solver.db import audit
from solver.db.engine import SessionFactory, session_scope
from solver.db.models import AuditLog

pytestmark = pytest.mark.integration


async def _add_row(factory: SessionFactory, entity_id: str) -> int:
    async with session_scope(factory) as session:
        row = await audit.record(
            session,
            entity="test",
            entity_id=entity_id,
            from_status=None,
            to_status="pending",
            actor="api",
            data={"amount": Decimal("1.000000000000000001")},
        )
        await session.flush()
        assert row.id is not None
        return row.id


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET to_status = 'x' WHERE id = :id",
        "DELETE FROM audit_log WHERE id = :id",
        "TRUNCATE audit_log",
    ],
)
async def test_audit_log_rejects_changes(db_factory: SessionFactory, statement: str) -> None:
    row_id = await _add_row(db_factory, uuid.uuid4().hex)
    async with db_factory() as session:
        with pytest.raises(DBAPIError, match="append-only"):
            await (await session.connection()).execute(text(statement), {"id": row_id})
        await session.rollback()
    async with db_factory() as session:
        row = await session.get(AuditLog, row_id)
        assert row is not None
        assert row.to_status == "pending"


async def test_record_keeps_money_exact_and_defaults_time(db_factory: SessionFactory) -> None:
    entity_id = uuid.uuid4().hex
    row_id = await _add_row(db_factory, entity_id)
    async with db_factory() as session:
        row = await session.get(AuditLog, row_id)
        assert row is not None
        assert row.data == {"amount": "1.000000000000000001"}
        assert row.at.tzinfo is not None
        assert row.actor == "api"


async def test_audit_row_rolls_back_with_the_transaction(db_factory: SessionFactory) -> None:
    entity_id = uuid.uuid4().hex
    with pytest.raises(RuntimeError):
        async with session_scope(db_factory) as session:
            await audit.record(
                session, entity="test", entity_id=entity_id, from_status="a", to_status="b", actor="worker", data={}
            )
            await session.flush()
            raise RuntimeError("boom")
    async with db_factory() as session:
        found = (await session.exec(select(AuditLog).where(col(AuditLog.entity_id) == entity_id))).all()
        assert found == []
