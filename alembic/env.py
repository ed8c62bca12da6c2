"""Alembic environment: sync psycopg 3 engine, the solver's one SQLModel metadata.

URL precedence: `config.attributes["url"]` (programmatic, solver.db.migrate) > `-x url=...`
(command line) > solver settings. Settings are loaded only when neither is given, so a
migration can run without a full solver configuration.
"""

from __future__ import annotations

from logging.config import fileConfig

from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import Connection

from alembic import context
from solver.db.models import metadata

# Any constant works; it only has to be the same in every process running migrations, so that
# N replicas running `solver migrate` at once apply each revision exactly once.
MIGRATION_LOCK_ID = 0x50_1E_E7_5E

config = context.config
target_metadata = metadata

# Skip logging setup when called from the solver (it owns logging; fileConfig would disable
# every existing logger).
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name)


def _sync_url(url: str) -> str:
    # The app uses the same psycopg 3 driver in async mode; migrations run it synchronously.
    for scheme in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    raise ValueError("database URL must be a PostgreSQL URL (postgresql://...)")


def database_url() -> str:
    url = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        from solver.settings import load_settings

        url = load_settings().database_url
    return _sync_url(str(url))


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
        transaction_per_migration=True,
    )


def run_migrations_offline() -> None:
    """Emit SQL to stdout (`alembic upgrade head --sql`)."""
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        _configure(given)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(database_url(), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            # Session-level lock, held across the per-migration transactions below.
            connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
            connection.commit()
            try:
                _configure(connection)
                with context.begin_transaction():
                    context.run_migrations()
            finally:
                if connection.in_transaction():
                    connection.rollback()  # a failed migration leaves its transaction aborted
                connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
                connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
