"""Cross-cutting HTTP behaviour: error body everywhere, CORS, prefix mount, docs, readiness."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from solver.app import create_app
from solver.core.errors import ErrorCode
from solver.settings import Settings
from tests.fixtures.app import settings_for

pytestmark = pytest.mark.integration

ERROR_KEYS = {"error_code", "error_message", "error_detail"}


async def test_unknown_route_has_error_body(api: AsyncTestClient[Any]) -> None:
    resp = await api.get("/definitely/not/here")
    assert resp.status_code == 404
    assert set(resp.json()) == ERROR_KEYS
    assert resp.json()["error_code"] == ErrorCode.NOT_FOUND.code


async def test_wrong_method_has_error_body(api: AsyncTestClient[Any]) -> None:
    resp = await api.delete("/login")
    assert resp.status_code == 405
    assert set(resp.json()) == ERROR_KEYS


async def test_malformed_json_is_400(api: AsyncTestClient[Any]) -> None:
    resp = await api.post("/login", content=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert set(resp.json()) == ERROR_KEYS


@pytest.mark.parametrize("body", [b'{"account_address":"\xff"}', b'{"a":' * 5000])
async def test_undecodable_json_is_400_not_500(api: AsyncTestClient[Any], body: bytes) -> None:
    resp = await api.post("/login", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error_code"] == ErrorCode.VALIDATION.code


async def test_oversize_body_is_413(api: AsyncTestClient[Any]) -> None:
    resp = await api.post(
        "/login", content=b'{"a":"' + b"x" * 200_000 + b'"}', headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 413
    assert set(resp.json()) == ERROR_KEYS


async def test_cors_preflight(api: AsyncTestClient[Any]) -> None:
    resp = await api.options(
        "/instant_open",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,app-name",
        },
    )
    assert resp.status_code in (200, 204)
    assert resp.headers["access-control-allow-origin"] == "http://localhost:3000"
    allowed = resp.headers["access-control-allow-headers"].lower()
    for header in ("app-name", "authorization", "content-type"):
        assert header in allowed


async def test_cors_refuses_unknown_origin(api: AsyncTestClient[Any]) -> None:
    resp = await api.get("/contract-symbols", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in resp.headers


async def test_error_codes_catalogue(api: AsyncTestClient[Any]) -> None:
    resp = await api.get("/error_codes")
    codes = resp.json()
    assert codes[str(ErrorCode.INVALID_NONCE.code)] == ErrorCode.INVALID_NONCE.message
    assert len(codes) == len(ErrorCode)
    one = await api.get(f"/error_codes/{ErrorCode.INVALID_LEVERAGE.code}")
    assert one.json() == {str(ErrorCode.INVALID_LEVERAGE.code): ErrorCode.INVALID_LEVERAGE.message}
    for bad in ("99999", "abc", "-1"):
        resp = await api.get(f"/error_codes/{bad}")
        assert resp.status_code == 404 and set(resp.json()) == ERROR_KEYS


async def test_health_and_readyz(api: AsyncTestClient[Any]) -> None:
    assert (await api.get("/health")).json() == {"status": "ok"}
    ready = await api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["isReady"] is True


async def test_openapi_docs(api: AsyncTestClient[Any]) -> None:
    schema = (await api.get("/docs/openapi.json")).json()
    for path in ("/login", "/nonce/{account}", "/contract-symbols", "/get_locked_params/{symbol}"):
        assert path in schema["paths"], path
    assert (await api.get("/docs")).status_code == 200


async def test_readyz_reports_a_dead_dependency(devnet: Any, database_url: str, redis_prefix: str) -> None:
    settings: Settings = settings_for(devnet, database_url, redis_prefix, chain={"rpc_urls": ["http://127.0.0.1:9"]})
    app = create_app(settings, check_chain=False)
    async with AsyncTestClient(app=app) as client:
        resp = await client.get("/readyz")
        assert resp.status_code == 503
        assert resp.json()["isReady"] is False
        assert resp.json()["checks"] == {"database": True, "redis": True, "chain": False}


async def test_routes_also_served_under_prefix(devnet: Any, database_url: str, redis_prefix: str) -> None:
    prefix = f"/v1/{devnet.chain_id}a/{devnet.multi_account}"
    settings = settings_for(devnet, database_url, redis_prefix, api={"prefix": prefix})
    async with AsyncTestClient(app=create_app(settings)) as client:
        root = await client.get("/contract-symbols")
        prefixed = await client.get(f"{prefix}/contract-symbols")
        doubled = await client.get(f"{prefix}//contract-symbols")
        assert root.status_code == prefixed.status_code == doubled.status_code == 200
        assert root.json() == prefixed.json() == doubled.json()
