"""An async HTTP provider that keeps its connections alive.

web3.py's AsyncHTTPProvider builds its aiohttp session with `force_close=True`: every JSON-RPC
call opens a new TCP (and, against a remote node, TLS) connection. The worker makes dozens of
calls per trade, so this provider gives web3 a pooled keep-alive session, created lazily in the
event loop that first uses it (web3 keeps one cached session per thread and replaces it if the
loop changes).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import ClientSession, ClientTimeout, TCPConnector
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.types import RPCEndpoint, RPCResponse


class KeepAliveHTTPProvider(AsyncHTTPProvider):
    def __init__(self, endpoint_uri: str, *, timeout_s: float = 10.0, pool_size: int = 32) -> None:
        super().__init__(endpoint_uri, request_kwargs={"timeout": ClientTimeout(total=timeout_s)})
        self._pool_size = pool_size
        self._session_loop: Any = None
        self._locks: dict[Any, asyncio.Lock] = {}

    async def _ensure_session(self) -> None:
        loop = asyncio.get_running_loop()
        if self._session_loop is loop:
            return
        # Concurrent first calls must not each build (and leak) a session.
        async with self._locks.setdefault(loop, asyncio.Lock()):
            if self._session_loop is not loop:
                connector = TCPConnector(limit=self._pool_size, keepalive_timeout=30)
                await self.cache_async_session(ClientSession(connector=connector))
                self._session_loop = loop

    async def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        await self._ensure_session()
        return await super().make_request(method, params)

    async def make_batch_request(self, requests: Any) -> Any:
        await self._ensure_session()
        return await super().make_batch_request(requests)


def async_web3(rpc_url: str, *, timeout_s: float = 10.0) -> AsyncWeb3[Any]:
    return AsyncWeb3(KeepAliveHTTPProvider(rpc_url, timeout_s=timeout_s))
