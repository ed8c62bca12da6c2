"""Load test: hundreds of simulated traders against the real processes for `--duration` seconds.

    .venv/bin/python bench/load_test.py [--accounts 200] [--duration 600] [--api-workers 2]
        [--think 2 5] [--relogin 120 240] [--connections 64] [--mining 1s] [--mix open=0.08,...]
        [--setup-only]

Environment (bench/open_common.devnet): a fresh anvil with the contracts, a scratch migrated
database, a unique Redis prefix; everything is removed at exit (also on error or SIGTERM).

Accounts: `--accounts` owners (one EOA each, keys derived from `--seed`), each with one
sub-account: collateral minted, deposited and allocated, the six selectors delegated to the
solver, solver collateral allocated for it. Created before the stack starts, in two batches of
raw transactions (JSON-RPC batch requests, automine off, `evm_mine` until all are in, the block
gas limit raised): 1) per owner addAccount + mint + approve, 2) per owner depositAndAllocate +
delegateAccesses and per account the solver's allocateForPartyB. ETH for gas comes from
`anvil_setBalance`. The time of each phase is printed (`--setup-only` stops there).

Stack: `solver api --workers N` (uvicorn, N worker processes), `solver worker`, `solver oracle`
and `solver engine` as real processes (tests/e2e/processes.Stack), the engine on a local
Binance-protocol mark-price feed (tests/fixtures/binance.pumped_binance) whose BTCUSDT price does
a mean-reverting random walk (σ 0.05 % per tick, one tick per `--price-interval` s). Rate
limiting is off (every user comes from 127.0.0.1). Anvil mines per `--mining` (`1s` blocks by
default, or `instant`).

Each simulated user (one asyncio task; all share one httpx.AsyncClient with `--connections`
connections) logs in with SIWE at start (GET /nonce, the EIP-4361 text signed with its owner
key, POST /login) and again every `--relogin` s (uniform), or at once after a 401. Then, every
`--think` s (uniform), one action drawn from the mix (weights, `--mix` to change them):

    market          GET /contract-symbols or GET /get_market_info
    poll            GET /instant_open/{account} + GET /instant_close/{account}: learns opened
                    positions (its own and its strategy sub-orders), fills and failures
    open            POST /instant_open (LONG/SHORT 0.002-0.01 BTC at the mark ± 1 %, Idempotency-Key)
    close           POST /instant_close of one of its positions (all, or half of a 0.01), mark ∓ 1 %
    sltp_set        POST /stop-loss: stop loss and/or take profit 30-150 from the mark
    sltp_cancel     DELETE /stop-loss/{quote_id}
    sltp_list       GET /stop-loss/{account}
    strategy_create POST /strategy-orders (LIMIT 0-150 from the mark, or DCA 3 x 2 s)
    strategy_list   GET /strategy-orders
    strategy_cancel DELETE /strategy-orders/{id}

An action that has nothing to act on (close without positions, ...) becomes a poll or a list.

Report (markdown): per endpoint the requests, requests/s, p50/p99/max latency and the answers by
status code (and error code); trades completed (from the database at the end of the workload:
opens `opened`, closes `filled`, with server-side latencies, and what is still in flight); RSS
of every solver process (psutil, else /proc/<pid>/status) sampled every `--sample-every` s:
first/last/max and the slope per minute (whole run and second half), and the series; database
growth (pg_total_relation_size and rows of every table, start and end, per trade) and Redis
growth (INFO used_memory, server-wide, and the keys under the run's prefix: count and MEMORY
USAGE, start and end, per trade); CPU per process; WARNING/ERROR lines in the logs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import httpx
from eth_abi.abi import decode, encode
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from open_common import (
    REDIS_URL,
    CpuMeter,
    devnet,
    install_sigterm,
    log_issues,
    parse_mode,
    pct,
    pid_cpu_s,
    set_mining,
)

MARKS = {"BTCUSDT": "60000", "ETHUSDT": "3000", "XRPUSDT": "0.5123"}
CENTER, LOW, HIGH = Decimal(60000), Decimal(58500), Decimal(61500)
TICK = Decimal("0.1")  # BTCUSDT price precision 1
QTY_STEP = Decimal("0.001")
ORIGIN = "http://localhost:3000"  # SIWE domain "localhost" (auth.allowed_domains)
WAD = 10**18
GAS_LIMIT = 1_000_000_000  # block gas limit during setup: a batch fits in a block or two
MAX_FEE, PRIORITY_FEE = 50 * 10**9, 10**9
OPEN_FINAL = ("opened", "failed", "cancelled")
CLOSE_FINAL = ("filled", "failed", "cancelled")
MIX = {
    "market": 0.30,
    "poll": 0.20,
    "open": 0.08,
    "close": 0.06,
    "sltp_set": 0.08,
    "sltp_cancel": 0.03,
    "sltp_list": 0.03,
    "strategy_create": 0.04,
    "strategy_list": 0.14,
    "strategy_cancel": 0.04,
}
MAX_LIVE_STRATEGIES = 5  # per user; more: it cancels one instead
MAX_PENDING_OPENS = 8  # per user (the solver allows risk.max_pending_instant_opens = 10)


# --- accounts on anvil -----------------------------------------------------------------------


@dataclass(frozen=True)
class Trader:
    owner: str
    key: str
    account: str


def _abi_type(item: dict[str, Any]) -> str:
    if item["type"].startswith("tuple"):
        return f"({','.join(_abi_type(c) for c in item['components'])}){item['type'][5:]}"
    return str(item["type"])


class Abi:
    """Calldata as selector + eth_abi.encode (web3's Contract.encode_abi costs ~1.4 ms a call here)."""

    def __init__(self, artifact: str) -> None:
        from solver.devnet.artifacts import load_artifact

        self.fns: dict[tuple[str, int], tuple[bytes, list[str]]] = {}
        for f in load_artifact(artifact).abi:
            if f.get("type") == "function":
                types = [_abi_type(i) for i in f["inputs"]]
                sel = keccak(text=f"{f['name']}({','.join(types)})")[:4]
                self.fns[(f["name"], len(types))] = (sel, types)

    def data(self, name: str, *args: Any) -> str:
        sel, types = self.fns[(name, len(args))]
        return "0x" + (sel + encode(types, list(args))).hex()


class Rpc:
    """JSON-RPC over one keep-alive connection, with batch requests."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(timeout=120, trust_env=False)

    def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        return self.batch([(method, params)])[0]

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]], chunk: int = 250) -> list[Any]:
        out: list[Any] = []
        for i in range(0, len(calls), chunk):
            part = calls[i : i + chunk]
            body = [{"jsonrpc": "2.0", "id": k, "method": m, "params": list(p)} for k, (m, p) in enumerate(part)]
            resp = self.http.post(self.url, json=body)
            resp.raise_for_status()
            for r in sorted(resp.json(), key=lambda r: r["id"]):
                if "error" in r:
                    raise RuntimeError(f"{part[r['id']][0]}: {r['error']}")
                out.append(r["result"])
        return out

    def estimate(self, sender: str, to: str, data: str) -> int:
        """Gas estimate x 1.5 (the same call for every account of a batch)."""
        return int(self.call("eth_estimateGas", [{"from": sender, "to": to, "data": data}]), 16) * 3 // 2

    def close(self) -> None:
        self.http.close()


def _raw(signer: LocalAccount, chain_id: int, nonce: int, to: str, data: str, gas: int) -> str:
    tx: dict[str, Any] = {
        "type": 2,
        "chainId": chain_id,
        "nonce": nonce,
        "to": to,
        "data": data,
        "value": 0,
        "gas": gas,
        "maxFeePerGas": MAX_FEE,
        "maxPriorityFeePerGas": PRIORITY_FEE,
    }
    return "0x" + bytes(signer.sign_transaction(tx).raw_transaction).hex()


def _mine_all(rpc: Rpc, raws: list[str]) -> tuple[list[dict[str, Any]], int]:
    """Send every raw transaction (automine off), mine blocks until all have a receipt with
    status 1; the receipts and the number of blocks mined."""
    hashes = rpc.batch([("eth_sendRawTransaction", [r]) for r in raws])
    blocks = 0
    receipts: list[Any] = [None] * len(hashes)
    while True:
        rpc.call("evm_mine")
        blocks += 1
        missing = [i for i, r in enumerate(receipts) if r is None]
        got = rpc.batch([("eth_getTransactionReceipt", [hashes[i]]) for i in missing])
        for i, r in zip(missing, got, strict=True):
            receipts[i] = r
        if all(r is not None for r in receipts):
            break
        if blocks > 200:
            raise RuntimeError(f"{sum(r is None for r in receipts)} setup transactions not mined after 200 blocks")
    reverted = [r["transactionHash"] for r in receipts if r["status"] != "0x1"]
    if reverted:
        raise RuntimeError(f"{len(reverted)} setup transactions reverted, first {reverted[0]}")
    return receipts, blocks


def create_traders(
    info: Any, n: int, seed: int, *, allocate: int = 100_000, solver_allocation: int = 10_000
) -> tuple[list[Trader], list[str]]:
    """`n` owners with one funded, delegated sub-account each; the traders and a timing log."""
    from web3 import Web3

    from solver.devnet.artifacts import load_artifact
    from solver.devnet.deploy import DELEGATED_SIGNATURES, Sender, selector

    log: list[str] = []
    t_all = t = time.perf_counter()

    def lap(what: str) -> None:
        nonlocal t
        now = time.perf_counter()
        log.append(f"{what}: {now - t:.2f}s")
        t = now

    rpc = Rpc(info.rpc_url)
    multi, symmio, coll = Abi("MultiAccount"), Abi("LocalSymmio"), Abi("MockCollateral")
    chain_id = info.chain_id
    owners: list[LocalAccount] = [Account.from_key(keccak(text=f"load-test:{seed}:{i}")) for i in range(n)]
    rpc.batch([("anvil_setBalance", [o.address, hex(10 * WAD)]) for o in owners])
    rpc.call("evm_setBlockGasLimit", [hex(GAS_LIMIT)])
    # The solver's collateral for every account: 3 transactions, each receipt awaited (automine on).
    w3 = Web3(Web3.HTTPProvider(info.rpc_url, request_kwargs={"timeout": 30}))
    solver = Sender(w3, info.solver_private_key, chain_id)
    collateral = w3.eth.contract(address=to_checksum_address(info.collateral), abi=load_artifact("MockCollateral").abi)
    diamond = w3.eth.contract(address=to_checksum_address(info.symmio), abi=load_artifact("LocalSymmio").abi)
    total = (n * solver_allocation + 1000) * WAD
    solver.send(collateral.functions.mint(solver.address, total), "mint for the solver")
    solver.send(collateral.functions.approve(diamond.address, total), "approve for the solver")
    solver.send(diamond.functions.deposit(total), "solver deposit")
    lap(f"{n} owner keys, ETH by anvil_setBalance, solver collateral (3 txs)")

    rpc.call("evm_setAutomine", [False])
    try:
        # Batch 1: per owner addAccount, mint, approve (nonces 0, 1, 2).
        o0, amount = owners[0].address, allocate * WAD
        g_add = rpc.estimate(o0, info.multi_account, multi.data("addAccount", "load-0"))
        g_mint = rpc.estimate(o0, info.collateral, coll.data("mint", o0, amount))
        g_approve = rpc.estimate(o0, info.collateral, coll.data("approve", info.multi_account, amount))
        raws = []
        for i, o in enumerate(owners):
            raws.append(_raw(o, chain_id, 0, info.multi_account, multi.data("addAccount", f"load-{i}"), g_add))
            raws.append(_raw(o, chain_id, 1, info.collateral, coll.data("mint", o.address, amount), g_mint))
            raws.append(
                _raw(o, chain_id, 2, info.collateral, coll.data("approve", info.multi_account, amount), g_approve)
            )
        lap(f"batch 1: {len(raws)} txs signed")
        receipts, blocks = _mine_all(rpc, raws)
        lap(f"batch 1: sent and mined in {blocks} block(s)")
        topic = "0x" + keccak(text="AddAccount(address,address,string)").hex()
        account_of: dict[str, str] = {}
        for r in receipts:
            for lg in r["logs"]:
                if lg["topics"] and lg["topics"][0] == topic and lg["address"].lower() == info.multi_account.lower():
                    user, account = decode(["address", "address"], bytes.fromhex(lg["data"][2:])[:64])
                    account_of[to_checksum_address(user)] = to_checksum_address(account)
        accounts = [account_of[o.address] for o in owners]

        # Batch 2: per owner depositAndAllocate, delegateAccesses (nonces 3, 4); the solver's allocateForPartyB.
        selectors = [selector(s) for s in DELEGATED_SIGNATURES]
        a0 = accounts[0]
        g_dep = rpc.estimate(o0, info.multi_account, multi.data("depositAndAllocateForAccount", a0, amount))
        g_del = rpc.estimate(o0, info.multi_account, multi.data("delegateAccesses", a0, info.solver, selectors, True))
        alloc = solver_allocation * WAD
        g_alloc = rpc.estimate(info.solver, info.symmio, symmio.data("allocateForPartyB", alloc, a0))
        solver_nonce = int(rpc.call("eth_getTransactionCount", [info.solver, "pending"]), 16)
        raws = []
        for i, (o, a) in enumerate(zip(owners, accounts, strict=True)):
            dep = multi.data("depositAndAllocateForAccount", a, amount)
            raws.append(_raw(o, chain_id, 3, info.multi_account, dep, g_dep))
            delegate = multi.data("delegateAccesses", a, info.solver, selectors, True)
            raws.append(_raw(o, chain_id, 4, info.multi_account, delegate, g_del))
            allocate_b = symmio.data("allocateForPartyB", alloc, a)
            raws.append(_raw(solver.account, chain_id, solver_nonce + i, info.symmio, allocate_b, g_alloc))
        lap(f"batch 2: {len(raws)} txs signed")
        _, blocks = _mine_all(rpc, raws)
        lap(f"batch 2: sent and mined in {blocks} block(s)")
    finally:
        rpc.call("evm_setAutomine", [True])
        rpc.close()
    total_s = time.perf_counter() - t_all
    log.append(f"total {total_s:.2f}s for {n} accounts ({total_s / n * 1000:.1f} ms per account, {6 * n + 3} txs)")
    traders = [
        Trader(owner=o.address, key="0x" + bytes(o.key).hex(), account=a) for o, a in zip(owners, accounts, strict=True)
    ]
    return traders, log


# --- measurements ------------------------------------------------------------------------------


@dataclass
class Recorder:
    t0: float = 0.0
    lat: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    outcomes: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    events: Counter[str] = field(default_factory=Counter)

    def add(self, label: str, outcome: str, seconds: float) -> None:
        self.lat[label].append(seconds * 1000)
        self.outcomes[label][outcome] += 1


def _rss_proc(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _group_pids(pgid: int) -> list[int]:
    """The live processes of process group `pgid` (each Proc is a session leader)."""
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[2]) == pgid:
                out.append(int(entry.name))
    return sorted(out)


try:
    import psutil  # type: ignore[import-untyped,unused-ignore]

    def rss_bytes(pid: int) -> int | None:
        try:
            return int(psutil.Process(pid).memory_info().rss)
        except psutil.Error:
            return None

    RSS_SOURCE = "psutil"
except ImportError:  # pragma: no cover - psutil is installed here
    rss_bytes = _rss_proc
    RSS_SOURCE = "/proc/<pid>/status VmRSS"


class MemorySampler:
    """RSS (and CPU time, from /proc) of every process of the solver's process groups, labelled
    on first sight (a restarted uvicorn worker would show up as a new label)."""

    def __init__(self, procs: Sequence[Any]) -> None:
        self.procs = procs
        self.labels: dict[int, str] = {}
        self.series: dict[str, list[tuple[float, int]]] = defaultdict(list)
        self.cpu: dict[str, list[tuple[float, float]]] = defaultdict(list)  # (t, user + system seconds)
        self._workers: Counter[str] = Counter()

    def _label(self, name: str, root: int, pid: int) -> str:
        if pid not in self.labels:
            cmd = _cmdline(pid)
            if pid == root:
                label = f"{name} (uvicorn supervisor)" if "--workers" in cmd else name
            elif "resource_tracker" in cmd:
                label = f"{name} resource tracker"
            else:
                self._workers[name] += 1
                label = f"{name} worker {self._workers[name]}" if "spawn" in cmd else f"{name} child {pid}"
            self.labels[pid] = label
        return self.labels[pid]

    def sample(self, t: float) -> None:
        for p in self.procs:
            if p.proc is None:
                continue
            root = p.proc.pid
            for pid in _group_pids(root):
                rss = rss_bytes(pid)
                if rss is not None:
                    label = self._label(p.name, root, pid)
                    self.series[label].append((t, rss))
                    cpu = pid_cpu_s(pid)
                    if cpu:
                        self.cpu[label].append((t, cpu))

    def cpu_percent(self, label: str) -> float:
        """CPU of the process between its first and last sample, % of one core."""
        pts = self.cpu.get(label, [])
        if len(pts) < 2 or pts[-1][0] <= pts[0][0]:
            return float("nan")
        return (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0]) * 100


def slope_per_min(points: Sequence[tuple[float, int]]) -> float:
    """Least-squares slope in MiB per minute of (seconds, bytes) points."""
    if len(points) < 2:
        return float("nan")
    xs = [t / 60 for t, _ in points]
    ys = [b / 2**20 for _, b in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else float("nan")


def dsn(db_url: str) -> str:
    return db_url.replace("postgresql+psycopg://", "postgresql://", 1)


async def db_snapshot(db_url: str) -> tuple[dict[str, tuple[int, int]], int]:
    """Per table of the public schema (total relation size in bytes, rows); the database size."""
    import psycopg
    from psycopg import sql

    async with await psycopg.AsyncConnection.connect(dsn(db_url), autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1"
        )
        out: dict[str, tuple[int, int]] = {}
        for name, size in await cur.fetchall():
            cur = await conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name)))
            row = await cur.fetchone()
            out[name] = (int(size), int(row[0]) if row else 0)
        cur = await conn.execute("SELECT pg_database_size(current_database())")
        row = await cur.fetchone()
        return out, int(row[0]) if row else 0


async def db_rows(db_url: str, query: str) -> list[tuple[Any, ...]]:
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn(db_url), autocommit=True) as conn:
        cur = await conn.execute(query)
        return list(await cur.fetchall())


def key_pattern(key: str) -> str:
    return re.sub(r"\d+", "{n}", re.sub(r"0x[0-9a-fA-F]{40}", "{addr}", key))


async def redis_snapshot(redis: Any, prefix: str) -> tuple[int, dict[str, tuple[int, int]]]:
    """INFO used_memory (the whole server) and, per key pattern under `prefix`, (keys, MEMORY USAGE bytes)."""
    used = int((await redis.info("memory"))["used_memory"])
    keys = [k async for k in redis.scan_iter(match=f"{prefix}*", count=1000)]
    pipe = redis.pipeline(transaction=False)
    for k in keys:
        pipe.memory_usage(k)
    sizes = await pipe.execute() if keys else []
    groups: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for k, size in zip(keys, sizes, strict=True):
        g = groups[key_pattern(k.decode(errors="replace")[len(prefix) :])]
        g[0] += 1
        g[1] += int(size or 0)
    return used, {k: (v[0], v[1]) for k, v in groups.items()}


# --- the market -----------------------------------------------------------------------------


class Market:
    """The BTCUSDT mark the fake Binance feed sends: a mean-reverting random walk."""

    def __init__(self, fake: Any, rng: random.Random, sigma: float = 0.0005) -> None:
        self.fake = fake
        self.rng = rng
        self.sigma = sigma
        self.mark = CENTER
        self.moves = 0

    async def walk(self, interval: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            step = Decimal(str(self.rng.gauss(0, self.sigma))) * self.mark + (CENTER - self.mark) * Decimal("0.02")
            self.mark = min(max((self.mark + step).quantize(TICK), LOW), HIGH)
            self.fake.set("BTCUSDT", str(self.mark))
            self.moves += 1


def away(mark: Decimal, by: Decimal, side: int) -> Decimal:
    """A price `by` worse than the mark for the side that pays it: above for 0 (buy), below for 1."""
    if side == 0:
        return (mark * (1 + by)).quantize(TICK, ROUND_FLOOR)
    return (mark * (1 - by)).quantize(TICK, ROUND_CEILING)


# --- the simulated users ---------------------------------------------------------------------


@dataclass
class Position:
    side: int
    qty: Decimal
    closing: float | None = None  # monotonic time our close was accepted
    protected: bool = False


def siwe_text(*, owner: str, account: str, uri: str, chain_id: int, nonce: str, issued: str, expires: str) -> str:
    """EIP-4361 as examples/bot.py writes it (http-api.md §1)."""
    return "\n".join(
        [
            "localhost wants you to sign in with your Ethereum account:",
            owner,
            "",
            f"msg: {account}",
            "",
            f"URI: {uri}",
            "Version: 1",
            f"Chain ID: {chain_id}",
            f"Nonce: {nonce}",
            f"Issued At: {issued}",
            f"Expiration Time: {expires}",
        ]
    )


def iso_ms(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class User:
    def __init__(
        self,
        trader: Trader,
        http: httpx.AsyncClient,
        rec: Recorder,
        market: Market,
        args: argparse.Namespace,
        *,
        login_uri: str,
        chain_id: int,
        seed: int,
        index: int,
    ) -> None:
        self.t = trader
        self.http = http
        self.rec = rec
        self.market = market
        self.args = args
        self.login_uri = login_uri
        self.chain_id = chain_id
        self.rng = random.Random(f"{seed}:user:{index}")
        self.token: str | None = None
        self.next_login = 0.0
        self.pending_opens: dict[int, float] = {}  # temp id -> monotonic time accepted
        self.final_opens: set[int] = set()  # temp ids whose final status was applied
        self.applied_closes: set[tuple[Any, ...]] = set()
        self.positions: dict[int, Position] = {}
        self.strategies: list[int] = []
        self.actions = {
            "market": self.market_read,
            "poll": self.poll,
            "open": self.open,
            "close": self.close,
            "sltp_set": self.sltp_set,
            "sltp_cancel": self.sltp_cancel,
            "sltp_list": self.sltp_list,
            "strategy_create": self.strategy_create,
            "strategy_list": self.strategy_list,
            "strategy_cancel": self.strategy_cancel,
        }

    async def call(
        self, label: str, method: str, url: str, *, auth: bool = True, body: Any = None, key: bool = False
    ) -> httpx.Response | None:
        headers: dict[str, str] = {}
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if key:
            headers["Idempotency-Key"] = str(uuid.uuid4())
        if label == "POST /login":
            headers["Origin"] = ORIGIN
        t0 = time.perf_counter()
        try:
            r = await self.http.request(method, url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            self.rec.add(label, f"exc {type(exc).__name__}", time.perf_counter() - t0)
            return None
        dt = time.perf_counter() - t0
        outcome = str(r.status_code)
        if r.status_code != 200:
            with contextlib.suppress(Exception):
                outcome += f" {r.json().get('error_code')}"
            if r.status_code == 401 and auth:
                self.next_login = 0.0  # log in again before the next action
        self.rec.add(label, outcome, dt)
        return r

    @staticmethod
    def error_code(r: httpx.Response) -> int | None:
        with contextlib.suppress(Exception):
            return int(r.json().get("error_code"))
        return None

    async def login(self) -> None:
        r = await self.call("GET /nonce/{account}", "GET", f"/nonce/{self.t.account}", auth=False)
        if r is None or r.status_code != 200:
            return
        nonce = r.json()["nonce"]
        now = datetime.now(UTC)
        issued, expires = iso_ms(now), iso_ms(now + timedelta(hours=1))
        text = siwe_text(
            owner=self.t.owner,
            account=self.t.account,
            uri=self.login_uri,
            chain_id=self.chain_id,
            nonce=nonce,
            issued=issued,
            expires=expires,
        )
        sig = Account.sign_message(encode_defunct(text=text), private_key=self.t.key).signature.hex()
        body = {
            "account_address": self.t.account,
            "nonce": nonce,
            "issued_at": issued,
            "expiration_time": expires,
            "signature": "0x" + sig.removeprefix("0x"),
        }
        r = await self.call("POST /login", "POST", "/login", auth=False, body=body)
        if r is not None and r.status_code == 200 and r.json().get("access_token"):
            self.token = r.json()["access_token"]
            self.rec.events["logins ok"] += 1
            lo, hi = self.args.relogin
            self.next_login = time.monotonic() + self.rng.uniform(lo, hi)
        else:
            self.rec.events["logins failed"] += 1

    async def run(self, end: float) -> None:
        lo, hi = self.args.think
        await asyncio.sleep(self.rng.uniform(0, hi))  # spread the first logins
        names = list(self.args.mix)
        weights = [self.args.mix[n] for n in names]
        while time.monotonic() < end:
            if self.token is None or time.monotonic() >= self.next_login:
                await self.login()
            else:
                await self.actions[self.rng.choices(names, weights)[0]]()
            await asyncio.sleep(min(self.rng.uniform(lo, hi), max(0.0, end - time.monotonic())))

    # --- actions ---

    async def market_read(self) -> None:
        if self.rng.random() < 0.5:
            await self.call("GET /contract-symbols", "GET", "/contract-symbols", auth=False)
        else:
            await self.call("GET /get_market_info", "GET", "/get_market_info", auth=False)

    async def poll(self) -> None:
        now = time.monotonic()
        r = await self.call("GET /instant_open/{account}", "GET", f"/instant_open/{self.t.account}")
        if r is not None and r.status_code == 200:
            for item in r.json():
                temp, status = int(item["temp_quote_id"]), item["status"]
                if temp in self.final_opens or status not in OPEN_FINAL:
                    continue
                if status == "opened" and int(item["quote_id"]) <= 0:
                    continue
                self.final_opens.add(temp)
                ours = self.pending_opens.pop(temp, None)
                who = "own" if ours is not None else "strategy sub-order"
                self.rec.events[f"opens seen {status} ({who})"] += 1
                if status == "opened":
                    self.positions[int(item["quote_id"])] = Position(
                        int(item["position_type"]), Decimal(item["quantity"])
                    )
        r = await self.call("GET /instant_close/{account}", "GET", f"/instant_close/{self.t.account}")
        if r is not None and r.status_code == 200:
            for item in r.json():
                if item["status"] not in CLOSE_FINAL:
                    continue
                key = (item["quote_id"], item["create_time"], item["quantity_to_close"], item["close_price"])
                if key in self.applied_closes:
                    continue
                self.applied_closes.add(key)
                self.rec.events[f"closes seen {item['status']}"] += 1
                pos = self.positions.get(int(item["quote_id"]))
                if pos is None:
                    continue
                pos.closing = None
                if item["status"] == "filled":
                    pos.qty -= Decimal(item["quantity_to_close"])
                    if pos.qty <= 0:
                        del self.positions[int(item["quote_id"])]
        for pos in self.positions.values():  # a close whose outcome we never saw
            if pos.closing is not None and now - pos.closing > 300:
                pos.closing = None

    async def open(self) -> None:
        if len(self.pending_opens) >= MAX_PENDING_OPENS:
            await self.poll()
            return
        from tests.e2e.trader import open_body

        side = self.rng.choice((0, 1))
        qty = self.rng.choice(("0.002", "0.005", "0.01"))
        body = open_body(quantity=qty, price=str(away(self.market.mark, Decimal("0.01"), side)), side=side)
        r = await self.call("POST /instant_open", "POST", "/instant_open", body=body, key=True)
        if r is not None and r.status_code == 200:
            self.pending_opens[int(r.json()["temp_quote_id"])] = time.monotonic()

    def _open_positions(self) -> list[int]:
        return sorted(q for q, p in self.positions.items() if p.closing is None)

    async def close(self) -> None:
        choices = self._open_positions()
        if not choices:
            await self.poll()
            return
        qid = self.rng.choice(choices)
        pos = self.positions[qid]
        qty = pos.qty
        if qty >= Decimal("0.01") and self.rng.random() < 0.2:
            qty = (qty / 2).quantize(QTY_STEP, ROUND_FLOOR)
        price = away(self.market.mark, Decimal("0.01"), 1 - pos.side)  # a LONG sells below the mark
        body = {"quote_id": qid, "quantity_to_close": str(qty), "close_price": str(price)}
        r = await self.call("POST /instant_close", "POST", "/instant_close", body=body, key=True)
        if r is None:
            return
        code = self.error_code(r) if r.status_code != 200 else None
        if r.status_code == 200 or code == 1510:  # accepted, or a close (e.g. a trigger's) is in progress
            pos.closing = time.monotonic()
        elif code in (1503, 1506, 1507):  # not open any more (a trigger closed it), or less of it
            self.positions.pop(qid, None)

    async def sltp_set(self) -> None:
        choices = self._open_positions()
        if not choices:
            await self.poll()
            return
        qid = self.rng.choice(choices)
        pos = self.positions[qid]
        mark = self.market.mark
        below, above = mark - self.rng.randint(30, 150), mark + self.rng.randint(30, 150)
        sl, tp = (below, above) if pos.side == 0 else (above, below)
        which = self.rng.random()
        body = {
            "userAddress": self.t.owner,
            "accountAddress": self.t.account,
            "positionSide": pos.side,
            "symbolId": 1,
            "requestedPrice": str(mark),
            "quoteId": qid,
            "slPrice": str(sl) if which < 0.7 else "",
            "tpPrice": str(tp) if which > 0.3 else "",
            "timestamp": int(time.time() * 1000),
        }
        r = await self.call("POST /stop-loss", "POST", "/stop-loss", body=body)
        if r is not None and r.status_code == 200:
            pos.protected = True
        elif r is not None and self.error_code(r) in (1601, 1609):  # not open any more / already fired
            pos.closing = time.monotonic()

    async def sltp_cancel(self) -> None:
        protected = sorted(q for q, p in self.positions.items() if p.protected)
        if not protected:
            await self.sltp_list()
            return
        qid = self.rng.choice(protected)
        self.positions[qid].protected = False
        await self.call("DELETE /stop-loss/{quote_id}", "DELETE", f"/stop-loss/{qid}")

    async def sltp_list(self) -> None:
        await self.call("GET /stop-loss/{account}", "GET", f"/stop-loss/{self.t.account}")

    async def strategy_create(self) -> None:
        if len(self.strategies) >= MAX_LIVE_STRATEGIES:
            await self.strategy_cancel()
            return
        side = self.rng.choice((0, 1))
        body: dict[str, Any] = {
            "symbol_id": 1, "position_type": side, "leverage": "10", "input_amount": "300",
            "max_suborders": 3, "max_invocations": 5,
        }  # fmt: skip
        if self.rng.random() < 0.5:  # eligible once the mark moves 180-330 past the price
            offset = Decimal(self.rng.randint(0, 150))
            price = self.market.mark - offset if side == 0 else self.market.mark + offset
            body.update(type="limit", slippage="0.003", settings={"price": str(price)})
        else:
            body.update(type="dca", slippage="0.01", settings={"delay": 2})
        r = await self.call("POST /strategy-orders", "POST", "/strategy-orders", body=body, key=True)
        if r is not None and r.status_code == 200:
            self.strategies.append(int(r.json()["id"]))

    async def strategy_list(self) -> None:
        r = await self.call("GET /strategy-orders", "GET", "/strategy-orders")
        if r is not None and r.status_code == 200:  # forget what ended by itself (DCA done, LIMIT filled)
            live = {int(o["id"]) for o in r.json()}
            self.strategies = [s for s in self.strategies if s in live]

    async def strategy_cancel(self) -> None:
        if not self.strategies:
            await self.strategy_list()
            return
        oid = self.strategies.pop(self.rng.randrange(len(self.strategies)))
        await self.call("DELETE /strategy-orders/{id}", "DELETE", f"/strategy-orders/{oid}")


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Results:
    setup_log: list[str] = field(default_factory=list)
    setup_s: float = 0.0
    workload_s: float = 0.0
    rec: Recorder = field(default_factory=Recorder)
    memory: MemorySampler | None = None
    db_start: tuple[dict[str, tuple[int, int]], int] | None = None
    db_end: tuple[dict[str, tuple[int, int]], int] | None = None
    redis_start: tuple[int, dict[str, tuple[int, int]]] | None = None
    redis_end: tuple[int, dict[str, tuple[int, int]]] | None = None
    trades: dict[str, Any] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    client_cpu_s: float = 0.0
    issues: dict[str, list[str]] = field(default_factory=dict)
    died: list[str] = field(default_factory=list)
    moves: int = 0


async def wait_ready(stack: Any, api_workers: int, timeout: float = 120.0) -> None:
    """The worker's lane and the engine are up (their start-up lines), a fresh BTCUSDT price is
    published, and every API worker process is running."""
    from solver.pricing.cache import PriceCache

    lines = {stack.worker: "next nonce", stack.engine: "engine started"}
    deadline = time.monotonic() + timeout
    import redis.asyncio as aioredis

    redis = aioredis.from_url(REDIS_URL)
    try:
        cache = PriceCache(redis, stack.settings.redis_prefix)
        while True:
            for p in (stack.api, stack.worker, stack.oracle, stack.engine):
                if not p.alive():
                    raise RuntimeError(f"{p.name} exited during start-up:\n{p.tail()}")
            logged = all(line in p.log_path.read_text(errors="replace") for p, line in lines.items())
            price = await cache.get("BTCUSDT")
            fresh = price is not None and time.time() - price.ts < 3
            api_procs = len(_group_pids(stack.api.proc.pid))
            if logged and fresh and api_procs >= api_workers + 1:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"stack not ready in {timeout:.0f}s: logged={logged} fresh={fresh} api={api_procs}")
            await asyncio.sleep(0.2)
    finally:
        await redis.aclose()


TRADES_SQL = {
    "opens": "SELECT status::text, coalesce(error_code::text, ''), count(*) FROM instant_open GROUP BY 1, 2",
    "closes": "SELECT status::text, coalesce(error_code::text, ''), count(*) FROM instant_close GROUP BY 1, 2",
    "triggers": "SELECT status::text, '', count(*) FROM trigger_order GROUP BY 1",
    "strategy orders": "SELECT status::text, '', count(*) FROM strategy_order GROUP BY 1",
    "strategy sub-orders": "SELECT status::text, '', count(*) FROM strategy_suborder GROUP BY 1",
    "chain_tx": "SELECT status::text, '', count(*) FROM chain_tx GROUP BY 1",
}
OPEN_LATENCY_SQL = """
SELECT extract(epoch FROM ot.modify_time - io.create_time) FROM instant_open io
JOIN tx_intent oi ON oi.instant_open_id = io.id AND oi.kind = 'open_quote'
JOIN chain_tx ot ON ot.id = oi.tx_id
WHERE io.status = 'opened'
"""
CLOSE_LATENCY_SQL = "SELECT extract(epoch FROM modify_time - create_time) FROM instant_close WHERE status = 'filled'"
STRATEGY_OPENED_SQL = "SELECT count(*) FROM instant_open WHERE status = 'opened' AND idempotency_key LIKE 'strategy:%'"
TRIGGER_CLOSES_SQL = (
    "SELECT count(*) FROM audit_log WHERE entity = 'instant_close' AND from_status IS NULL AND actor = 'engine'"
)


async def read_trades(db_url: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, q in TRADES_SQL.items():
        try:
            out[name] = {f"{s} {e}".strip(): int(n) for s, e, n in await db_rows(db_url, q)}
        except Exception as exc:  # a renamed column must not lose the rest of the report
            out[name] = {f"query failed: {exc!r}"[:120]: 0}
    for name, q in (("open latency", OPEN_LATENCY_SQL), ("close latency", CLOSE_LATENCY_SQL)):
        try:
            out[name] = [float(r[0]) * 1000 for r in await db_rows(db_url, q)]
        except Exception as exc:
            out[name] = []
            out[f"{name} error"] = repr(exc)[:200]
    for name, q in (("strategy opened", STRATEGY_OPENED_SQL), ("trigger closes", TRIGGER_CLOSES_SQL)):
        try:
            out[name] = int((await db_rows(db_url, q))[0][0])
        except Exception as exc:
            out[name] = f"query failed: {exc!r}"[:120]
    return out


def completed_trades(trades: dict[str, Any]) -> int:
    return int(trades.get("opens", {}).get("opened", 0)) + int(trades.get("closes", {}).get("filled", 0))


async def load(env: Any, traders: list[Trader], fake: Any, args: argparse.Namespace, res: Results) -> None:
    import redis.asyncio as aioredis

    from solver.devnet.anvil import free_port
    from tests.e2e.processes import Proc, Stack, stack_settings

    api_port = free_port()
    settings = stack_settings(
        env.info,
        env.db_url,
        env.redis_prefix,
        api={"port": api_port, "host": "127.0.0.1"},
        auth={"public_base_url": f"http://localhost:{api_port}", "allowed_domains": ["localhost"]},
        ratelimit={"enabled": False},
        worker={"poll_interval_s": args.worker_poll},
        pricing={
            "source": "binance",
            "binance_ws_url": f"ws://127.0.0.1:{fake.port}/stream?streams=!markPrice@arr@1s",
        },
        log_level="INFO",
    )
    log_dir = Path(tempfile.mkdtemp(prefix="load-test-"))
    stack = Stack(settings, log_dir, engine=True)
    stack.api = Proc("api", ["api", "--workers", str(args.api_workers)], settings, log_dir)
    redis = aioredis.from_url(REDIS_URL)
    market = Market(fake, random.Random(f"{args.seed}:market"))
    stop = asyncio.Event()
    walker = asyncio.create_task(market.walk(args.price_interval, stop))
    failed = True
    try:
        t = time.monotonic()
        await asyncio.to_thread(stack.start)
        await wait_ready(stack, args.api_workers)
        print(f"stack up: api x{args.api_workers}, worker, oracle, engine ({time.monotonic() - t:.0f}s)", flush=True)

        assert stack.engine is not None
        procs = [stack.api, stack.worker, stack.oracle, stack.engine]
        res.memory = MemorySampler(procs)
        groups = {p.name: p.proc.pid for p in procs if p.proc is not None}
        meter = CpuMeter(
            groups,
            {"anvil": env.node.process.pid, "load client (this process)": os.getpid()},
            {"postgres (our db)": " " + env.db_url.rsplit("/", 1)[1] + " "},
        )
        res.db_start = await db_snapshot(env.db_url)
        res.redis_start = await redis_snapshot(redis, env.redis_prefix)

        limits = httpx.Limits(max_connections=args.connections, max_keepalive_connections=args.connections)
        http = httpx.AsyncClient(base_url=stack.base_url, limits=limits, timeout=30.0, trust_env=False)
        users = [
            User(
                tr,
                http,
                res.rec,
                market,
                args,
                login_uri=f"http://localhost:{api_port}/login",
                chain_id=env.info.chain_id,
                seed=args.seed,
                index=i,
            )
            for i, tr in enumerate(traders)
        ]
        t0 = time.monotonic()
        end = t0 + args.duration
        res.rec.t0 = t0
        res.memory.sample(0.0)
        meter.start()
        cpu0 = os.times()

        async def sampler() -> None:
            k = 1
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(0.0, t0 + k * args.sample_every - time.monotonic()))
                if stop.is_set():
                    break
                assert res.memory is not None
                res.memory.sample(time.monotonic() - t0)
                k += 1

        async def progress() -> None:
            while time.monotonic() < end - 1:
                await asyncio.sleep(min(60.0, max(1.0, end - time.monotonic() - 1)))
                n = sum(len(v) for v in res.rec.lat.values())
                print(f"  {time.monotonic() - t0:4.0f}s: {n} requests, {dict(res.rec.events)}", flush=True)

        sampling = asyncio.create_task(sampler())
        reporter = asyncio.create_task(progress())
        tasks = [asyncio.create_task(u.run(end)) for u in users]
        try:
            done, pending = await asyncio.wait(tasks, timeout=args.duration + 40)
            for tk in pending:
                tk.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for tk in done:
                if tk.exception() is not None:
                    res.rec.events[f"user task error {type(tk.exception()).__name__}"] += 1
                    if res.rec.events[f"user task error {type(tk.exception()).__name__}"] == 1:
                        print(f"user task error: {tk.exception()!r}", file=sys.stderr)
        finally:
            res.workload_s = time.monotonic() - t0
            meter.stop()
            cpu1 = os.times()
            res.client_cpu_s = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
            res.memory.sample(res.workload_s)
            reporter.cancel()
            stop.set()
            await asyncio.gather(sampling, reporter, return_exceptions=True)
            await http.aclose()
        res.cpu = dict(meter.used)
        res.cpu["wall"] = meter.wall_s
        res.died = [p.name for p in procs if not p.alive()]
        res.trades = await read_trades(env.db_url)
        res.db_end = await db_snapshot(env.db_url)
        res.redis_end = await redis_snapshot(redis, env.redis_prefix)
        res.issues = {p.name: log_issues(p, since_start=1) for p in procs}
        res.moves = market.moves
        failed = False
    finally:
        stop.set()
        await asyncio.gather(walker, return_exceptions=True)
        await asyncio.to_thread(stack.stop)
        await redis.aclose()
        if failed or args.keep_logs:
            if failed:
                print(stack.logs(), file=sys.stderr)
            print(f"logs kept in {log_dir}", file=sys.stderr)
        else:
            shutil.rmtree(log_dir, ignore_errors=True)


# --- report ------------------------------------------------------------------------------------


def fmt(v: float, digits: int = 0) -> str:
    return "-" if v != v else f"{v:,.{digits}f}"


def mib(b: float) -> str:
    return f"{b / 2**20:,.1f}"


def report(res: Results, args: argparse.Namespace) -> None:
    rec, dur = res.rec, res.workload_s or float("nan")
    total = sum(len(v) for v in rec.lat.values())
    bad = sum(n for c in rec.outcomes.values() for o, n in c.items() if not o.startswith("200"))
    print(f"\n## Requests ({args.accounts} users, {dur:.0f} s, think {args.think[0]:g}-{args.think[1]:g} s)\n")
    print(f"{total} requests, {total / dur:.1f}/s; not 200: {bad} ({bad / max(total, 1) * 100:.1f} %)\n")
    print("| endpoint | requests | req/s | p50 ms | p99 ms | max ms | not 200 % | answers (status error_code: n) |")
    print("|:---|---:|---:|---:|---:|---:|---:|:---|")
    for label in sorted(rec.lat, key=lambda k: -len(rec.lat[k])):
        lat, out = rec.lat[label], rec.outcomes[label]
        n = len(lat)
        errs = sum(v for k, v in out.items() if not k.startswith("200"))
        answers = ", ".join(f"{k}: {v}" for k, v in out.most_common())
        print(
            f"| {label} | {n} | {n / dur:.2f} | {fmt(pct(lat, 50))} | {fmt(pct(lat, 99))} | {fmt(max(lat))} | "
            f"{errs / n * 100:.1f} | {answers} |"
        )
    print(f"\nclient view: {dict(sorted(rec.events.items()))}")

    tr = res.trades
    done = completed_trades(tr)
    print(f"\n## Trades (database at the end of the workload; {res.moves} price moves)\n")
    print("| what | count | per s | server-side p50 ms | p99 ms |")
    print("|:---|---:|---:|---:|---:|")
    opened, filled = tr.get("opens", {}).get("opened", 0), tr.get("closes", {}).get("filled", 0)
    ol, cl = tr.get("open latency", []), tr.get("close latency", [])
    print(f"| opens `opened` (request accepted -> lockAndOpen settled) | {opened} | {opened / dur:.2f} | "
          f"{fmt(pct(ol, 50))} | {fmt(pct(ol, 99))} |")  # fmt: skip
    print(f"| closes `filled` (request accepted -> row filled) | {filled} | {filled / dur:.2f} | "
          f"{fmt(pct(cl, 50))} | {fmt(pct(cl, 99))} |")  # fmt: skip
    print(f"| trades completed (opened + filled) | {done} | {done / dur:.2f} | | |")
    print(f"\nof the opens, strategy sub-orders: {tr.get('strategy opened')}; closes sent by triggers: "
          f"{tr.get('trigger closes')}")  # fmt: skip
    for name in TRADES_SQL:
        print(f"- {name}: {tr.get(name)}")
    for k in ("open latency error", "close latency error"):
        if k in tr:
            print(f"- {k}: {tr[k]}")

    if res.memory is not None:
        print(f"\n## Memory (RSS via {RSS_SOURCE}, every {args.sample_every:g} s; MiB)\n")
        print("| process | samples | first | last | max | slope MiB/min (all) | slope (2nd half) | CPU % of a core |")
        print("|:---|---:|---:|---:|---:|---:|---:|---:|")
        series = res.memory.series
        for label, pts in series.items():
            half = [p for p in pts if p[0] >= dur / 2]
            print(
                f"| {label} | {len(pts)} | {mib(pts[0][1])} | {mib(pts[-1][1])} | {mib(max(b for _, b in pts))} | "
                f"{fmt(slope_per_min(pts), 2)} | {fmt(slope_per_min(half), 2)} | {fmt(res.memory.cpu_percent(label))} |"
            )
        print("\nseries (MiB, one value per sample):")
        for label, pts in series.items():
            print(f"- {label}: {' '.join(f'{b / 2**20:.0f}' for _, b in pts)}")

    if res.db_start and res.db_end:
        (start, db0), (endt, db1) = res.db_start, res.db_end
        per = max(done, 1)
        print(f"\n## Database growth ({done} trades)\n")
        print(f"database size {mib(db0)} -> {mib(db1)} MiB: +{mib(db1 - db0)} MiB, {(db1 - db0) / per:,.0f} B/trade\n")
        print("| table | size start kB | size end kB | +kB | B per trade | rows start | rows end | +rows per trade |")
        print("|:---|---:|---:|---:|---:|---:|---:|---:|")
        for name in sorted(endt, key=lambda t: -(endt[t][0] - start.get(t, (0, 0))[0])):
            (s0, r0), (s1, r1) = start.get(name, (0, 0)), endt[name]
            if s1 == s0 and r1 == r0:
                continue
            print(
                f"| {name} | {s0 / 1024:,.0f} | {s1 / 1024:,.0f} | {(s1 - s0) / 1024:,.0f} | {(s1 - s0) / per:,.0f} | "
                f"{r0} | {r1} | {(r1 - r0) / per:.2f} |"
            )
        same = [t for t in endt if endt[t] == start.get(t)]
        print(f"\nunchanged: {', '.join(sorted(same))}")

    if res.redis_start and res.redis_end:
        (u0, g0), (u1, g1) = res.redis_start, res.redis_end
        per = max(done, 1)
        k0, k1 = sum(c for c, _ in g0.values()), sum(c for c, _ in g1.values())
        b0, b1 = sum(b for _, b in g0.values()), sum(b for _, b in g1.values())
        print(f"\n## Redis growth ({done} trades)\n")
        print("| measure | start | end | delta | per trade |")
        print("|:---|---:|---:|---:|---:|")
        print(f"| INFO used_memory (whole server, shared with other jobs) MiB | {mib(u0)} | {mib(u1)} | "
              f"{mib(u1 - u0)} | {(u1 - u0) / per:,.0f} B |")  # fmt: skip
        print(f"| keys under the run's prefix | {k0} | {k1} | {k1 - k0} | {(k1 - k0) / per:.2f} |")
        print(f"| MEMORY USAGE of those keys kB | {b0 / 1024:,.1f} | {b1 / 1024:,.1f} | {(b1 - b0) / 1024:,.1f} | "
              f"{(b1 - b0) / per:,.0f} B |")  # fmt: skip
        print("\nby key pattern, largest first (at the end: keys, MEMORY USAGE; change in keys):")
        for pat in sorted(g1, key=lambda p: -g1[p][1])[:15]:
            c1, s1 = g1[pat]
            c0 = g0.get(pat, (0, 0))[0]
            print(f"- {pat}: {c1} keys, {s1 / 1024:,.1f} kB ({c1 - c0:+d} keys)")

    if res.cpu:
        wall = res.cpu.pop("wall")
        machine = res.cpu.pop("machine (all processes)")
        print(f"\n## CPU during the workload (% of one core; {os.cpu_count()} cores)\n")
        parts = [f"{k} {v / wall * 100:.0f}" for k, v in res.cpu.items()]
        parts.append(f"rest of the machine {(machine - sum(res.cpu.values())) / wall * 100:.0f}")
        print(", ".join(parts) + f"; machine busy {machine / wall / (os.cpu_count() or 1) * 100:.0f} %")

    print("\n## Logs\n")
    for name, lines in res.issues.items():
        kinds = Counter(re.sub(r"\d+", "N", ln.split(" ", 3)[-1])[:110] for ln in lines)
        print(f"- {name}: {len(lines)} WARNING/ERROR lines" + (f"; top: {kinds.most_common(3)}" if lines else ""))
    if res.died:
        print(f"- DIED during the run: {res.died}")


# --- main -------------------------------------------------------------------------------------


def parse_mix(text: str) -> dict[str, float]:
    mix = dict(MIX)
    for part in filter(None, text.split(",")):
        name, _, value = part.partition("=")
        if name not in MIX:
            raise argparse.ArgumentTypeError(f"unknown action {name!r}; actions: {', '.join(MIX)}")
        mix[name] = float(value)
    if sum(mix.values()) <= 0 or any(v < 0 for v in mix.values()):
        raise argparse.ArgumentTypeError("weights must be >= 0 and not all 0")
    return mix


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accounts", type=int, default=200, help="simulated users, one owner + sub-account each")
    ap.add_argument("--duration", type=float, default=600, help="seconds of workload")
    ap.add_argument("--api-workers", type=int, default=2, help="solver api --workers")
    ap.add_argument("--think", type=float, nargs=2, default=[2.0, 5.0], metavar=("MIN", "MAX"))
    ap.add_argument("--relogin", type=float, nargs=2, default=[120.0, 240.0], metavar=("MIN", "MAX"))
    ap.add_argument("--connections", type=int, default=64, help="connection pool of the shared httpx client")
    ap.add_argument("--mining", type=parse_mode, default="1s", help="instant or <n>s blocks during the workload")
    ap.add_argument("--worker-poll", type=float, default=0.1, help="worker.poll_interval_s (default 0.1)")
    ap.add_argument("--price-interval", type=float, default=1.0, help="seconds between feed frames / walk steps")
    ap.add_argument("--sample-every", type=float, default=10.0, help="RSS sampling period, seconds")
    ap.add_argument("--mix", type=parse_mix, default=dict(MIX), help="e.g. open=0.1,close=0.08 (others kept)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--setup-only", action="store_true", help="create the accounts, print the timing, stop")
    ap.add_argument("--keep-logs", action="store_true")
    ap.add_argument("--max-seconds", type=float, default=None, help="give up after this long (default duration+900)")
    args = ap.parse_args(argv)
    if not (1 <= args.accounts <= 5000 and args.duration > 0 and 1 <= args.api_workers <= 8):
        ap.error("need 1 <= accounts <= 5000, duration > 0, 1 <= api-workers <= 8")
    if not (0 < args.think[0] <= args.think[1] and 0 < args.relogin[0] <= args.relogin[1]):
        ap.error("--think and --relogin need 0 < MIN <= MAX")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_sigterm()

    def _alarm(_sig: int, _frame: object) -> None:
        raise SystemExit("time budget (--max-seconds) exhausted")

    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(args.max_seconds or args.duration + 900))
    from tests.fixtures.binance import pumped_binance

    print(
        f"load test: {args.accounts} accounts, {args.duration:g} s, api workers {args.api_workers}, "
        f"think {args.think[0]:g}-{args.think[1]:g} s, relogin {args.relogin[0]:g}-{args.relogin[1]:g} s, "
        f"{args.connections} connections, mining {args.mining}; mix {args.mix}; "
        f"{os.cpu_count()} cores, Python {platform.python_version()}",
        flush=True,
    )
    t_start = time.monotonic()
    res = Results()
    error: BaseException | None = None
    try:
        with devnet("load") as env:
            t = time.monotonic()
            traders, res.setup_log = create_traders(env.info, args.accounts, args.seed)
            res.setup_s = time.monotonic() - t
            print(f"setup: {args.accounts} accounts in {res.setup_s:.1f}s", flush=True)
            for line in res.setup_log:
                print(f"  {line}")
            if args.setup_only:
                return 0
            set_mining(env.info.rpc_url, args.mining)
            with pumped_binance(MARKS, interval=args.price_interval) as fake:
                asyncio.run(load(env, traders, fake, args, res))
    except (Exception, SystemExit) as exc:
        error = exc
        print(f"error: {exc!r}", file=sys.stderr)
    finally:
        signal.alarm(0)
    if res.rec.lat:
        report(res, args)
    status = "FAILED" if error is not None else "ok"
    print(f"\n{status}: total {time.monotonic() - t_start:.0f}s; processes stopped, DB and Redis keys removed")
    return 1 if error is not None else 0


if __name__ == "__main__":
    sys.exit(main())
