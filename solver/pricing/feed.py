"""Run a price source forever and publish what it gives (trading-rules.md §5).

`FeedRunner.run(stop)`:
- opens a fresh connection (`source.batches()`) and reads it; when it ends, fails or stays
  silent for `silence_timeout_s` (a socket that is open but sends nothing is dead), it is
  closed and a new one opened after an exponential backoff with jitter (`Backoff`), reset once
  a connection worked for a while;
- validates every point: a non-finite, non-positive or absurd price, a time in the future
  beyond `max_clock_skew_s`, or a time not newer than the last one seen for the symbol is
  dropped and counted (`FeedStats`), never published;
- publishes the rest through `PricePublisher`: latest-price key if strictly newer there too
  (so a second engine or a restarted one never republishes an old tick), and only then the
  price stream (`solver.pricing.stream`).

Nothing escapes `run` except cancellation: every failure is logged at this loop boundary and
followed by a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from solver.core.clock import Clock, SystemClock
from solver.observability.heartbeat import Beat, no_beat
from solver.pricing.cache import PriceCache, PricePoint
from solver.pricing.sources import PriceSource, valid_price
from solver.pricing.stream import PriceStream

log = logging.getLogger("solver.pricing")

PriceListener = Callable[[PricePoint], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with "equal jitter": attempt n waits in [c/2, c], c = min(max, min·2ⁿ).

    The attempt count goes back to 0 only after a connection that worked (its frames were
    published) for at least `reset_after_s`: a server that accepts and drops at once, or a Redis
    outage that fails every publish, still backs off to the cap (venues ban reconnect storms).
    """

    min_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    reset_after_s: float = 10.0

    def ceiling(self, attempt: int) -> float:
        return min(self.max_s, self.min_s * self.factor ** min(attempt, 64))

    def delay(self, attempt: int, jitter: float) -> float:
        """`jitter` in [0, 1) (a random draw)."""
        c = self.ceiling(attempt)
        return c / 2 + c / 2 * jitter


class PricePublisher:
    """Latest-price keys first (strictly newer only), then the stream for the accepted points,
    then the listeners (best effort: a failing listener never blocks the feed)."""

    def __init__(self, cache: PriceCache, stream: PriceStream, listeners: Sequence[PriceListener] = ()) -> None:
        self.cache = cache
        self.stream = stream
        self._listeners = list(listeners)

    async def publish(self, points: Sequence[PricePoint]) -> list[PricePoint]:
        flags = await self.cache.set_many_if_newer(points)
        accepted = [p for p, ok in zip(points, flags, strict=True) if ok]
        await self.stream.add_many(accepted)
        for listener in self._listeners:
            for point in accepted:
                try:
                    await listener(point)
                except Exception:  # a side record (e.g. hourly price) must not stop the feed
                    log.warning("price listener failed for %s", point.symbol, exc_info=True)
        return accepted


class _Silent(Exception):
    pass


class FeedRunner:
    def __init__(
        self,
        source: PriceSource,
        publisher: PricePublisher,
        *,
        silence_timeout_s: float | None = 5.0,
        backoff: Backoff | None = None,
        max_clock_skew_s: float = 5.0,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.source = source
        self.stats = source.stats
        self._publisher = publisher
        self._silence = silence_timeout_s
        self._backoff = backoff or Backoff()
        self._skew = max_clock_skew_s
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._last: dict[str, float] = {}
        self._worked = False  # the current connection processed a batch without failing
        self.beat: Beat = no_beat  # set by the engine: a beat per connection attempt and per frame

    @property
    def name(self) -> str:
        return self.source.name

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set (or a finite source is exhausted)."""
        loop = asyncio.create_task(self._loop(stop), name=f"feed-{self.name}")
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({loop, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (loop, stopper):
                t.cancel()
            await asyncio.gather(loop, stopper, return_exceptions=True)
        if loop.done() and not loop.cancelled():
            exc = loop.exception()
            if exc is not None:  # a bug in this loop, not a feed failure: crash loudly
                raise exc

    async def _loop(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            self.beat(f"feed.{self.name}")
            self.stats.connects += 1
            opened = time.monotonic()
            try:
                await self._session()
                if self.source.finite:
                    log.info("price source %s is exhausted", self.name)
                    return
                why = "connection closed"
            except asyncio.CancelledError:
                raise
            except _Silent:
                self.stats.silent += 1
                why = f"no frame for {self._silence} s"
            except Exception as exc:
                self.stats.errors += 1
                why = f"{type(exc).__name__}: {exc}"
            if self._worked and time.monotonic() - opened >= self._backoff.reset_after_s:
                attempt = 0
            delay = self._backoff.delay(attempt, self._rng.random())
            attempt += 1
            self.stats.last_backoff_s = delay
            log.warning("price feed %s: %s; reconnecting in %.2f s", self.name, why, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)

    async def _session(self) -> None:
        """One connection: read it until it ends (raises _Silent when it goes quiet)."""
        self._worked = False
        async with contextlib.aclosing(self.source.batches()) as batches:
            while True:
                timeout = asyncio.timeout(self._silence)
                try:
                    async with timeout:
                        batch = await anext(batches)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    if timeout.expired():
                        raise _Silent from None
                    raise
                self.stats.last_frame_at = self._clock.time()
                self.beat(f"feed.{self.name}")
                await self._accept(batch)
                self._worked = True

    async def _accept(self, batch: Sequence[PricePoint]) -> None:
        now = self._clock.time()
        fresh: list[PricePoint] = []
        newest = dict(self._last)
        for p in batch:
            self.stats.points += 1
            if not valid_price(p.price) or not math.isfinite(p.ts) or p.ts <= 0:
                self.stats.dropped_invalid += 1
                continue
            if p.ts > now + self._skew:
                self.stats.dropped_future += 1
                if self.stats.dropped_future <= 5 or self.stats.dropped_future % 100 == 0:
                    log.warning("price feed %s: %s dated %.1f s in the future", self.name, p.symbol, p.ts - now)
                continue
            last = newest.get(p.symbol)
            if last is not None and p.ts <= last:
                self.stats.dropped_old += 1
                continue
            newest[p.symbol] = p.ts
            fresh.append(p)
        if not fresh:
            return
        accepted = await self._publisher.publish(fresh)
        self._last = newest  # only once published: a tick lost to a failed publish may come again
        self.stats.dropped_old += len(fresh) - len(accepted)
        self.stats.published += len(accepted)
        if accepted:
            self.stats.last_publish_at = now
