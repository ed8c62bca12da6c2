"""Migrations: up on an empty server, down to base, up again; schema identical to the models."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from solver.db import migrate
from solver.db.models import metadata
from tests.fixtures.db import scratch_database_url

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TABLES = {
    "instant_open",
    "instant_close",
    "quote",
    "notification",
    "audit_log",
    "tx_intent",
    "chain_tx",
    "tx_attempt",
    "follower_cursor",
    "follower_block",
    "trigger_order",
    "strategy_order",
    "strategy_suborder",
}
HEAD = "0004"  # the newest revision in alembic/versions

# Catalog queries describing a schema independently of SQLAlchemy: every column, constraint
# (with its full definition) and index (with its full definition, partial predicate included).
COLUMNS = """
SELECT table_name, column_name, data_type, character_maximum_length, numeric_precision,
       numeric_scale, is_nullable, column_default
FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> 'alembic_version'
"""
CONSTRAINTS = """
SELECT rel.relname, con.conname, pg_get_constraintdef(con.oid)
FROM pg_constraint con JOIN pg_class rel ON rel.oid = con.conrelid
JOIN pg_namespace ns ON ns.oid = rel.relnamespace
WHERE ns.nspname = 'public' AND rel.relname <> 'alembic_version'
"""
INDEXES = """
SELECT tablename, indexname, indexdef FROM pg_indexes
WHERE schemaname = 'public' AND tablename <> 'alembic_version'
"""


def _conninfo(url: str) -> str:
    u = make_url(url)
    return u.set(drivername="postgresql").render_as_string(hide_password=False)


def _schema(url: str) -> dict[str, set[tuple[object, ...]]]:
    with psycopg.connect(_conninfo(url)) as conn:
        return {
            name: {tuple(r) for r in conn.execute(q).fetchall()}
            for name, q in (("columns", COLUMNS), ("constraints", CONSTRAINTS), ("indexes", INDEXES))
        }


def _tables(url: str) -> set[str]:
    with psycopg.connect(_conninfo(url)) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {r[0] for r in rows}


@pytest.fixture
def empty_url() -> Iterator[str]:
    """A database name that does not exist yet (upgrade must create it)."""
    url = scratch_database_url("solver_test_mig")
    try:
        yield url
    finally:
        migrate.drop_database(url)


def test_upgrade_creates_database_then_down_and_up_again(empty_url: str) -> None:
    migrate.upgrade(empty_url)
    assert migrate.current(empty_url) == HEAD
    assert _tables(empty_url) == {*TABLES, "alembic_version"}

    migrate.downgrade(empty_url, "base")
    assert migrate.current(empty_url) is None
    assert _tables(empty_url) == {"alembic_version"}
    with psycopg.connect(_conninfo(empty_url)) as conn:
        fn = conn.execute("SELECT count(*) FROM pg_proc WHERE proname = 'audit_log_append_only'").fetchone()
        assert fn == (0,)

    migrate.upgrade(empty_url)
    assert migrate.current(empty_url) == HEAD
    assert _tables(empty_url) >= TABLES
    # Upgrading an up-to-date database is a no-op.
    migrate.upgrade(empty_url)
    assert migrate.current(empty_url) == HEAD


def test_ensure_database_is_idempotent(empty_url: str) -> None:
    assert migrate.ensure_database(empty_url) is True
    assert migrate.ensure_database(empty_url) is False


def test_autogenerate_finds_no_difference(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
            assert compare_metadata(ctx, metadata) == []
    finally:
        engine.dispose()


def test_migrated_schema_equals_create_all(database_url: str) -> None:
    """Stricter than autogenerate: CHECK definitions, partial-index predicates, defaults."""
    reference = scratch_database_url("solver_test_ref")
    migrate.ensure_database(reference)
    try:
        engine = create_engine(reference)
        try:
            metadata.create_all(engine)
        finally:
            engine.dispose()
        migrated, from_models = _schema(database_url), _schema(reference)
        for part in ("columns", "constraints", "indexes"):
            assert migrated[part] - from_models[part] == set(), f"{part} only in the migration"
            assert from_models[part] - migrated[part] == set(), f"{part} only in the models"
    finally:
        migrate.drop_database(reference)


def test_every_model_table_is_migrated(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        names = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert set(metadata.tables) <= names


def test_alembic_cli_check_with_x_url(database_url: str) -> None:
    """`alembic -x url=… check` (env.py, URL from the command line, autogenerate): no diff."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SOLVER_DATABASE_URL"}}
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"url={database_url}", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert "No new upgrade operations detected" in done.stdout + done.stderr
