"""POST /instant_open through the real processes until the position is OPENED on chain.

    .venv/bin/python bench/instant_open_bench.py [--rounds 3] [--opens 100] [--accounts 10]
        [--concurrency 10] [--modes instant 1s] [--poll 0.1] [--worker-poll 0.1] [--naive-opens 3]
        [--naive-poll 0.01]

Starts anvil and deploys the contracts, migrates a scratch database, uses a unique Redis prefix,
keeps BTCUSDT marks fresh (PriceKeeper) and runs `solver oracle`, `solver api` and `solver worker`
(one signer lane, the devnet solver) as real processes (tests.e2e.processes.Stack). Sub-accounts
are fresh for every (round, mode) workload, created up front (tests.fixtures.trading.new_account),
so no workload sees positions of another.

A workload: `--opens` opens (0.01 BTC LONG MARKET at 10x, e2e open_body) spread round-robin over
`--accounts` sub-accounts, POSTed with JWTs by `--concurrency` clients (each its own connection),
each client sending its next open as soon as the previous one is answered. One poller per account
(a bot) polls GET /instant_open/{account} every `--poll` s. Per open it records
request -> 200, request -> quote id seen (the list shows the on-chain id) and request -> `opened`
seen; throughput = opens / (first request -> last `opened` seen). It also reads the solver's own
timestamps from the database (accepted, sendQuote tx signed/settled, lockAndOpen signed/settled),
which do not depend on the polling interval.

Baselines in the same round and mode: `GET /health` latency at the same concurrency (the HTTP
floor for request -> 200), and `--naive-opens` opens sent directly with web3 by a separate
PartyB, one at a time (bench/open_common.NaiveOpener: nonce read from the node, each receipt
awaited, polled every `--naive-poll` s), the chain floor for request -> opened. It also reports
the CPU each process used per open during the workload (/proc; Postgres: the backends of the
scratch database), and the WARNING/ERROR lines in the worker and API logs.

Rounds are interleaved over the modes: `instant` (anvil mines one block per transaction) and
`1s` (a block every second). Every open must answer 200 and end `opened` (exit code 1 otherwise).
Everything it started is stopped and the database and Redis keys removed at exit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from open_common import (
    OPEN_PRICE,
    OPEN_QTY,
    PHASES,
    REDIS_URL,
    CpuMeter,
    Deadline,
    NaiveOpener,
    PartyBSetup,
    blocks_per_tx,
    devnet,
    install_sigterm,
    log_issues,
    median,
    parse_mode,
    pct,
    phase_ms,
    server_timings,
    set_mining,
)

FINAL = ("opened", "failed", "cancelled")
NAIVE_KEY_INDEX = 9  # an anvil account nobody else uses: the naive baseline's PartyB


@dataclass
class Rec:
    account: str
    t_post: float = 0.0
    t_200: float | None = None
    status: int | None = None
    temp: int | None = None
    error: str | None = None


@dataclass
class RoundResult:
    mode: str
    round: int
    post_ms: list[float] = field(default_factory=list)
    qid_ms: list[float] = field(default_factory=list)
    opened_ms: list[float] = field(default_factory=list)
    throughput: float = float("nan")
    wall_s: float = float("nan")
    health_ms: list[float] = field(default_factory=list)
    naive_ms: list[float] = field(default_factory=list)
    server: list[dict[str, Any]] = field(default_factory=list)
    cpu_ms: dict[str, float] = field(default_factory=dict)  # CPU ms per open, by process
    cpu_util: float = float("nan")  # machine busy / (cores x workload wall time)
    issues: dict[str, int] = field(default_factory=dict)  # WARNING/ERROR log lines so far, by process
    failures: list[str] = field(default_factory=list)


def client(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        timeout=30.0,
        trust_env=False,  # loopback only
    )


async def health_baseline(base_url: str, n: int, concurrency: int) -> list[float]:
    clients = [client(base_url) for _ in range(concurrency)]
    lat: list[float] = []
    queue = iter(range(n))

    async def run(c: httpx.AsyncClient) -> None:
        await c.get("/health")  # connect before timing
        for _ in queue:
            t0 = time.perf_counter()
            r = await c.get("/health")
            lat.append((time.perf_counter() - t0) * 1000)
            r.raise_for_status()

    try:
        await asyncio.gather(*(run(c) for c in clients))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    return lat


async def workload(
    base_url: str, traders: Sequence[tuple[str, str]], args: argparse.Namespace, res: RoundResult, budget: float
) -> None:
    from tests.e2e.trader import open_body

    recs = [Rec(traders[i % len(traders)][0]) for i in range(args.opens)]
    tokens = dict(traders)
    seen_qid: dict[int, float] = {}
    seen_final: dict[int, tuple[float, str, Any]] = {}
    submitted = asyncio.Event()
    posters = [client(base_url) for _ in range(args.concurrency)]
    pollers = {acct: client(base_url) for acct, _ in traders}
    queue = iter(range(args.opens))

    async def post(c: httpx.AsyncClient) -> None:
        for i in queue:
            rec = recs[i]
            headers = {"Authorization": f"Bearer {tokens[rec.account]}"}
            body = open_body(quantity=OPEN_QTY, price=OPEN_PRICE)
            rec.t_post = time.time()
            r = await c.post("/instant_open", json=body, headers=headers)
            rec.t_200 = time.time()
            rec.status = r.status_code
            if r.status_code == 200:
                rec.temp = int(r.json()["temp_quote_id"])
            else:
                rec.error = r.text[:300]

    async def poll(account: str, c: httpx.AsyncClient) -> None:
        mine = [r for r in recs if r.account == account]
        while True:
            r = await c.get(f"/instant_open/{account}")
            now = time.time()
            r.raise_for_status()
            for item in r.json():
                temp = int(item["temp_quote_id"])
                if int(item["quote_id"]) != temp:
                    seen_qid.setdefault(temp, now)
                if item["status"] in FINAL and temp not in seen_final:
                    seen_final[temp] = (now, item["status"], item.get("error_message"))
            if submitted.is_set() and all(x.temp is None or x.temp in seen_final for x in mine):
                return
            await asyncio.sleep(args.poll)

    async def run() -> None:
        poll_tasks = [asyncio.create_task(poll(a, c)) for a, c in pollers.items()]
        try:
            await asyncio.gather(*(post(c) for c in posters))
            submitted.set()
            await asyncio.gather(*poll_tasks)
        finally:
            for t in poll_tasks:
                t.cancel()
            await asyncio.gather(*poll_tasks, return_exceptions=True)

    for c in [*posters, *pollers.values()]:
        (await c.get("/health")).raise_for_status()  # connect before the clock starts
    try:
        await asyncio.wait_for(run(), budget)
    except TimeoutError:
        res.failures.append(f"workload did not finish within {budget:.0f}s ({len(seen_final)}/{len(recs)} final)")
    finally:
        await asyncio.gather(*(c.aclose() for c in [*posters, *pollers.values()]))

    bad = [r for r in recs if r.status != 200]
    if bad:
        res.failures.append(f"{len(bad)}/{len(recs)} POSTs not 200, first: {bad[0].status} {bad[0].error}")
    not_opened = [(r.temp, seen_final.get(r.temp or 0)) for r in recs if r.temp is not None]
    not_opened = [x for x in not_opened if x[1] is None or x[1][1] != "opened"]
    if not_opened:
        res.failures.append(f"{len(not_opened)} opens did not end opened, first: {not_opened[0]}")
    ok = [r for r in recs if r.temp is not None and r.t_200 is not None]
    res.post_ms = [(r.t_200 - r.t_post) * 1000 for r in ok]  # type: ignore[operator]
    res.qid_ms = [(seen_qid[r.temp] - r.t_post) * 1000 for r in ok if r.temp in seen_qid]  # type: ignore[index]
    opened = [(seen_final[r.temp][0], r) for r in ok if r.temp in seen_final and seen_final[r.temp][1] == "opened"]  # type: ignore[index]
    res.opened_ms = [(t - r.t_post) * 1000 for t, r in opened]
    if opened:
        res.wall_s = max(t for t, _ in opened) - min(r.t_post for r in recs)
        res.throughput = len(opened) / res.wall_s


def cpu_meter(stack: Any, anvil_pid: int, db_url: str) -> CpuMeter:
    groups = {p.name: p.proc.pid for p in (stack.api, stack.worker, stack.oracle) if p.proc is not None}
    postgres = {"postgres (our db)": " " + db_url.rsplit("/", 1)[1] + " "}
    return CpuMeter(groups, {"anvil": anvil_pid, "bench client": os.getpid()}, postgres)


def record_cpu(res: RoundResult, meter: CpuMeter, n: int) -> None:
    used = dict(meter.used)
    machine = used.pop("machine (all processes)")
    used["rest of machine (redis, other jobs)"] = machine - sum(used.values())
    used["machine (all processes)"] = machine
    res.cpu_ms = {k: v * 1000 / n for k, v in used.items()}
    res.cpu_util = machine / ((os.cpu_count() or 1) * meter.wall_s)


async def naive_baseline(opener: NaiveOpener, accounts: Sequence[str]) -> list[float]:
    def run() -> list[float]:
        out = []
        for account in accounts:
            t0 = time.perf_counter()
            quote_id = opener.open(account)
            out.append((time.perf_counter() - t0) * 1000)
            if opener.quote_status(quote_id) != 4:  # OPENED
                raise RuntimeError(f"naive open of quote {quote_id} did not end OPENED")
        return out

    return await asyncio.to_thread(run)


# --- report --------------------------------------------------------------------------------------


def fmt(v: float, digits: int = 0) -> str:
    return "-" if v != v else f"{v:.{digits}f}"  # nan -> "-"


def report(results: list[RoundResult], args: argparse.Namespace) -> None:
    for mode in args.modes:
        rs = [r for r in results if r.mode == mode]
        if not rs:
            continue
        head = f"{args.opens} opens from {args.accounts} accounts, concurrency {args.concurrency}"
        print(f"\n== {mode} mining: {head} ==")
        print(f"{'measure (medians of rounds)':42} {'p50 ms':>8} {'p99 ms':>8}   p50 per round")
        rows = [
            ("POST /instant_open -> 200", [r.post_ms for r in rs]),
            (f"request -> quote id seen (poll {args.poll}s)", [r.qid_ms for r in rs]),
            (f"request -> opened seen (poll {args.poll}s)", [r.opened_ms for r in rs]),
            ("baseline: GET /health", [r.health_ms for r in rs]),
            ("baseline: naive direct open (2 txs)", [r.naive_ms for r in rs]),
        ]
        p50: dict[str, float] = {}
        for name, per_round in rows:
            m50 = median([pct(x, 50) for x in per_round if x])
            m99 = median([pct(x, 99) for x in per_round if x])
            p50[name] = m50
            each = " ".join(fmt(pct(x, 50)) for x in per_round)
            print(f"{name:42} {fmt(m50):>8} {fmt(m99):>8}   {each}")
        tput = median([r.throughput for r in rs])
        naive_tput = median([1000 / median(r.naive_ms) for r in rs if r.naive_ms])
        print(
            f"throughput: {fmt(tput, 1)} opens/s (per round: {' '.join(fmt(r.throughput, 1) for r in rs)}); "
            f"naive one-at-a-time: {fmt(naive_tput, 1)} opens/s; ratio {fmt(tput / naive_tput, 1)}x"
        )
        post, health = p50["POST /instant_open -> 200"], p50["baseline: GET /health"]
        opened, naive = p50[f"request -> opened seen (poll {args.poll}s)"], p50["baseline: naive direct open (2 txs)"]
        print(f"POST p50 / health p50 = {fmt(post / health, 1)}; opened p50 / naive p50 = {fmt(opened / naive, 1)}")
        server = [row for r in rs for row in r.server]
        print(f"server-side timestamps, all {len(server)} opens of the mode pooled:")
        print(f"  {'phase':40} {'p50 ms':>8} {'p99 ms':>8}")
        for name, start, end in PHASES:
            v = phase_ms(server, start, end)
            print(f"  {name:40} {fmt(pct(v, 50)):>8} {fmt(pct(v, 99)):>8}")
        send_txs = {row["send_tx"] for row in server if row["send_tx"] is not None}
        if server:
            line = (
                f"  {len(send_txs)} sendQuote txs for {len(server)} opens "
                f"(mean batch {len(server) / max(len(send_txs), 1):.1f}), one lockAndOpen each"
            )
            if mode != "instant":
                bpt = blocks_per_tx(server)
                line += (
                    f"; per account, blocks spanned / its txs: p50 {fmt(pct(bpt, 50), 2)}, "
                    f"max {fmt(max(bpt or [0]), 2)} (1.00 = a tx in every block)"
                )
            print(line)
        if rs[0].cpu_ms:
            utils = " ".join(fmt(r.cpu_util * 100) for r in rs)
            print(f"CPU per open during the workload (ms, median of rounds); machine busy % per round: {utils}")
            per = {k: median([r.cpu_ms[k] for r in rs if r.cpu_ms]) for k in rs[0].cpu_ms}
            print("  " + ", ".join(f"{k} {fmt(v, 1)}" for k, v in per.items()))
        if rs[-1].issues:
            print(f"WARNING/ERROR lines in the logs after this mode's last round: {rs[-1].issues}")
        for r in rs:
            for f in r.failures:
                print(f"FAILURE round {r.round}: {f}")


# --- main ----------------------------------------------------------------------------------------


async def bench(args: argparse.Namespace, deadline: Deadline, results: list[RoundResult]) -> None:
    import redis.asyncio as aioredis

    from solver.devnet.deploy import anvil_key
    from tests.e2e.processes import Stack, stack_settings
    from tests.fixtures.trading import PriceKeeper, new_account

    t_start = time.monotonic()
    log_dir = Path(tempfile.mkdtemp(prefix="instant-open-bench-"))
    with devnet("open") as env:
        info = env.info
        owner = info.demo_accounts[0].owner
        n_workloads = args.rounds * len(args.modes)

        def setup() -> tuple[list[list[str]], list[list[str]], str]:
            parties = PartyBSetup(info)
            naive_b = parties.register(anvil_key(NAIVE_KEY_INDEX))
            per_workload = [[new_account(info) for _ in range(args.accounts)] for _ in range(n_workloads)]
            naive_accts = []
            for _ in range(n_workloads):
                accts = [new_account(info, solver_allocation=0) for _ in range(args.naive_opens)]
                for a in accts:
                    parties.link(a, naive_b)
                naive_accts.append(accts)
            return per_workload, naive_accts, naive_b

        accounts, naive_accounts, _ = await asyncio.to_thread(setup)
        n_accounts = n_workloads * (args.accounts + args.naive_opens)
        print(f"setup: {n_accounts} sub-accounts ({time.monotonic() - t_start:.0f}s)")
        opener = NaiveOpener(info, anvil_key(NAIVE_KEY_INDEX), poll_latency=args.naive_poll)

        settings = stack_settings(
            info,
            env.db_url,
            env.redis_prefix,
            risk={"max_pending_instant_opens": 50},
            worker={"poll_interval_s": args.worker_poll},
        )
        stack = Stack(settings, log_dir)
        redis_client = aioredis.from_url(REDIS_URL)
        failed = True
        try:
            async with PriceKeeper(redis_client, env.redis_prefix):
                await asyncio.to_thread(stack.start)
                meter = cpu_meter(stack, env.node.process.pid, env.db_url)
                k = 0
                for rnd in range(args.rounds):
                    for mode in args.modes:
                        set_mining(info.rpc_url, mode)
                        res = RoundResult(mode, rnd)
                        results.append(res)
                        res.health_ms = await health_baseline(stack.base_url, 100, args.concurrency)
                        res.naive_ms = await naive_baseline(opener, naive_accounts[k])
                        traders = [(a, stack.token(a, owner)) for a in accounts[k]]
                        budget = min(args.workload_timeout, deadline.left())
                        meter.start()
                        await workload(stack.base_url, traders, args, res, budget)
                        meter.stop()
                        record_cpu(res, meter, args.opens)
                        res.server = await server_timings(env.db_url, accounts[k])
                        res.issues = {p.name: len(log_issues(p, since_start=1)) for p in (stack.worker, stack.api)}
                        k += 1
                        print(
                            f"round {rnd} {mode}: {fmt(res.throughput, 1)} opens/s, opened p50 "
                            f"{fmt(pct(res.opened_ms, 50))} ms ({time.monotonic() - t_start:.0f}s elapsed)",
                            flush=True,
                        )
                        if res.failures:
                            raise RuntimeError("; ".join(res.failures))
                set_mining(info.rpc_url, "instant")
            failed = False
        finally:
            stack.stop()
            await redis_client.aclose()
            if failed:
                print(stack.logs(), file=sys.stderr)
                print(f"logs kept in {log_dir}", file=sys.stderr)
            else:
                shutil.rmtree(log_dir, ignore_errors=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--opens", type=int, default=100, help="opens per workload")
    ap.add_argument("--accounts", type=int, default=10, help="sub-accounts per workload (opens round-robin)")
    ap.add_argument("--concurrency", type=int, default=10, help="POSTing clients")
    ap.add_argument("--modes", nargs="+", type=parse_mode, default=["instant", "1s"])
    ap.add_argument("--poll", type=float, default=0.1, help="client poll interval of GET /instant_open/{account}")
    ap.add_argument("--worker-poll", type=float, default=0.1, help="worker.poll_interval_s (the default is 0.1)")
    ap.add_argument("--naive-poll", type=float, default=0.01, help="receipt poll interval of the naive sender")
    ap.add_argument("--naive-opens", type=int, default=3, help="naive direct opens per round and mode")
    ap.add_argument("--workload-timeout", type=float, default=180)
    ap.add_argument("--max-seconds", type=float, default=900)
    args = ap.parse_args(argv)
    if not (1 <= args.rounds <= 10 and 1 <= args.accounts <= args.opens <= 1000 and 1 <= args.concurrency <= 64):
        ap.error("need 1 <= rounds <= 10, 1 <= accounts <= opens <= 1000, 1 <= concurrency <= 64")
    if args.opens / args.accounts > 50 or args.naive_opens < 1:
        ap.error("at most 50 opens per account (pending-quote limit); --naive-opens >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_sigterm()
    deadline = Deadline(args.max_seconds)
    print(
        f"{args.opens} opens per workload from {args.accounts} accounts, concurrency {args.concurrency}, "
        f"rounds={args.rounds}, modes={' '.join(args.modes)}, client poll {args.poll}s, "
        f"worker poll {args.worker_poll}s; {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    t0 = time.monotonic()
    results: list[RoundResult] = []
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
