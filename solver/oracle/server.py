"""`solver oracle`: the local oracle behind the Muon HTTP shape (http-api.md §8), so the clients
that talk to Muon nodes in production run unchanged against a local stack.

`GET /v1/?app=…&method=…&params[partyA]=…` (brackets may be %-encoded) or `POST /v1/` with a
JSON body `{app, method, params}`. Answers: the success envelope; `success: false` with HTTP 400
for a bad request or a refusal (stale price: asking another node would not help) and with HTTP
503 when the chain or Redis cannot be read (a client then fails over). `GET /health` probes
Redis and the chain.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Response, get, post
from litestar.exceptions import HTTPException
from redis.asyncio import Redis

from solver.chain.reader import ChainReader
from solver.core.clock import Clock, SystemClock
from solver.core.errors import ConfigError, ErrorCode
from solver.market.marks import MarkPrices
from solver.oracle import envelope
from solver.oracle.client import OracleClient, OracleError
from solver.oracle.local import LocalOracle
from solver.oracle.signer import OracleSigner
from solver.pricing.cache import PriceCache
from solver.settings import ZERO_ADDRESS, Settings
from solver.web.health import Readiness

log = logging.getLogger("solver.oracle.server")
_MAX_BODY = 16 * 1024


def signer_from_settings(settings: Settings) -> OracleSigner:
    """The oracle's keys from settings; ConfigError (never echoing a secret) when absent or bad."""
    o = settings.oracle
    if o.schnorr_secret is None or o.gateway_private_key is None:
        raise ConfigError(
            "the oracle needs its keys: oracle.schnorr_secret and oracle.gateway_private_key "
            "(SOLVER_ORACLE__SCHNORR_SECRET, SOLVER_ORACLE__GATEWAY_PRIVATE_KEY), hex"
        )
    try:
        secret = int(o.schnorr_secret.get_secret_value().strip().removeprefix("0x"), 16)
    except ValueError:
        raise ConfigError("oracle.schnorr_secret must be a hex number") from None
    try:
        return OracleSigner(secret, o.gateway_private_key.get_secret_value().strip(), o.muon_app_id)
    except ValueError:
        raise ConfigError(
            "oracle keys are not usable: schnorr_secret must be in [1, Q-1] with a public key x < HALF_Q, "
            "gateway_private_key 32 bytes of hex"
        ) from None


def create_oracle_app(
    settings: Settings,
    *,
    oracle: OracleClient | None = None,
    redis: Redis | None = None,
    chain: ChainReader | None = None,
    clock: Clock | None = None,
) -> Litestar:
    """Build the app; composes its own Redis client, chain reader and marks unless given."""
    if settings.chain.symmio_address == ZERO_ADDRESS:
        raise ConfigError("chain.symmio_address must be set: the oracle signs for one diamond")
    owned: list[Callable[[], Awaitable[None]]] = []
    if oracle is None:
        signer = signer_from_settings(settings)
        if redis is None:
            redis = Redis.from_url(settings.redis_url)
            owned.append(redis.aclose)
        if chain is None:
            from solver.chain.web3_reader import Web3ChainReader

            chain = Web3ChainReader.from_settings(settings.chain)
            owned.append(chain.close)
        prices = PriceCache(redis, settings.redis_prefix)
        marks = MarkPrices(settings=settings, prices=prices, clock=clock or SystemClock())
        oracle = LocalOracle(signer, chain, marks, settings)
        log.info(
            "oracle signs for %s on chain %s: schnorr owner %s, gateway %s, public key x %s parity %s",
            settings.chain.symmio_address,
            settings.chain.chain_id,
            signer.owner,
            signer.gateway_address,
            hex(signer.public_key.x),
            signer.public_key.parity,
        )
    service = oracle
    probes: dict[str, Callable[[], Awaitable[object]]] = {}
    if redis is not None:
        probes["redis"] = redis.ping
    if chain is not None:
        probes["chain"] = chain.chain_id
    readiness = Readiness(probes)

    async def answer(app: object, method: object, params: object) -> Response[Any]:
        try:
            req = envelope.parse_request(app, method, params, expected_app=settings.oracle.app_name)
            if req.chain_id != settings.chain.chain_id:
                raise envelope.BadRequest(
                    f"this oracle signs for chainId {settings.chain.chain_id}, not {req.chain_id}"
                )
            if req.symmio.lower() != settings.chain.symmio_address.lower():
                raise envelope.BadRequest(f"this oracle signs for symmio {settings.chain.symmio_address} only")
            sig = await _dispatch(service, req)
        except envelope.BadRequest as exc:
            return _error(str(exc), 400)
        except OracleError as exc:
            return _error(exc.message, 503 if exc.code is ErrorCode.ORACLE_UNAVAILABLE else 400)
        except Exception:
            log.exception("oracle request failed")
            return _error("internal error", 500)
        return Response(envelope.encode(sig), status_code=200, media_type="application/json")

    @get("/v1", include_in_schema=False)
    async def muon_get(request: Request[Any, Any, Any]) -> Response[Any]:
        try:
            app, method, params = envelope.parse_query(request.scope.get("query_string", b""))
        except envelope.BadRequest as exc:
            return _error(str(exc), 400)
        return await answer(app, method, params)

    @post("/v1", include_in_schema=False)
    async def muon_post(request: Request[Any, Any, Any]) -> Response[Any]:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error("the body must be JSON: {app, method, params}", 400)
        if not isinstance(body, dict):
            return _error("the body must be a JSON object: {app, method, params}", 400)
        return await answer(body.get("app"), body.get("method"), body.get("params"))

    @get("/health", include_in_schema=False)
    async def health() -> Response[Any]:
        checks = await readiness.check()
        ok = all(checks.values())
        return Response({"status": "ok" if ok else "degraded", "checks": checks}, status_code=200 if ok else 503)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        try:
            if chain is not None:
                got = await chain.chain_id()
                if got != settings.chain.chain_id:
                    raise ConfigError(f"RPC chain id {got} differs from configured chain_id {settings.chain.chain_id}")
            yield
        finally:
            for close in reversed(owned):
                await close()

    return Litestar(
        route_handlers=[muon_get, muon_post, health],
        exception_handlers={HTTPException: _http_error},
        lifespan=[lifespan],
        openapi_config=None,
        request_max_body_size=_MAX_BODY,
        debug=False,
    )


async def _dispatch(oracle: OracleClient, req: envelope.OracleRequest) -> envelope.AnySig:
    if req.method == envelope.PARTY_A_WITH_PRICE:
        assert req.symbol_id is not None
        return await oracle.party_a_upnl_and_price(party_a=req.party_a, symbol_id=req.symbol_id)
    if req.method == envelope.PARTY_A:
        return await oracle.party_a_upnl(party_a=req.party_a)
    if req.method == envelope.PARTY_B:
        assert req.party_b is not None
        return await oracle.party_b_upnl(party_b=req.party_b, party_a=req.party_a)
    assert req.party_b is not None and req.symbol_id is not None
    return await oracle.pair_upnl_and_price(party_b=req.party_b, party_a=req.party_a, symbol_id=req.symbol_id)


def _error(message: str, status: int) -> Response[Any]:
    return Response(envelope.encode_error(message), status_code=status, media_type="application/json")


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """Framework errors (unknown path, wrong method, oversize body) in the same envelope."""
    return _error(str(exc.detail), exc.status_code)
