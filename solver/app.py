"""Composition root of the API process: the only place that wires concrete classes.

`create_app(settings)` builds everything from settings; tests may pass ready-made
dependencies (a Redis client, a DB engine, a chain reader) to share fixtures.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

from litestar import Litestar, Router
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.types import LifeSpanReceive, LifeSpanScope, LifeSpanSend, Receive, Scope, Send
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from solver.auth.controllers import auth_routes
from solver.auth.guard import TokenAuth, provide_principal
from solver.auth.jwt import JwtCodec
from solver.auth.nonces import NonceStore
from solver.auth.owners import OwnerResolver
from solver.auth.service import AuthService
from solver.chain.reader import ChainReader
from solver.core.clock import Clock, SystemClock
from solver.core.errors import ConfigError
from solver.db.engine import create_engine, session_factory
from solver.market.controllers import market_routes
from solver.market.feeds import MarketFeeds
from solver.market.repository import MarketStats
from solver.market.service import MarketService
from solver.notify.controllers import notify_routes
from solver.notify.publish import NotificationPublisher, enable_publishing
from solver.notify.service import NotificationHistory
from solver.notify.ws.controllers import ws_routes
from solver.notify.ws.service import Streams, build_streams
from solver.observability import endpoint as metrics_endpoint
from solver.observability.collect import SystemMetrics
from solver.observability.endpoint import MetricsEndpoint
from solver.observability.http import HttpMetrics
from solver.observability.states import price_report
from solver.orders.controllers import trigger_routes
from solver.orders.service import TriggerOrderService
from solver.pricing.cache import PriceCache
from solver.quotes.close_service import InstantCloseService
from solver.quotes.controllers import instant_routes
from solver.quotes.open_service import InstantOpenService
from solver.quotes.repository import temp_id_seed_source
from solver.quotes.service import InstantHistory
from solver.quotes.temp_ids import TempIdAllocator
from solver.risk.flags import ReduceOnlyFlags
from solver.settings import Settings
from solver.strategy.controllers import strategy_routes
from solver.strategy.service import StrategyOrderService
from solver.web import meta
from solver.web.errors import EXCEPTION_HANDLERS
from solver.web.health import Readiness
from solver.web.openapi import COMPONENTS as OPENAPI_COMPONENTS
from solver.web.openapi import document_errors
from solver.web.paths import normalize_scope
from solver.web.rate_limit import RateLimiter, RateLimitMiddleware

log = logging.getLogger("solver.app")


class SolverApp(Litestar):
    """Litestar with path normalisation ahead of routing (bots send `//login`), and every HTTP
    request timed by route template outside everything else (solver.observability.http)."""

    async def __call__(
        self,
        scope: Scope | LifeSpanScope,
        receive: Receive | LifeSpanReceive,
        send: Send | LifeSpanSend,
    ) -> None:
        if scope["type"] != "lifespan":
            normalize_scope(scope)
        services = self.state.get("services") if scope["type"] == ScopeType.HTTP else None
        if services is not None:
            http = services.metrics.http
            await http.measure(cast("Scope", scope), cast("Receive", receive), cast("Send", send), super().__call__)
            return
        await super().__call__(scope, receive, send)


@dataclass
class Services:
    settings: Settings
    redis: Redis
    engine: AsyncEngine
    chain: ChainReader
    clock: Clock
    auth: AuthService
    token_auth: TokenAuth
    market: MarketService
    temp_ids: TempIdAllocator
    readiness: Readiness
    instant_opens: InstantOpenService
    instant_closes: InstantCloseService
    instant_history: InstantHistory
    notifications: NotificationHistory
    publisher: NotificationPublisher  # notifications committed here are pushed to WebSocket clients
    streams: Streams
    trigger_orders: TriggerOrderService
    strategy_orders: StrategyOrderService
    metrics: MetricsEndpoint  # GET /metrics: this process's request histograms and the system's state


def build_services(
    settings: Settings,
    *,
    redis: Redis | None = None,
    engine: AsyncEngine | None = None,
    chain: ChainReader | None = None,
    clock: Clock | None = None,
) -> Services:
    clock = clock or SystemClock()
    # A blocking pool waits for a free connection under load instead of failing the request.
    # A Redis restart leaves every pooled connection dead, and redis-py does not retry a command
    # by default: the first request on each would fail. A dropped connection is retried on a fresh
    # one (twice, 10-100 ms apart); a Redis that is down still fails within ~0.1 s (503 UNAVAILABLE,
    # solver.web.errors). A retried command the server did run costs a temp id gap, a spent nonce.
    redis = redis or Redis(
        connection_pool=BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=200,
            timeout=5,
            retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), 2),
            retry_on_error=[RedisConnectionError],
        )
    )
    engine = engine or create_engine(settings.database_url)
    if chain is None:
        from solver.chain.web3_reader import Web3ChainReader

        chain = Web3ChainReader.from_settings(settings.chain)
    sessions = session_factory(engine)
    publisher = NotificationPublisher(redis, settings.redis_prefix)
    enable_publishing(sessions, publisher)
    prices = PriceCache(redis, settings.redis_prefix)
    jwt_codec = JwtCodec(settings.auth, clock)
    auth = AuthService(
        settings=settings,
        nonces=NonceStore(redis, settings.redis_prefix, settings.auth.nonce_ttl_s),
        owners=OwnerResolver(chain, redis, settings.redis_prefix, settings.chain.owner_cache_ttl_s),
        chain=chain,
        jwt=jwt_codec,
        clock=clock,
    )
    stats = MarketStats(sessions)
    market = MarketService(
        settings=settings,
        prices=prices,
        chain=chain,
        stats=stats,
        clock=clock,
        feeds=MarketFeeds(redis, settings.redis_prefix),
    )

    async def db_probe() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def redis_probe() -> None:
        await redis.ping()

    obs = settings.observability
    readiness = Readiness(
        {"database": db_probe, "redis": redis_probe, "chain": chain.chain_id},
        timeout_s=obs.probe_timeout_s,
        reports={"prices": price_report(prices, settings, clock)},
        required=["prices"] if obs.ready_requires_fresh_prices else [],
    )
    system_metrics = SystemMetrics(
        settings=settings,
        redis=redis,
        engine=engine,
        timeout_s=obs.scrape_timeout_s,
        loop_down_after_s=obs.loop_down_after_s,
    )
    token = obs.metrics_token.get_secret_value() if obs.metrics_token else None
    temp_ids = TempIdAllocator(redis, settings.redis_prefix, temp_id_seed_source(sessions))
    return Services(
        settings=settings,
        redis=redis,
        engine=engine,
        chain=chain,
        clock=clock,
        auth=auth,
        token_auth=TokenAuth(jwt_codec),
        market=market,
        temp_ids=temp_ids,
        readiness=readiness,
        instant_opens=InstantOpenService(
            settings=settings,
            sessions=sessions,
            chain=chain,
            marks=market.marks,
            stats=stats,
            temp_ids=temp_ids,
            clock=clock,
            flags=ReduceOnlyFlags(redis, settings.redis_prefix),
        ),
        instant_closes=InstantCloseService(
            settings=settings, sessions=sessions, chain=chain, marks=market.marks, clock=clock
        ),
        instant_history=InstantHistory(sessions=sessions, clock=clock),
        notifications=NotificationHistory(sessions),
        publisher=publisher,
        streams=build_streams(settings, redis, market),
        trigger_orders=TriggerOrderService(
            settings=settings, sessions=sessions, chain=chain, marks=market.marks, clock=clock
        ),
        strategy_orders=StrategyOrderService(settings=settings, sessions=sessions, clock=clock),
        metrics=MetricsEndpoint(HttpMetrics(), system_metrics, token=token),
    )


def _route_handlers() -> list[Any]:
    return [
        *meta.routes(),
        *auth_routes(),
        *market_routes(),
        *instant_routes(),
        *notify_routes(),
        *ws_routes(),
        *trigger_routes(),
        *strategy_routes(),
        *metrics_endpoint.routes(),
    ]


def create_app(settings: Settings, services: Services | None = None, *, check_chain: bool = True) -> Litestar:
    svc = services or build_services(settings)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        if check_chain:
            got = await svc.chain.chain_id()
            if got != settings.chain.chain_id:
                raise ConfigError(f"RPC chain id {got} differs from configured chain_id {settings.chain.chain_id}")
        # Re-seed below every stored temp id: losing Redis never hands an id out twice. With Redis
        # or Postgres down the API still starts (so /readyz can say which): seeded in the
        # background, and `allocate` seeds a missing counter itself in the meantime.
        seeding: asyncio.Task[None] | None = None
        try:
            await asyncio.wait_for(svc.temp_ids.start(), timeout=2 * settings.observability.probe_timeout_s)
        except Exception as exc:
            log.warning("temp quote id counter not seeded at start (%s); retrying in the background", repr(exc))
            seeding = asyncio.create_task(_seed_temp_ids(svc.temp_ids), name="seed-temp-ids")
        try:
            yield
        finally:
            if seeding is not None:
                seeding.cancel()
            await svc.streams.close()
            await svc.publisher.close()
            if services is None:
                await svc.redis.aclose()
                await svc.engine.dispose()
                await svc.chain.close()

    handlers = _route_handlers()
    document_errors(handlers)  # the OpenAPI schema names the error body and the Bearer token
    route_handlers: list[Any] = list(handlers)
    if settings.api.prefix:
        route_handlers.append(Router(path=settings.api.prefix, route_handlers=handlers, include_in_schema=False))

    dependencies = {
        "settings": meta.provide(settings),
        "auth": meta.provide(svc.auth),
        "market": meta.provide(svc.market),
        "readiness": meta.provide(svc.readiness),
        "token_auth": meta.provide(svc.token_auth),
        "instant_opens": meta.provide(svc.instant_opens),
        "instant_closes": meta.provide(svc.instant_closes),
        "instant_history": meta.provide(svc.instant_history),
        "notifications": meta.provide(svc.notifications),
        "streams": meta.provide(svc.streams),
        "trigger_orders": meta.provide(svc.trigger_orders),
        "strategy_orders": meta.provide(svc.strategy_orders),
        "metrics_endpoint": meta.provide(svc.metrics),
        "principal": Provide(provide_principal),
    }
    return SolverApp(
        route_handlers=route_handlers,
        dependencies=dependencies,
        exception_handlers=EXCEPTION_HANDLERS,
        cors_config=CORSConfig(
            allow_origins=settings.api.cors_origins,
            allow_headers=["App-Name", "Authorization", "Content-Type", "Idempotency-Key"],
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_credentials=True,
        ),
        openapi_config=OpenAPIConfig(
            title="Symmio solver API",
            components=OPENAPI_COMPONENTS,
            version="0.1.0",
            path="/docs",
            render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin(path="/swagger")],
        ),
        lifespan=[lifespan],
        middleware=_rate_limit(settings, svc),
        request_max_body_size=settings.api.max_body_bytes,
        state=State({"services": svc}),
        debug=False,
    )


def _rate_limit(settings: Settings, svc: Services) -> list[Any]:
    """Per-IP and per-account limits in Redis (settings.ratelimit); nothing at all when disabled."""
    if not settings.ratelimit.enabled:
        return []
    limiter = RateLimiter(svc.redis, settings.redis_prefix, settings.ratelimit, api_prefix=settings.api.prefix)
    return [RateLimitMiddleware(limiter, svc.token_auth)]


async def _seed_temp_ids(temp_ids: TempIdAllocator) -> None:
    delay = 1.0
    while True:
        await asyncio.sleep(delay)
        try:
            await temp_ids.start()
        except Exception:
            delay = min(delay * 2, 30.0)
            continue
        log.info("temp quote id counter seeded")
        return


def app_from_env() -> Litestar:
    """Factory for `uvicorn --factory` (one app per API worker process)."""
    from solver.observability.logs import configure_from_settings
    from solver.settings import load_settings

    settings = load_settings()
    configure_from_settings(settings)
    return create_app(settings)
