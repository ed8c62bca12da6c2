"""What the WebSocket channels share within one API process (built by the composition root)."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from solver.market.service import MarketService
from solver.notify.ws.balances import BalanceFeed
from solver.notify.ws.hub import NotificationHub
from solver.notify.ws.marks import MarkFeed
from solver.settings import Settings, WsSettings


@dataclass
class Streams:
    settings: WsSettings
    market: MarketService
    hub: NotificationHub
    balances: BalanceFeed
    marks: MarkFeed
    known_symbols: set[str]

    async def close(self) -> None:
        await self.hub.close()


def build_streams(settings: Settings, redis: Redis, market: MarketService) -> Streams:
    ws = settings.ws
    return Streams(
        settings=ws,
        market=market,
        hub=NotificationHub(redis, settings.redis_prefix, queue_size=ws.send_queue),
        balances=BalanceFeed(redis=redis, prefix=settings.redis_prefix, market=market, ttl_s=ws.upnl_cache_ttl_s),
        marks=MarkFeed(market=market, reuse_s=min(0.5, ws.mark_interval_s / 2)),
        known_symbols={s.name for s in settings.symbols},
    )
