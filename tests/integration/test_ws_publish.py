"""Notification pushes are published on Redis only after the writer's commit (solver.notify.publish).

Real Postgres (committed rows, own session factory per test) and real Redis pub/sub.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as aioredis
from eth_utils.address import to_checksum_address
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from solver.core.redis_keys import notify_channel
from solver.db.engine import SessionFactory, session_factory, session_scope
from solver.db.models import ActionStatus, Notification
from solver.notify import repository as notify
from solver.notify.publish import NotificationPublisher, enable_publishing
from solver.notify.schemas import NotificationOut

pytestmark = pytest.mark.integration

SOLVER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def new_account() -> str:
    return str(to_checksum_address("0x" + secrets.token_hex(20)))


def note(account: str, action: str = "InstantRFQ", **kw: Any) -> notify.NewNotification:
    return notify.NewNotification(
        account=account,
        counterparty_address=SOLVER,
        last_seen_action=action,
        action_status=ActionStatus.SEEN,
        event_key=f"test:{secrets.token_hex(8)}",
        temp_quote_id=-(10**9 + secrets.randbelow(10**9)),
        **kw,
    )


class Listener:
    """A Redis subscriber on one account's channel."""

    def __init__(self, client: aioredis.Redis, channel: str) -> None:
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.channel = channel

    async def __aenter__(self) -> Listener:
        await self.pubsub.subscribe(self.channel)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pubsub.aclose()

    async def messages(self, wait_s: float = 0.5) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + wait_s
        while (left := deadline - time.monotonic()) > 0:
            msg = await self.pubsub.get_message(timeout=left)
            if msg is not None and msg["type"] == "message":
                out.append(json.loads(msg["data"]))
        return out


@pytest.fixture
async def writer(
    db_engine: AsyncEngine, redis_client: aioredis.Redis, redis_prefix: str
) -> AsyncIterator[tuple[SessionFactory, NotificationPublisher]]:
    """A process's session factory with publishing enabled, as the API and worker roots wire it."""
    sessions = session_factory(db_engine)
    publisher = NotificationPublisher(redis_client, redis_prefix)
    enable_publishing(sessions, publisher)
    yield sessions, publisher
    await publisher.close()


async def stored(sessions: SessionFactory, account: str) -> list[Notification]:
    async with sessions() as s:
        rows = await s.exec(select(Notification).where(col(Notification.account) == account))
        return list(rows.all())


async def test_published_after_commit_with_the_history_serializer(
    writer: tuple[SessionFactory, NotificationPublisher], redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    sessions, publisher = writer
    account = new_account()
    async with Listener(redis_client, notify_channel(redis_prefix, account)) as listener:
        async with sessions() as s:
            assert await notify.add(s, note(account.lower()), now=datetime.now(UTC))
            await asyncio.sleep(0.2)
            assert await listener.messages(0.2) == []  # written, not committed: nothing yet
            await s.commit()
        assert await publisher.flush()
        got = await listener.messages()
    rows = await stored(sessions, account)
    assert len(rows) == 1
    assert got == [NotificationOut.of(rows[0]).model_dump()]  # what POST /position-state returns
    assert got[0]["temp_quote_id"] == got[0]["quote_id"] < 0


async def test_rolled_back_notification_is_never_published(
    writer: tuple[SessionFactory, NotificationPublisher], redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    sessions, publisher = writer
    account = new_account()
    now = datetime.now(UTC)
    async with Listener(redis_client, notify_channel(redis_prefix, account)) as listener:
        # 1. explicit rollback
        async with sessions() as s:
            assert await notify.add(s, note(account, "RolledBack"), now=now)
            await s.rollback()
        # 2. an exception inside a unit of work
        with pytest.raises(RuntimeError):
            async with session_scope(sessions) as s:
                assert await notify.add(s, note(account, "Raised"), now=now)
                raise RuntimeError("boom")
        # 3. a session closed without commit, then reused for a committed transaction
        s = sessions()
        assert await notify.add(s, note(account, "NeverCommitted"), now=now)
        await s.close()
        assert await notify.add(s, note(account, "AfterClose"), now=now)
        await s.commit()
        await s.close()
        # 4. a SAVEPOINT rolled back inside a committed transaction
        async with sessions() as s:
            assert await notify.add(s, note(account, "Outer"), now=now)
            with pytest.raises(RuntimeError):
                async with s.begin_nested():
                    assert await notify.add(s, note(account, "InRolledBackSavepoint"), now=now)
                    raise RuntimeError("nested")
            async with s.begin_nested():
                assert await notify.add(s, note(account, "InReleasedSavepoint"), now=now)
            assert await publisher.flush()
            # A released SAVEPOINT is not a commit: so far only case 3's committed row is out.
            assert [m["last_seen_action"] for m in await listener.messages(0.3)] == ["AfterClose"]
            await s.commit()
            # the same session again: nothing left over from before
            assert await notify.add(s, note(account, "Second"), now=now)
            await s.commit()
        assert await publisher.flush()
        got = await listener.messages()
    assert [m["last_seen_action"] for m in got] == ["Outer", "InReleasedSavepoint", "Second"]
    assert {r.last_seen_action for r in await stored(sessions, account)} == {
        "AfterClose", "Outer", "InReleasedSavepoint", "Second",
    }  # fmt: skip


async def test_duplicate_event_key_publishes_nothing_and_order_is_kept(
    writer: tuple[SessionFactory, NotificationPublisher], redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    sessions, publisher = writer
    account = new_account()
    first = note(account, "First")
    async with Listener(redis_client, notify_channel(redis_prefix, account)) as listener:
        for i in range(20):
            async with session_scope(sessions) as s:
                await notify.add(s, first if i == 0 else note(account, f"N{i}"), now=datetime.now(UTC))
        async with session_scope(sessions) as s:
            assert not await notify.add(s, first, now=datetime.now(UTC))  # replayed event: no row, no push
        assert await publisher.flush()
        got = await listener.messages()
    assert [m["last_seen_action"] for m in got] == ["First"] + [f"N{i}" for i in range(1, 20)]


async def test_sessions_without_publishing_do_not_publish(
    db_engine: AsyncEngine, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    account = new_account()
    async with Listener(redis_client, notify_channel(redis_prefix, account)) as listener:
        async with session_scope(session_factory(db_engine)) as s:
            assert await notify.add(s, note(account), now=datetime.now(UTC))
        assert await listener.messages(0.3) == []


async def test_redis_down_never_blocks_or_fails_a_commit(db_engine: AsyncEngine, redis_prefix: str) -> None:
    dead = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    sessions = session_factory(db_engine)
    publisher = NotificationPublisher(dead, redis_prefix, owns_redis=True)
    enable_publishing(sessions, publisher)
    account = new_account()
    started = time.monotonic()
    async with session_scope(sessions) as s:
        assert await notify.add(s, note(account), now=datetime.now(UTC))
    assert time.monotonic() - started < 1.0
    assert len(await stored(sessions, account)) == 1
    for _ in range(100):
        if publisher.dropped:
            break
        await asyncio.sleep(0.05)
    assert publisher.dropped == 1 and publisher.published == 0
    await publisher.close()
