"""State providers the worker and the engine register with their Heartbeats (published to Redis
for GET /metrics), and the wiring helpers the composition roots call."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from solver.core.clock import Clock
from solver.observability.heartbeat import Heartbeats, StateProvider, StateValue
from solver.pricing.cache import PriceCache
from solver.pricing.status import not_fresh, price_status
from solver.settings import Settings
from solver.web.health import Report

if TYPE_CHECKING:
    from solver.pricing.feed import FeedRunner
    from solver.quotes.lane import Lane


def heartbeats_for(settings: Settings, redis: Redis | None = None) -> Heartbeats:
    """Heartbeats on `redis`, or on a client of their own (closed by `Heartbeats.close`)."""
    obs = settings.observability
    own = redis is None
    client = Redis.from_url(settings.redis_url) if redis is None else redis
    hb = Heartbeats(
        client,
        settings.redis_prefix,
        interval_s=obs.heartbeat_interval_s,
        state_interval_s=obs.state_interval_s,
        forget_after_s=obs.forget_after_s,
    )
    if own:
        hb.owned.append(client)
    return hb


def lane_state(lane: Lane) -> StateProvider:
    """Nonces of one signer lane: the worker's next one and the chain's latest and pending counts
    (two RPC reads per call, so every `observability.state_interval_s`, not per loop iteration)."""

    async def provide() -> Mapping[str, StateValue | None]:
        latest, pending = await asyncio.gather(
            lane.ctx.node.nonce(lane.address, "latest"), lane.ctx.node.nonce(lane.address, "pending")
        )
        return {
            "address": lane.address,
            "next_nonce": lane.next_nonce,  # None while the lane re-seeds it: left out
            "latest_nonce": latest,
            "pending_nonce": pending,
            "in_flight": lane.stats.in_flight,
            "sent": lane.stats.sent,
            "replaced": lane.stats.replaced,
            "settled": lane.stats.settled,
        }

    return provide


def feed_state(feed: FeedRunner) -> StateProvider:
    """The counters and times of one price feed (FeedStats)."""

    async def provide() -> Mapping[str, StateValue | None]:
        return {k: v for k, v in asdict(feed.stats).items() if isinstance(v, (int, float)) or v is None}

    return provide


def price_report(prices: PriceCache, settings: Settings, clock: Clock) -> Report:
    """Readiness report of price freshness: `ok` when every configured symbol's price is fresh."""

    async def report() -> Mapping[str, Any]:
        latest = await prices.get_many([s.name for s in settings.symbols])
        statuses = price_status(
            [s.name for s in settings.symbols], latest, now=clock.time(), max_age_s=settings.risk.max_price_age_s
        )
        stale = not_fresh(statuses)
        return {"ok": not stale, "not_fresh": stale}

    return report
