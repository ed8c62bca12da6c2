"""Async engine and sessions on psycopg 3.

Composition roots build one engine per process (`create_engine(settings.database_url)`) and
hand the session factory to repositories' callers; nothing here reads settings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

ASYNC_DRIVER = "postgresql+psycopg"


def async_url(url: str) -> str:
    """Accept the `postgresql://` spellings operators use and pin the psycopg 3 driver."""
    for scheme in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(scheme):
            return f"{ASYNC_DRIVER}://{url[len(scheme) :]}"
    raise ValueError("database URL must be a PostgreSQL URL (postgresql://...)")


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 10,
    pool_timeout_s: float = 10.0,
    pool_recycle_s: int = 1800,
    application_name: str = "solver",
    echo: bool = False,
    **kwargs: Any,
) -> AsyncEngine:
    """An async engine with a bounded pool.

    `pool_pre_ping` survives a Postgres restart or a proxy that drops idle connections without
    surfacing an error to the first request after it; `pool_timeout_s` turns pool exhaustion
    into a fast error instead of an unbounded wait.
    """
    connect_args: dict[str, Any] = {"application_name": application_name}
    connect_args.update(kwargs.pop("connect_args", {}))
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout_s,
        pool_recycle=pool_recycle_s,
        pool_pre_ping=True,
        echo=echo,
        connect_args=connect_args,
        **kwargs,
    )


SessionFactory = async_sessionmaker[AsyncSession]


def session_factory(engine: AsyncEngine) -> SessionFactory:
    """Sessions whose objects stay readable after commit.

    `expire_on_commit=False`: under asyncio an expired attribute cannot lazy-load, and callers
    routinely build the API answer from the row they just committed.
    """
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


@asynccontextmanager
async def session_scope(factory: SessionFactory) -> AsyncIterator[AsyncSession]:
    """One unit of work: commit when the block exits normally, roll back on any exception.

    Everything done inside (state change, its audit row, its outbox intent) commits together or
    not at all. Exceptions, including `CancelledError`, propagate after the rollback.
    """
    async with factory() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
