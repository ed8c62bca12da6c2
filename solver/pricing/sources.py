"""Price sources (trading-rules.md §5): adapters that turn a feed into batches of PricePoints.

A source is one connection at a time: `batches()` opens a fresh connection (socket, file,
poller) and yields a batch per frame received, every point dated with its *source* time; it
ends or raises when the connection drops. An empty batch is a frame that carried nothing for
us (a control message, only symbols we do not price, a malformed frame): it still proves the
connection alive. `solver.pricing.feed.FeedRunner` reconnects, detects silence, validates and
publishes; sources never write anywhere.

- `BinanceMarkPriceSource`: Binance USDⓈ-M futures `!markPrice@arr@1s` over WebSocket, combined
  (`{"stream": ..., "data": [...]}`) or raw (`[...]`) form; `E` (event ms) is the source time.
- `ReplaySource`: the seeded random walk or a CSV file of solver.pricing.replay.
- `OracleSource`: polls the oracle's signed price for each symbol (its signature time).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.client import connect

from solver.core.clock import Clock, SystemClock
from solver.core.units import NumberFormatError, from_wei, parse_decimal
from solver.oracle.client import OracleClient, OracleError
from solver.pricing.cache import PricePoint
from solver.pricing.replay import RandomWalk, read_csv
from solver.settings import SymbolConfig

log = logging.getLogger("solver.pricing")

MARK_PRICE_STREAM = "!markPrice@arr@1s"
MIN_PRICE = Decimal("1e-18")  # below one wei the price means nothing on chain


@dataclass
class FeedStats:
    """Counters of one feed, for logs and health reporting (monotonic over the process life)."""

    connects: int = 0
    frames: int = 0  # frames (messages) received
    malformed: int = 0  # frames or array entries that could not be read: skipped
    points: int = 0  # points the source produced
    published: int = 0  # points accepted and published
    dropped_invalid: int = 0  # non-finite, non-positive or absurd price or time
    dropped_old: int = 0  # not newer than the last point of the symbol (ours or the cache's)
    dropped_future: int = 0  # dated beyond the clock-skew tolerance
    silent: int = 0  # connections dropped for silence
    errors: int = 0  # connections that failed or raised
    last_frame_at: float | None = None  # wall time of the last frame
    last_publish_at: float | None = None
    last_backoff_s: float | None = None  # the last wait before a reconnect


class PriceSource(Protocol):
    name: str
    stats: FeedStats
    # True when the end of `batches()` means the source is exhausted (a replay file), not that
    # the connection dropped.
    finite: bool

    def batches(self) -> AsyncGenerator[list[PricePoint], None]:
        """Open a fresh connection and yield one batch per frame until it ends."""
        ...


class MalformedFrame(ValueError):
    """A frame that is not the expected wire format."""


def valid_price(price: Decimal) -> bool:
    return price.is_finite() and price >= MIN_PRICE and price.adjusted() <= 30


# ---- Binance -------------------------------------------------------------------------------


def parse_mark_price_frame(raw: str | bytes, symbols: frozenset[str]) -> tuple[list[PricePoint], int]:
    """Points of our symbols in one Binance mark-price frame, and the number of bad entries.

    Accepts the combined-stream form `{"stream", "data": [...]}`, the raw-stream array and a
    single `markPriceUpdate` object; a subscription answer (`{"result": ..., "id": ...}`) is an
    empty batch. Raises MalformedFrame when the frame as a whole cannot be read; a bad entry in
    an otherwise good array is skipped and counted.
    """
    try:
        # Decimal for JSON numbers: a price is never read through a binary float.
        msg = json.loads(raw, parse_float=Decimal)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise MalformedFrame(f"not JSON: {type(exc).__name__}") from exc
    if isinstance(msg, dict):
        if "data" in msg:
            stream = msg.get("stream")
            if stream is not None and not isinstance(stream, str):
                raise MalformedFrame("stream is not a string")
            msg = msg["data"]
        elif "id" in msg and ("result" in msg or "error" in msg):
            if msg.get("error") is not None:
                raise MalformedFrame(f"subscription refused: {msg['error']!r}")
            return [], 0
    entries: list[Any]
    if isinstance(msg, list):
        entries = msg
    elif isinstance(msg, dict) and msg.get("e") == "markPriceUpdate":
        entries = [msg]
    else:
        raise MalformedFrame(f"unexpected frame shape: {type(msg).__name__}")
    points: list[PricePoint] = []
    bad = 0
    for entry in entries:
        try:
            point = _mark_price_entry(entry, symbols)
        except MalformedFrame:
            bad += 1
            continue
        if point is not None:
            points.append(point)
    if entries and bad == len(entries):
        raise MalformedFrame(f"none of the {bad} entries could be read")
    return points, bad


def _mark_price_entry(entry: Any, symbols: frozenset[str]) -> PricePoint | None:
    if not isinstance(entry, dict):
        raise MalformedFrame("entry is not an object")
    if entry.get("e", "markPriceUpdate") != "markPriceUpdate":
        raise MalformedFrame(f"unexpected event {entry.get('e')!r}")
    symbol = entry.get("s")
    if not isinstance(symbol, str) or not symbol or len(symbol) > 32:
        raise MalformedFrame("bad symbol")
    symbol = symbol.upper()
    if symbol not in symbols:
        return None
    event_ms = entry.get("E")
    if isinstance(event_ms, bool) or not isinstance(event_ms, int) or event_ms <= 0:
        raise MalformedFrame("bad event time")
    try:
        price = parse_decimal(entry.get("p"), field="p")
    except NumberFormatError as exc:
        raise MalformedFrame(str(exc)) from exc
    if not valid_price(price):
        raise MalformedFrame(f"price out of range: {price}")
    return PricePoint(symbol, price, event_ms / 1000)


def subscribe_message(request_id: int = 1) -> str:
    return json.dumps({"method": "SUBSCRIBE", "params": [MARK_PRICE_STREAM], "id": request_id})


def needs_subscribe(url: str) -> bool:
    """A combined-stream URL names its streams; a raw `/ws` URL must subscribe after connecting."""
    return "streams" not in parse_qs(urlsplit(url).query)


class BinanceMarkPriceSource:
    finite = False

    def __init__(
        self,
        url: str,
        symbols: Iterable[str],
        *,
        open_timeout_s: float = 10.0,
        close_timeout_s: float = 1.0,
        name: str = "binance",
    ) -> None:
        self.url = url
        self.name = name
        self.symbols = frozenset(s.upper() for s in symbols)
        self.stats = FeedStats()
        self._open_timeout = open_timeout_s
        self._close_timeout = close_timeout_s
        self._subscribe = needs_subscribe(url)

    async def batches(self) -> AsyncGenerator[list[PricePoint], None]:
        async with connect(
            self.url,
            open_timeout=self._open_timeout,
            close_timeout=self._close_timeout,
            max_size=4 * 2**20,  # the all-market array is ~100 KB
            max_queue=64,
        ) as ws:
            log.info("price feed %s connected to %s", self.name, self.url)
            if self._subscribe:
                await ws.send(subscribe_message())
            async for message in ws:
                yield self.decode(message)

    def decode(self, message: str | bytes) -> list[PricePoint]:
        self.stats.frames += 1
        try:
            points, bad = parse_mark_price_frame(message, self.symbols)
        except MalformedFrame as exc:
            self._malformed(1, str(exc))
            return []
        if bad:
            self._malformed(bad, "bad entries in a frame")
        return points

    def _malformed(self, n: int, why: str) -> None:
        self.stats.malformed += n
        count = self.stats.malformed
        if count <= 5 or count % 100 == 0:  # bounded logging under a flood of garbage
            log.warning("price feed %s: skipped a malformed frame (%s); %d so far", self.name, why[:200], count)


# ---- replay --------------------------------------------------------------------------------


class ReplaySource:
    """The replay feed as a source: a random walk every `interval_s` (dated now), or a CSV file
    replayed at its own pace (each row dated at the moment it is replayed); the file is finite."""

    def __init__(
        self,
        symbols: Sequence[SymbolConfig],
        *,
        interval_s: float = 1.0,
        seed: int = 7,
        csv_path: Path | None = None,
        clock: Clock | None = None,
        name: str = "replay",
    ) -> None:
        self.name = name
        self.stats = FeedStats()
        self.finite = csv_path is not None
        self._symbols = list(symbols)
        self._interval = interval_s
        self._csv = csv_path
        self._clock = clock or SystemClock()
        self._walk = RandomWalk(self._symbols, seed=seed)  # one path across reconnects
        self._started = False

    async def batches(self) -> AsyncGenerator[list[PricePoint], None]:
        if self._csv is not None:
            async for batch in self._csv_batches(self._csv):
                yield batch
            return
        while True:
            prices = dict(self._walk.prices) if not self._started else self._walk.tick()
            self._started = True
            now = self._clock.time()
            self.stats.frames += 1
            yield [PricePoint(name, price, now) for name, price in prices.items()]
            await asyncio.sleep(self._interval)

    async def _csv_batches(self, path: Path) -> AsyncGenerator[list[PricePoint], None]:
        rows = list(read_csv(path))
        if not rows:
            log.warning("replay file %s has no rows", path)
            return
        start_src, start_wall = rows[0][0], time.monotonic()
        for ts, name, price in rows:
            delay = (ts - start_src) - (time.monotonic() - start_wall)
            if delay > 0:
                await asyncio.sleep(delay)
            self.stats.frames += 1
            yield [PricePoint(name, price, self._clock.time())]


# ---- oracle --------------------------------------------------------------------------------


class OracleSource:
    """Polls the oracle's signed price of each symbol every `poll_s`; the source time is the
    signature's timestamp. `party_a` is any address (its uPnL is ignored, only the price is used).

    A refusal for one symbol (e.g. the oracle's own price is stale) skips that symbol; when the
    oracle cannot be reached for any symbol the connection counts as dropped (backoff, retry).
    """

    finite = False

    def __init__(
        self,
        oracle: OracleClient,
        symbols: Sequence[SymbolConfig],
        *,
        party_a: str,
        poll_s: float = 1.0,
        name: str = "oracle",
    ) -> None:
        self.name = name
        self.stats = FeedStats()
        self._oracle = oracle
        self._symbols = list(symbols)
        self._party_a = party_a
        self._poll = poll_s

    async def batches(self) -> AsyncGenerator[list[PricePoint], None]:
        while True:
            fetch = self._oracle.party_a_upnl_and_price
            results = await asyncio.gather(
                *(fetch(party_a=self._party_a, symbol_id=s.symbol_id) for s in self._symbols), return_exceptions=True
            )
            self.stats.frames += 1
            points: list[PricePoint] = []
            failures: list[BaseException] = []
            for sym, res in zip(self._symbols, results, strict=True):
                if isinstance(res, OracleError) and res.refused:
                    log.info("oracle refused a price for %s: %s", sym.name, res)
                elif isinstance(res, BaseException):
                    failures.append(res)
                else:
                    points.append(PricePoint(sym.name, from_wei(res.price), float(res.timestamp)))
            if failures and len(failures) == len(self._symbols):
                raise failures[0]
            for exc in failures:
                log.warning("oracle price failed: %r", exc)
            yield points
            await asyncio.sleep(self._poll)
