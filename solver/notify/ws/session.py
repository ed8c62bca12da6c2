"""Running one WebSocket connection: a reader task for client messages and a pusher task.

Sends are serialized (one lock per connection); `send(text, still=...)` checks under that lock
that the push is still wanted, so nothing about an unsubscribed stream or a replaced account is
sent after the client's change was acknowledged. When either task ends (client left, overflow,
unexpected error) the other is cancelled and the socket closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from litestar import WebSocket
from litestar.exceptions import WebSocketDisconnect
from litestar.status_codes import WS_1011_INTERNAL_ERROR

log = logging.getLogger("solver.notify.ws")

# The peer went away while we were sending (Litestar, uvicorn's ClientDisconnected is an OSError).
GONE: tuple[type[BaseException], ...] = (WebSocketDisconnect, OSError)


class Channel(Protocol):
    async def on_message(self, text: str) -> None: ...

    async def pump(self) -> None: ...


class Connection:
    def __init__(self, socket: WebSocket[Any, Any, Any]) -> None:
        self.socket = socket
        self._lock = asyncio.Lock()
        self.closed = False

    async def send(self, text: str, still: Callable[[], bool] | None = None) -> bool:
        """Send unless `still()` says the push is no longer wanted; False if not sent."""
        async with self._lock:
            if self.closed or (still is not None and not still()):
                return False
            await self.socket.send_text(text)
            return True

    async def close(self, code: int, reason: str) -> None:
        async with self._lock:
            if self.closed:
                return
            self.closed = True
            with contextlib.suppress(*GONE, RuntimeError):
                await self.socket.close(code=code, reason=reason)


async def serve(conn: Connection, channel: Channel, *, on_open: Callable[[], Awaitable[None]] | None = None) -> None:
    await conn.socket.accept()
    if on_open is not None:
        await on_open()
    reader = asyncio.create_task(_read(conn, channel), name="ws-read")
    pusher = asyncio.create_task(channel.pump(), name="ws-push")
    try:
        await asyncio.wait({reader, pusher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (reader, pusher):
            task.cancel()
        results = await asyncio.gather(reader, pusher, return_exceptions=True)
    failed = [r for r in results if isinstance(r, Exception) and not isinstance(r, GONE)]
    for exc in failed:
        log.error("WebSocket %s failed: %r", conn.socket.url.path, exc, exc_info=exc)
    await conn.close(WS_1011_INTERNAL_ERROR if failed else 1000, "server error" if failed else "")


async def _read(conn: Connection, channel: Channel) -> None:
    while True:
        event = await conn.socket.receive()
        kind = event["type"]
        if kind == "websocket.disconnect":
            conn.closed = True
            return
        if kind != "websocket.receive":
            continue
        text = event.get("text")
        if not isinstance(text, str):
            data = event.get("bytes")
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else ""
        await channel.on_message(text)
