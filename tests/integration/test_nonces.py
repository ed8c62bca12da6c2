"""Login nonces: letters and digits, single use, bound to one account, expiring."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from solver.auth.nonces import NONCE_LENGTH, NonceStore, is_valid_nonce

pytestmark = pytest.mark.integration

ACCOUNT = "0xAbCdEf0123456789aBcDeF0123456789AbCdEf01"
OTHER = "0x2222222222222222222222222222222222222222"


@pytest.fixture
def store(redis_client: aioredis.Redis, redis_prefix: str) -> NonceStore:
    return NonceStore(redis_client, redis_prefix, ttl_s=60)


async def test_nonce_is_letters_and_digits(store: NonceStore) -> None:
    nonces = {await store.issue(ACCOUNT) for _ in range(50)}
    assert len(nonces) == 50
    for nonce in nonces:
        assert len(nonce) == NONCE_LENGTH >= 16
        assert nonce.isascii() and nonce.isalnum()


async def test_single_use(store: NonceStore) -> None:
    nonce = await store.issue(ACCOUNT)
    assert await store.consume(nonce, ACCOUNT)
    assert not await store.consume(nonce, ACCOUNT)


async def test_bound_to_account_in_any_case(store: NonceStore) -> None:
    nonce = await store.issue(ACCOUNT.lower())
    assert await store.consume(nonce, ACCOUNT.upper().replace("0X", "0x"))


async def test_foreign_account_burns_the_nonce(store: NonceStore) -> None:
    nonce = await store.issue(ACCOUNT)
    assert not await store.consume(nonce, OTHER)
    # Consumed on failure too: the rightful owner cannot reuse it either.
    assert not await store.consume(nonce, ACCOUNT)


async def test_invalid_account_still_burns_the_nonce(store: NonceStore) -> None:
    nonce = await store.issue(ACCOUNT)
    assert not await store.consume(nonce, "not-an-address")
    assert not await store.consume(nonce, ACCOUNT)


async def test_expires(redis_client: aioredis.Redis, redis_prefix: str) -> None:
    short = NonceStore(redis_client, redis_prefix, ttl_s=1)
    nonce = await short.issue(ACCOUNT)
    kept = await short.issue(ACCOUNT)
    assert await short.consume(kept, ACCOUNT)
    await asyncio.sleep(1.2)
    assert not await short.consume(nonce, ACCOUNT)


async def test_ttl_is_set(store: NonceStore, redis_client: aioredis.Redis, redis_prefix: str) -> None:
    nonce = await store.issue(ACCOUNT)
    ttl = await redis_client.ttl(f"{redis_prefix}nonce:{nonce}")
    assert 0 < ttl <= 60


async def test_concurrent_consumers_one_wins(store: NonceStore) -> None:
    nonce = await store.issue(ACCOUNT)
    results = await asyncio.gather(*(store.consume(nonce, ACCOUNT) for _ in range(20)))
    assert results.count(True) == 1


@pytest.mark.parametrize("bad", ["", "short", "has-dash-0123456789", "x" * 65, "ünïcödé0123456789", "a b c d e f g h"])
async def test_malformed_nonce_rejected_without_redis(bad: str, redis_prefix: str) -> None:
    class NoRedis:
        def __getattr__(self, name: str) -> object:
            raise AssertionError(f"Redis touched: {name}")

    store = NonceStore(NoRedis(), redis_prefix, ttl_s=60)  # type: ignore[arg-type]
    assert not is_valid_nonce(bad)
    assert not await store.consume(bad, ACCOUNT)


async def test_issue_rejects_non_address(store: NonceStore) -> None:
    with pytest.raises(ValueError, match="address"):
        await store.issue("0x1234")
