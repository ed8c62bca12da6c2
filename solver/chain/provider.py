"""An async HTTP provider that keeps its connections alive and takes no process-wide lock.

web3.py 7's AsyncHTTPProvider (1) builds its aiohttp session with `force_close=True`, so every
JSON-RPC call opens a new TCP (and, against a remote node, TLS) connection, and (2) guards its
session cache with one class-level threading.Lock taken on every request through an executor:
a request cancelled at the wrong moment (a task stopped at shutdown) can leave that lock held,
and every web3 provider in the process, sync ones included, then blocks forever. This provider
posts through its own pooled keep-alive session per event loop and never touches that cache.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aiohttp import ClientSession, ClientTimeout, TCPConnector
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3._utils.batching import sort_batch_response_by_response_ids
from web3.types import RPCEndpoint, RPCResponse


class KeepAliveHTTPProvider(AsyncHTTPProvider):
    def __init__(self, endpoint_uri: str, *, timeout_s: float = 10.0, pool_size: int = 32) -> None:
        super().__init__(endpoint_uri)
        self._timeout = ClientTimeout(total=timeout_s)
        self._pool_size = pool_size
        self._sessions: dict[asyncio.AbstractEventLoop, ClientSession] = {}

    def _session(self) -> ClientSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            connector = TCPConnector(limit=self._pool_size, keepalive_timeout=30)
            session = ClientSession(connector=connector, timeout=self._timeout)
            self._sessions[loop] = session
        return session

    async def _post(self, data: bytes) -> bytes:
        headers = self.get_request_headers()
        async with self._session().post(str(self.endpoint_uri), data=data, headers=headers) as response:
            response.raise_for_status()
            return await response.read()

    async def _make_request(self, method: RPCEndpoint, request_data: bytes) -> bytes:
        # No retries here: the worker, follower and API retry at their own loop boundaries.
        return await self._post(request_data)

    async def make_batch_request(self, batch_requests: Any) -> Any:
        response = self.decode_rpc_response(await self._post(self.encode_batch_rpc_request(batch_requests)))
        if not isinstance(response, list):
            return response
        return sort_batch_response_by_response_ids(cast(list[RPCResponse], response))

    async def disconnect(self) -> None:
        """Close this loop's session (sessions of loops already gone are just dropped)."""
        loop = asyncio.get_running_loop()
        session = self._sessions.pop(loop, None)
        self._sessions.clear()
        if session is not None and not session.closed:
            await session.close()


def async_web3(rpc_url: str, *, timeout_s: float = 10.0) -> AsyncWeb3[Any]:
    return AsyncWeb3(KeepAliveHTTPProvider(rpc_url, timeout_s=timeout_s))
