"""Chain worker send throughput: opens fully executed per second, 1 signer lane vs 3, vs naive.

    .venv/bin/python bench/worker_send_bench.py [--rounds 3] [--accounts 12] [--per-account 5]
        [--lanes 3] [--modes instant 1s] [--naive-block-opens 6] [--worker-poll 0.1] [--naive-poll 0.01]

One open = `_call(account, [sendQuoteWithAffiliate])` + `lockAndOpenQuote` as PartyB. Setup:
anvil + contracts, a scratch database, a Redis prefix, fresh BTCUSDT marks (PriceKeeper),
`solver oracle` and two `solver api` processes (one configured with 1 lane, one with `--lanes`);
extra PartyBs anvil keys 10, 11, ... are registered by the admin (registerPartyB), funded
(mint, approve, deposit) and every sub-account of the multi-lane runs delegates the six selectors
to each lane and gets collateral from each (allocateForPartyB). Sub-accounts are fresh for every
workload and for the multi-lane runs balanced over the lanes (`lane_for(account, n)`).

Per round and mining mode (`instant`: a block per transaction; `1s`: a block every second),
interleaved, the same workload (`--accounts` x `--per-account` opens) runs three ways:
- naive: the baseline (bench/open_common.NaiveOpener) sends both transactions of each open with
  web3, one at a time, nonce read from the node and every receipt awaited (polled every
  `--naive-poll` s); with block mining it sends only `--naive-block-opens` opens (2 blocks
  each; the rate is what matters);
- worker, 1 lane / worker, N lanes: `solver worker` is started with that configuration and left
  to catch up with the chain (event follower), then frozen (SIGSTOP), all opens are POSTed to the
  matching API (so the intents carry the API's lane choice), and the worker is resumed (SIGCONT):
  the clock runs from SIGCONT to the last open the solver recorded as opened (its own timestamp).
Each workload reports opens/s, the CPU used per open by each process (/proc; the API's for the
POSTs alone, measured while the worker was frozen), the blocks it spanned, and any WARNING/ERROR
lines of the worker log.
Every open must end OPENED. Everything it started is stopped and the DB and Redis keys removed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from open_common import (
    OPEN_PRICE,
    OPEN_QTY,
    REDIS_URL,
    CpuMeter,
    Deadline,
    NaiveOpener,
    PartyBSetup,
    devnet,
    install_sigterm,
    log_issues,
    median,
    parse_mode,
    server_timings,
    set_mining,
)

NAIVE_KEY_INDEX = 9  # anvil accounts: 0 admin, 1 solver (lane 0), 2-4 demo owners
FIRST_LANE_KEY_INDEX = 10  # lanes 1, 2, ...: anvil keys 10, 11, ... (not pre-funded: the admin funds them)


@dataclass
class Result:
    mode: str
    config: str
    round: int
    opens: int = 0
    wall_s: float = float("nan")
    txs: int = 0
    post_s: float = float("nan")  # wall time of the POSTs (10 clients), worker frozen
    blocks: int = 0  # blocks from the first to the last transaction of the workload
    rest_ms: float = float("nan")  # CPU ms per open of everything else on the machine (other jobs)
    busy: float = float("nan")  # machine busy / (cores x wall) during the run
    issues: list[str] = field(default_factory=list)  # WARNING/ERROR lines of the worker log
    per_lane: dict[int, int] = field(default_factory=dict)
    cpu_ms: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.opens / self.wall_s if self.wall_s == self.wall_s and self.wall_s > 0 else float("nan")


def fmt(v: float, digits: int = 1) -> str:
    return "-" if v != v else f"{v:.{digits}f}"


# --- workloads -----------------------------------------------------------------------------------


async def run_naive(opener: NaiveOpener, accounts: list[str], per_account: int, limit: int, res: Result) -> None:
    order = [a for _ in range(per_account) for a in accounts][:limit]  # round-robin over accounts

    def run() -> tuple[float, list[int]]:
        t0 = time.perf_counter()
        ids = [opener.open(a) for a in order]
        return time.perf_counter() - t0, ids

    cpu0 = time.process_time()
    wall, ids = await asyncio.to_thread(run)
    res.cpu_ms["bench process (naive sender)"] = (time.process_time() - cpu0) * 1000 / len(order)
    res.opens, res.wall_s, res.txs = len(order), wall, 2 * len(order)
    statuses = await asyncio.to_thread(lambda: [opener.quote_status(q) for q in ids])
    if any(s != 4 for s in statuses):
        res.failures.append(f"naive: {sum(s != 4 for s in statuses)} quotes not OPENED")


async def post_all(base_url: str, tokens: dict[str, str], accounts: list[str], per_account: int) -> list[str]:
    from tests.e2e.trader import open_body

    jobs = [a for _ in range(per_account) for a in accounts]
    errors: list[str] = []
    queue = iter(jobs)

    async def post() -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=30.0, trust_env=False) as c:
            for account in queue:
                r = await c.post(
                    "/instant_open",
                    json=open_body(quantity=OPEN_QTY, price=OPEN_PRICE),
                    headers={"Authorization": f"Bearer {tokens[account]}"},
                )
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text[:200]}")

    await asyncio.gather(*(post() for _ in range(10)))
    return errors


async def sql(engine: Any, query: str, **params: Any) -> list[Any]:
    from sqlalchemy import text

    async with engine.connect() as conn:
        return list((await conn.execute(text(query), params)).all())


async def wait_caught_up(engine: Any, rpc_url: str, worker: Any, timeout: float) -> None:
    """Until the worker's event follower has applied every block up to the head seen now."""
    from solver.devnet.anvil import rpc

    head = int(await asyncio.to_thread(rpc, rpc_url, "eth_blockNumber"), 16)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not worker.alive():
            raise RuntimeError(f"worker exited:\n{worker.tail()}")
        rows = await sql(engine, "SELECT block_number FROM follower_cursor WHERE name = 'symmio'")
        this_start = worker.log_path.read_text(errors="replace").rsplit("----- start #", 1)[-1]
        if rows and rows[0][0] >= head and "worker started" in this_start:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"worker did not catch up with block {head} within {timeout:.0f}s:\n{worker.tail()}")


@dataclass
class Ctx:
    env: Any  # open_common.Devnet
    engine: Any  # async SQLAlchemy engine on the scratch database
    oracle: Any  # the `solver oracle` Proc
    args: argparse.Namespace


async def run_worker(
    ctx: Ctx,
    api: tuple[Any, str],  # (Proc, base URL)
    worker: Any,
    tokens: dict[str, str],
    accounts: list[str],
    res: Result,
    budget: float,
) -> None:
    env, engine, args = ctx.env, ctx.engine, ctx.args
    worker.start()
    stopped = False
    try:
        await wait_caught_up(engine, env.info.rpc_url, worker, 60)
        os.killpg(worker.proc.pid, signal.SIGSTOP)  # our child's own process group
        stopped = True
        api_proc, api_url = api
        api_meter = CpuMeter({"api": api_proc.proc.pid}, {})
        api_meter.start()
        errors = await post_all(api_url, tokens, accounts, args.per_account)
        api_meter.stop()
        if errors:
            res.failures.append(f"{len(errors)} POSTs failed, first: {errors[0]}")
            return
        meter = CpuMeter(
            {"worker": worker.proc.pid, "oracle": ctx.oracle.proc.pid, "api": api_proc.proc.pid},
            {"anvil": env.node.process.pid, "bench client": os.getpid()},
            {"postgres (our db)": " " + env.db_url.rsplit("/", 1)[1] + " "},
        )
        meter.start()
        t0 = time.time()
        os.killpg(worker.proc.pid, signal.SIGCONT)
        stopped = False
        n = len(accounts) * args.per_account
        end = time.monotonic() + budget
        final = 0
        while time.monotonic() < end:
            rows = await sql(
                engine,
                "SELECT count(*) FROM instant_open WHERE account = ANY(:a) "
                "AND status IN ('opened', 'failed', 'cancelled')",
                a=accounts,
            )
            final = rows[0][0]
            if final >= n:
                break
            await asyncio.sleep(0.05)
        meter.stop()
        if final < n:
            res.failures.append(f"only {final}/{n} opens final within {budget:.0f}s")
        timings = await server_timings(env.db_url, accounts)
        opened = [r for r in timings if r["status"] == "opened"]
        if len(opened) != n:
            bad = [r for r in timings if r["status"] != "opened"]
            res.failures.append(f"{len(bad)} opens did not end opened, first: {bad[:1]}")
        res.opens = len(opened)
        if opened:
            res.wall_s = max(r["open_settled"] for r in opened) - t0
        lane_rows = await sql(
            engine,
            "SELECT t.lane, count(DISTINCT t.id), min(t.block_number), max(t.block_number) "
            "FROM chain_tx t JOIN tx_intent i ON i.tx_id = t.id WHERE i.account = ANY(:a) GROUP BY t.lane",
            a=accounts,
        )
        res.per_lane = {int(lane): int(c) for lane, c, _, _ in lane_rows}
        res.txs = sum(res.per_lane.values())
        res.blocks = max(int(r[3]) for r in lane_rows) - min(int(r[2]) for r in lane_rows) + 1
        used = dict(meter.used)
        machine = used.pop("machine (all processes)")
        res.cpu_ms = {k: v * 1000 / max(n, 1) for k, v in used.items()}
        res.cpu_ms["api (POSTs, worker frozen)"] = api_meter.used["api"] * 1000 / max(n, 1)
        res.rest_ms = (machine - sum(used.values())) * 1000 / max(n, 1)
        res.busy = machine / ((os.cpu_count() or 1) * meter.wall_s)
        res.post_s = api_meter.wall_s
        res.issues = log_issues(worker)
    finally:
        if stopped:
            os.killpg(worker.proc.pid, signal.SIGCONT)
        worker.stop()


# --- main ----------------------------------------------------------------------------------------


async def bench(args: argparse.Namespace, deadline: Deadline, results: list[Result]) -> None:
    import redis.asyncio as aioredis
    from sqlalchemy.ext.asyncio import create_async_engine

    from solver.auth.jwt import JwtCodec
    from solver.core.clock import SystemClock
    from solver.devnet.deploy import anvil_key
    from solver.quotes.outbox import lane_for
    from tests.e2e.processes import Proc, stack_settings, wait_http
    from tests.fixtures.trading import PriceKeeper, new_account

    t_start = time.monotonic()
    configs = ["naive", "worker, 1 lane", f"worker, {args.lanes} lanes"]
    log_dir = Path(tempfile.mkdtemp(prefix="worker-send-bench-"))
    with devnet("send") as env:
        info = env.info
        owner = info.demo_accounts[0].owner
        n_workloads = args.rounds * len(args.modes)
        lane_keys = [info.solver_private_key] + [anvil_key(FIRST_LANE_KEY_INDEX + i) for i in range(args.lanes - 1)]

        def setup() -> tuple[list[str], dict[tuple[int, str], list[str]]]:
            parties = PartyBSetup(info)
            naive_b = parties.register(anvil_key(NAIVE_KEY_INDEX))
            lanes = [info.solver] + [parties.register(k) for k in lane_keys[1:]]
            out: dict[tuple[int, str], list[str]] = {}
            spare: list[str] = []
            for w in range(n_workloads):
                naive = [new_account(info, solver_allocation=0) for _ in range(args.accounts)]
                for a in naive:
                    parties.link(a, naive_b)
                out[(w, configs[0])] = naive
                buckets: dict[int, list[str]] = {i: [] for i in range(args.lanes)}
                want = args.accounts // args.lanes
                while any(len(b) < want for b in buckets.values()):
                    a = new_account(info)
                    b = buckets[lane_for(a, args.lanes)]
                    if len(b) < want:
                        b.append(a)
                    else:
                        spare.append(a)
                multi = [a for i in range(want) for b in buckets.values() for a in b[i : i + 1]]
                for a in multi:
                    for lane in lanes[1:]:
                        parties.link(a, lane)
                out[(w, configs[2])] = multi
                single = spare[: args.accounts]
                del spare[: args.accounts]
                single += [new_account(info) for _ in range(args.accounts - len(single))]
                out[(w, configs[1])] = single
            return lanes, out

        lanes, accounts = await asyncio.to_thread(setup)
        print(f"setup: lanes {lanes}, sub-accounts ready ({time.monotonic() - t_start:.0f}s)", flush=True)
        opener = NaiveOpener(info, anvil_key(NAIVE_KEY_INDEX), poll_latency=args.naive_poll)

        common: dict[str, Any] = {"risk": {"max_pending_instant_opens": 50}}
        s1 = stack_settings(info, env.db_url, env.redis_prefix, worker={"poll_interval_s": args.worker_poll}, **common)
        sn = stack_settings(
            info,
            env.db_url,
            env.redis_prefix,
            oracle={"port": s1.oracle.port, "muon_urls": s1.oracle.muon_urls},
            worker={"poll_interval_s": args.worker_poll, "signer_private_keys": lane_keys},
            chain={"party_b_addresses": lanes},
            **common,
        )
        oracle = Proc("oracle", ["oracle"], s1, log_dir)
        apis = {configs[1]: Proc("api-1", ["api"], s1, log_dir), configs[2]: Proc("api-n", ["api"], sn, log_dir)}
        workers = {
            configs[1]: Proc("worker-1", ["worker"], s1, log_dir),
            configs[2]: Proc("worker-n", ["worker"], sn, log_dir),
        }
        api_urls = {configs[1]: f"http://127.0.0.1:{s1.api.port}", configs[2]: f"http://127.0.0.1:{sn.api.port}"}
        jwt = JwtCodec(s1.auth, SystemClock())
        procs = [oracle, *apis.values(), *workers.values()]
        redis_client = aioredis.from_url(REDIS_URL)
        engine = create_async_engine(env.db_url, pool_size=2, max_overflow=0)
        ctx = Ctx(env, engine, oracle, args)
        failed = True
        try:
            async with PriceKeeper(redis_client, env.redis_prefix):
                oracle.start()
                await asyncio.to_thread(wait_http, f"http://127.0.0.1:{s1.oracle.port}/health", oracle)
                for cfg, api in apis.items():
                    api.start()
                    await asyncio.to_thread(wait_http, f"{api_urls[cfg]}/health", api)
                w = 0
                for rnd in range(args.rounds):
                    for mode in args.modes:
                        set_mining(info.rpc_url, mode)
                        for cfg in configs:
                            res = Result(mode, cfg, rnd)
                            results.append(res)
                            accts = accounts[(w, cfg)]
                            if cfg == "naive":
                                limit = len(accts) * args.per_account
                                if mode != "instant":
                                    limit = min(limit, args.naive_block_opens)
                                await run_naive(opener, accts, args.per_account, limit, res)
                            else:
                                tokens = {a: jwt.issue(account=a, owner=owner, expires_at=_in_an_hour()) for a in accts}
                                budget = min(args.workload_timeout, deadline.left())
                                api = (apis[cfg], api_urls[cfg])
                                await run_worker(ctx, api, workers[cfg], tokens, accts, res, budget)
                            print(
                                f"round {rnd} {mode} {cfg}: {res.opens} opens in {fmt(res.wall_s, 2)}s = "
                                f"{fmt(res.rate)} opens/s ({time.monotonic() - t_start:.0f}s elapsed)",
                                flush=True,
                            )
                            if res.failures:
                                raise RuntimeError("; ".join(res.failures))
                        w += 1
                set_mining(info.rpc_url, "instant")
            failed = False
        finally:
            for p in procs:
                p.stop()
            await engine.dispose()
            await redis_client.aclose()
            if failed:
                for p in procs:
                    print(f"===== {p.name} =====\n{p.tail()}", file=sys.stderr)
                print(f"logs kept in {log_dir}", file=sys.stderr)
            else:
                shutil.rmtree(log_dir, ignore_errors=True)


def _in_an_hour() -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) + timedelta(hours=1)


def report(results: list[Result], args: argparse.Namespace) -> None:
    for mode in args.modes:
        rs = [r for r in results if r.mode == mode]
        if not rs:
            continue
        n = args.accounts * args.per_account
        print(f"\n== {mode} mining: {n} opens ({args.accounts} accounts x {args.per_account}) ==")
        print(f"{'config':22} {'opens/s':>8} {'vs naive':>9} {'txs/open':>9}   opens/s per round")
        configs = list(dict.fromkeys(r.config for r in rs))
        base = median([r.rate for r in rs if r.config == "naive"])
        for cfg in configs:
            cr = [r for r in rs if r.config == cfg]
            rate = median([r.rate for r in cr])
            txs = median([r.txs / r.opens for r in cr if r.opens])
            each = " ".join(fmt(r.rate) for r in cr)
            print(f"{cfg:22} {fmt(rate):>8} {fmt(rate / base, 2):>9} {fmt(txs, 2):>9}   {each}")
        print("CPU ms per open (median of rounds):")
        for cfg in configs:
            cr = [r for r in rs if r.config == cfg and r.cpu_ms]
            if not cr:
                continue
            per = {k: median([r.cpu_ms[k] for r in cr]) for k in cr[0].cpu_ms}
            if any(r.rest_ms == r.rest_ms for r in cr):
                per["rest of machine (other jobs)"] = median([r.rest_ms for r in cr])
            print(f"  {cfg}: " + ", ".join(f"{k} {fmt(v)}" for k, v in per.items()))
        for cfg in configs:
            cr = [r for r in rs if r.config == cfg and r.blocks]
            if not cr:
                continue
            busy = " ".join(fmt(r.busy * 100, 0) for r in cr)
            line = f"  {cfg}: machine busy % per round {busy}; POST phase {fmt(median([r.post_s for r in cr]), 2)}s"
            if mode != "instant":
                ideal = args.per_account + 1
                blocks = " ".join(str(r.blocks) for r in cr)
                line += f"; blocks used per round {blocks} (one tx per account in flight: >= {ideal})"
            print(line)
        for r in rs:
            if len(r.per_lane) > 1:
                lanes = Counter(r.per_lane)
                print(f"round {r.round} {r.config}: txs per lane {dict(sorted(lanes.items()))}")
            if r.issues:
                print(f"round {r.round} {r.config}: {len(r.issues)} worker log warnings/errors, first: {r.issues[0]}")
            for f in r.failures:
                print(f"FAILURE round {r.round} {r.config}: {f}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--accounts", type=int, default=12, help="sub-accounts per workload (a multiple of --lanes)")
    ap.add_argument("--per-account", type=int, default=5, help="opens per sub-account")
    ap.add_argument("--lanes", type=int, default=3)
    ap.add_argument("--modes", nargs="+", type=parse_mode, default=["instant", "1s"])
    ap.add_argument("--naive-block-opens", type=int, default=6, help="naive opens per round with block mining")
    ap.add_argument("--worker-poll", type=float, default=0.1, help="worker.poll_interval_s (the default is 0.1)")
    ap.add_argument("--naive-poll", type=float, default=0.01, help="receipt poll interval of the naive sender")
    ap.add_argument("--workload-timeout", type=float, default=120)
    ap.add_argument("--max-seconds", type=float, default=900)
    args = ap.parse_args(argv)
    if not (2 <= args.lanes <= 8 and args.accounts % args.lanes == 0 and 1 <= args.per_account <= 40):
        ap.error("need 2 <= lanes <= 8, accounts a multiple of lanes, 1 <= per-account <= 40")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_sigterm()
    deadline = Deadline(args.max_seconds)
    print(
        f"{args.accounts} accounts x {args.per_account} opens per workload, lanes 1 vs {args.lanes} vs naive, "
        f"rounds={args.rounds}, modes={' '.join(args.modes)}, worker poll {args.worker_poll}s; "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )
    t0 = time.monotonic()
    results: list[Result] = []
    error: BaseException | None = None
    try:
        asyncio.run(bench(args, deadline, results))
    except Exception as exc:
        error = exc
        print(f"error: {exc!r}", file=sys.stderr)
    report(results, args)
    failed = error is not None or any(r.failures for r in results)
    status = "FAILED" if failed else "ok"
    print(f"\n{status}: total {time.monotonic() - t0:.0f}s; processes stopped, DB and Redis keys removed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
