"""Stop loss latency with the real parts: from a price tick to the close sent, mined and filled.

    .venv/bin/python bench/trigger_latency_bench.py [--rounds 10] [--per-round 4] [--baseline 4]
        [--worker-poll 0.1] [--trigger-poll 0.5] [--sweep-batch 20] [--max-seconds 300]

Setup (bench/open_common.devnet): a fresh anvil (instant mining: a block per transaction) with
the contracts deployed, a scratch migrated database and a unique Redis prefix; fresh marks
(tests.fixtures.trading.PriceKeeper, BTCUSDT 60000, republished every 0.5 s); the real chain
worker in this event loop (`running_worker`: one lane, the devnet solver, local oracle
in-process) and the real `TriggerEngine` loop (consumer group `triggers` on
`{prefix}prices:stream`, its own Web3 chain reader), as `solver engine` registers it.
`rounds × per-round` fresh sub-accounts each open one LONG 0.01 BTC (10x, the worker opens it)
and get a stop loss through `POST /stop_loss` (the API in-process, JWT); round r's stop losses sit
at 59000 − 100 r, so round r's tick (59000 − 100 r − 50) crosses exactly `per-round` of them.
`rounds × baseline` more positions carry no order: the baseline.

Per round:
- trigger: t0, then the tick as the engine's feed publishes it: the latest price keys
  (PriceKeeper.set, which the worker's oracle reads) and an XADD to the stream (fields as
  solver.pricing.stream); then wait until every close of the round is filled and every order
  `filled` (the engine's poll settles them);
- baseline (same round, after): `baseline` closes of whole positions inserted the way the API
  stores a close (instant_close row + CLOSE_REQUEST intent, one transaction each,
  tests.integration.test_worker_flow.close_request) at the same mark, t0 = each commit; wait
  until filled. It is the worker's own part, without the tick and the trigger engine.

Times come from the solver's own timestamps (same machine, same clock: SystemClock), not from
polling: trigger_order.fire_time (the fire read the quote on chain and starts its DB transaction),
chain_tx.create_time (signed and recorded, just before the commit and the broadcast),
tx_attempt.broadcast_time (handed to the node), chain_tx.modify_time (the worker saw the receipt
and settled it), instant_close.modify_time (filled), trigger_order.modify_time (filled); and,
in-process, the time the engine's `on_tick` received the tick and the time `actions.fire`
returned (the fire transaction committed). It also reports the CPU of this process and of the
machine over the rounds, and how late a 10 ms sleep wakes up in the event loop: the worker, the
trigger engine and the bench share one loop here, while `solver engine` and `solver worker` are
separate processes in production. Everything is removed at exit, also on error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from open_common import Deadline, Devnet, devnet, install_sigterm, machine_cpu_s, median, pct, pid_cpu_s

SYMBOL = "BTCUSDT"
FIRST_LEVEL = Decimal(59000)  # round r: stop losses at 59000 − 100 r, tick at that − 50
STEP = Decimal(100)

TIMINGS_SQL = """
SELECT ic.id AS close_id, ic.quote_id, ic.status AS close_status, ic.error_message,
       t.id AS order_id, t.status AS order_status,
       extract(epoch FROM t.fire_time)    AS fire_time,
       extract(epoch FROM t.modify_time)  AS order_final,
       extract(epoch FROM ic.create_time) AS close_created,
       extract(epoch FROM rt.create_time) AS req_signed,
       extract(epoch FROM ra.broadcast)   AS req_broadcast,
       extract(epoch FROM rt.modify_time) AS req_mined,
       extract(epoch FROM ft.create_time) AS fill_signed,
       extract(epoch FROM fa.broadcast)   AS fill_broadcast,
       extract(epoch FROM ft.modify_time) AS fill_mined,
       extract(epoch FROM ic.modify_time) AS filled
FROM instant_close ic
LEFT JOIN trigger_order t ON t.instant_close_id = ic.id
LEFT JOIN tx_intent ri ON ri.instant_close_id = ic.id AND ri.kind = 'close_request'
LEFT JOIN chain_tx rt ON rt.id = ri.tx_id
LEFT JOIN LATERAL (SELECT min(broadcast_time) AS broadcast FROM tx_attempt WHERE tx_id = rt.id) ra ON true
LEFT JOIN tx_intent fi ON fi.instant_close_id = ic.id AND fi.kind = 'fill_close'
LEFT JOIN chain_tx ft ON ft.id = fi.tx_id
LEFT JOIN LATERAL (SELECT min(broadcast_time) AS broadcast FROM tx_attempt WHERE tx_id = ft.id) fa ON true
WHERE ic.quote_id = ANY(:quotes)
ORDER BY ic.id
"""

STATUS_SQL = """
SELECT count(*) FILTER (WHERE ic.status = 'filled') AS filled,
       count(*) FILTER (WHERE ic.status IN ('failed', 'cancelled')) AS bad,
       count(*) FILTER (WHERE t.status = 'filled') AS orders_filled
FROM instant_close ic LEFT JOIN trigger_order t ON t.instant_close_id = ic.id
WHERE ic.quote_id = ANY(:quotes)
"""

# (label, start, end): columns of TIMINGS_SQL plus t0, tick_seen, fired (in-process)
TRIGGER_TOTALS = (
    ("tick -> engine read it (on_tick)", "t0", "tick_seen"),
    ("tick -> fired, committed (a)", "t0", "fired"),
    ("tick -> close tx signed+recorded (b)", "t0", "req_signed"),
    ("tick -> close tx broadcast (b)", "t0", "req_broadcast"),
    ("tick -> close tx mined, settled", "t0", "req_mined"),
    ("tick -> fill tx signed", "t0", "fill_signed"),
    ("tick -> close filled (c)", "t0", "filled"),
    ("tick -> order 'filled' (engine poll)", "t0", "order_final"),
)
STAGES = (
    ("tick: price keys set (PriceKeeper.set)", "t0", "t_xadd", False),
    ("XADD -> engine read it", "t_xadd", "tick_seen", False),
    ("engine read -> quote read on chain (fire_time)", "tick_seen", "fire_time", False),
    ("fire_time -> fire committed (one DB tx)", "fire_time", "fired", False),
    ("fired / close committed -> close tx signed", "committed", "req_signed", True),
    ("close tx signed -> broadcast", "req_signed", "req_broadcast", True),
    ("close broadcast -> receipt settled", "req_broadcast", "req_mined", True),
    ("close settled -> fill tx signed", "req_mined", "fill_signed", True),
    ("fill tx signed -> filled (settled)", "fill_signed", "filled", True),
    ("filled -> order 'filled'", "filled", "order_final", False),
    ("committed -> filled (worker total)", "committed", "filled", True),
)


class LoopLag:
    """How late a 10 ms sleep wakes up: how busy the shared event loop is."""

    def __init__(self) -> None:
        self.ms: list[float] = []
        self.stop = False

    async def run(self) -> None:
        while not self.stop:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            self.ms.append((time.perf_counter() - t - 0.01) * 1000)


class WarningCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}"[:300])


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float, what: str, every: float = 0.025) -> None:
    end = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(every)


def ms(row: dict[str, Any], start: str, end: str) -> float | None:
    a, b = row.get(start), row.get(end)
    return None if a is None or b is None else (float(b) - float(a)) * 1000


async def run(env: Devnet, accounts: list[str], args: argparse.Namespace, deadline: Deadline) -> None:
    from litestar.testing import AsyncTestClient
    from redis.asyncio import Redis
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from solver.app import create_app
    from solver.auth.jwt import JwtCodec
    from solver.chain.web3_reader import Web3ChainReader
    from solver.core.clock import SystemClock
    from solver.db.engine import create_engine, session_factory
    from solver.db.models import InstantOpenStatus
    from solver.orders.actions import Outcome
    from solver.orders.trigger_engine import TriggerEngine
    from solver.orders.triggers import LONG, Trigger, close_price
    from solver.pricing.cache import PricePoint
    from tests.fixtures.app import settings_for
    from tests.fixtures.redis import REDIS_URL
    from tests.fixtures.trading import PriceKeeper, running_worker
    from tests.integration.test_worker_flow import close_request, open_request, settled_open

    info = env.info
    settings = settings_for(
        info,
        env.db_url,
        env.redis_prefix,
        worker={"signer_private_keys": [info.solver_private_key], "poll_interval_s": args.worker_poll},
        triggers={"poll_interval_s": args.trigger_poll, "chain_sweep_batch": args.sweep_batch},
    )
    sym = settings.symbol(1)
    assert sym is not None and sym.name == SYMBOL
    n_trig: int = args.rounds * args.per_round
    trig_accounts, base_accounts = accounts[:n_trig], accounts[n_trig:]
    db = create_engine(settings.database_url, pool_size=4, max_overflow=4, application_name="bench")
    sessions = session_factory(db)
    query_engine = create_async_engine(env.db_url, pool_size=1, max_overflow=0)
    redis = Redis.from_url(REDIS_URL)

    async def sql(q: str, **params: Any) -> list[dict[str, Any]]:
        async with query_engine.connect() as conn:
            rows = (await conn.execute(text(q), params)).mappings().all()
        return [{k: (float(v) if isinstance(v, Decimal) else v) for k, v in r.items()} for r in rows]

    t_setup = time.monotonic()
    try:
        async with PriceKeeper(redis, settings.redis_prefix) as keeper, running_worker(settings, info) as worker:
            # --- positions -------------------------------------------------------------------
            opens = [await open_request(sessions, a) for a in accounts]
            quotes: dict[str, int] = {}
            for account, oid in zip(accounts, opens, strict=True):
                row = await asyncio.wait_for(settled_open(sessions, oid), deadline.left())
                if row.status != InstantOpenStatus.OPENED or row.quote_id is None:
                    raise RuntimeError(f"open {oid} ended {row.status}: {row.error_message}")
                quotes[account] = row.quote_id
            print(f"setup: {len(accounts)} positions opened ({time.monotonic() - t_setup:.0f}s)", flush=True)

            # --- stop losses through the API -------------------------------------------------
            owner = info.demo_accounts[0].owner
            jwt = JwtCodec(settings.auth, SystemClock())
            async with AsyncTestClient(app=create_app(settings), base_url="http://testserver.local") as api:
                logging.getLogger("httpx").setLevel(logging.WARNING)  # Litestar's config logs every request
                for i, account in enumerate(trig_accounts):
                    level = FIRST_LEVEL - STEP * (i // args.per_round)
                    token = jwt.issue(account=account, owner=owner, expires_at=datetime.now(UTC) + timedelta(hours=1))
                    body = {
                        "userAddress": owner, "accountAddress": account, "positionSide": 0, "symbolId": 1,
                        "requestedPrice": "60012", "quoteId": quotes[account], "tpPrice": "", "slPrice": str(level),
                        "timestamp": int(time.time() * 1000),
                    }  # fmt: skip
                    resp = await api.post("/stop_loss", json=body, headers={"Authorization": f"Bearer {token}"})
                    if resp.status_code != 200:
                        raise RuntimeError(f"POST /stop_loss: {resp.status_code} {resp.text}")

            # --- the trigger engine --------------------------------------------------------------
            chain = Web3ChainReader.from_settings(settings.chain)
            engine = TriggerEngine(settings=settings, sessions=sessions, redis=redis, chain=chain)
            tick_seen: dict[Decimal, float] = {}
            fired_at: dict[int, float] = {}
            outcomes: list[str] = []
            real_on_tick, real_fire = engine.on_tick, engine.actions.fire

            async def on_tick(point: PricePoint) -> int:
                tick_seen.setdefault(point.price, time.time())
                return await real_on_tick(point)

            async def fire(trig: Trigger, mark: Decimal) -> Outcome:
                outcome = await real_fire(trig, mark)
                fired_at[trig.quote_id] = time.time()
                outcomes.append(outcome.value)
                return outcome

            engine.on_tick = on_tick  # type: ignore[method-assign]
            engine.actions.fire = fire  # type: ignore[method-assign]
            stop = asyncio.Event()
            task = asyncio.create_task(engine.run(stop), name="triggers")

            async def armed() -> bool:
                if task.done():
                    task.result()
                return len(engine.books) == n_trig

            await wait_until(armed, min(30.0, deadline.left()), "the stop losses in the engine's books")
            print(
                f"setup: {n_trig} stop losses armed, {len(base_accounts)} baseline positions "
                f"({time.monotonic() - t_setup:.0f}s)",
                flush=True,
            )

            async def done(qs: Sequence[int], need_order: bool) -> bool:
                if task.done():
                    task.result()
                (st,) = await sql(STATUS_SQL, quotes=list(qs))
                if st["bad"]:
                    rows = [x for x in await sql(TIMINGS_SQL, quotes=list(qs)) if x["close_status"] != "filled"]
                    raise RuntimeError(f"a close ended {rows[0]['close_status']}: {rows[0]['error_message']}")
                return bool(st["filled"] == len(qs) and (not need_order or st["orders_filled"] == len(qs)))

            # --- rounds --------------------------------------------------------------------------
            trig_rows: list[dict[str, Any]] = []
            base_rows: list[dict[str, Any]] = []
            stream_key = f"{settings.redis_prefix}prices:stream"
            lag = LoopLag()
            lag_task = asyncio.create_task(lag.run())
            cpu0, machine0, wall0 = pid_cpu_s(os.getpid()), machine_cpu_s(), time.monotonic()
            try:
                for r in range(args.rounds):
                    price = FIRST_LEVEL - STEP * r - STEP / 2
                    round_quotes = [quotes[a] for a in trig_accounts[r * args.per_round : (r + 1) * args.per_round]]
                    t0 = time.time()
                    await keeper.set(SYMBOL, price)
                    t_xadd = time.time()
                    await redis.xadd(stream_key, {"symbol": SYMBOL, "price": str(price), "ts": repr(time.time())})

                    await wait_until(partial(done, round_quotes, True), min(60.0, deadline.left()), f"round {r}")
                    rows = await sql(TIMINGS_SQL, quotes=round_quotes)
                    for x in rows:
                        x.update(
                            t0=t0, t_xadd=t_xadd, tick_seen=tick_seen.get(price), fired=fired_at.get(x["quote_id"])
                        )
                        x["committed"] = x["fired"]
                    trig_rows += rows
                    t_trig = max(x["filled"] for x in rows) - t0

                    # baseline: the same closes inserted directly, as the API stores them
                    base_quotes = [quotes[a] for a in base_accounts[r * args.baseline : (r + 1) * args.baseline]]
                    committed: dict[int, float] = {}
                    for account, q in zip(base_accounts[r * args.baseline :], base_quotes, strict=False):
                        cp = close_price(price, LONG, settings.risk.close_slippage, sym.price_precision)
                        await close_request(sessions, account, q, "0.01", str(cp))
                        committed[q] = time.time()
                    if base_quotes:
                        await wait_until(partial(done, base_quotes, False), min(60.0, deadline.left()), f"baseline {r}")
                        rows = await sql(TIMINGS_SQL, quotes=base_quotes)
                        for x in rows:
                            x["committed"] = committed[x["quote_id"]]
                        base_rows += rows
                    print(
                        f"round {r}: tick {price}: {len(round_quotes)} stop losses filled {t_trig * 1000:.0f} ms "
                        f"after the tick; {len(base_quotes)} direct closes ({time.monotonic() - t_setup:.0f}s)",
                        flush=True,
                    )
            finally:
                lag.stop = True
                await lag_task
                wall = time.monotonic() - wall0
                cpu = (pid_cpu_s(os.getpid()) - cpu0) / wall
                busy = (machine_cpu_s()[0] - machine0[0]) / wall
                stop.set()
                await asyncio.wait_for(task, 15)
                await chain.close()
            report(args, settings, trig_rows, base_rows, engine.stats, outcomes, worker)
            print(
                f"rounds phase {wall:.1f}s: this process (worker + trigger engine + bench) {cpu:.0%} of a core, "
                f"machine {busy / (os.cpu_count() or 1):.0%} busy ({os.cpu_count()} cores); event loop lag "
                f"(10 ms sleeps) p50 {median(lag.ms):.1f} ms, p99 {pct(lag.ms, 99):.1f} ms, max {max(lag.ms):.0f} ms"
            )
    finally:
        await redis.aclose()
        await query_engine.dispose()
        await db.dispose()


def report(
    args: argparse.Namespace,
    settings: Any,
    trig: list[dict[str, Any]],
    base: list[dict[str, Any]],
    stats: Any,
    outcomes: list[str],
    worker: Any,
) -> None:
    n = len(trig)
    print(
        f"\n== {n} stop losses ({args.rounds} rounds x {args.per_round}), {len(base)} direct closes; "
        f"worker.poll_interval_s={settings.worker.poll_interval_s}, triggers.poll_interval_s="
        f"{settings.triggers.poll_interval_s}, triggers.read_block_ms={settings.triggers.read_block_ms}, "
        f"triggers.chain_sweep_batch={settings.triggers.chain_sweep_batch}, "
        f"instant mining ==\n"
    )
    print("| from the tick (t0) to | p50 ms | p99 ms | max ms |")
    print("|:---|---:|---:|---:|")
    for label, a, b in TRIGGER_TOTALS:
        v = [x for x in (ms(r, a, b) for r in trig) if x is not None]
        print(f"| {label} | {median(v):.0f} | {pct(v, 99):.0f} | {max(v, default=float('nan')):.0f} |")
    print("\n| stage | stop loss p50 | p99 | direct close p50 | p99 |")
    print("|:---|---:|---:|---:|---:|")
    for label, a, b, both in STAGES:
        v = [x for x in (ms(r, a, b) for r in trig) if x is not None]
        w = [x for x in (ms(r, a, b) for r in base) if x is not None] if both else []
        base_cells = f"{median(w):.0f} | {pct(w, 99):.0f}" if w else "- | -"
        print(f"| {label} | {median(v):.0f} | {pct(v, 99):.0f} | {base_cells} |")
    fired_stats = {k: v for k, v in stats.items() if k.startswith(("fire_", "settle_", "stale", "old"))}
    sent = [lane.stats.sent for lane in worker.lanes]
    print(f"\nengine: fire outcomes {_count(outcomes)}, stats {fired_stats}; transactions sent per lane {sent}")


def _count(items: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--per-round", type=int, default=4, help="stop losses crossed by each tick")
    ap.add_argument("--baseline", type=int, default=4, help="direct closes per round (0: none)")
    ap.add_argument("--worker-poll", type=float, default=0.1, help="worker.poll_interval_s (default 0.1)")
    ap.add_argument("--trigger-poll", type=float, default=0.5, help="triggers.poll_interval_s (default 0.5)")
    ap.add_argument("--sweep-batch", type=int, default=20, help="triggers.chain_sweep_batch (default 20)")
    ap.add_argument("--max-seconds", type=float, default=300)
    args = ap.parse_args()
    install_sigterm()
    deadline = Deadline(args.max_seconds)
    warnings = WarningCounter()
    logging.basicConfig(level=logging.ERROR)
    # On "solver", not the root: the in-process API (Litestar) reconfigures the root logger.
    logging.getLogger("solver").addHandler(warnings)
    logging.getLogger("solver").setLevel(logging.WARNING)
    started = time.monotonic()
    print(
        f"rounds={args.rounds} x {args.per_round} stop losses, baseline {args.baseline} direct closes per round; "
        f"{platform.python_version()}, {sys.platform}",
        flush=True,
    )
    from tests.fixtures.trading import new_account

    with devnet("trigger") as env:
        n = args.rounds * (args.per_round + args.baseline)
        accounts = [new_account(env.info) for _ in range(n)]
        print(f"setup: {n} funded sub-accounts ({time.monotonic() - started:.0f}s)", flush=True)
        asyncio.run(run(env, accounts, args, deadline))
    print(f"\nWARNING/ERROR log records: {len(warnings.lines)}")
    for line in warnings.lines[:10]:
        print(f"  {line}")
    print(f"ok: total {time.monotonic() - started:.0f}s; anvil stopped, DB and Redis keys removed")


if __name__ == "__main__":
    main()
