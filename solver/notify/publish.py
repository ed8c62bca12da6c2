"""Live notification pushes: published on Redis pub/sub only after the writer's commit.

Every notification is written with `solver.notify.repository.add`. When the session factory was
set up with `enable_publishing(sessions, publisher)` (the composition roots of the API and the
worker do it), `add` also *stages* the §6 object (`NotificationOut`, the POST /position-state
serializer) on the session. SQLAlchemy's transaction events then decide its fate:

- `after_commit` of the outermost transaction hands the staged objects to the publisher, which
  publishes each on `{prefix}notify:{account}` (solver.core.redis_keys.notify_channel) from one
  background task per process, in commit order;
- a rollback drops them: of the whole transaction, or only of the SAVEPOINT they were written
  in (`after_soft_rollback`), and the end of the outermost transaction clears whatever is left
  (a session closed without commit).

So a rolled-back notification is never published, and one that is published is in the
database for every reader (POST /position-state included) by the time a client sees it.

Why this and not a relay loop polling the table: notifications are dated in *chain* time
(solver.notify.ordering: the follower writes them late by the confirmation depth, and after
downtime far in the past) and transactions commit out of the order of their timestamps, so a
`(create_time, id)` cursor skips rows; a correct poller needs a commit-ordered column or a
published flag (a migration and an outbox), one leader per deployment and a poll delay on
every push. Pub/sub itself is at-most-once (a client that is disconnected misses pushes
whatever the relay does), so clients recover from POST /position-state on (re)connect anyway;
the one window this design adds — a process dying between its commit and the publish, a few
milliseconds — loses a push, never a record. Publishing never blocks or fails a commit: a Redis
outage is retried briefly, then logged and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction
from sqlmodel.ext.asyncio.session import AsyncSession

from solver.core.redis_keys import notify_channel
from solver.db.engine import SessionFactory
from solver.db.models import Notification
from solver.notify.schemas import NotificationOut

log = logging.getLogger("solver.notify")

_PUBLISHER = "solver.notify.publisher"
_STAGED = "solver.notify.staged"
_BATCH = 500
_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class _Staged:
    tx: SessionTransaction  # the (nested) transaction the row was written in
    account: str
    payload: str


class NotificationPublisher:
    """Publishes committed notifications from one background task (commit order per process)."""

    def __init__(self, redis: Redis, prefix: str, *, max_backlog: int = 10_000, owns_redis: bool = False) -> None:
        self._redis = redis
        self._prefix = prefix
        self._max_backlog = max_backlog
        self._owns_redis = owns_redis
        self._backlog: deque[tuple[str, str]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._busy = False
        self._closed = False
        self.published = 0
        self.dropped = 0

    def submit(self, items: Sequence[tuple[str, str]]) -> None:
        """Queue (account, JSON) pairs; never blocks and never raises (called inside a commit)."""
        if self._closed or not items:
            return
        self._backlog.extend(items)
        overflow = len(self._backlog) - self._max_backlog
        if overflow > 0:
            for _ in range(overflow):
                self._backlog.popleft()
            self.dropped += overflow
            log.warning("notification push backlog full: dropped the %d oldest pushes", overflow)
        self._wake.set()
        if self._task is None or self._task.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                log.error("notification committed outside an event loop: %d pushes not published", len(items))
                return
            self._task = loop.create_task(self._run(), name="notify-publisher")

    async def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until everything submitted so far is published (or dropped); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self._backlog or self._busy:
            if self._task is None or self._task.done() or time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    async def close(self) -> None:
        await self.flush()
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._owns_redis:
            await self._redis.aclose()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._backlog:
                self._busy = True
                batch = [self._backlog.popleft() for _ in range(min(len(self._backlog), _BATCH))]
                try:
                    await self._publish(batch)
                finally:
                    self._busy = False

    async def _publish(self, batch: list[tuple[str, str]]) -> None:
        for attempt in range(_ATTEMPTS):
            try:
                pipe = self._redis.pipeline(transaction=False)
                for account, payload in batch:
                    pipe.publish(notify_channel(self._prefix, account), payload)
                await pipe.execute()
                self.published += len(batch)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("publishing %d notifications failed (attempt %d): %r", len(batch), attempt + 1, exc)
                await asyncio.sleep(0.2 * 2**attempt)
        self.dropped += len(batch)
        log.error("dropped %d notification pushes: Redis unreachable", len(batch))


def enable_publishing(sessions: SessionFactory, publisher: NotificationPublisher) -> None:
    """Make sessions of this factory publish the notifications they commit (composition roots)."""
    info = dict(sessions.kw.get("info") or {})
    info[_PUBLISHER] = publisher
    sessions.configure(info=info)
    for name, fn in (
        ("after_commit", _after_commit),
        ("after_soft_rollback", _after_soft_rollback),
        ("after_transaction_end", _after_transaction_end),
    ):
        if not event.contains(Session, name, fn):
            event.listen(Session, name, fn)


def stage(session: AsyncSession, row: Notification) -> None:
    """Called by `add` for each row it wrote: published if and when the transaction commits."""
    sync = session.sync_session
    if _PUBLISHER not in sync.info:
        return
    tx = sync.get_nested_transaction() or sync.get_transaction()
    if tx is None:
        return
    try:
        payload = NotificationOut.of(row).model_dump_json()
    except Exception:  # a push is not worth failing the writer's transaction
        log.exception("cannot serialize notification %s for its push", row.id)
        return
    sync.info.setdefault(_STAGED, []).append(_Staged(tx, row.account, payload))


def _after_commit(session: Session) -> None:
    if session.get_nested_transaction() is not None:
        return  # a SAVEPOINT was released: nothing is durable before the outermost commit
    staged: list[_Staged] | None = session.info.pop(_STAGED, None)
    publisher = session.info.get(_PUBLISHER)
    if staged and isinstance(publisher, NotificationPublisher):
        publisher.submit([(s.account, s.payload) for s in staged])


def _after_soft_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
    staged: list[_Staged] | None = session.info.get(_STAGED)
    if staged:
        session.info[_STAGED] = [s for s in staged if not _inside(s.tx, previous_transaction)]


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_STAGED, None)


def _inside(tx: SessionTransaction | None, ancestor: SessionTransaction) -> bool:
    while tx is not None:
        if tx is ancestor:
            return True
        tx = tx.parent
    return False
