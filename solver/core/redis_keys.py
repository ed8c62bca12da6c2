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


def price_stream(prefix: str) -> str:
    """Stream of every accepted price tick: fields symbol, price, ts (solver.pricing.stream).

    The latest price per symbol is `{prefix}price:{SYMBOL}` (solver.pricing.cache)."""
    return f"{prefix}prices:stream"


def notify_channel(prefix: str, account: str) -> str:
    """Pub/sub channel of one account's notifications (EIP-55 account); each message is the
    http-api.md §6 notification object as JSON, published after the writer's commit."""
    return f"{prefix}notify:{account}"


def upnl_cache(prefix: str, account: str) -> str:
    """upnl-ws: one account's balance frame, kept ~1 s so replicas share one chain read."""
    return f"{prefix}ws:upnl:{account}"


def upnl_lock(prefix: str, account: str) -> str:
    """upnl-ws: held (SET NX PX) by the replica computing `upnl_cache` for that account."""
    return f"{prefix}ws:upnl_lock:{account}"


def heartbeat(prefix: str, loop: str) -> str:
    """Unix time of the last iteration of one long-running loop (solver.observability.heartbeat);
    expires when the loop has been silent for `observability.forget_after_s`."""
    return f"{prefix}heartbeat:{loop}"


def heartbeat_index(prefix: str) -> str:
    """Set of the loop names that have a `heartbeat` key (read by GET /metrics)."""
    return f"{prefix}heartbeats"


def metrics_state(prefix: str, kind: str, name: str) -> str:
    """Hash a process publishes for GET /metrics: `worker:{lane}` (nonces, in flight) or
    `feed:{source}` (feed counters); field `ts` is when it was written."""
    return f"{prefix}metrics:{kind}:{name}"


def metrics_state_index(prefix: str) -> str:
    """Set of `{kind}:{name}` members, one per `metrics_state` hash."""
    return f"{prefix}metrics:states"
