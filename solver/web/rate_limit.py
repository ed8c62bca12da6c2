"""Request limits per client IP and per account, counted in Redis (settings.ratelimit).

Every non-exempt HTTP request counts in its client IP's bucket; with a valid Bearer token it also
counts in the token account's bucket (a stolen or shared IP cannot hide a noisy account, and many
accounts behind one NAT do not share one account limit); `POST /login` and `GET /nonce/{account}`
count in a third, smaller per-IP bucket (SIWE verification and nonce storage are the expensive,
unauthenticated routes). Over any limit the answer is 429 with the http-api.md error body
(RATE_LIMITED, 1004) and `Retry-After` in seconds.

Counting: fixed windows of one minute, one Redis key per bucket (`{prefix}ratelimit:…`). A Lua
script INCRements the key and gives it its expiry on the first hit (or if it ever lacks one), so a
window starts at a bucket's first request and the key's remaining TTL is the `Retry-After`. All
buckets of a request go in one pipeline: one round trip. Each script touches exactly one declared
key, so this works unchanged on Redis Cluster. A fixed window lets a client burst at most twice the
limit across a window edge; that is the accepted price of one key and one round trip.

Redis unreachable or slower than `redis_timeout_s`: the request passes (fail open: an outage of the
limiter must not take the API down) and a warning is logged, at most once a minute per process.

It is Litestar middleware, so it runs once a route has matched: unknown paths are answered 404
without counting (they do no work). WebSockets are not counted here (their channels bound their own
work); CORS preflights (OPTIONS) pass uncounted so a browser can always read the 429 of the request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send
from redis.asyncio import Redis

from solver.auth.guard import TokenAuth
from solver.core.errors import ErrorCode, SolverError
from solver.settings import RateLimitSettings

log = logging.getLogger("solver.api.ratelimit")

WINDOW_MS = 60_000
WARN_EVERY_S = 60.0

# KEYS[1]: the bucket; ARGV[1]: window in ms. Returns {count in this window, ms until it ends}.
_HIT = """
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
"""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Bucket:
    key: str
    limit: int
    what: str  # for the error detail: "IP address", "account", "login attempts per IP address"


@dataclass(frozen=True, slots=True)
class Refusal:
    retry_after_s: int
    buckets: tuple[Bucket, ...]  # the ones over their limit


def _parse_ip(text: str) -> Address | None:
    try:
        addr = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _bucket_id(addr: Address) -> str:
    if isinstance(addr, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((addr, 64), strict=False))  # one host usually owns a /64
    return str(addr)


def _header_values(scope: Scope, name: bytes) -> list[str]:
    return [v.decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == name]


def client_ip(scope: Scope, trusted: Sequence[Network]) -> str:
    """The bucket id of the client: its IP (IPv6: its /64).

    X-Forwarded-For is read only when the peer is a trusted proxy, and then from the right: each
    trusted proxy appends the address it saw, so the rightmost address that is not a trusted proxy
    is the client; anything left of it was written by the client and is ignored.
    """
    client = scope.get("client")
    peer_text = str(client[0]) if client else "unknown"
    peer = _parse_ip(peer_text)
    if peer is None:
        return peer_text[:64]  # not an IP (test clients, unix sockets): one bucket per name
    if trusted and any(peer in net for net in trusted):
        hops = [h.strip() for v in _header_values(scope, b"x-forwarded-for") for h in v.split(",") if h.strip()]
        for hop in reversed(hops):
            addr = _parse_ip(hop)
            if addr is None:
                break  # garbage where a proxy's entry should be: keep the last address we trust
            peer = addr
            if not any(addr in net for net in trusted):
                break
    return _bucket_id(peer)


class RateLimiter:
    def __init__(self, redis: Redis, prefix: str, settings: RateLimitSettings, *, api_prefix: str | None) -> None:
        self._redis = redis
        self._prefix = f"{prefix}ratelimit:"
        self._settings = settings
        self._api_prefix = api_prefix
        self._exempt = frozenset(settings.exempt_paths)
        self._trusted: list[Network] = [ipaddress.ip_network(n, strict=False) for n in settings.trusted_proxies]
        self._warned_at: float | None = None

    def route_path(self, path: str) -> str:
        """The path without the optional API prefix (routes are served at both)."""
        p = self._api_prefix
        if p and (path == p or path.startswith(p + "/")):
            return path[len(p) :] or "/"
        return path

    def exempt(self, scope: Scope) -> bool:
        """Exempt paths (probes, metrics) and CORS preflights are not counted."""
        return scope.get("method") == "OPTIONS" or self.route_path(scope["path"]) in self._exempt

    def buckets(self, scope: Scope, account: str | None) -> list[Bucket]:
        """The buckets a (non-exempt) request counts in."""
        path = self.route_path(scope["path"])
        s = self._settings
        ip = client_ip(scope, self._trusted)
        out = [Bucket(f"{self._prefix}ip:{ip}", s.per_ip_per_minute, "IP address")]
        if path == "/login" or path.startswith("/nonce/"):
            out.append(Bucket(f"{self._prefix}login:{ip}", s.login_per_ip_per_minute, "login attempts per IP address"))
        if account is not None:
            out.append(Bucket(f"{self._prefix}account:{account.lower()}", s.per_account_per_minute, "account"))
        return out

    async def hit(self, buckets: Sequence[Bucket]) -> Refusal | None:
        """Count one request in every bucket; a Refusal if any is over its limit.

        Redis failing or slow: None (the request passes) and a throttled warning.
        """
        if not buckets:
            return None
        try:
            results = await asyncio.wait_for(self._count(buckets), self._settings.redis_timeout_s)
        except Exception as exc:  # RedisError, OSError, TimeoutError: fail open
            self._warn(exc)
            return None
        over = [(b, int(ttl)) for b, (n, ttl) in zip(buckets, results, strict=True) if int(n) > b.limit]
        if not over:
            return None
        retry = max(max(1, math.ceil(ttl / 1000)) for _, ttl in over)
        return Refusal(retry_after_s=retry, buckets=tuple(b for b, _ in over))

    async def _count(self, buckets: Sequence[Bucket]) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for b in buckets:
                pipe.eval(_HIT, 1, b.key, WINDOW_MS)
            return list(await pipe.execute())

    def _warn(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self._warned_at is None or now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            log.warning(
                "rate limiting skipped (fail open): Redis did not answer: %s: %s", type(exc).__name__, exc or "timeout"
            )


def refusal_body(refusal: Refusal) -> dict[str, object]:
    seconds = refusal.retry_after_s
    message = f"Too many requests. Please slow down and retry in {seconds} second{'s' if seconds != 1 else ''}."
    detail = [f"limit of {b.limit} requests per minute per {b.what} reached" for b in refusal.buckets]
    return SolverError(ErrorCode.RATE_LIMITED, message, detail).body()


class RateLimitMiddleware(ASGIMiddleware):
    scopes = (ScopeType.HTTP,)

    def __init__(self, limiter: RateLimiter, token_auth: TokenAuth) -> None:
        self._limiter = limiter
        self._token_auth = token_auth

    def _account(self, scope: Scope) -> str | None:
        header = next(iter(_header_values(scope, b"authorization")), None)
        if not header:
            return None
        try:
            return self._token_auth.principal_from_header(header).account
        except SolverError:
            return None  # the route answers 401 itself; the request still counts for its IP

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if self._limiter.exempt(scope):
            await next_app(scope, receive, send)
            return
        buckets = self._limiter.buckets(scope, self._account(scope))
        refusal = await self._limiter.hit(buckets)
        if refusal is None:
            await next_app(scope, receive, send)
            return
        body = json.dumps(refusal_body(refusal)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": ErrorCode.RATE_LIMITED.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(refusal.retry_after_s).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})
