"""ASGI middleware: tolerate a doubled slash from bots whose base URL ends with '/'.

The path as the client sent it is kept in `scope["state"]["original_path"]`: SIWE login checks
the signed URI against the path the request really arrived on.
"""

from __future__ import annotations

import re
from typing import Any

from litestar.types import ASGIApp, Receive, Scope, Send

_SLASHES = re.compile(r"/{2,}")


def collapse_slashes_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            path: str = scope["path"]
            state: dict[str, Any] = scope.setdefault("state", {})  # type: ignore[typeddict-item]
            state["original_path"] = path
            if "//" in path:
                new = _SLASHES.sub("/", path)
                scope["path"] = new
                scope["raw_path"] = new.encode()
        await app(scope, receive, send)

    return middleware


def original_path(scope: Scope) -> str:
    state = scope.get("state") or {}
    return str(state.get("original_path", scope["path"]))  # type: ignore[union-attr]
