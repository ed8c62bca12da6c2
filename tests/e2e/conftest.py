"""End-to-end fixtures: a private anvil + deployment, database and Redis prefix per module, so
killing processes and spamming the solver's nonce never disturbs other test files."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from solver.db import migrate
from solver.devnet.anvil import start_anvil
from solver.devnet.deploy import DevnetInfo, deploy
from solver.oracle.signer import OracleSigner
from solver.settings import load_settings
from tests.fixtures.db import scratch_database_url
from tests.fixtures.redis import REDIS_URL
from tests.fixtures.trading import PriceKeeper


@pytest.fixture(scope="module")
def e2e_devnet() -> Iterator[DevnetInfo]:
    settings = load_settings()
    node = start_anvil()
    try:
        yield deploy(node.url, settings.symbols, oracle=OracleSigner.generate(settings.oracle.muon_app_id))
    finally:
        node.stop()


@pytest.fixture(scope="module")
def e2e_database_url() -> Iterator[str]:
    url = scratch_database_url("solver_test_e2e")
    migrate.upgrade(url)
    try:
        yield url
    finally:
        migrate.drop_database(url)


@pytest.fixture
async def prices(redis_prefix: str) -> AsyncIterator[PriceKeeper]:
    client = aioredis.from_url(REDIS_URL)
    keeper = PriceKeeper(client, redis_prefix)
    await keeper.__aenter__()
    yield keeper
    await _bounded(keeper.__aexit__(None, None, None), "price keeper")
    await _bounded(_drop_keys(client, redis_prefix), "redis cleanup")
    await _bounded(client.aclose(), "redis close")


async def _drop_keys(client: aioredis.Redis, prefix: str) -> None:
    async for key in client.scan_iter(match=f"{prefix}*", count=500):
        await client.delete(key)


async def _bounded(coro: Awaitable[object], what: str, timeout: float = 10.0) -> None:
    """Teardown must never hang a run: report which step did instead."""
    try:
        await asyncio.wait_for(coro, timeout)
    except TimeoutError:
        print(f"teardown: {what} did not finish in {timeout} s", file=sys.stderr)


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path
