"""Composition root of the engine (`solver engine`): price ingestion, and the loops that consume it.

Wires the configured price source (settings.pricing.source: binance | replay | oracle) into a
FeedRunner that publishes every accepted tick to the latest-price keys and the price stream
(solver.pricing.stream), then runs it next to the engine's other loops until SIGTERM/SIGINT.

Other loops (trigger books, account health, liquidation) plug in as `Loop`s: an async callable
taking the stop event, returning soon after it is set, catching its own transient errors at its
loop boundary (log, back off, continue) and re-raising CancelledError. Wire them in
`register_loops` (the one place to add a line), from the Engine's shared pieces:

    def register_loops(engine: Engine) -> None:
        triggers = TriggerLoop(engine.redis, engine.stream, sessions, engine.clock)
        engine.add_loop(triggers.run)        # consumer group on engine.stream, see its docstring

An exception escaping a loop is a crash (DESIGN.md, crash-only): the engine stops every loop and
exits non-zero, and the restart runs the same recovery path as a normal start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from solver.core.clock import Clock, SystemClock
from solver.market.feeds import MarketFeeds
from solver.observability.heartbeat import Heartbeats
from solver.observability.states import feed_state, heartbeats_for
from solver.oracle.client import OracleClient
from solver.pricing.cache import PriceCache
from solver.pricing.feed import Backoff, FeedRunner, PricePublisher
from solver.pricing.sources import BinanceMarkPriceSource, OracleSource, PriceSource, ReplaySource
from solver.pricing.stream import PriceStream
from solver.settings import Settings

log = logging.getLogger("solver.engine")

Loop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]  # an `async def run(stop)`
STOP_GRACE_S = 5.0  # loops get this long to return after stop before they are cancelled


@dataclass
class Engine:
    settings: Settings
    redis: Redis
    prices: PriceCache
    stream: PriceStream
    clock: Clock
    feeds: list[FeedRunner]
    extra_loops: list[Loop] = field(default_factory=list)
    closers: list[object] = field(default_factory=list)
    heartbeats: Heartbeats | None = None  # loop beats and feed counters for GET /metrics

    def add_loop(self, loop: Loop) -> None:
        self.extra_loops.append(loop)

    def beat(self, loop: str) -> None:
        if self.heartbeats is not None:
            self.heartbeats.beat(loop)


def build_source(settings: Settings, *, clock: Clock, oracle: OracleClient | None = None) -> PriceSource:
    p = settings.pricing
    if p.source == "binance":
        return BinanceMarkPriceSource(p.binance_ws_url, [s.name for s in settings.symbols])
    if p.source == "oracle":
        if oracle is None:
            raise ValueError("the oracle source needs an OracleClient")
        return OracleSource(oracle, settings.symbols, party_a=settings.chain.solver_address, poll_s=p.oracle_poll_s)
    return ReplaySource(
        settings.symbols, interval_s=p.replay_interval_s, seed=p.replay_seed, csv_path=p.replay_csv, clock=clock
    )


def build_engine(
    settings: Settings,
    *,
    redis: Redis | None = None,
    sources: Sequence[PriceSource] | None = None,
    clock: Clock | None = None,
) -> Engine:
    """The engine with its price feed(s); `sources` replaces the configured one (tests)."""
    clock = clock or SystemClock()
    closers: list[object] = []
    if redis is None:
        redis = Redis.from_url(settings.redis_url)
        closers.append(redis)
    prices = PriceCache(redis, settings.redis_prefix)
    stream = PriceStream(redis, settings.redis_prefix, maxlen=settings.pricing.stream_maxlen)
    if sources is None:
        oracle: OracleClient | None = None
        if settings.pricing.source == "oracle":
            from solver.oracle.muon import MuonClient

            oracle = MuonClient.from_settings(settings)
            closers.append(oracle)
        sources = [build_source(settings, clock=clock, oracle=oracle)]
    hourly = MarketFeeds(redis, settings.redis_prefix)
    publisher = PricePublisher(prices, stream, listeners=[hourly.record_price])
    p = settings.pricing
    backoff = Backoff(min_s=p.reconnect_min_s, max_s=p.reconnect_max_s)
    feeds = [
        FeedRunner(
            source,
            publisher,
            # Heartbeats are for sockets: a replay or a poller has no connection to go silent.
            silence_timeout_s=p.silence_timeout_s if isinstance(source, BinanceMarkPriceSource) else None,
            backoff=backoff,
            max_clock_skew_s=p.max_clock_skew_s,
            clock=clock,
        )
        for source in sources
    ]
    heartbeats = heartbeats_for(settings, redis)
    for feed in feeds:
        feed.beat = heartbeats.beat
        heartbeats.add_state("feed", feed.name, feed_state(feed), every_s=settings.observability.heartbeat_interval_s)
    return Engine(
        settings=settings,
        redis=redis,
        prices=prices,
        stream=stream,
        clock=clock,
        feeds=feeds,
        closers=closers,
        heartbeats=heartbeats,
    )


def register_loops(engine: Engine) -> None:
    """The loops that consume the price stream, each with its own consumer group."""
    from solver.orders import trigger_engine
    from solver.risk import health_engine
    from solver.strategy import strategy_engine

    trigger_engine.register(engine).beat = engine.beat
    health_engine.register(engine).beat = engine.beat
    strategy_engine.register(engine).beat = engine.beat


async def run_engine(engine: Engine, stop: asyncio.Event) -> None:
    """Run every feed and loop until `stop` (or until a loop crashes, which is re-raised)."""
    named: list[tuple[str, Loop]] = [(f"feed-{f.name}", f.run) for f in engine.feeds]
    named += [(_loop_name(loop), loop) for loop in engine.extra_loops]
    tasks: dict[asyncio.Task[Any], str] = {asyncio.create_task(loop(stop), name=name): name for name, loop in named}
    # Not one of the loops: it never ends by itself, and must not keep a finished engine alive.
    beats_stop = asyncio.Event()
    beats = asyncio.create_task(engine.heartbeats.run(beats_stop)) if engine.heartbeats is not None else None
    stopper: asyncio.Task[Any] = asyncio.create_task(stop.wait())
    pending: set[asyncio.Task[Any]] = set(tasks)
    failure: BaseException | None = None
    try:
        while pending and not stop.is_set():
            done, pending = await asyncio.wait(pending | {stopper}, return_when=asyncio.FIRST_COMPLETED)
            pending.discard(stopper)
            for task in done - {stopper}:
                exc = None if task.cancelled() else task.exception()
                if exc is not None:
                    log.error("engine loop %s crashed", tasks[task], exc_info=exc)
                    failure = failure or exc
                    stop.set()
                elif not stop.is_set():
                    log.info("engine loop %s finished", tasks[task])
        stop.set()  # every loop ended, a loop crashed, or we were asked to stop
        if pending:
            _, late = await asyncio.wait(pending, timeout=STOP_GRACE_S)
            for task in late:
                log.warning("engine loop %s did not stop in %s s; cancelling it", tasks[task], STOP_GRACE_S)
                task.cancel()
            await asyncio.wait(pending)
            for task in pending:
                exc = None if task.cancelled() else task.exception()
                if exc is not None:
                    log.error("engine loop %s failed while stopping", tasks[task], exc_info=exc)
                    failure = failure or exc
    finally:
        stopper.cancel()
        for task in tasks:
            task.cancel()
        beats_stop.set()
        await asyncio.gather(stopper, *tasks, *([beats] if beats else []), return_exceptions=True)
        await close_engine(engine)
    if failure is not None:
        raise failure


async def close_engine(engine: Engine) -> None:
    for c in engine.closers:
        close = getattr(c, "aclose", None) or getattr(c, "close", None)
        if close is not None:
            try:
                await close()
            except Exception:  # best effort at shutdown
                log.debug("close failed", exc_info=True)


def _loop_name(loop: Loop) -> str:
    return str(getattr(loop, "__qualname__", None) or repr(loop))


def main(settings: Settings, *, with_loops: bool = True) -> int:
    """`solver engine` (and `solver prices`, which runs the feed alone: `with_loops=False`)."""

    async def _main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        engine = build_engine(settings)
        if with_loops:
            register_loops(engine)
        log.info(
            "engine started: price source %s, %d other loop(s)",
            ", ".join(f.name for f in engine.feeds),
            len(engine.extra_loops),
        )
        try:
            await run_engine(engine, stop)
        except Exception:
            log.exception("engine stopped on a crash")
            return 1
        return 0

    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_main())
    return 130
