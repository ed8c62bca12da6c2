"""The Binance mark-price feed end to end against a LOCAL WebSocket server speaking Binance's
protocol, publishing into the real Redis: latest keys and the price stream with source times,
reconnect after a server disconnect, reconnect after silence, malformed frames skipped, old
ticks never overwriting newer ones; the stream's consumer-group helper; the engine's loops."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest
from redis.asyncio import Redis
from websockets.asyncio.server import serve

from solver.core.clock import SystemClock
from solver.engine import STOP_GRACE_S, Engine, build_engine, run_engine
from solver.pricing.cache import PriceCache, PricePoint
from solver.pricing.feed import Backoff, FeedRunner, PricePublisher
from solver.pricing.sources import BinanceMarkPriceSource, ReplaySource
from solver.pricing.stream import PriceStream
from solver.settings import load_settings
from tests.fixtures.binance import FakeBinance, frame, now_ms, tick
from tests.fixtures.redis import REDIS_URL

pytestmark = pytest.mark.integration

SYMBOLS = ["BTCUSDT", "ETHUSDT"]


@pytest.fixture
async def binance() -> AsyncIterator[FakeBinance]:
    fake = FakeBinance()
    async with serve(fake._handler, "127.0.0.1", 0) as server:
        fake.server = server
        yield fake


@contextlib.asynccontextmanager
async def running(runner: FeedRunner) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def until(cond: Callable[[], Any], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not await cond():
            await asyncio.sleep(0.01)


def make_runner(
    url: str, redis: Redis, prefix: str, *, silence: float = 3.0
) -> tuple[FeedRunner, PriceCache, PriceStream]:
    cache, stream = PriceCache(redis, prefix), PriceStream(redis, prefix)
    source = BinanceMarkPriceSource(url, [*SYMBOLS, "XRPUSDT"])
    runner = FeedRunner(
        source,
        PricePublisher(cache, stream),
        silence_timeout_s=silence,
        backoff=Backoff(min_s=0.05, max_s=0.2),
    )
    return runner, cache, stream


def combined_url(fake: FakeBinance) -> str:
    return f"ws://127.0.0.1:{fake.port}/stream?streams=!markPrice@arr@1s"


async def test_ticks_reach_latest_keys_and_stream_with_source_time(
    binance: FakeBinance, redis_client: Redis, redis_prefix: str
) -> None:
    runner, cache, _ = make_runner(combined_url(binance), redis_client, redis_prefix)
    t0 = now_ms() - 500
    async with running(runner):
        await binance.wait_connections(1)
        assert binance.paths[0] == "/stream?streams=!markPrice@arr@1s"
        await binance.send(frame(tick("BTCUSDT", "60000.10", t0), tick("DOGEUSDT", "0.2", t0)))
        await binance.send(frame(tick("ETHUSDT", "3000.25", t0 + 1)))
        await until(lambda: _has(cache, "ETHUSDT"))
    assert await cache.get("BTCUSDT") == PricePoint("BTCUSDT", Decimal("60000.10"), t0 / 1000)
    assert await cache.get("ETHUSDT") == PricePoint("ETHUSDT", Decimal("3000.25"), (t0 + 1) / 1000)
    assert await cache.get("DOGEUSDT") is None  # not configured: ignored
    # Stream: exact key and fields, in order, source times.
    raw = await redis_client.xrange(f"{redis_prefix}prices:stream")
    assert [fields for _, fields in raw] == [
        {b"symbol": b"BTCUSDT", b"price": b"60000.10", b"ts": repr(t0 / 1000).encode()},
        {b"symbol": b"ETHUSDT", b"price": b"3000.25", b"ts": repr((t0 + 1) / 1000).encode()},
    ]
    assert binance.subscriptions == []  # the combined URL names its stream
    assert runner.stats.published == 2 and runner.stats.malformed == 0


async def test_raw_ws_url_subscribes_and_reads_raw_arrays(
    binance: FakeBinance, redis_client: Redis, redis_prefix: str
) -> None:
    runner, cache, _ = make_runner(f"ws://127.0.0.1:{binance.port}/ws", redis_client, redis_prefix)
    t0 = now_ms()
    async with running(runner):
        await binance.wait_connections(1)
        await until(lambda: _true(len(binance.subscriptions) == 1))
        await binance.send([tick("BTCUSDT", "61000", t0)])  # raw stream form, no wrapper
        await until(lambda: _has(cache, "BTCUSDT"))
    assert binance.subscriptions == [{"method": "SUBSCRIBE", "params": ["!markPrice@arr@1s"], "id": 1}]
    assert (await cache.get("BTCUSDT")) == PricePoint("BTCUSDT", Decimal(61000), t0 / 1000)
    assert runner.stats.malformed == 0  # the subscription answer is not a malformed frame


async def test_server_disconnect_reconnects_and_resumes(
    binance: FakeBinance, redis_client: Redis, redis_prefix: str
) -> None:
    runner, cache, stream = make_runner(combined_url(binance), redis_client, redis_prefix)
    t0 = now_ms() - 1000
    async with running(runner):
        first = await binance.wait_connections(1)
        await binance.send(frame(tick("BTCUSDT", "60000", t0)))
        await until(lambda: _has(cache, "BTCUSDT"))
        await first.close(code=1001, reason="going away")  # like Binance's 24 h disconnect
        await binance.wait_connections(2)
        await binance.send(frame(tick("BTCUSDT", "60000", t0), tick("BTCUSDT", "60001", t0 + 10)))
        await until(lambda: _price_is(cache, "BTCUSDT", "60001"))
        second = binance.connections[1]
        second.transport.abort()  # an abrupt TCP drop, no close frame
        await binance.wait_connections(3)
        await binance.send(frame(tick("BTCUSDT", "60002", t0 + 20)))
        await until(lambda: _price_is(cache, "BTCUSDT", "60002"))
    assert [t.point.price for t in reversed(await stream.latest(10))] == [Decimal(v) for v in (60000, 60001, 60002)]
    assert runner.stats.dropped_old == 1  # the repeated tick after the reconnect
    assert runner.stats.connects == 3


async def test_silent_socket_is_dropped_after_the_silence_timeout(
    binance: FakeBinance, redis_client: Redis, redis_prefix: str
) -> None:
    runner, cache, _ = make_runner(combined_url(binance), redis_client, redis_prefix, silence=0.4)
    async with running(runner):
        await binance.wait_connections(1)
        await binance.send(frame(tick("ETHUSDT", "3000", now_ms())))
        started = time.monotonic()
        await binance.wait_connections(2, timeout=3)  # the server kept the socket open, silent
        waited = time.monotonic() - started
        await until(lambda: _true(binance.connections[0].state.name == "CLOSED"))
        await binance.send(frame(tick("ETHUSDT", "3001", now_ms())))
        await until(lambda: _price_is(cache, "ETHUSDT", "3001"))
    assert 0.35 <= waited < 2.0
    assert runner.stats.silent >= 1


async def test_malformed_frames_are_skipped_and_later_good_frames_land(
    binance: FakeBinance, redis_client: Redis, redis_prefix: str
) -> None:
    runner, cache, stream = make_runner(combined_url(binance), redis_client, redis_prefix)
    t0 = now_ms() - 1000
    garbage: list[Any] = [
        "not json {",
        b"\x00\xff binary",
        json.dumps(42),
        {"stream": "!markPrice@arr@1s", "data": "nope"},
        {"stream": "!markPrice@arr@1s"},
        frame(tick("BTCUSDT", "NaN", t0)),
        frame(tick("BTCUSDT", "-60000", t0 + 1)),
        frame(tick("BTCUSDT", "0", t0 + 2)),
        frame({"e": "markPriceUpdate", "s": "BTCUSDT", "p": "60000"}),  # no event time
        frame(tick("BTCUSDT", "60000", t0 + 10**9)),  # eleven days in the future
    ]
    async with running(runner):
        await binance.wait_connections(1)
        for g in garbage:
            await binance.send(g)
        await binance.send(frame(tick("BTCUSDT", "bad", t0 + 3), tick("BTCUSDT", "60123.5", t0 + 4)))
        await until(lambda: _has(cache, "BTCUSDT"))
    assert await cache.get("BTCUSDT") == PricePoint("BTCUSDT", Decimal("60123.5"), (t0 + 4) / 1000)
    assert [t.point.price for t in await stream.latest(10)] == [Decimal("60123.5")]
    assert runner.stats.malformed == 10  # nine bad frames and one bad entry
    assert runner.stats.dropped_future == 1
    assert runner.stats.connects == 1  # garbage never costs the connection


async def test_old_tick_never_overwrites_a_newer_one(
    binance: FakeBinance, redis_client: Redis, redis_prefix: str
) -> None:
    runner, cache, stream = make_runner(combined_url(binance), redis_client, redis_prefix)
    t0 = now_ms() - 1000
    async with running(runner):
        await binance.wait_connections(1)
        await binance.send(frame(tick("BTCUSDT", "60000", t0)))
        await binance.send(frame(tick("BTCUSDT", "59000", t0 - 500), tick("BTCUSDT", "59500", t0)))
        await binance.send(frame(tick("ETHUSDT", "3000", t0)))  # a marker: everything before was read
        await until(lambda: _has(cache, "ETHUSDT"))
    assert await cache.get("BTCUSDT") == PricePoint("BTCUSDT", Decimal(60000), t0 / 1000)
    assert runner.stats.dropped_old == 2
    # A second runner (another replica, or a restart with no memory) is held back by Redis.
    other, _, _ = make_runner(combined_url(binance), redis_client, redis_prefix)
    async with running(other):
        await binance.wait_connections(2)
        await binance.send(frame(tick("BTCUSDT", "58000", t0 - 100), tick("BTCUSDT", "60000", t0)))
        await until(lambda: _true(other.stats.dropped_old == 2))
    assert await cache.get("BTCUSDT") == PricePoint("BTCUSDT", Decimal(60000), t0 / 1000)
    assert [t.point.symbol for t in await stream.latest(10)] == ["ETHUSDT", "BTCUSDT"]


async def test_stream_consumer_group_helper(redis_client: Redis, redis_prefix: str) -> None:
    cache, stream = PriceCache(redis_client, redis_prefix), PriceStream(redis_client, redis_prefix)
    publisher = PricePublisher(cache, stream)
    assert await stream.read_group("triggers", "c1", block_ms=None) == []  # creates stream and group
    assert not await stream.ensure_group("triggers")
    await publisher.publish([PricePoint("BTCUSDT", Decimal(1), 10.5), PricePoint("ETHUSDT", Decimal(2), 10.5)])
    ticks = await stream.read_group("triggers", "c1", count=10, block_ms=100)
    assert [t.point for t in ticks] == [
        PricePoint("BTCUSDT", Decimal(1), 10.5),
        PricePoint("ETHUSDT", Decimal(2), 10.5),
    ]
    # Unacked ticks come back to the same consumer with pending=True; another group sees none
    # of the ticks published before it was created.
    assert [t.id for t in await stream.read_group("triggers", "c1", pending=True)] == [t.id for t in ticks]
    assert await stream.read_group("health", "c1", block_ms=None) == []
    assert await stream.ack("triggers", *[t.id for t in ticks]) == 2
    assert await stream.read_group("triggers", "c1", pending=True) == []
    # Blocking read wakes up on the next tick.
    reader = asyncio.create_task(stream.read_group("health", "c9", block_ms=3000))
    await asyncio.sleep(0.05)
    await publisher.publish([PricePoint("BTCUSDT", Decimal(3), 11.0)])
    assert [t.point.price for t in await asyncio.wait_for(reader, 3)] == [Decimal(3)]
    # An equal source time is not "newer": never a duplicate tick in the stream.
    assert await publisher.publish([PricePoint("BTCUSDT", Decimal(4), 11.0)]) == []
    assert await stream.length() == 3


async def test_engine_runs_feed_and_extra_loops_until_stop(redis_client: Redis, redis_prefix: str) -> None:
    settings = load_settings(redis_url=REDIS_URL, redis_prefix=redis_prefix, pricing={"replay_interval_s": 0.05})
    engine: Engine = build_engine(settings, redis=redis_client)
    assert [f.name for f in engine.feeds] == ["replay"]
    assert isinstance(engine.feeds[0].source, ReplaySource)
    seen: list[str] = []

    async def consumer(stop: asyncio.Event) -> None:
        while not stop.is_set():
            for t in await engine.stream.read_group("test", "c", block_ms=100):
                seen.append(t.point.symbol)

    await engine.stream.ensure_group("test", start_id="0")
    engine.add_loop(consumer)
    stop = asyncio.Event()
    task = asyncio.create_task(run_engine(engine, stop))
    await until(lambda: _true(len(seen) >= 6))
    stop.set()
    # The engine's contract is a bounded stop: loops get STOP_GRACE_S, then are cancelled. On a
    # loaded machine a loop can use the grace; the engine must still end within it plus margin.
    await asyncio.wait_for(task, STOP_GRACE_S + 5)
    assert set(seen) == {s.name for s in settings.symbols}
    latest = await engine.prices.get("BTCUSDT")
    assert latest is not None and abs(latest.ts - SystemClock().time()) < 2


async def test_engine_crashing_loop_stops_everything_and_is_raised(redis_client: Redis, redis_prefix: str) -> None:
    settings = load_settings(redis_url=REDIS_URL, redis_prefix=redis_prefix, pricing={"replay_interval_s": 0.05})
    engine = build_engine(settings, redis=redis_client)

    async def broken(stop: asyncio.Event) -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("invariant violated")

    engine.add_loop(broken)
    with pytest.raises(RuntimeError, match="invariant"):
        await asyncio.wait_for(run_engine(engine, asyncio.Event()), 5)


async def _has(cache: PriceCache, symbol: str) -> bool:
    return await cache.get(symbol) is not None


async def _price_is(cache: PriceCache, symbol: str, price: str) -> bool:
    p = await cache.get(symbol)
    return p is not None and p.price == Decimal(price)


async def _true(value: bool) -> bool:
    return value
