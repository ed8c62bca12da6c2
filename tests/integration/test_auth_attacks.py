"""Attacks on login, tokens and account scoping, against the real app (anvil, Postgres, Redis).

Two real sub-accounts with real SIWE logins: the attacker A (funded, nothing delegated) and the
victim B (funded, delegated), who owns one of everything: a pending instant open (sent with an
Idempotency-Key), an open position with a stop loss and a take profit and a pending instant close
on it, and a strategy order. Every attack asserts the exact status and error code and that no row
of A or B changed in any table the API writes (whole rows compared as JSON), nor any login nonce
was left usable.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
import redis.asyncio as aioredis
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from solver.app import create_app
from solver.auth.jwt import ISSUER
from solver.core.errors import ErrorCode
from solver.devnet.deploy import DevnetInfo
from solver.oracle.signer import OracleSigner
from solver.settings import Settings
from tests.fixtures.api import BASE_URL, assert_error, running_server
from tests.fixtures.app import TEST_JWT_SECRET, settings_for
from tests.fixtures.redis import REDIS_URL
from tests.fixtures.trading import PriceKeeper
from tests.integration.test_auth_login import ORIGIN, nonce_for, signed_login
from tests.integration.test_instant_api import Devnet, Trader, close_body, open_body
from tests.integration.test_stop_loss_api import body as stop_loss_body
from tests.integration.test_strategy_api import limit_body

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),  # the HS512 forgery
]

E = ErrorCode
WRITTEN_TABLES = ("instant_open", "instant_close", "trigger_order", "strategy_order", "tx_intent", "notification")


async def account_rows(engine: AsyncEngine, *accounts: str) -> dict[str, list[Any]]:
    """Every row of these accounts in every table the API writes, whole, as JSON (one query)."""
    sql = " UNION ALL ".join(
        f"(SELECT '{t}' AS tbl, t.id::text AS id, to_jsonb(t) AS row FROM {t} t WHERE lower(t.account) = ANY(:a))"
        for t in WRITTEN_TABLES
    )
    out: dict[str, list[Any]] = {t: [] for t in WRITTEN_TABLES}
    async with engine.connect() as conn:
        rows = await conn.execute(text(f"{sql} ORDER BY tbl, id"), {"a": [a.lower() for a in accounts]})
        for tbl, _, row in rows:
            out[tbl].append(row)
    return out


async def table_counts(engine: AsyncEngine) -> dict[str, int]:
    """Row counts of every table the API writes (one query)."""
    sql = "SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in WRITTEN_TABLES)
    async with engine.connect() as conn:
        counts = (await conn.execute(text(sql))).one()
    return dict(zip(WRITTEN_TABLES, (int(c) for c in counts), strict=True))


# --- the world: attacker A, victim B and B's resources ---------------------------------------


@dataclass
class World:
    api: AsyncTestClient[Any]
    settings: Settings
    engine: AsyncEngine
    redis: aioredis.Redis
    keeper: PriceKeeper
    chain: Devnet
    a: Trader
    b: Trader
    b_temp_id: int  # B's pending instant open
    b_open_key: str  # its Idempotency-Key
    b_quote_id: int  # B's open position (stop loss, take profit, pending close)
    b_strategy_id: int

    async def snapshot(self) -> dict[str, list[Any]]:
        return await account_rows(self.engine, self.a.account, self.b.account)


async def real_login(api: AsyncTestClient[Any], t: Trader) -> str:
    nonce = await nonce_for(api, t.account)
    login = signed_login(account=t.account, owner=t.owner, key=t.owner_key, nonce=nonce)
    resp = await api.post("/login", json=login.body, headers=ORIGIN)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


@pytest.fixture(scope="module")
async def world(devnet: DevnetInfo, oracle_signer: OracleSigner, database_url: str, db_engine: AsyncEngine) -> Any:
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    settings = settings_for(devnet, database_url, prefix)
    chain = Devnet(devnet, oracle_signer)
    a = chain.new_trader(delegate=False)
    b = chain.new_trader()
    redis = aioredis.from_url(REDIS_URL)
    try:
        async with (
            PriceKeeper(redis, prefix) as keeper,
            AsyncTestClient(app=create_app(settings), base_url=BASE_URL) as api,
        ):
            a.token, b.token = await real_login(api, a), await real_login(api, b)
            key = "shared-key-1"
            resp = await api.post("/instant_open", json=open_body(), headers={**b.auth, "Idempotency-Key": key})
            assert resp.status_code == 200, resp.text
            temp_id = resp.json()["temp_quote_id"]
            quote_id = chain.open_position(b)
            resp = await api.post("/stop-loss", json=stop_loss_body(b, quote_id), headers=b.auth)
            assert resp.status_code == 200, resp.text
            resp = await api.post("/instant_close", json=close_body(quote_id), headers=b.auth)
            assert resp.status_code == 200, resp.text
            resp = await api.post("/strategy-orders", json=limit_body(), headers=b.auth)
            assert resp.status_code == 200, resp.text
            w = World(api, settings, db_engine, redis, keeper, chain, a, b, temp_id, key, quote_id, resp.json()["id"])
            rows = await w.snapshot()
            assert len(rows["instant_open"]) == 1 and len(rows["trigger_order"]) == 2
            assert len(rows["instant_close"]) == 1 and len(rows["strategy_order"]) == 1
            yield w
    finally:
        async for k in redis.scan_iter(match=f"{prefix}*", count=500):
            await redis.delete(k)
        await redis.aclose()


@pytest.fixture
async def unchanged(world: World) -> AsyncIterator[None]:
    """The test must leave every row of A and B exactly as it found them."""
    before = await world.snapshot()
    yield
    assert await world.snapshot() == before


# --- login -----------------------------------------------------------------------------------


async def test_replayed_login_nonce(world: World, unchanged: None) -> None:
    api, a = world.api, world.a
    nonce = await nonce_for(api, a.account)
    login = signed_login(account=a.account, owner=a.owner, key=a.owner_key, nonce=nonce)
    assert (await api.post("/login", json=login.body, headers=ORIGIN)).status_code == 200
    # The very same signed request again (a sniffed or logged login), and concurrently-late copies.
    for _ in range(3):
        assert_error(await api.post("/login", json=login.body, headers=ORIGIN), 401, E.INVALID_NONCE)
    assert await world.redis.exists(f"{world.settings.redis_prefix}nonce:{nonce}") == 0


async def test_concurrent_replays_of_one_login(world: World, unchanged: None) -> None:
    """20 copies of one signed login at once, through a real server: exactly one token."""
    a = world.a
    async with running_server(world.settings) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
        nonce = (await client.get(f"/nonce/{a.account}")).json()["nonce"]
        # The server's own address is the login URI the message must name.
        login = signed_login(account=a.account, owner=a.owner, key=a.owner_key, nonce=nonce, uri=f"{BASE_URL}/login")
        results = await asyncio.gather(*(client.post("/login", json=login.body, headers=ORIGIN) for _ in range(20)))
    assert sorted(r.status_code for r in results) == [200] + [401] * 19
    for r in results:
        if r.status_code == 401:
            assert_error(r, 401, E.INVALID_NONCE)


@pytest.mark.parametrize(
    ("case", "override", "origin"),
    [
        ("message for another domain", {"domain": "evil.example"}, ORIGIN),
        ("another domain, sent from it", {"domain": "evil.example"}, {"Origin": "https://evil.example"}),
        ("message for another chain id", {"chain_id": 1}, ORIGIN),
        ("message for another URI", {"uri": "https://evil.example/login"}, ORIGIN),
        ("message for another path", {"uri": f"{BASE_URL}/v2/login"}, ORIGIN),
        ("signed by a non-owner", {"key": "other"}, ORIGIN),
        ("owner claimed by the signer", {"key": "other", "owner": "other"}, ORIGIN),
    ],
)
async def test_siwe_message_mismatch(
    world: World, unchanged: None, case: str, override: dict[str, Any], origin: dict[str, str]
) -> None:
    api, a, b = world.api, world.a, world.b
    nonce = await nonce_for(api, b.account)
    fields: dict[str, Any] = {"account": b.account, "owner": b.owner, "key": b.owner_key, "nonce": nonce}
    fields.update(override)
    if fields["key"] == "other":
        fields["key"] = a.owner_key  # the attacker's wallet signs for the victim's account
    if fields["owner"] == "other":
        fields["owner"] = a.owner
    login = signed_login(**fields)
    resp = await api.post("/login", json=login.body, headers=origin)
    if origin is ORIGIN:
        assert_error(resp, 401, E.INVALID_SIGNATURE)
    else:
        assert_error(resp, 401, E.DOMAIN_NOT_ALLOWED)
    # The nonce is spent: the genuine signature cannot follow it.
    good = signed_login(account=b.account, owner=b.owner, key=b.owner_key, nonce=nonce)
    assert_error(await api.post("/login", json=good.body, headers=ORIGIN), 401, E.INVALID_NONCE)


# --- forged, foreign and expired tokens --------------------------------------------------------


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims_for(t: Trader, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"sub": t.account, "owner": t.owner, "iat": now, "exp": now + 3600, "jti": uuid.uuid4().hex, "iss": ISSUER}
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def forged_token(kind: str, victim: Trader, attacker: Trader) -> str:
    if kind == "alg none":
        return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims_for(victim))}."
    if kind == "alg None, signature kept":
        return f"{_b64({'alg': 'None', 'typ': 'JWT'})}.{_b64(claims_for(victim))}.{attacker.token.split('.')[2]}"
    if kind == "wrong key":
        return jwt.encode(claims_for(victim), "attacker-guessed-secret-0123456789abcdef", algorithm="HS256")
    if kind == "right key, HS512":
        return jwt.encode(claims_for(victim), TEST_JWT_SECRET, algorithm="HS512")
    if kind == "A's token, payload swapped to B":
        header, _, sig = attacker.token.split(".")
        return f"{header}.{_b64(claims_for(victim))}.{sig}"
    if kind == "no issuer":
        return jwt.encode(claims_for(victim, iss=None), TEST_JWT_SECRET, algorithm="HS256")
    if kind == "foreign issuer":
        return jwt.encode(claims_for(victim, iss="someone-else"), TEST_JWT_SECRET, algorithm="HS256")
    if kind == "expired":
        now = int(time.time())
        return jwt.encode(claims_for(victim, iat=now - 7200, exp=now - 1), TEST_JWT_SECRET, algorithm="HS256")
    raise AssertionError(kind)


TOKEN_CASES = [
    ("alg none", E.INVALID_TOKEN),
    ("alg None, signature kept", E.INVALID_TOKEN),
    ("wrong key", E.INVALID_TOKEN),
    ("right key, HS512", E.INVALID_TOKEN),
    ("A's token, payload swapped to B", E.INVALID_TOKEN),
    ("no issuer", E.INVALID_TOKEN),
    ("foreign issuer", E.INVALID_TOKEN),
    ("expired", E.TOKEN_EXPIRED),
]


def victim_actions(w: World) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every authenticated thing a token naming B could do to B."""
    b = w.b
    return [
        ("POST", "/instant_open", open_body()),
        ("DELETE", f"/instant_open/{w.b_temp_id}", None),
        ("POST", "/instant_close", close_body(w.b_quote_id)),
        ("DELETE", f"/instant_close/{w.b_quote_id}", None),
        ("POST", "/stop-loss", stop_loss_body(b, w.b_quote_id, tp="62000")),
        ("GET", f"/stop-loss/{b.account}", None),
        ("DELETE", f"/stop-loss/{w.b_quote_id}", None),
        ("POST", "/strategy-orders", limit_body()),
        ("GET", "/strategy-orders", None),
        ("GET", f"/strategy-orders/{w.b_strategy_id}", None),
        ("DELETE", f"/strategy-orders/{w.b_strategy_id}", None),
    ]


@pytest.mark.parametrize(("kind", "code"), TOKEN_CASES, ids=[k for k, _ in TOKEN_CASES])
async def test_bad_token_cannot_act_for_b(world: World, unchanged: None, kind: str, code: ErrorCode) -> None:
    token = forged_token(kind, world.b, world.a)
    headers = {"Authorization": f"Bearer {token}"}
    for method, path, body in victim_actions(world):
        resp = await world.api.request(method, path, json=body, headers=headers)
        assert_error(resp, 401, code)
    verify = await world.api.post(f"/auth/verify?party_a_address={world.b.account}", headers=headers)
    assert verify.status_code == 200 and verify.json()["successful"] is False


MALFORMED_HEADERS: list[tuple[str, Any, ErrorCode]] = [
    ("empty", "", E.UNAUTHORIZED),
    ("scheme only", "Bearer", E.UNAUTHORIZED),
    ("scheme and spaces", "Bearer    ", E.UNAUTHORIZED),
    ("no scheme", "{token}", E.UNAUTHORIZED),
    ("Basic", "Basic dXNlcjpwYXNz", E.UNAUTHORIZED),
    ("Token scheme", "Token {token}", E.UNAUTHORIZED),
    ("Bearer, not a JWT", "Bearer not.a.jwt", E.INVALID_TOKEN),
    ("Bearer, two tokens", "Bearer {token} {token}", E.INVALID_TOKEN),
    ("Bearer, token and junk", "Bearer {token}, Basic abc", E.INVALID_TOKEN),
    ("Bearer, 8 KB of junk", "Bearer " + "A" * 8000, E.INVALID_TOKEN),
    ("Bearer, three dots", "Bearer ...", E.INVALID_TOKEN),
    ("Bearer, latin-1 bytes", b"Bearer \xff\xfe\xfd", E.INVALID_TOKEN),
    ("Bearer, JSON", 'Bearer {"sub": "x"}', E.INVALID_TOKEN),
]


@pytest.mark.parametrize(("case", "header", "code"), MALFORMED_HEADERS, ids=[c for c, _, _ in MALFORMED_HEADERS])
async def test_malformed_authorization_header(
    world: World, unchanged: None, case: str, header: Any, code: ErrorCode
) -> None:
    if isinstance(header, str):
        header = header.replace("{token}", world.b.token)  # even B's real token, wrapped wrongly
    for method, path, body in victim_actions(world):
        resp = await world.api.request(method, path, json=body, headers={"Authorization": header})
        assert_error(resp, 401, code)


async def test_missing_authorization_header(world: World, unchanged: None) -> None:
    for method, path, body in victim_actions(world):
        assert_error(await world.api.request(method, path, json=body), 401, E.UNAUTHORIZED)


# --- A's valid token on B's resources ----------------------------------------------------------


async def test_instant_open_for_b(world: World, unchanged: None) -> None:
    """Whatever account the body names, the open is judged and booked for the token's account:
    A has not delegated to the solver (B has and would pass), so NOT_DELEGATED and no row."""
    w = world
    await w.keeper.publish()  # a fresh mark: the gate gets as far as the account
    body = {
        **open_body(),
        "account": w.b.account, "accountAddress": w.b.account, "account_address": w.b.account,
        "partyA": w.b.account, "party_a_address": w.b.account, "partyAAddress": w.b.account,
    }  # fmt: skip
    assert_error(await w.api.post("/instant_open", json=body, headers=w.a.auth), 403, E.NOT_DELEGATED)
    # B's Idempotency-Key under A's token is A's key: it never returns B's stored answer.
    resp = await w.api.post("/instant_open", json=open_body(), headers={**w.a.auth, "Idempotency-Key": w.b_open_key})
    assert_error(resp, 403, E.NOT_DELEGATED)
    assert str(w.b_temp_id) not in resp.text


async def test_stop_loss_list_of_b(world: World, unchanged: None) -> None:
    w = world
    for account in (w.b.account, w.b.account.lower(), w.b.account.upper().replace("0X", "0x")):
        assert_error(await w.api.get(f"/stop-loss/{account}", headers=w.a.auth), 403, E.FORBIDDEN_ACCOUNT)
        assert_error(await w.api.get(f"/stop_loss/{account}", headers=w.a.auth), 403, E.FORBIDDEN_ACCOUNT)
    mine = await w.api.get(f"/stop-loss/{w.a.account}", headers=w.a.auth)
    assert mine.status_code == 200 and mine.json() == []


async def test_strategy_order_of_b(world: World, unchanged: None) -> None:
    """Another account's order is answered as missing, so its ids tell nothing."""
    w = world
    assert_error(await w.api.get(f"/strategy-orders/{w.b_strategy_id}", headers=w.a.auth), 404, E.STRATEGY_NOT_FOUND)
    assert_error(await w.api.delete(f"/strategy-orders/{w.b_strategy_id}", headers=w.a.auth), 404, E.STRATEGY_NOT_FOUND)
    listed = await w.api.get("/strategy-orders?include_finished=true", headers=w.a.auth)
    assert listed.status_code == 200 and listed.json() == []


async def test_cancel_instant_open_of_b(world: World, unchanged: None) -> None:
    w = world
    assert_error(await w.api.delete(f"/instant_open/{w.b_temp_id}", headers=w.a.auth), 403, E.NOT_YOUR_QUOTE)


async def test_stop_loss_of_b(world: World, unchanged: None) -> None:
    w = world
    for path in (
        f"/stop-loss/{w.b_quote_id}",
        f"/stop_loss/{w.b_quote_id}",
        f"/stop-loss/{w.b_quote_id}?kind=stop_loss",
    ):
        assert_error(await w.api.delete(path, headers=w.a.auth), 403, E.NOT_YOUR_QUOTE)
    # Placing (replacing) B's stop loss: naming B's account, or A's account with B's quote.
    as_b = stop_loss_body(w.a, w.b_quote_id, accountAddress=w.b.account, tp="62000")
    assert_error(await w.api.post("/stop-loss", json=as_b, headers=w.a.auth), 403, E.FORBIDDEN_ACCOUNT)
    on_b_quote = stop_loss_body(w.a, w.b_quote_id, tp="62000")
    assert_error(await w.api.post("/stop-loss", json=on_b_quote, headers=w.a.auth), 403, E.NOT_YOUR_QUOTE)
    # B's owner wallet in userAddress does not help either.
    as_b_owner = stop_loss_body(w.a, w.b_quote_id, userAddress=w.b.owner, tp="62000")
    assert_error(await w.api.post("/stop-loss", json=as_b_owner, headers=w.a.auth), 403, E.TRIGGER_OWNER_MISMATCH)


async def test_instant_close_of_b(world: World, unchanged: None) -> None:
    w = world
    assert_error(await w.api.post("/instant_close", json=close_body(w.b_quote_id), headers=w.a.auth), 403,
                 E.NOT_YOUR_QUOTE)  # fmt: skip
    assert_error(await w.api.delete(f"/instant_close/{w.b_quote_id}", headers=w.a.auth), 403, E.NOT_YOUR_QUOTE)


async def test_b_still_in_control(world: World) -> None:
    """After every attack, B's own token still sees and controls everything of B (runs last)."""
    w = world
    sl = await w.api.get(f"/stop-loss/{w.b.account}", headers=w.b.auth)
    assert sl.status_code == 200 and {o["status"] for o in sl.json()} <= {"armed", "waiting"} and len(sl.json()) == 2
    order = await w.api.get(f"/strategy-orders/{w.b_strategy_id}", headers=w.b.auth)
    assert order.status_code == 200 and order.json()["status"] == "active"
    assert (await w.api.delete(f"/strategy-orders/{w.b_strategy_id}", headers=w.b.auth)).status_code == 200
    assert (await w.api.delete(f"/instant_open/{w.b_temp_id}", headers=w.b.auth)).status_code == 200
    assert (await w.api.delete(f"/stop-loss/{w.b_quote_id}", headers=w.b.auth)).status_code == 200
    assert (await w.api.delete(f"/instant_close/{w.b_quote_id}", headers=w.b.auth)).status_code == 200
