"""Schemathesis against the app's own OpenAPI schema (/docs/openapi.json), every operation.

Nothing is mocked: the production app on a real uvicorn server with the real Postgres, Redis and
the anvil devnet; fresh marks are kept in Redis while it runs, and every request carries a valid
Bearer token of a funded, delegated sub-account, so authenticated operations run past the guard.
Routes that need what a test stack lacks may answer 503 with the error body; never a 5xx other
than that, and never a 500.

Per operation: `MAX_EXAMPLES` cases that fit the schema (positive) and as many that do not
(negative). Checks on every response: no server error, status code / content type / body as the
schema documents them, and every 4xx/5xx is the http-api.md error body.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from solver.auth.jwt import JwtCodec
from solver.core.clock import SystemClock
from solver.core.errors import ErrorCode
from solver.devnet.anvil import free_port
from solver.devnet.deploy import DevnetInfo
from tests.e2e.processes import Proc, wait_http
from tests.fixtures.api import ERROR_KEYS
from tests.fixtures.app import settings_for
from tests.fixtures.redis import REDIS_URL
from tests.fixtures.trading import PriceKeeper, new_account

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 25
STATUSES = {c.status for c in ErrorCode}
CODES = {c.code: c for c in ErrorCode}
SERVER_ERRORS_ALLOWED = {503}  # a dependency the test stack lacks (UNAVAILABLE, PRICE_*, ORACLE_*)


@schemathesis.check
def spec_error_body(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every rejection is `{"error_code": int, "error_message": str, "error_detail": [str] | null}`
    with a code from the catalogue whose status is the response's."""
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError as exc:
        raise AssertionError(f"{response.status_code} without a JSON body: {response.text[:200]!r}") from exc
    assert isinstance(body, dict) and set(body) == ERROR_KEYS, f"not the error body: {body!r}"[:300]
    code = CODES.get(body["error_code"])
    assert code is not None, f"error_code {body['error_code']!r} is not in the catalogue"
    assert isinstance(body["error_message"], str) and body["error_message"], body
    detail = body["error_detail"]
    assert detail is None or (isinstance(detail, list) and all(isinstance(d, str) for d in detail)), body
    assert response.status_code == code.status or response.status_code in (405, 413, 429), (
        f"status {response.status_code} with code {code.code} (documented status {code.status})"
    )
    return True


@schemathesis.check
def no_unexpected_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """No 5xx except 503 with the error body (a dependency the test stack lacks)."""
    assert response.status_code < 500 or response.status_code in SERVER_ERRORS_ALLOWED, (
        f"{response.status_code}: {response.text[:300]}"
    )
    return True


CHECKS = [
    no_unexpected_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    spec_error_body,
]


@dataclass
class Report:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    per_operation: Counter[str] = field(default_factory=Counter)
    unsatisfiable: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def has_negative_space(raw: dict[str, Any], method: str, path: str) -> bool:
    """A request body, a query or header parameter, or a constrained path parameter."""
    op = raw["paths"][path][method.lower()]
    if "requestBody" in op:
        return True
    for p in op.get("parameters", []):
        schema = p.get("schema", {})
        if p["in"] != "path" or set(schema) - {"type", "description", "title"} or schema.get("type") != "string":
            return True
    return False


@dataclass(frozen=True)
class Identity:
    """A real funded, delegated sub-account, its owner and the MultiAccount, with its token."""

    account: str
    owner: str
    multi_account: str
    token: str

    @property
    def path_values(self) -> dict[str, str]:
        return {"account": self.account, "owner": self.owner, "multi_account": self.multi_account}


def _property(op: Any, mode: GenerationMode, path_parameters: dict[str, str], body: Any) -> Any:
    """One bounded Hypothesis property over the cases of one operation."""

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy(generation_mode=mode, path_parameters=path_parameters or None))
    def one(case: Any) -> None:
        body(case)

    return one


def _call(case: Any, base_url: str, session: requests.Session, auth: dict[str, str], report: Report) -> None:
    case.headers = {**(case.headers or {}), **auth}
    response = case.call(base_url=base_url, session=session, timeout=30)
    report.requests += 1
    report.statuses[response.status_code] += 1
    report.per_operation[case.operation.label] += 1
    case.validate_response(response, checks=CHECKS)


def run_schemathesis(raw_schema: dict[str, Any], base_url: str, who: Identity) -> Report:
    """Every operation: positive and negative cases, and positive ones with the real identity in the
    path (so account-scoped reads get past validation). Blocking I/O: runs in a worker thread."""
    schema = schemathesis.openapi.from_dict(raw_schema)
    report = Report()
    session = requests.Session()
    auth = {"Authorization": f"Bearer {who.token}", "Origin": "http://localhost:3000"}
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 30, [op.label for op in operations]
    for op in operations:
        path_names = {p["name"] for p in raw_schema["paths"][op.path][op.method.lower()].get("parameters", [])
                      if p["in"] == "path"}  # fmt: skip
        fixed = {k: v for k, v in who.path_values.items() if k in path_names}
        passes: list[tuple[str, GenerationMode, dict[str, str]]] = [("positive", GenerationMode.POSITIVE, {})]
        if has_negative_space(raw_schema, op.method, op.path):
            passes.append(("negative", GenerationMode.NEGATIVE, {}))
        if fixed:
            passes.append(("own identity", GenerationMode.POSITIVE, fixed))
        for name, mode, path_parameters in passes:
            label = f"{op.label} [{name}]"
            one = _property(op, mode, path_parameters, lambda case: _call(case, base_url, session, auth, report))
            try:
                one()
            except Unsatisfiable:
                report.unsatisfiable.append(label)
            except BaseException as exc:  # schemathesis' FailureGroup is a BaseExceptionGroup
                if isinstance(exc, KeyboardInterrupt | SystemExit):
                    raise
                report.failures.append(f"{label}: {str(exc)[:3000]}")
    return report


async def test_schemathesis_every_operation(devnet: DevnetInfo, database_url: str, redis_prefix: str,
                                            tmp_path: Path) -> None:  # fmt: skip
    app_settings = settings_for(devnet, database_url, redis_prefix, api={"host": "127.0.0.1", "port": free_port()})
    owner = devnet.demo_accounts[0].owner
    account = new_account(devnet)  # funded, delegated to the solver
    token = JwtCodec(app_settings.auth, SystemClock()).issue(
        account=account, owner=owner, expires_at=datetime.now(UTC) + timedelta(hours=1)
    )
    who = Identity(account, owner, devnet.multi_account, token)
    base = f"http://127.0.0.1:{app_settings.api.port}"
    # `solver api` in its own process, as deployed (and no GIL shared with the generator).
    api = Proc("api", ["api"], app_settings, tmp_path).start()
    redis = aioredis.from_url(REDIS_URL)
    started = time.monotonic()
    try:
        await asyncio.to_thread(wait_http, f"{base}/health", api)
        async with PriceKeeper(redis, redis_prefix), httpx.AsyncClient(base_url=base) as client:
            raw_schema = (await client.get("/docs/openapi.json")).json()
            report = await asyncio.to_thread(run_schemathesis, raw_schema, base, who)
    finally:
        api.stop()
        await redis.aclose()
    elapsed = time.monotonic() - started
    print(
        f"\nschemathesis: {len(report.per_operation)} operations, {report.requests} requests in {elapsed:.0f} s; "
        f"statuses {dict(sorted(report.statuses.items()))}; no negative space: {len(report.unsatisfiable)}"
    )
    assert not report.failures, "\n\n".join(report.failures) + "\n\n" + api.tail(40)
    assert not [s for s in report.statuses if s >= 500 and s not in SERVER_ERRORS_ALLOWED]
    assert len(report.per_operation) >= 30
    assert report.requests >= len(report.per_operation) * 10
