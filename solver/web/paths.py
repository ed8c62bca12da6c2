"""Tolerate a doubled slash from bots whose base URL ends with '/'.

The path as the client sent it is kept in `scope["state"]["original_path"]`: SIWE login checks
the signed URI against the path the request really arrived on.
"""

from __future__ import annotations

import re
from typing import Any

from litestar.types import Scope

_SLASHES = re.compile(r"/{2,}")


def normalize_scope(scope: Scope) -> None:
    """Collapse repeated slashes in place, remembering the path as sent.

    Must run before routing, so it is applied in the app's `__call__` (Litestar middleware
    runs only after a route has matched).
    """
    if scope["type"] in ("http", "websocket"):
        path: str = scope["path"]
        state: dict[str, Any] = scope.setdefault("state", {})
        state["original_path"] = path
        if "//" in path:
            new = _SLASHES.sub("/", path)
            scope["path"] = new
            scope["raw_path"] = new.encode()


def original_path(scope: Scope) -> str:
    state = scope.get("state") or {}
    return str(state.get("original_path", scope["path"]))
