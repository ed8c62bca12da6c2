"""The four WebSocket channels of http-api.md §7, one object per connection.

Each reacts to client messages (`on_message`) and pushes from `pump`; invalid input gets an
error frame and the connection stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from solver.core.errors import ErrorCode, SolverError
from solver.notify.ws.frames import (
    BinanceError,
    FrameError,
    MarkStream,
    error_frame,
    funding_frame,
    mark_frame,
    parse_account,
    parse_addresses,
    parse_binance,
    parse_stream,
    parse_symbols,
)
from solver.notify.ws.service import Streams
from solver.notify.ws.session import Connection

log = logging.getLogger("solver.notify.ws")

TOO_SLOW = 1013  # "try again later": the client did not read its notifications fast enough


async def _wait(event: asyncio.Event, timeout_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout_s)


class UpnlChannel:
    """upnl-ws: the bare account address in, the balance object about every 2 s out. While the
    balances cannot be computed (stale price, node down) the error frame is sent once, then
    nothing until they can: never a frame of zeros."""

    def __init__(self, conn: Connection, streams: Streams) -> None:
        self._conn = conn
        self._streams = streams
        self._account: str | None = None
        self._changed = asyncio.Event()

    async def on_message(self, text: str) -> None:
        try:
            account = parse_account(text)
        except FrameError as exc:
            self._account = None
            self._changed.set()
            await self._conn.send(exc.frame)
            return
        self._account = account
        self._changed.set()

    async def pump(self) -> None:
        last_error: int | None = None
        last_account: str | None = None
        while True:
            self._changed.clear()
            account = self._account
            if account != last_account:
                last_error, last_account = None, account
            if account is not None:
                result = await self._streams.balances.get(account)

                def same() -> bool:
                    return self._account == account  # noqa: B023 - checked before the loop moves on

                if result.frame is not None:
                    await self._conn.send(result.frame, same)
                    last_error = None
                elif result.error is not None:
                    code = json.loads(result.error).get("error_code")
                    if code != last_error and await self._conn.send(result.error, same):
                        last_error = code
            await _wait(self._changed, self._streams.settings.upnl_interval_s)


class PositionStateChannel:
    """position-state-ws3: `{"address": [...]}` in, each notification of those accounts out."""

    def __init__(self, conn: Connection, streams: Streams) -> None:
        self._conn = conn
        self._streams = streams
        self._sub = streams.hub.subscriber()

    async def on_message(self, text: str) -> None:
        try:
            accounts, bad = parse_addresses(text)
        except FrameError as exc:
            await self._conn.send(exc.frame)
            return
        limit = self._streams.settings.max_accounts
        if len(accounts) > limit:
            await self._conn.send(error_frame(ErrorCode.VALIDATION, f"Follow at most {limit} accounts per connection."))
            return
        try:
            await self._streams.hub.follow(self._sub, accounts)
        except Exception as exc:
            log.warning("position-state-ws3: cannot subscribe: %r", exc)
            await self._conn.send(error_frame(ErrorCode.UNAVAILABLE, "Live notifications are unavailable right now."))
            return
        if bad:
            await self._conn.send(
                error_frame(ErrorCode.VALIDATION, "Some entries are not account addresses and were ignored.", bad[:20])
            )

    async def pump(self) -> None:
        try:
            while True:
                payload = await self._sub.queue.get()
                if payload is None:
                    await self._conn.close(TOO_SLOW, "too slow: reconnect and reload /position-state")
                    return
                await self._conn.send(payload)
        finally:
            await self._streams.hub.leave(self._sub)


class FundingChannel:
    """funding-rate-ws: `{"symbols": [...]}` in (empty = pause), the bare funding map out."""

    def __init__(self, conn: Connection, streams: Streams) -> None:
        self._conn = conn
        self._streams = streams
        self._symbols: list[str] = []
        self._changed = asyncio.Event()

    async def on_message(self, text: str) -> None:
        try:
            names = parse_symbols(text)
            if names:
                names = list(await self._streams.market.funding_info(names))
        except FrameError as exc:
            await self._conn.send(exc.frame)
            return
        except SolverError as exc:  # unknown symbols: the previous choice stays
            await self._conn.send(error_frame(exc.code, exc.message, exc.detail))
            return
        self._symbols = names
        self._changed.set()

    async def pump(self) -> None:
        failing = False
        while True:
            self._changed.clear()
            symbols = self._symbols
            if symbols:
                try:
                    info = await self._streams.market.funding_info(symbols)
                except Exception as exc:
                    if not failing:
                        log.warning("funding-rate-ws: %r", exc)
                        await self._conn.send(error_frame(ErrorCode.UNAVAILABLE))
                    failing = True
                else:
                    failing = False
                    frame = funding_frame(
                        {n: (f.next_funding_time_ms, f.rate_long, f.rate_short) for n, f in info.items()}
                    )
                    await self._conn.send(frame, lambda: self._symbols == symbols)  # noqa: B023
            await _wait(self._changed, self._streams.settings.funding_interval_s)


class MarkPriceChannel:
    """Binance futures combined-stream protocol: SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS in,
    `{"stream": name, "data": ...}` every second out (fresh marks only)."""

    def __init__(self, conn: Connection, streams: Streams) -> None:
        self._conn = conn
        self._streams = streams
        self._subs: dict[str, MarkStream] = {}
        self._changed = asyncio.Event()

    def subscribe_query(self, raw: str | None) -> None:
        """`/stream?streams=a/b` subscribes without an answer, as Binance does."""
        for name in (raw or "").split("/"):
            with contextlib.suppress(ValueError):
                if name.strip():
                    stream = parse_stream(name, self._streams.known_symbols)
                    self._subs[stream.name.lower()] = stream

    async def on_message(self, text: str) -> None:
        try:
            req = parse_binance(text)
            if req.method == "LIST_SUBSCRIPTIONS":
                await self._conn.send(json.dumps({"result": [s.name for s in self._subs.values()], "id": req.id}))
                return
            if req.method == "SUBSCRIBE":
                try:
                    new = [parse_stream(p, self._streams.known_symbols) for p in req.params]
                except ValueError as exc:
                    raise BinanceError(2, f"Invalid request: {exc}", req.id) from exc
                for stream in new:
                    self._subs[stream.name.lower()] = stream
            else:
                for name in req.params:
                    self._subs.pop(name.strip().lower(), None)
        except BinanceError as exc:
            await self._conn.send(exc.frame)
            return
        await self._conn.send(json.dumps({"result": None, "id": req.id}))
        if req.method == "SUBSCRIBE":
            self._changed.set()  # first push right after the answer

    async def pump(self) -> None:
        tick = 0
        while True:
            woken = self._changed.is_set()
            self._changed.clear()
            due = [s for s in self._subs.values() if woken or tick % s.every_s == 0]
            items = {}
            if due:
                try:
                    items = await self._streams.marks.snapshot()
                except Exception as exc:  # Redis hiccup: skip this tick, the next one retries
                    log.warning("mark price stream: %r", exc)
                for stream in due:
                    frame = mark_frame(stream, items)
                    key = stream.name.lower()
                    if frame is not None:
                        await self._conn.send(frame, lambda: self._subs.get(key) is stream)  # noqa: B023
            if not woken:
                tick += 1
            await _wait(self._changed, self._streams.settings.mark_interval_s)
