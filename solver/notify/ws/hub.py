"""One Redis pub/sub connection per API process, shared by every position-state-ws3 client.

A channel `{prefix}notify:{account}` is subscribed while at least one local client follows the
account and unsubscribed when the last one leaves, so Redis load grows with the accounts
watched, not with the sockets. `follow` returns once Redis confirmed the SUBSCRIBE: from then
on every notification committed anywhere (API, worker, follower, on any replica) reaches the
client. A Redis outage is retried with backoff; redis-py re-subscribes every channel on
reconnect (pushes published during the outage are lost, as always with pub/sub: clients
reload POST /position-state on reconnect).

Each client has a bounded queue; one that does not keep up gets `None` (overflow) and is
disconnected by its handler rather than silently missing notifications.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from solver.core.redis_keys import notify_channel

log = logging.getLogger("solver.notify.ws")

_CONFIRM_TIMEOUT_S = 5.0


class Subscriber:
    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize)
        self.channels: set[str] = set()

    def deliver(self, payload: str) -> None:
        try:
            self.queue.put_nowait(payload)
        except asyncio.QueueFull:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)  # overflow: the handler closes the socket


class NotificationHub:
    def __init__(self, redis: Redis, prefix: str, *, queue_size: int = 1000) -> None:
        self._redis = redis
        self._prefix = prefix
        self._queue_size = queue_size
        self._subs: dict[str, set[Subscriber]] = {}
        self._confirm: dict[str, asyncio.Event] = {}
        self._lock = asyncio.Lock()
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None

    def subscriber(self) -> Subscriber:
        return Subscriber(self._queue_size)

    def channel(self, account: str) -> str:
        return notify_channel(self._prefix, account)

    async def follow(self, sub: Subscriber, accounts: Iterable[str]) -> None:
        """Deliver exactly these (EIP-55) accounts' notifications to `sub` from now on."""
        want = {self.channel(a) for a in accounts}
        async with self._lock:
            added, removed = want - sub.channels, sub.channels - want
            sub.channels = want
            for ch in added:
                self._subs.setdefault(ch, set()).add(sub)
            for ch in removed:
                subs = self._subs.get(ch)
                if subs is not None:
                    subs.discard(sub)
                    if not subs:
                        del self._subs[ch]
            fresh = [ch for ch in added if len(self._subs[ch]) == 1]
            gone = [ch for ch in removed if ch not in self._subs]
            if not fresh and not gone:
                return
            pubsub = await self._started()
            waits = [self._confirm.setdefault(ch, asyncio.Event()) for ch in fresh]
            if gone:
                await pubsub.unsubscribe(*gone)
            if fresh:
                await pubsub.subscribe(*fresh)
        if waits:
            try:
                await asyncio.wait_for(asyncio.gather(*(w.wait() for w in waits)), _CONFIRM_TIMEOUT_S)
            except TimeoutError:
                log.warning("Redis did not confirm SUBSCRIBE of %d channels in time", len(waits))

    async def leave(self, sub: Subscriber) -> None:
        with contextlib.suppress(Exception):  # best effort on disconnect (Redis may be down)
            await self.follow(sub, [])

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            self._pubsub = None

    @property
    def channels(self) -> set[str]:
        return set(self._subs)

    async def _started(self) -> PubSub:
        if self._pubsub is None:
            self._pubsub = self._redis.pubsub()
            # A channel no writer uses keeps the connection subscribed when no client follows anything.
            await self._pubsub.subscribe(f"{self._prefix}notify:hub")
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(self._pubsub), name="notify-hub")
        return self._pubsub

    async def _run(self, pubsub: PubSub) -> None:
        backoff = 0.1
        while True:
            try:
                message = await pubsub.get_message(timeout=1.0)
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("notification pub/sub connection failed, retrying in %.1f s: %r", backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if message is not None:
                self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        channel = _text(message.get("channel"))
        if kind == "message":
            payload = _text(message.get("data"))
            for sub in list(self._subs.get(channel, ())):
                sub.deliver(payload)
        elif kind == "subscribe":
            ready = self._confirm.pop(channel, None)
            if ready is not None:
                ready.set()


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
