"""`solver migrate`: create the database if needed, then `alembic upgrade head`.

Safe to run from several replicas at once: database creation tolerates a concurrent creator,
and alembic/env.py serialises the upgrade itself behind a Postgres advisory lock.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from alembic.config import Config
from psycopg import sql
from sqlalchemy.engine import URL, make_url

from alembic import command

ROOT = Path(__file__).resolve().parents[2]
ALEMBIC_INI = ROOT / "alembic.ini"
MAINTENANCE_DB = "postgres"


def alembic_config(database_url: str) -> Config:
    """Alembic config bound to `database_url`, leaving the caller's logging alone."""
    if not ALEMBIC_INI.exists():
        raise FileNotFoundError(f"alembic.ini not found at {ALEMBIC_INI}")
    config = Config(str(ALEMBIC_INI))
    config.attributes["url"] = database_url
    config.attributes["configure_logger"] = False
    return config


def _conninfo(url: URL, dbname: str) -> str:
    """libpq conninfo for `url` with another database name (psycopg does the quoting)."""
    params: dict[str, str | int] = {"dbname": dbname}
    if url.host:
        params["host"] = url.host
    if url.port:
        params["port"] = url.port
    if url.username:
        params["user"] = url.username
    if url.password:
        params["password"] = url.password
    for key, value in url.query.items():  # sslmode, connect_timeout, …
        params[key] = value if isinstance(value, str) else value[-1]
    return psycopg.conninfo.make_conninfo(**params)  # type: ignore[arg-type]


def ensure_database(database_url: str) -> bool:
    """Create the database named in `database_url` if it is missing; True if it was created.

    Connects to the `postgres` maintenance database; CREATE DATABASE cannot run inside a
    transaction, hence autocommit.
    """
    url = make_url(database_url)
    name = url.database
    if not name:
        raise ValueError("the database URL names no database")
    with psycopg.connect(_conninfo(url, MAINTENANCE_DB), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            return False  # another process created it between our check and our CREATE
    return True


def drop_database(database_url: str) -> None:
    """Drop the database, disconnecting its sessions (tests and dev resets only)."""
    url = make_url(database_url)
    if not url.database:
        raise ValueError("the database URL names no database")
    with psycopg.connect(_conninfo(url, MAINTENANCE_DB), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(url.database)))


def upgrade(database_url: str, revision: str = "head") -> None:
    """Create the database if needed and migrate it to `revision`."""
    ensure_database(database_url)
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def current(database_url: str) -> str | None:
    """The revision the database is at (None before the first migration)."""
    url = make_url(database_url)
    with psycopg.connect(_conninfo(url, url.database or MAINTENANCE_DB)) as conn:
        exists = conn.execute("SELECT to_regclass('alembic_version') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return None
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return None if row is None else str(row[0])
