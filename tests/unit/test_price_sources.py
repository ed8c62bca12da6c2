"""Price ingestion without Redis or sockets: Binance frame parsing (malformed frames included),
symbol filtering, the replay and oracle adapters, the backoff schedule, the staleness function
and the FeedRunner's validation, reconnect and silence rules against in-memory sources."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from solver.core.clock import FixedClock
from solver.core.errors import ErrorCode
from solver.core.units import to_wei
from solver.oracle.client import OracleError
from solver.pricing.cache import PricePoint
from solver.pricing.feed import Backoff, FeedRunner
from solver.pricing.sources import (
    BinanceMarkPriceSource,
    FeedStats,
    MalformedFrame,
    OracleSource,
    ReplaySource,
    needs_subscribe,
    parse_mark_price_frame,
    subscribe_message,
)
from solver.pricing.status import PriceState, all_fresh, not_fresh, price_status
from solver.settings import load_settings

pytestmark = pytest.mark.unit

SYMBOLS = frozenset({"BTCUSDT", "ETHUSDT"})
E = 1_763_700_000_123


def entry(symbol: str = "BTCUSDT", price: Any = "60000.10", event_ms: Any = E, **extra: Any) -> dict[str, Any]:
    out = {"e": "markPriceUpdate", "E": event_ms, "s": symbol, "p": price, "i": "60001", "r": "0.0001", "T": E + 1}
    out.update(extra)
    return out


def combined(*entries: Any) -> str:
    return json.dumps({"stream": "!markPrice@arr@1s", "data": list(entries)})


# ---- Binance frames --------------------------------------------------------------------------


def test_combined_frame_uses_event_time_and_filters_symbols() -> None:
    frame = combined(entry("BTCUSDT", "60000.10"), entry("ethusdt", "3000.5", E + 5), entry("DOGEUSDT", "0.1"))
    points, bad = parse_mark_price_frame(frame, SYMBOLS)
    assert bad == 0
    assert points == [
        PricePoint("BTCUSDT", Decimal("60000.10"), E / 1000),
        PricePoint("ETHUSDT", Decimal("3000.5"), (E + 5) / 1000),
    ]
    assert isinstance(points[0].price, Decimal)


def test_raw_stream_array_and_single_object_forms() -> None:
    points, _ = parse_mark_price_frame(json.dumps([entry()]), SYMBOLS)
    assert [p.symbol for p in points] == ["BTCUSDT"]
    points, _ = parse_mark_price_frame(json.dumps(entry("ETHUSDT")), SYMBOLS)
    assert [p.symbol for p in points] == ["ETHUSDT"]
    points, _ = parse_mark_price_frame(json.dumps({"stream": "btcusdt@markPrice", "data": entry()}), SYMBOLS)
    assert [p.symbol for p in points] == ["BTCUSDT"]


def test_json_number_price_is_read_exactly_not_through_float() -> None:
    frame = '{"stream":"!markPrice@arr@1s","data":[{"e":"markPriceUpdate","E":1,"s":"BTCUSDT","p":0.1}]}'
    points, _ = parse_mark_price_frame(frame, SYMBOLS)
    assert points[0].price == Decimal("0.1")


def test_subscription_answer_and_empty_array_are_empty_batches() -> None:
    assert parse_mark_price_frame('{"result": null, "id": 1}', SYMBOLS) == ([], 0)
    assert parse_mark_price_frame(combined(), SYMBOLS) == ([], 0)
    assert parse_mark_price_frame(combined(entry("DOGEUSDT")), SYMBOLS) == ([], 0)


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        b"\xff\xfe",
        "",
        "42",
        '"text"',
        "null",
        '{"stream": "!markPrice@arr@1s"}',
        '{"stream": "!markPrice@arr@1s", "data": 5}',
        '{"stream": 5, "data": []}',
        '{"result": null, "id": 1, "error": {"code": 2, "msg": "Invalid request"}}',
        '{"e": "aggTrade", "s": "BTCUSDT"}',
        combined(entry(price="NaN")),
        combined(entry(price="-5")),
        combined(entry(price="0")),
        combined(entry(price="Infinity")),
        combined(entry(price="1e-30")),
        combined(entry(price="1e400")),
        combined(entry(price="abc")),
        combined(entry(price=None)),
        combined(entry(price=True)),
        combined(entry(event_ms="1763700000123")),
        combined(entry(event_ms=True)),
        combined(entry(event_ms=-1)),
        combined(entry(event_ms=1.5)),
        combined({**entry(), "e": "kline"}),
        combined({k: v for k, v in entry().items() if k != "s"}),
        combined({k: v for k, v in entry().items() if k != "E"}),
        combined([1, 2]),
        combined("BTCUSDT"),
    ],
)
def test_malformed_frames_raise(frame: str | bytes) -> None:
    with pytest.raises(MalformedFrame):
        parse_mark_price_frame(frame, SYMBOLS)


def test_bad_entries_are_skipped_and_counted_good_ones_kept() -> None:
    frame = combined(entry(price="NaN"), entry("ETHUSDT", "3000"), "garbage", entry(price="-1"))
    points, bad = parse_mark_price_frame(frame, SYMBOLS)
    assert [(p.symbol, p.price) for p in points] == [("ETHUSDT", Decimal(3000))]
    assert bad == 3


def test_source_decode_counts_and_never_raises() -> None:
    source = BinanceMarkPriceSource("ws://x/stream?streams=!markPrice@arr@1s", ["btcusdt"])
    assert source.decode("garbage") == []
    assert source.decode(combined(entry(price="NaN"), entry(price="2"))) == [
        PricePoint("BTCUSDT", Decimal(2), E / 1000)
    ]
    assert source.stats.frames == 2
    assert source.stats.malformed == 2


def test_subscribe_only_without_named_streams() -> None:
    assert not needs_subscribe("wss://fstream.binance.com/stream?streams=!markPrice@arr@1s")
    assert needs_subscribe("wss://fstream.binance.com/ws")
    assert needs_subscribe("ws://127.0.0.1:9/stream")
    assert json.loads(subscribe_message()) == {"method": "SUBSCRIBE", "params": ["!markPrice@arr@1s"], "id": 1}


# ---- backoff ---------------------------------------------------------------------------------


def test_backoff_doubles_to_the_cap_with_equal_jitter() -> None:
    b = Backoff(min_s=0.5, max_s=30)
    assert [b.ceiling(n) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert b.delay(0, 0.0) == 0.25
    assert b.delay(3, 0.0) == 2.0
    assert b.delay(3, 0.999999) == pytest.approx(4.0)
    assert b.delay(10_000, 0.5) == 22.5  # no overflow, capped
    for n in range(20):
        assert b.ceiling(n) / 2 <= b.delay(n, 0.7) <= b.ceiling(n) <= 30


# ---- staleness -------------------------------------------------------------------------------


def test_price_status_fresh_stale_missing_invalid() -> None:
    now = 1000.0
    latest = {
        "BTCUSDT": PricePoint("BTCUSDT", Decimal(60000), now - 5),  # exactly the limit: still fresh
        "ETHUSDT": PricePoint("ETHUSDT", Decimal(3000), now - 5.01),
        "XRPUSDT": PricePoint("XRPUSDT", Decimal(0), now),
        "SOLUSDT": PricePoint("SOLUSDT", Decimal(150), now + 2),  # source clock slightly ahead
    }
    st = price_status(["btcusdt", "ETHUSDT", "XRPUSDT", "SOLUSDT", "ADAUSDT"], latest, now=now, max_age_s=Decimal(5))
    assert {k: v.state for k, v in st.items()} == {
        "BTCUSDT": PriceState.FRESH,
        "ETHUSDT": PriceState.STALE,
        "XRPUSDT": PriceState.INVALID,
        "SOLUSDT": PriceState.FRESH,
        "ADAUSDT": PriceState.MISSING,
    }
    assert st["ETHUSDT"].age_s == pytest.approx(5.01)
    assert st["ADAUSDT"].price is None and st["ADAUSDT"].age_s is None
    assert st["BTCUSDT"].as_dict() == {
        "symbol": "BTCUSDT",
        "state": "fresh",
        "fresh": True,
        "price": "60000",
        "ts": 995.0,
        "age_s": 5.0,
    }
    assert not all_fresh(st)
    assert not_fresh(st) == ["ADAUSDT", "ETHUSDT", "XRPUSDT"]
    nan_point = PricePoint("BTCUSDT", Decimal(1), float("nan"))
    nan_ts = price_status(["BTCUSDT"], {"BTCUSDT": nan_point}, now=now, max_age_s=5)
    assert nan_ts["BTCUSDT"].state is PriceState.INVALID


# ---- replay and oracle adapters --------------------------------------------------------------


async def test_replay_walk_starts_at_reference_prices_dated_now() -> None:
    settings = load_settings()
    clock = FixedClock(1234.5)
    source = ReplaySource(settings.symbols, interval_s=0.001, seed=3, clock=clock)
    gen = source.batches()
    first = await anext(gen)
    assert {p.symbol: p.price for p in first} == {s.name: s.reference_price for s in settings.symbols}
    assert {p.ts for p in first} == {1234.5}
    clock.advance(1)
    second = await anext(gen)
    assert {p.ts for p in second} == {1235.5}
    await gen.aclose()
    assert not source.finite


async def test_replay_csv_is_finite(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("ts,symbol,price\n100,btcusdt,60000\n100.01,ETHUSDT,3000\n")
    source = ReplaySource([], csv_path=path, clock=FixedClock(50))
    batches = [b async for b in source.batches()]
    assert batches == [[PricePoint("BTCUSDT", Decimal(60000), 50)], [PricePoint("ETHUSDT", Decimal(3000), 50)]]
    assert source.finite


class _Sig:
    def __init__(self, price: Decimal, ts: int) -> None:
        self.price = to_wei(price)
        self.timestamp = ts


class _FakeOracle:
    def __init__(self, answers: dict[int, Any]) -> None:
        self.answers = answers

    async def party_a_upnl_and_price(self, *, party_a: str, symbol_id: int) -> Any:
        answer = self.answers[symbol_id]
        if isinstance(answer, BaseException):
            raise answer
        return answer


async def test_oracle_source_skips_refusals_and_raises_when_unreachable() -> None:
    syms = load_settings().symbols[:2]
    refused = OracleError(ErrorCode.ORACLE_REFUSED, "stale")
    down = OracleError(ErrorCode.ORACLE_UNAVAILABLE, "down")
    source = OracleSource(
        _FakeOracle({1: _Sig(Decimal("60000.5"), 77), 2: refused}), syms, party_a="0x" + "1" * 40, poll_s=0
    )
    gen = source.batches()
    assert await anext(gen) == [PricePoint("BTCUSDT", Decimal("60000.5"), 77.0)]
    await gen.aclose()
    dead = OracleSource(_FakeOracle({1: down, 2: down}), syms, party_a="0x" + "1" * 40, poll_s=0)
    with pytest.raises(OracleError):
        await anext(dead.batches())


def test_pricing_settings_validation() -> None:
    from solver.core.errors import ConfigError

    assert load_settings().pricing.source == "replay"
    with pytest.raises(ConfigError, match="binance_ws_url"):
        load_settings(pricing={"binance_ws_url": "https://fstream.binance.com"})
    with pytest.raises(ConfigError, match="reconnect_max_s"):
        load_settings(pricing={"reconnect_min_s": 5, "reconnect_max_s": 1})


# ---- FeedRunner against in-memory sources ----------------------------------------------------


class _Publisher:
    def __init__(self, refuse: Callable[[PricePoint], bool] = lambda _: False) -> None:
        self.published: list[PricePoint] = []
        self._refuse = refuse

    async def publish(self, points: list[PricePoint]) -> list[PricePoint]:
        accepted = [p for p in points if not self._refuse(p)]
        self.published.extend(accepted)
        return accepted


class _ScriptSource:
    """Each connection plays the next script: a list of batches, then 'end', 'hang' or an error."""

    name = "script"
    finite = False

    def __init__(self, scripts: list[tuple[list[list[PricePoint]], Any]]) -> None:
        self.stats = FeedStats()
        self.scripts = list(scripts)
        self.opened = 0
        self.closed = 0

    async def batches(self) -> AsyncGenerator[list[PricePoint], None]:
        self.opened += 1
        batches, ending = self.scripts.pop(0) if self.scripts else ([], "hang")
        try:
            for b in batches:
                yield b
            if ending == "hang":
                await asyncio.Event().wait()
            elif isinstance(ending, BaseException):
                raise ending
        finally:
            self.closed += 1


async def _run_until(runner: FeedRunner, cond: Callable[[], bool], timeout: float = 3.0) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        async with asyncio.timeout(timeout):
            while not cond():
                await asyncio.sleep(0.005)
    finally:
        stop.set()
        await asyncio.wait_for(task, 2)


def _pt(symbol: str, price: str, ts: float) -> PricePoint:
    return PricePoint(symbol, Decimal(price), ts)


async def test_runner_drops_invalid_old_and_future_points() -> None:
    now = 1000.0
    source = _ScriptSource(
        [
            (
                [
                    [_pt("BTCUSDT", "1", 990), _pt("ETHUSDT", "NaN", 990), _pt("ETHUSDT", "-1", 990)],
                    [_pt("BTCUSDT", "2", 989), _pt("BTCUSDT", "3", 990), _pt("BTCUSDT", "4", 991)],
                    [_pt("BTCUSDT", "5", now + 60), _pt("ETHUSDT", "7", float("inf"))],
                ],
                "hang",
            )
        ]
    )
    pub = _Publisher()
    runner = FeedRunner(source, pub, silence_timeout_s=None, clock=FixedClock(now), max_clock_skew_s=5)  # type: ignore[arg-type]
    await _run_until(runner, lambda: source.stats.points == 8)
    assert [(p.price, p.ts) for p in pub.published] == [(Decimal(1), 990), (Decimal(4), 991)]
    s = source.stats
    assert (s.published, s.dropped_invalid, s.dropped_old, s.dropped_future) == (2, 3, 2, 1)
    assert source.opened == 1


async def test_runner_counts_points_the_cache_refuses_as_old() -> None:
    source = _ScriptSource([([[_pt("BTCUSDT", "1", 10), _pt("ETHUSDT", "1", 10)]], "hang")])
    pub = _Publisher(refuse=lambda p: p.symbol == "ETHUSDT")  # e.g. another engine stored a newer one
    runner = FeedRunner(source, pub, clock=FixedClock(11))  # type: ignore[arg-type]
    await _run_until(runner, lambda: source.stats.points == 2)
    assert [p.symbol for p in pub.published] == ["BTCUSDT"]
    assert (source.stats.published, source.stats.dropped_old) == (1, 1)


async def test_runner_reconnects_after_end_error_and_silence_and_resumes() -> None:
    source = _ScriptSource(
        [
            ([[_pt("BTCUSDT", "1", 1)]], "end"),
            ([], ConnectionResetError("boom")),
            ([[_pt("BTCUSDT", "1", 1)], [_pt("BTCUSDT", "2", 2)]], "hang"),  # repeats the last tick first
            ([[_pt("BTCUSDT", "3", 3)]], "hang"),
        ]
    )
    pub = _Publisher()
    runner = FeedRunner(
        source,  # type: ignore[arg-type]
        pub,  # type: ignore[arg-type]
        silence_timeout_s=0.1,
        backoff=Backoff(min_s=0.01, max_s=0.02),
        clock=FixedClock(100),
    )
    await _run_until(runner, lambda: len(pub.published) == 3)
    assert [p.price for p in pub.published] == [Decimal(1), Decimal(2), Decimal(3)]
    s = source.stats
    assert source.opened == 4 and source.closed >= 3  # every dropped connection was closed
    assert (s.errors, s.silent, s.dropped_old) == (1, 1, 1)
    assert s.connects == 4


async def test_runner_stops_promptly_while_waiting_for_a_frame() -> None:
    source = _ScriptSource([([], "hang")])
    runner = FeedRunner(source, _Publisher(), silence_timeout_s=None)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 1)
    assert source.closed == 1


async def test_runner_returns_when_a_finite_source_is_exhausted(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("1,BTCUSDT,1\n1.001,BTCUSDT,2\n")
    source = ReplaySource([], csv_path=path)
    pub = _Publisher()
    await asyncio.wait_for(FeedRunner(source, pub).run(asyncio.Event()), 2)  # type: ignore[arg-type]
    assert [p.price for p in pub.published] == [Decimal(1), Decimal(2)]


class _RecordingBackoff:
    def __init__(self, reset_after_s: float) -> None:
        self.reset_after_s = reset_after_s
        self.attempts: list[int] = []

    def delay(self, attempt: int, jitter: float) -> float:
        self.attempts.append(attempt)
        return 0.001


@pytest.mark.parametrize(("reset_after_s", "expected"), [(60.0, [0, 1, 2]), (0.0, [0, 0, 0])])
async def test_backoff_resets_only_after_a_connection_that_worked_long_enough(
    reset_after_s: float, expected: list[int]
) -> None:
    """A venue that accepts and drops at once keeps backing off (no reconnect storm)."""
    source = _ScriptSource([([[_pt("BTCUSDT", "1", n)]], "end") for n in (1, 2, 3)])
    backoff = _RecordingBackoff(reset_after_s)
    runner = FeedRunner(source, _Publisher(), backoff=backoff, clock=FixedClock(10))  # type: ignore[arg-type]
    await _run_until(runner, lambda: source.opened == 4)
    assert backoff.attempts == expected


async def test_publish_failures_back_off_and_never_crash() -> None:
    class _DownTwice(_Publisher):
        calls = 0

        async def publish(self, points: list[PricePoint]) -> list[PricePoint]:
            self.calls += 1
            if self.calls <= 2:
                raise ConnectionError("redis is down")
            return await super().publish(points)

    source = _ScriptSource([([[_pt("BTCUSDT", "1", n)]], "hang") for n in (1, 2, 3)])
    backoff = _RecordingBackoff(0.0)
    pub = _DownTwice()
    runner = FeedRunner(source, pub, backoff=backoff, clock=FixedClock(10))  # type: ignore[arg-type]
    await _run_until(runner, lambda: source.stats.published == 1)
    assert backoff.attempts == [0, 1]  # a connection whose publishes fail did not "work"
    assert source.stats.errors == 2 and source.opened == 3
    assert [p.ts for p in pub.published] == [3]


def test_deeply_nested_frame_is_malformed_not_a_crash() -> None:
    with pytest.raises(MalformedFrame):
        parse_mark_price_frame("[" * 100_000 + "]" * 100_000, SYMBOLS)
