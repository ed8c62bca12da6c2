"""Rate limits per IP, per account and for logins, counted in the real Redis (solver.web.rate_limit).

The app is the production one (create_app) with small limits; the suite's default settings turn
the limiter off (tests/fixtures/app.py), so every test here turns it on itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from litestar import Litestar, get
from litestar.testing import AsyncTestClient

from solver.app import create_app
from solver.auth.guard import TokenAuth
from solver.auth.jwt import JwtCodec
from solver.core.clock import SystemClock
from solver.core.errors import ErrorCode
from solver.devnet.anvil import free_port
from solver.settings import RateLimitSettings, Settings, load_settings
from solver.web.rate_limit import RateLimiter, RateLimitMiddleware, client_ip
from tests.fixtures.api import BASE_URL, assert_error, caller, random_address
from tests.fixtures.app import settings_for

pytestmark = pytest.mark.integration

E = ErrorCode


def limited(devnet: Any, database_url: str, redis_prefix: str, **limits: Any) -> Settings:
    return settings_for(devnet, database_url, redis_prefix, ratelimit={"enabled": True, **limits})


@contextlib.asynccontextmanager
async def client_for(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=create_app(settings), base_url=BASE_URL) as client:
        yield client


def assert_limited(resp: Any) -> int:
    body = assert_error(resp, 429, E.RATE_LIMITED, "retry in")
    retry = int(resp.headers["retry-after"])
    assert 1 <= retry <= 60, retry
    assert f"retry in {retry} second" in body["error_message"]
    assert body["error_detail"] and all("requests per minute" in d for d in body["error_detail"])
    return retry


# --- the defaults --------------------------------------------------------------------------------


def test_production_defaults() -> None:
    s = load_settings().ratelimit
    assert s.enabled is True
    assert (s.per_ip_per_minute, s.per_account_per_minute, s.login_per_ip_per_minute) == (1200, 600, 60)
    assert {"/health", "/readyz", "/metrics"} <= set(s.exempt_paths)
    assert s.trusted_proxies == []
    with pytest.raises(ValueError, match="not an IP address or network"):
        RateLimitSettings(trusted_proxies=["10.0.0.0/8", "everyone"])


# --- per IP --------------------------------------------------------------------------------------


async def test_per_ip_limit_429_with_retry_after(
    devnet: Any, database_url: str, redis_prefix: str, redis_client: aioredis.Redis
) -> None:
    settings = limited(devnet, database_url, redis_prefix, per_ip_per_minute=5)
    async with client_for(settings) as api:
        for path in ("/error_codes", "/contract-symbols", "/error_codes/1004", "/open-interest", "/error_codes"):
            assert (await api.get(path)).status_code == 200, path
        assert_limited(await api.get("/contract-symbols"))
        assert_limited(await api.post("/login", json={}))  # every counted route, any method
        # Probes and preflights are never counted nor refused.
        for _ in range(10):
            assert (await api.get("/health")).status_code == 200
            assert (await api.get("/readyz")).status_code == 200
            assert (await api.get("/metrics")).status_code != 429
        preflight = await api.options(
            "/instant_open",
            headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code in (200, 204)
        # A browser can read the 429: it carries the CORS headers.
        refused = await api.get("/contract-symbols", headers={"Origin": "http://localhost:3000"})
        assert_limited(refused)
        assert refused.headers["access-control-allow-origin"] == "http://localhost:3000"

        # One key per bucket under the deployment's prefix, expiring with the window.
        keys = sorted([k.decode() async for k in redis_client.scan_iter(match=f"{redis_prefix}ratelimit:*")])
        ip_key = f"{redis_prefix}ratelimit:ip:testclient"
        assert keys == [ip_key, f"{redis_prefix}ratelimit:login:testclient"]  # /login also counts as a login
        assert int(await redis_client.get(ip_key) or 0) == 8  # 5 served + 3 refused; probes not counted
        ttl = await redis_client.pttl(ip_key)
        assert 0 < ttl <= 60_000
        # The window ends: requests pass again.
        await redis_client.pexpire(ip_key, 1)
        await asyncio.sleep(0.01)
        assert (await api.get("/contract-symbols")).status_code == 200


async def test_forwarded_for_ignored_from_untrusted_peer(devnet: Any, database_url: str, redis_prefix: str) -> None:
    """A client cannot get a fresh bucket per request by inventing X-Forwarded-For."""
    settings = limited(devnet, database_url, redis_prefix, per_ip_per_minute=3)
    async with client_for(settings) as api:
        for i in range(3):
            resp = await api.get("/error_codes", headers={"X-Forwarded-For": f"203.0.113.{i}"})
            assert resp.status_code == 200
        assert_limited(await api.get("/error_codes", headers={"X-Forwarded-For": "198.51.100.7"}))


async def test_prefix_mount_shares_the_bucket_and_exemptions(devnet: Any, database_url: str, redis_prefix: str) -> None:
    prefix = f"/v1/{devnet.chain_id}a/{devnet.multi_account}"
    settings = settings_for(
        devnet, database_url, redis_prefix, api={"prefix": prefix}, ratelimit={"enabled": True, "per_ip_per_minute": 2}
    )
    async with client_for(settings) as api:
        assert (await api.get("/error_codes")).status_code == 200
        assert (await api.get(f"{prefix}/error_codes")).status_code == 200
        assert_limited(await api.get(f"{prefix}//error_codes"))
        assert (await api.get(f"{prefix}/health")).status_code == 200


async def test_limits_are_shared_by_replicas(devnet: Any, database_url: str, redis_prefix: str) -> None:
    """Two API processes (two apps) on one Redis count in the same buckets."""
    settings = limited(devnet, database_url, redis_prefix, per_ip_per_minute=4)
    async with client_for(settings) as one, client_for(settings) as two:
        for api in (one, two, one, two):
            assert (await api.get("/error_codes")).status_code == 200
        assert_limited(await one.get("/error_codes"))
        assert_limited(await two.get("/error_codes"))


# --- per account ---------------------------------------------------------------------------------


async def test_per_account_limit(devnet: Any, database_url: str, redis_prefix: str) -> None:
    settings = limited(devnet, database_url, redis_prefix, per_ip_per_minute=1000, per_account_per_minute=3)
    alice, bob = caller(settings), caller(settings)
    async with client_for(settings) as api:
        for _ in range(3):
            assert (await api.get("/strategy-orders", headers=alice.auth)).status_code == 200
        refused = await api.get("/strategy-orders", headers=alice.auth)
        assert_limited(refused)
        assert refused.json()["error_detail"] == ["limit of 3 requests per minute per account reached"]
        # Every route counts for the account, including writes with bad bodies.
        assert_limited(await api.post("/instant_open", json={}, headers=alice.auth))
        # Same IP, another account: its own bucket. Without a token: the IP bucket only.
        assert (await api.get("/strategy-orders", headers=bob.auth)).status_code == 200
        assert (await api.get("/error_codes")).status_code == 200
        # An invalid token does not count for (or against) the account it names.
        forged = alice.auth["Authorization"][:-4] + "AAAA"
        assert_error(await api.get("/strategy-orders", headers={"Authorization": forged}), 401, E.INVALID_TOKEN)
        # The account is the token's, whatever the case of the address.
        lower = caller(settings, account=alice.account.lower())
        assert_limited(await api.get("/strategy-orders", headers=lower.auth))


# --- logins --------------------------------------------------------------------------------------


async def test_login_limit_per_ip(devnet: Any, database_url: str, redis_prefix: str) -> None:
    settings = limited(devnet, database_url, redis_prefix, per_ip_per_minute=1000, login_per_ip_per_minute=3)
    account = random_address()
    async with client_for(settings) as api:
        assert (await api.get(f"/nonce/{account}")).status_code == 200
        assert (await api.get(f"/nonce/{account}")).status_code == 200
        assert_error(await api.post("/login", json={"nonce": "x"}), 400, E.VALIDATION)
        for resp in (await api.get(f"/nonce/{account}"), await api.post("/login", json={})):
            assert_limited(resp)
            assert "login attempts per IP address" in resp.json()["error_detail"][0]
        assert (await api.get("/contract-symbols")).status_code == 200  # other routes unaffected
        assert (await api.post("/auth/verify")).status_code == 200


# --- the client address ---------------------------------------------------------------------------


def scope(peer: str | None, *xff: str) -> Any:
    return {
        "type": "http",
        "client": (peer, 1234) if peer else None,
        "headers": [(b"x-forwarded-for", v.encode()) for v in xff],
    }


@pytest.mark.parametrize(
    ("peer", "xff", "trusted", "expected"),
    [
        ("198.51.100.9", ["1.2.3.4"], [], "198.51.100.9"),  # no trusted proxies: XFF ignored
        ("198.51.100.9", ["1.2.3.4"], ["10.0.0.0/8"], "198.51.100.9"),  # peer not a trusted proxy
        ("10.0.0.5", ["1.2.3.4"], ["10.0.0.0/8"], "1.2.3.4"),
        ("10.0.0.5", ["6.6.6.6, 1.2.3.4"], ["10.0.0.0/8"], "1.2.3.4"),  # the client's own entry is ignored
        ("10.0.0.5", ["6.6.6.6, 1.2.3.4, 10.0.0.7"], ["10.0.0.0/8"], "1.2.3.4"),  # two proxies
        ("10.0.0.5", ["6.6.6.6", "1.2.3.4"], ["10.0.0.0/8"], "1.2.3.4"),  # repeated headers
        ("10.0.0.5", ["1.2.3.4, not-an-ip"], ["10.0.0.0/8"], "10.0.0.5"),  # garbage: trust the proxy only
        ("10.0.0.5", [], ["10.0.0.0/8"], "10.0.0.5"),
        ("2001:db8:1:2:3:4:5:6", [], [], "2001:db8:1:2::/64"),  # IPv6 counted per /64
        ("::ffff:192.0.2.1", [], [], "192.0.2.1"),  # IPv4-mapped
        ("testclient", ["1.2.3.4"], ["0.0.0.0/0"], "testclient"),  # not an IP: its name
        (None, [], [], "unknown"),
    ],
)
def test_client_ip(peer: str | None, xff: list[str], trusted: list[str], expected: str) -> None:
    import ipaddress

    assert client_ip(scope(peer, *xff), [ipaddress.ip_network(t) for t in trusted]) == expected


# --- Redis down: fail open -----------------------------------------------------------------------


@get("/ping")
async def ping() -> dict[str, str]:
    return {"pong": "ok"}


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (a hung Redis)."""
    import socket
    import threading

    port = free_port()
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(16)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conns.append(srv.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(2)
        for c in conns:
            c.close()
        srv.close()


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("kind", ["refused", "hung"])
async def test_redis_down_fails_open_with_one_warning(kind: str, redis_prefix: str) -> None:
    """The real limiter and middleware on a Redis that refuses or never answers: requests pass."""
    limits = RateLimitSettings(per_ip_per_minute=1, redis_timeout_s=0.2)
    codec = JwtCodec(load_settings(env="dev").auth, SystemClock())
    with silent_server() as hung_port:
        port = free_port() if kind == "refused" else hung_port
        dead = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=1)
        limiter = RateLimiter(dead, redis_prefix, limits, api_prefix=None)
        app = Litestar([ping], middleware=[RateLimitMiddleware(limiter, TokenAuth(codec))])
        records = Records()  # on the logger itself: Litestar's logging setup replaces the root's handlers
        logging.getLogger("solver.api.ratelimit").addHandler(records)
        async with AsyncTestClient(app=app) as api:
            started = time.monotonic()
            for _ in range(5):  # five times the limit
                resp = await api.get("/ping")
                assert resp.status_code == 200 and resp.json() == {"pong": "ok"}
            elapsed = time.monotonic() - started
        logging.getLogger("solver.api.ratelimit").removeHandler(records)
        await dead.aclose()
    assert elapsed < 5 * 0.2 + 2, elapsed  # bounded by redis_timeout_s per request
    assert len(records.messages) == 1, records.messages  # throttled: once a minute per limiter
    assert "fail open" in records.messages[0]
