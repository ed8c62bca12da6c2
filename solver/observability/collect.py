"""What GET /metrics reports about the whole system, read on each scrape.

Cost per scrape, whatever the load: **one** SQL statement (a UNION ALL over partial indexes:
queued intents via `ix_tx_intent_queue`, unconfirmed transactions via `ix_chain_tx_open` and
their intents via `ix_tx_intent_tx_id`, live triggers via `ix_trigger_order_active`, live
strategy orders via `ix_strategy_order_live`, sub-orders in flight via `ix_strategy_suborder_live`;
each branch reads only the rows still in play, never the history), plus three Redis round trips
run concurrently with it (loop heartbeats, published worker/feed state, latest prices). Each
source is bounded by `timeout_s`; a source that fails or times out is reported by
`solver_metrics_source_up{source}` = 0 and its families are left out, the rest is still served.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from solver.core import redis_keys
from solver.db.models import IntentKind
from solver.db.models.strategy_order import StrategyStatus, StrategyType
from solver.db.models.trigger_order import TRIGGER_ACTIVE, TriggerStatus
from solver.pricing.cache import PriceCache
from solver.pricing.status import PriceState, price_status
from solver.settings import Settings

log = logging.getLogger("solver.observability")

# Every branch is restricted to rows "in play" and matches a partial index's predicate.
SCRAPE_SQL = text(
    """
SELECT 'queued' AS what, kind AS a, lane::text AS b, count(*) AS n,
       EXTRACT(EPOCH FROM now() - min(create_time))::float8 AS age
  FROM tx_intent WHERE status = 'queued' GROUP BY kind, lane
UNION ALL
SELECT 'in_tx', i.kind, i.lane::text, count(*), EXTRACT(EPOCH FROM now() - min(i.create_time))::float8
  FROM chain_tx t JOIN tx_intent i ON i.tx_id = t.id
 WHERE t.status = 'signed' AND i.status = 'in_tx' GROUP BY i.kind, i.lane
UNION ALL
SELECT 'unconfirmed', '', lane::text, count(*), EXTRACT(EPOCH FROM now() - min(create_time))::float8
  FROM chain_tx WHERE status = 'signed' GROUP BY lane
UNION ALL
SELECT 'trigger', status, '', count(*), NULL
  FROM trigger_order WHERE status IN ('waiting', 'armed', 'triggered') GROUP BY status
UNION ALL
SELECT 'strategy', status, type, count(*), NULL
  FROM strategy_order WHERE status IN ('active', 'requested_cancellation') GROUP BY status, type
UNION ALL
SELECT 'suborder', status, '', count(*), NULL
  FROM strategy_suborder WHERE status IN ('sending', 'sent') GROUP BY status
"""
)

INTENT_STATES = ("queued", "in_tx")
STRATEGY_LIVE = (StrategyStatus.ACTIVE.value, StrategyStatus.REQUESTED_CANCELLATION.value)
SUBORDER_IN_FLIGHT = ("sending", "sent")
FEED_COUNTERS = (
    "connects",
    "frames",
    "malformed",
    "points",
    "published",
    "dropped_invalid",
    "dropped_old",
    "dropped_future",
    "silent",
    "errors",
)
WORKER_COUNTERS = ("sent", "replaced", "settled")


@dataclass
class DbRows:
    rows: list[tuple[str, str, str, int, float | None]] = field(default_factory=list)


@dataclass
class RedisData:
    beats: dict[str, float] = field(default_factory=dict)  # loop -> unix time of its last beat
    states: dict[str, dict[str, str]] = field(default_factory=dict)  # "kind:name" -> fields


class SystemMetrics:
    """`await collect()` -> metric families (prometheus_client) describing the whole system."""

    def __init__(
        self,
        *,
        settings: Settings,
        redis: Redis,
        engine: AsyncEngine,
        timeout_s: float = 2.0,
        loop_down_after_s: float = 30.0,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._redis = redis
        self._engine = engine
        self._prices = PriceCache(redis, settings.redis_prefix)
        self._timeout = timeout_s
        self._down_after = loop_down_after_s
        self._now = now
        self._prefix = settings.redis_prefix
        self._statement_timeout_ms = max(int(timeout_s * 1000), 1)

    async def collect(self) -> list[Metric]:
        sources = {"postgres": self._read_db(), "redis": self._read_redis(), "prices": self._read_prices()}
        names = list(sources)
        started = time.perf_counter()
        results = await asyncio.gather(*(self._timed(c) for c in sources.values()))
        got: dict[str, Any] = {}
        up = GaugeMetricFamily("solver_metrics_source_up", "1 when the source answered this scrape", labels=["source"])
        took = GaugeMetricFamily(
            "solver_metrics_source_seconds", "Time spent reading each source for this scrape", labels=["source"]
        )
        for name, (value, seconds) in zip(names, results, strict=True):
            up.add_metric([name], 0 if value is None else 1)
            took.add_metric([name], seconds)
            if value is not None:
                got[name] = value
        families: list[Metric] = [up, took]
        if "postgres" in got:
            families += self._db_families(got["postgres"])
        if "redis" in got:
            families += self._loop_families(got["redis"].beats)
            families += self._worker_families(got["redis"].states)
            families += self._feed_families(got["redis"].states)
        if "prices" in got:
            families += self._price_families(got["prices"])
        total = GaugeMetricFamily("solver_metrics_collect_seconds", "Time to collect the system metrics (scrape)")
        total.add_metric([], time.perf_counter() - started)
        families.append(total)
        return families

    async def _timed(self, coro: Any) -> tuple[Any, float]:
        started = time.perf_counter()
        try:
            value = await asyncio.wait_for(coro, self._timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("metrics: a source failed: %s: %s", type(exc).__name__, exc)
            value = None
        return value, time.perf_counter() - started

    # --- sources -------------------------------------------------------------------------------
    async def _read_db(self) -> DbRows:
        async with self._engine.connect() as conn:
            # The server gives up too if this scrape does (a cancelled await may not reach it).
            await conn.execute(text(f"SET LOCAL statement_timeout = {self._statement_timeout_ms}"))
            result = await conn.execute(SCRAPE_SQL)
            rows = [(str(r[0]), str(r[1]), str(r[2]), int(r[3]), None if r[4] is None else float(r[4])) for r in result]
            await conn.rollback()
        return DbRows(rows)

    async def _read_redis(self) -> RedisData:
        pipe = self._redis.pipeline(transaction=False)
        pipe.smembers(redis_keys.heartbeat_index(self._prefix))
        pipe.smembers(redis_keys.metrics_state_index(self._prefix))
        loop_members, state_members = await pipe.execute()
        loops = sorted(_s(m) for m in loop_members)
        states = sorted(_s(m) for m in state_members)
        if not loops and not states:
            return RedisData()
        pipe = self._redis.pipeline(transaction=False)
        if loops:
            pipe.mget([redis_keys.heartbeat(self._prefix, name) for name in loops])
        for member in states:
            kind, _, name = member.partition(":")
            pipe.hgetall(redis_keys.metrics_state(self._prefix, kind, name))
        out = await pipe.execute()
        data = RedisData()
        gone_loops: list[str] = []
        if loops:
            for name, raw in zip(loops, out.pop(0), strict=True):
                ts = _float(raw)
                if ts is None:
                    gone_loops.append(name)  # silent past forget_after_s: forgotten
                else:
                    data.beats[name] = ts
        gone_states: list[str] = []
        for member, raw_hash in zip(states, out, strict=True):
            if raw_hash:
                data.states[member] = {_s(k): _s(v) for k, v in raw_hash.items()}
            else:
                gone_states.append(member)
        if gone_loops or gone_states:
            pipe = self._redis.pipeline(transaction=False)
            if gone_loops:
                pipe.srem(redis_keys.heartbeat_index(self._prefix), *gone_loops)
            if gone_states:
                pipe.srem(redis_keys.metrics_state_index(self._prefix), *gone_states)
            await pipe.execute()
        return data

    async def _read_prices(self) -> dict[str, Any]:
        names = [s.name for s in self._settings.symbols]
        return await self._prices.get_many(names)

    # --- families ------------------------------------------------------------------------------
    def _db_families(self, db: DbRows) -> list[Metric]:
        lanes = {str(i) for i in range(len(self._settings.chain.lanes))}
        lanes |= {b for what, _, b, _, _ in db.rows if what in ("queued", "in_tx", "unconfirmed")}
        intents: dict[tuple[str, str, str], tuple[int, float]] = {
            (k.value, lane, state): (0, 0.0) for k in IntentKind for lane in lanes for state in INTENT_STATES
        }
        unconfirmed: dict[str, tuple[int, float]] = dict.fromkeys(lanes, (0, 0.0))
        triggers: dict[str, int] = {s.value: 0 for s in TriggerStatus if s in TRIGGER_ACTIVE}
        strategies: dict[tuple[str, str], int] = {(s, t.value): 0 for s in STRATEGY_LIVE for t in StrategyType}
        suborders: dict[str, int] = dict.fromkeys(SUBORDER_IN_FLIGHT, 0)
        for what, a, b, n, age in db.rows:
            if what in INTENT_STATES:
                intents[(a, b, what)] = (n, age or 0.0)
            elif what == "unconfirmed":
                unconfirmed[b] = (n, age or 0.0)
            elif what == "trigger":
                triggers[a] = n
            elif what == "strategy":
                strategies[(a, b)] = n
            elif what == "suborder":
                suborders[a] = n
        depth = GaugeMetricFamily(
            "solver_outbox_intents",
            "Transaction intents not yet final: queued (waiting for their lane) or in_tx (in a signed, unconfirmed tx)",
            labels=["kind", "lane", "state"],
        )
        oldest = GaugeMetricFamily(
            "solver_outbox_oldest_intent_age_seconds",
            "Age of the oldest intent in that kind/lane/state (0 when none)",
            labels=["kind", "lane", "state"],
        )
        for (kind, lane, state), (n, age) in sorted(intents.items()):
            depth.add_metric([kind, lane, state], n)
            oldest.add_metric([kind, lane, state], age)
        pending = GaugeMetricFamily(
            "solver_chain_txs_unconfirmed",
            "Signed transactions without a receipt at the configured confirmation depth",
            labels=["lane"],
        )
        pending_age = GaugeMetricFamily(
            "solver_chain_tx_oldest_unconfirmed_age_seconds",
            "Age of the oldest unconfirmed transaction of the lane (0 when none)",
            labels=["lane"],
        )
        for lane, (n, age) in sorted(unconfirmed.items()):
            pending.add_metric([lane], n)
            pending_age.add_metric([lane], age)
        trig = GaugeMetricFamily(
            "solver_trigger_orders", "Stop loss / take profit orders not yet final, by status", labels=["status"]
        )
        for status, n in sorted(triggers.items()):
            trig.add_metric([status], n)
        strat = GaugeMetricFamily("solver_strategy_orders", "Live strategy orders", labels=["status", "type"])
        for (status, kind), n in sorted(strategies.items()):
            strat.add_metric([status, kind], n)
        subs = GaugeMetricFamily(
            "solver_strategy_suborders_in_flight",
            "Strategy sub-orders whose instant open is in flight",
            labels=["status"],
        )
        for status, n in sorted(suborders.items()):
            subs.add_metric([status], n)
        return [depth, oldest, pending, pending_age, trig, strat, subs]

    def _loop_families(self, beats: Mapping[str, float]) -> list[Metric]:
        now = self._now()
        age = GaugeMetricFamily(
            "solver_loop_last_beat_seconds", "Seconds since the loop last completed an iteration", labels=["loop"]
        )
        up = GaugeMetricFamily(
            "solver_loop_up",
            f"1 when the loop beat within the last {self._down_after:g} s (observability.loop_down_after_s)",
            labels=["loop"],
        )
        for name, ts in sorted(beats.items()):
            seconds = max(now - ts, 0.0)
            age.add_metric([name], seconds)
            up.add_metric([name], 1 if seconds <= self._down_after else 0)
        return [age, up]

    def _worker_families(self, states: Mapping[str, Mapping[str, str]]) -> list[Metric]:
        now = self._now()
        info = GaugeMetricFamily("solver_worker_lane_info", "Signer address of each lane", labels=["lane", "address"])
        nxt = GaugeMetricFamily("solver_worker_next_nonce", "Next nonce the worker will sign with", labels=["lane"])
        chain = GaugeMetricFamily(
            "solver_worker_chain_nonce", "Transaction count of the signer on chain", labels=["lane", "block"]
        )
        lag = GaugeMetricFamily(
            "solver_worker_nonce_lag",
            "next_nonce minus the chain's count: vs latest = signed, not yet mined; vs pending = signed, "
            "not in the node's pool (negative: the key was used outside the solver)",
            labels=["lane", "block"],
        )
        in_flight = GaugeMetricFamily(
            "solver_worker_in_flight_txs", "Unconfirmed transactions the lane tracks", labels=["lane"]
        )
        txs = CounterMetricFamily(
            "solver_worker_txs",
            "Transactions since the worker started: sent, replaced (fee bump), settled",
            labels=["lane", "event"],
        )
        age = GaugeMetricFamily(
            "solver_worker_state_age_seconds", "Seconds since the lane last published this state", labels=["lane"]
        )
        for member, fields in sorted(states.items()):
            kind, _, lane = member.partition(":")
            if kind != "worker":
                continue
            if "address" in fields:
                info.add_metric([lane, fields["address"]], 1)
            next_nonce = _float(fields.get("next_nonce"))
            if next_nonce is not None:
                nxt.add_metric([lane], next_nonce)
            for block in ("latest", "pending"):
                count = _float(fields.get(f"{block}_nonce"))
                if count is None:
                    continue
                chain.add_metric([lane, block], count)
                if next_nonce is not None:
                    lag.add_metric([lane, block], next_nonce - count)
            flying = _float(fields.get("in_flight"))
            if flying is not None:
                in_flight.add_metric([lane], flying)
            for event in WORKER_COUNTERS:
                value = _float(fields.get(event))
                if value is not None:
                    txs.add_metric([lane, event], value)
            ts = _float(fields.get("ts"))
            if ts is not None:
                age.add_metric([lane], max(now - ts, 0.0))
        return [info, nxt, chain, lag, in_flight, txs, age]

    def _feed_families(self, states: Mapping[str, Mapping[str, str]]) -> list[Metric]:
        now = self._now()
        frame = GaugeMetricFamily(
            "solver_feed_last_frame_age_seconds", "Seconds since the price feed last received a frame", labels=["feed"]
        )
        publish = GaugeMetricFamily(
            "solver_feed_last_publish_age_seconds", "Seconds since the feed last published a price", labels=["feed"]
        )
        events = CounterMetricFamily(
            "solver_feed_events",
            "Price feed counters since the engine started (connects, frames, points, published, dropped_*, "
            "silent, errors, malformed)",
            labels=["feed", "event"],
        )
        backoff = GaugeMetricFamily(
            "solver_feed_last_backoff_seconds", "The last wait before a reconnect", labels=["feed"]
        )
        age = GaugeMetricFamily(
            "solver_feed_state_age_seconds", "Seconds since the engine last published this state", labels=["feed"]
        )
        for member, fields in sorted(states.items()):
            kind, _, name = member.partition(":")
            if kind != "feed":
                continue
            for family, key in ((frame, "last_frame_at"), (publish, "last_publish_at")):
                at = _float(fields.get(key))
                if at is not None:
                    family.add_metric([name], max(now - at, 0.0))
            for event in FEED_COUNTERS:
                value = _float(fields.get(event))
                if value is not None:
                    events.add_metric([name, event], value)
            wait = _float(fields.get("last_backoff_s"))
            if wait is not None:
                backoff.add_metric([name], wait)
            ts = _float(fields.get("ts"))
            if ts is not None:
                age.add_metric([name], max(now - ts, 0.0))
        return [frame, publish, events, backoff, age]

    def _price_families(self, latest: Mapping[str, Any]) -> list[Metric]:
        statuses = price_status(
            [s.name for s in self._settings.symbols],
            latest,
            now=self._now(),
            max_age_s=self._settings.risk.max_price_age_s,
        )
        age = GaugeMetricFamily(
            "solver_price_age_seconds", "Age of the latest price by its source time", labels=["symbol"]
        )
        fresh = GaugeMetricFamily(
            "solver_price_fresh",
            "1 when the latest price is fresh (no older than risk.max_price_age_s), 0 when stale, missing or invalid",
            labels=["symbol"],
        )
        for name, st in sorted(statuses.items()):
            if st.age_s is not None:
                age.add_metric([name], st.age_s)
            fresh.add_metric([name], 1 if st.state is PriceState.FRESH else 0)
        return [age, fresh]


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _float(value: bytes | str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(_s(value))
    except ValueError:
        return None


def families_text(families: Iterable[Metric]) -> bytes:
    """The Prometheus text exposition of ready-made families."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Static(list(families)))
    return generate_latest(registry)


class _Static:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families

    def describe(self) -> list[Metric]:
        return []
