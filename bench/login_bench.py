"""POST /login (SIWE) against the real stack, with baselines measured in the same run.

    .venv/bin/python bench/login_bench.py [--n 2000] [--concurrency 32] [--rounds 3]
                                          [--workers 1 2] [--uncached] [--max-seconds 1500]

Starts anvil and deploys the contracts, migrates a fresh database `solver_bench_<random>` on
127.0.0.1:5432, and runs `python -m solver api` as a subprocess (once per `--workers` value, plus
once with the owner cache off for `--uncached`), Redis keys under a unique prefix. Per round, with
the same client setup (`--concurrency` workers, each its own single-connection httpx.AsyncClient,
connected before the clock starts) it times in turn:
- `GET /health` (the framework floor),
- `GET /nonce/{account}` (one Redis SET NX; its nonces feed the login round),
- `POST /login` only: nonces are fetched and messages signed before the clock starts.
Rounds are interleaved; it prints medians of requests/s and p50/p99 latency, and the ratio to
/health. Every response must be 200 (exit code 1 otherwise). Everything it started (anvil, the
API process group, the signing pool) is stopped and the database and Redis keys are removed on
exit, error or SIGTERM. Only loopback traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import redis
from eth_account import Account
from eth_account.messages import encode_defunct

from solver.auth.siwe_message import SiweFields, build_message
from solver.db.migrate import drop_database, upgrade
from solver.devnet.anvil import free_port, start_anvil
from solver.devnet.deploy import DevnetInfo, deploy
from solver.settings import load_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{db}"
REDIS_URL = "redis://127.0.0.1:6379/0"
ORIGIN = "http://localhost:3000"  # host "localhost" is the SIWE domain; allowed_domains=["localhost"]
JSON_HEADERS = {"Content-Type": "application/json", "Origin": ORIGIN}
ENDPOINTS = ("GET /health", "GET /nonce/{account}", "POST /login")


@dataclass(frozen=True)
class RunConfig:
    workers: int
    owner_cache_ttl_s: int | None  # None: the default (300 s)

    @property
    def label(self) -> str:
        if self.owner_cache_ttl_s == 0:
            return f"workers={self.workers}, owner cache off (TTL 0: every login reads MultiAccount)"
        return f"workers={self.workers}, owner cache on"


@dataclass
class Stats:
    rps: float
    p50_ms: float
    p99_ms: float


@dataclass
class RunResult:
    config: RunConfig
    rounds: dict[str, list[Stats]] = field(default_factory=lambda: {e: [] for e in ENDPOINTS})
    logins_ok: int = 0
    failures: list[str] = field(default_factory=list)


# --- client-side signing (untimed; in a process pool because it is pure-Python ECDSA) ---


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def sign_chunk(jobs: list[tuple[str, str, str, str, str]]) -> list[bytes]:
    """(account, owner, owner key, nonce, uri) -> JSON login bodies, as the browser would send them."""
    out = []
    for account, owner, key, nonce, uri in jobs:
        now = datetime.now(UTC)
        issued, expires = iso(now), iso(now + timedelta(hours=1))
        text = build_message(
            SiweFields(
                domain="localhost",
                owner=owner,
                account_address=account,
                uri=uri,
                chain_id=31337,
                nonce=nonce,
                issued_at=issued,
                expiration_time=expires,
            )
        )
        sig = Account.sign_message(encode_defunct(text=text), private_key=key).signature.hex()
        body = {
            "account_address": account,
            "nonce": nonce,
            "issued_at": issued,
            "expiration_time": expires,
            "signature": "0x" + sig.removeprefix("0x"),
        }
        out.append(json.dumps(body).encode())
    return out


# --- timing ---


Call = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


@contextlib.asynccontextmanager
async def connections(base_url: str, concurrency: int) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One single-connection httpx.AsyncClient per concurrent worker, connected before the clock starts.

    A shared AsyncClient with 32 pooled connections tops out near 300 rps on this machine (the
    pool itself burns the CPU); one client per connection gets ~4x that. Fresh clients per phase
    also avoid reusing a keep-alive connection uvicorn closes after 5 s idle (during signing).
    """
    clients = [
        httpx.AsyncClient(
            base_url=base_url,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            timeout=30.0,
            trust_env=False,  # loopback only: never route through a proxy from the environment
        )
        for _ in range(concurrency)
    ]
    try:
        for resp in await asyncio.gather(*(c.get("/health") for c in clients)):
            resp.raise_for_status()
        yield clients
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


async def timed(base_url: str, n: int, concurrency: int, call: Call) -> tuple[Stats, list[httpx.Response]]:
    """`n` calls spread over `concurrency` workers; transport errors propagate (the run fails)."""
    responses: list[httpx.Response | None] = [None] * n
    latencies: list[float] = []
    queue = iter(range(n))

    async def worker(client: httpx.AsyncClient) -> None:
        for i in queue:
            t0 = time.perf_counter()
            responses[i] = await call(client, i)
            latencies.append(time.perf_counter() - t0)

    async with connections(base_url, concurrency) as clients:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in clients))
        wall = time.perf_counter() - t0
    latencies.sort()
    stats = Stats(
        rps=n / wall,
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[max(int(len(latencies) * 0.99) - 1, 0)] * 1000,
    )
    return stats, [r for r in responses if r is not None]


def not_200(name: str, responses: list[httpx.Response]) -> list[str]:
    bad = [r for r in responses if r.status_code != 200]
    if not bad:
        return []
    return [f"{name}: {len(bad)}/{len(responses)} not 200, first: {bad[0].status_code} {bad[0].text[:300]}"]


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError("time budget (--max-seconds) exhausted")
        return left

    async def bound(self, aw: Awaitable[Any]) -> Any:
        return await asyncio.wait_for(aw, self.left())


async def bench_api(
    port: int,
    devnet: DevnetInfo,
    args: argparse.Namespace,
    pool: ProcessPoolExecutor,
    result: RunResult,
    deadline: Deadline,
) -> None:
    n, conc = args.n, args.concurrency
    demos = devnet.demo_accounts
    uri = f"http://localhost:{port}/login"  # SOLVER_AUTH__PUBLIC_BASE_URL + path
    loop = asyncio.get_running_loop()

    async def sign(nonces: list[str]) -> list[bytes]:
        users = [demos[i % len(demos)] for i in range(len(nonces))]
        jobs = [(u.account, u.owner, u.owner_private_key, nonce, uri) for u, nonce in zip(users, nonces, strict=True)]
        parts = max(args.sign_procs, 1)
        chunks = [jobs[k::parts] for k in range(parts)]
        signed = await asyncio.gather(*(loop.run_in_executor(pool, sign_chunk, c) for c in chunks))
        bodies: list[bytes] = [b""] * len(jobs)
        for k, chunk_bodies in enumerate(signed):
            bodies[k::parts] = chunk_bodies
        return bodies

    base = f"http://{HOST}:{port}"

    async def health(c: httpx.AsyncClient, _: int) -> httpx.Response:
        return await c.get("/health")

    async def nonce(c: httpx.AsyncClient, i: int) -> httpx.Response:
        return await c.get(f"/nonce/{demos[i % len(demos)].account}")

    def login_call(bodies: list[bytes]) -> Call:
        async def login(c: httpx.AsyncClient, i: int) -> httpx.Response:
            return await c.post("/login", content=bodies[i], headers=JSON_HEADERS)

        return login

    # Warm-up: one login per account (fills the owner cache when it is on).
    _, warm = await deadline.bound(timed(base, len(demos), len(demos), nonce))
    bodies = await deadline.bound(sign([r.json()["nonce"] for r in warm]))
    _, warm = await deadline.bound(timed(base, len(bodies), len(bodies), login_call(bodies)))
    if failed := not_200("warm-up login", warm):
        raise RuntimeError(failed[0])

    for r in range(args.rounds):
        stats, resps = await deadline.bound(timed(base, n, conc, health))
        result.rounds["GET /health"].append(stats)
        result.failures += not_200(f"round {r} /health", resps)

        stats, resps = await deadline.bound(timed(base, n, conc, nonce))
        result.rounds["GET /nonce/{account}"].append(stats)
        result.failures += not_200(f"round {r} /nonce", resps)
        if len(resps) != n or any(x.status_code != 200 for x in resps):
            raise RuntimeError("nonce round failed; cannot build logins: " + "; ".join(result.failures))

        bodies = await deadline.bound(sign([x.json()["nonce"] for x in resps]))  # untimed

        stats, resps = await deadline.bound(timed(base, n, conc, login_call(bodies)))
        result.rounds["POST /login"].append(stats)
        result.failures += not_200(f"round {r} /login", resps)
        ok = [i for i, x in enumerate(resps) if x.status_code == 200 and x.json().get("access_token")]
        result.logins_ok += len(ok)
        # Sanity (untimed): an issued token is accepted for the account it was issued for.
        if ok:
            token = resps[ok[0]].json()["access_token"]
            account = json.loads(bodies[ok[0]])["account_address"]
            async with httpx.AsyncClient(base_url=base, timeout=30.0, trust_env=False) as c:
                check = await c.post(
                    f"/auth/verify?party_a_address={account}", headers={"Authorization": f"Bearer {token}"}
                )
            if check.status_code != 200 or check.json().get("successful") is not True:
                result.failures.append(f"round {r}: issued token not accepted by /auth/verify: {check.text}")


# --- the API subprocess ---


def api_env(cfg: RunConfig, port: int, devnet: DevnetInfo, db_url: str, prefix: str) -> dict[str, str]:
    inherited = os.environ.items()
    env = {k: v for k, v in inherited if not k.startswith("SOLVER_") and k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        {
            "SOLVER_ENV": "test",
            "SOLVER_AUTH__JWT_SECRET": "bench-" + secrets.token_hex(24),
            "DATABASE_URL": db_url,
            "REDIS_URL": REDIS_URL,
            "SOLVER_REDIS_PREFIX": prefix,
            "SOLVER_CHAIN__CHAIN_ID": str(devnet.chain_id),
            "SOLVER_CHAIN__RPC_URLS": json.dumps([devnet.rpc_url]),
            "SOLVER_CHAIN__MULTI_ACCOUNT_ADDRESS": devnet.multi_account,
            "SOLVER_CHAIN__SYMMIO_ADDRESS": devnet.symmio,
            "SOLVER_CHAIN__COLLATERAL_ADDRESS": devnet.collateral,
            "SOLVER_CHAIN__SOLVER_ADDRESS": devnet.solver,
            "SOLVER_AUTH__PUBLIC_BASE_URL": f"http://localhost:{port}",
            "SOLVER_AUTH__ALLOWED_DOMAINS": '["localhost"]',
            "SOLVER_RATELIMIT__ENABLED": "false",  # thousands of logins a minute from one address
        }
    )
    if cfg.owner_cache_ttl_s is not None:
        env["SOLVER_CHAIN__OWNER_CACHE_TTL_S"] = str(cfg.owner_cache_ttl_s)
    return env


def log_tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


@contextlib.contextmanager
def api_process(cfg: RunConfig, devnet: DevnetInfo, db_url: str, prefix: str, deadline: Deadline) -> Iterator[int]:
    """`solver api` on a free loopback port, in its own process group; yields the port once /health answers."""
    port = free_port(HOST)
    cmd = [sys.executable, "-m", "solver", "api", "--host", HOST, "--port", str(port), "--workers", str(cfg.workers)]
    fd, name = tempfile.mkstemp(prefix="login-bench-api-", suffix=".log")
    log_path = Path(name)
    with os.fdopen(fd, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            env=api_env(cfg, port, devnet, db_url, prefix),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        failed = True
        try:
            wait_health(proc, port, min(60.0, deadline.left()), log_path)
            yield port
            failed = False
        finally:
            stop_process_group(proc)
            if failed:
                print(f"--- API log tail ({log_path}) ---\n{log_tail(log_path)}", file=sys.stderr)
            else:
                log_path.unlink(missing_ok=True)


def wait_health(proc: subprocess.Popen[bytes], port: int, timeout: float, log_path: Path) -> None:
    end = time.monotonic() + timeout
    with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=1.0, trust_env=False) as client:
        while time.monotonic() < end:
            if proc.poll() is not None:
                raise RuntimeError(f"solver api exited with code {proc.returncode}:\n{log_tail(log_path)}")
            with contextlib.suppress(httpx.TransportError):
                if client.get("/health").status_code == 200:
                    return
            time.sleep(0.1)
    raise RuntimeError(f"solver api did not answer /health within {timeout:.0f}s")


def stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the uvicorn supervisor (it stops its workers), then SIGKILL what is left of its group."""
    if proc.poll() is None:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(15)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # the group this script created (start_new_session)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


# --- report ---


def report(results: list[RunResult], args: argparse.Namespace) -> None:
    for res in results:
        rows = {e: res.rounds[e] for e in ENDPOINTS if res.rounds[e]}
        if not rows:
            continue
        med = {
            e: Stats(
                rps=statistics.median(s.rps for s in rs),
                p50_ms=statistics.median(s.p50_ms for s in rs),
                p99_ms=statistics.median(s.p99_ms for s in rs),
            )
            for e, rs in rows.items()
        }
        base = med["GET /health"].rps
        print(f"\n== {res.config.label} ==")
        print(f"{'endpoint':22} {'rps':>8} {'p50 ms':>8} {'p99 ms':>8} {'vs health':>10}   rps per round")
        for e, m in med.items():
            per_round = " ".join(f"{s.rps:.0f}" for s in rows[e])
            print(f"{e:22} {m.rps:8.0f} {m.p50_ms:8.1f} {m.p99_ms:8.1f} {m.rps / base:10.3f}   {per_round}")
        if "POST /login" in med:
            login = med["POST /login"].rps
            print(
                f"login/health = {login / base:.3f}, login/nonce = {login / med['GET /nonce/{account}'].rps:.3f}; "
                f"{res.logins_ok}/{len(rows['POST /login']) * args.n} logins 200 with a token"
            )
        for f in res.failures:
            print(f"FAILURE: {f}")


def ecc_backend() -> str:
    from eth_keys.main import KeyAPI

    return type(KeyAPI().backend).__name__


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="requests per endpoint per round")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[1], help="one API run per value")
    ap.add_argument("--uncached", action="store_true", help="add a workers=1 run with the owner cache off")
    ap.add_argument("--sign-procs", type=int, default=os.cpu_count() or 1, help="client signing processes")
    ap.add_argument("--max-seconds", type=float, default=1500, help="give up (and clean up) after this long")
    args = ap.parse_args(argv)
    if not (1 <= args.n <= 100_000 and 1 <= args.concurrency <= 256 and 1 <= args.rounds <= 10):
        ap.error("need 1 <= n <= 100000, 1 <= concurrency <= 256, 1 <= rounds <= 10")
    if any(not 1 <= w <= 8 for w in args.workers):
        ap.error("workers must be 1..8")
    return args


def _sigterm(_sig: int, _frame: object) -> None:
    raise SystemExit(143)  # unwinds through the finally blocks below


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    deadline = Deadline(args.max_seconds)
    configs = [RunConfig(w, None) for w in args.workers]
    if args.uncached:
        configs.append(RunConfig(1, 0))
    tag = secrets.token_hex(4)
    db_url = PG_URL.format(db=f"solver_bench_{tag}")
    prefix = f"bench:login:{tag}:"
    print(
        f"n={args.n} per endpoint per round, rounds={args.rounds}, concurrency={args.concurrency}; "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, eth_keys backend {ecc_backend()}"
    )
    results: list[RunResult] = []
    node = None
    pool = None
    db_touched = False
    t_start = time.monotonic()
    try:
        node = start_anvil()
        devnet = deploy(node.url, load_settings().symbols)
        print(f"anvil {node.url}, {len(devnet.demo_accounts)} demo sub-accounts; database {db_url.rsplit('/', 1)[1]}")
        db_touched = True
        upgrade(db_url)
        pool = ProcessPoolExecutor(max_workers=max(args.sign_procs, 1), mp_context=multiprocessing.get_context("spawn"))
        for cfg in configs:
            res = RunResult(cfg)
            results.append(res)
            with api_process(cfg, devnet, db_url, prefix, deadline) as port:
                asyncio.run(bench_api(port, devnet, args, pool, res, deadline))
            print(f"done: {cfg.label} ({time.monotonic() - t_start:.0f}s elapsed)", flush=True)
    finally:
        report(results, args)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if node is not None:
            node.stop()
        if db_touched:
            try:
                drop_database(db_url)
            except Exception as exc:
                print(f"warning: could not drop {db_url}: {exc}", file=sys.stderr)
        try:
            r = redis.Redis.from_url(REDIS_URL)
            keys = list(r.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                r.delete(*keys)
            r.close()
        except Exception as exc:
            print(f"warning: could not delete Redis keys {prefix}*: {exc}", file=sys.stderr)
    failed = any(res.failures for res in results)
    status = "FAILED" if failed else "ok"
    print(f"\n{status}: total {time.monotonic() - t_start:.0f}s; anvil and API stopped, DB and Redis keys removed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
