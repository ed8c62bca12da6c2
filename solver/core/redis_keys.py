"""Every Redis key the solver writes, in one place, so two features never share a name.

All keys start with the deployment's `redis_prefix` (settings), so several solvers (or test
runs) can share one Redis.
"""

from __future__ import annotations


def temp_quote_id_counter(prefix: str) -> str:
    """Integer counter of the last temp quote id handed out (negative, decreasing)."""
    return f"{prefix}temp_quote_id"


def login_nonce(prefix: str, nonce: str) -> str:
    """One SIWE login nonce; the value is the lowercased account it was issued for."""
    return f"{prefix}nonce:{nonce}"
