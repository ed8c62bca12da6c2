"""The stores failing under a running system: Redis flushed and restarted, PostgreSQL restarted,
in the middle of a run of instant opens, with the real processes (`solver api`, `solver worker`,
`solver oracle`, `solver engine`) on the module's anvil.

Both stores are private to this module (tests/fixtures/private_stores.py: the PostgreSQL that
`solver dev` embeds, in a data directory with its own socket, and a `redis-server` on a free
port without persistence), so they can be stopped and flushed without touching the machine's
shared services. Prices come only from the engine, fed by a local Binance-protocol server
(tests/fixtures/binance.py) pumping BTCUSDT 60000 / ETHUSDT 3000 every 0.25 s: after a flush the
engine itself puts fresh prices back.

Clients behave like a bot: every open carries its own Idempotency-Key and is retried with the
same key after a 503 (or a dropped connection) until it gets its 200. Each test prints its
figures (opens, refusals by status and code during the outage, their latencies, recovery times).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import text

from solver.chain.reader import ChainReader
from solver.chain.types import QuoteStatus
from solver.core.clock import FixedClock
from solver.core.errors import ErrorCode
from solver.db import migrate
from solver.db.engine import create_engine, session_factory
from solver.devnet.deploy import DevnetInfo
from solver.pricing.cache import PriceCache, PricePoint
from solver.pricing.stream import PriceStream
from solver.risk.flags import ReduceOnlyFlags, reduce_only_key
from solver.risk.health_engine import HealthEngine
from solver.settings import load_settings
from tests.e2e.processes import Proc, Stack, stack_settings
from tests.e2e.test_instant_trading import _quotes_by_party_a
from tests.e2e.trader import Trader, open_body
from tests.fixtures.binance import FakeBinance, pumped_binance
from tests.fixtures.private_stores import PrivatePostgres, PrivateRedis
from tests.fixtures.trading import chain_quote, new_account
from tests.integration.test_auth_login import ORIGIN, signed_login
from tests.integration.test_health_engine import FakeChain, insert_quote, new_address

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

MARKS = {"BTCUSDT": "60000", "ETHUSDT": "3000", "XRPUSDT": "0.5123"}
UNAVAILABLE = {ErrorCode.UNAVAILABLE.code, ErrorCode.PRICE_UNAVAILABLE.code}  # both 503
MAX_REFUSAL_S = 3.0  # an outage answers within this, it never hangs a client
FLAG_BACK_S = 1.5  # health.poll_interval_s is 0.2 s: the margin is for a loaded machine


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def binance() -> Iterator[FakeBinance]:
    with pumped_binance(MARKS, interval=0.25) as fake:
        yield fake


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    # Not under pytest's basetemp: the server runs as another user (pgserver, when we are root),
    # and every pytest session that starts on this machine chmods /tmp/pytest-of-<user> to 0700.
    data_dir = Path(tempfile.mkdtemp(prefix="solver-fault-pg-"))
    server = PrivatePostgres(data_dir)
    try:
        yield server
    finally:
        server.close()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def stores_back_up(private_redis: PrivateRedis, private_pg: PrivatePostgres) -> Iterator[None]:
    """A test that fails while a store is down leaves it up again for the next one."""
    yield
    if not private_redis.alive():
        private_redis.start()
    private_pg.ensure_running()


@pytest.fixture
def fault_db(private_pg: PrivatePostgres) -> str:
    """A freshly migrated database of its own on the private server (dropped with the server)."""
    url = private_pg.url(f"solver_fault_{secrets.token_hex(4)}")
    migrate.upgrade(url)
    return url


@contextlib.contextmanager
def running_stack(
    devnet: DevnetInfo, database_url: str, redis_url: str, binance: FakeBinance, log_dir: Path
) -> Iterator[Stack]:
    prefix = f"fault:{uuid.uuid4().hex[:8]}:"
    settings = stack_settings(
        devnet,
        database_url,
        prefix,
        redis_url=redis_url,
        risk={"max_pending_instant_opens": 50},
        pricing={
            "source": "binance",
            "binance_ws_url": f"ws://127.0.0.1:{binance.port}/stream?streams=!markPrice@arr@1s",
            "silence_timeout_s": 1.0,
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 0.5,
        },
        health={"poll_interval_s": 0.2},
        triggers={"poll_interval_s": 0.2},
    )
    binance.set_many(MARKS)
    stack = Stack(settings, log_dir, engine=True)
    try:
        yield stack.start()
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.stop()


# --- the client side --------------------------------------------------------------------------


@dataclass
class Ack:
    account: str
    key: str
    temp_id: int
    sent: float  # monotonic
    answered: float


@dataclass
class Refusal:
    what: str
    status: int | None  # None: the connection failed
    code: int | None
    body: str
    seconds: float
    at: float


@dataclass
class Run:
    """A run of opens: `per_account` opens from each trader, concurrently, retried until 200."""

    traders: list[Trader]
    per_account: int
    acks: list[Ack] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.traders) * self.per_account

    async def submit(self, t: Trader, pace: float) -> None:
        for i in range(self.per_account):
            key = f"fault-{t.account[2:10]}-{i}"
            while True:
                sent = time.monotonic()
                try:
                    r = await t.open(open_body(quantity="0.002"), key=key)
                except httpx.HTTPError as exc:
                    self.refusals.append(Refusal("open", None, None, repr(exc), time.monotonic() - sent, sent))
                    await asyncio.sleep(0.2)
                    continue
                if r.status_code == 200:
                    self.acks.append(Ack(t.account, key, r.json()["temp_quote_id"], sent, time.monotonic()))
                    break
                self.refusals.append(refusal("open", r, time.monotonic() - sent, sent))
                await asyncio.sleep(0.2)
            await asyncio.sleep(pace)

    async def run(self, pace: float = 0.15) -> None:
        await asyncio.gather(*(self.submit(t, pace) for t in self.traders))

    async def wait_acked(self, n: int, timeout: float = 30) -> None:
        await until(f"{n} opens answered 200", lambda: len(self.acks) >= n, timeout)


def refusal(what: str, r: httpx.Response, seconds: float, at: float) -> Refusal:
    try:
        code = r.json().get("error_code")
    except ValueError:
        code = None
    return Refusal(what, r.status_code, code, r.text[:300], seconds, at)


def assert_clear_503s(refusals: list[Refusal]) -> None:
    """Every refusal is a 503 with the spec error body, answered quickly."""
    for f in refusals:
        assert f.status == 503, f
        body = json.loads(f.body)
        assert set(body) == {"error_code", "error_message", "error_detail"}, body
        assert body["error_code"] in UNAVAILABLE and body["error_message"], body
        assert f.seconds < MAX_REFUSAL_S, f


def figures(refusals: list[Refusal]) -> str:
    by = Counter((f.what, f.status, f.code) for f in refusals)
    slowest = max((f.seconds for f in refusals), default=0.0)
    return f"{dict(by)}; slowest refusal {slowest:.2f} s"


async def probe(what: str, call: Awaitable[httpx.Response]) -> Refusal:
    """One request during an outage, whatever its answer (status 200 included)."""
    start = time.monotonic()
    try:
        r = await call
    except httpx.HTTPError as exc:
        return Refusal(what, None, None, repr(exc), time.monotonic() - start, start)
    return refusal(what, r, time.monotonic() - start, start)


class Supervisor:
    """Restarts a process of the stack that exited, as systemd or Kubernetes would, and says so."""

    def __init__(self, stack: Stack) -> None:
        self.procs: list[Proc] = [p for p in (stack.api, stack.worker, stack.oracle, stack.engine) if p is not None]
        self.restarts: list[tuple[str, int | None]] = []
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        while True:
            for p in self.procs:
                if not p.alive():
                    assert p.proc is not None
                    self.restarts.append((p.name, p.proc.returncode))
                    print(f"supervisor: {p.name} exited with {p.proc.returncode}; restarting it")
                    p.start()
            await asyncio.sleep(0.2)

    async def __aenter__(self) -> Supervisor:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def until(what: str, cond: Callable[[], Any], timeout: float = 20.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = cond()
            if asyncio.iscoroutine(value):
                value = await value
        except aioredis.RedisError as exc:  # the test's own client, while Redis is down
            print(f"until {what}: {exc!r}")
            value = None
        if value:
            return value
        await asyncio.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def fresh_price(redis: aioredis.Redis, prefix: str, symbol: str = "BTCUSDT") -> bool:
    try:
        p = await PriceCache(redis, prefix).get(symbol)
    except aioredis.RedisError:
        return False
    return p is not None and time.time() - p.ts < 2.0


async def sql(url: str, query: str, **params: Any) -> list[Any]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text(query), params)).all())
    finally:
        await engine.dispose()


async def assert_settled_one_to_one(
    run: Run, devnet: DevnetInfo, database_url: str, extra: Sequence[Trader] = ()
) -> None:
    """Every 200 ends `opened`; the database holds exactly the acknowledged opens (one row per
    Idempotency-Key, each with its SEND_QUOTE intent), temp ids are unique, and the chain holds
    exactly one quote per instant open (none twice, none unknown)."""
    by_account: dict[str, list[Ack]] = {}
    for a in run.acks:
        by_account.setdefault(a.account, []).append(a)
    temps = [a.temp_id for a in run.acks]
    assert len(temps) == len(set(temps)) == run.total, "a temp id was handed out twice"
    for t in run.traders:
        for a in by_account[t.account]:
            item = await t.wait_open(a.temp_id, timeout=90)
            assert item["status"] == "opened", item
    rows = await sql(
        database_url,
        "SELECT o.account, o.temp_quote_id, o.idempotency_key, o.status, o.quote_id,"
        " (SELECT count(*) FROM tx_intent i WHERE i.instant_open_id = o.id AND i.kind = 'send_quote')"
        " FROM instant_open o",
    )
    traders = [*run.traders, *extra]
    mine = {t.account for t in traders}
    rows = [r for r in rows if r[0] in mine]
    acked = {(a.account, a.temp_id, a.key) for a in run.acks}
    stored = {(r[0], r[1], r[2]) for r in rows if r[2] is not None and r[2].startswith("fault-")}
    assert stored == acked, "the database and the 200 answers differ"
    assert len({r[1] for r in rows}) == len(rows), "a temp id is stored twice"
    assert all(r[5] == 1 for r in rows), [r for r in rows if r[5] != 1]  # each open has its intent
    assert all(r[3] == "opened" and r[4] > 0 for r in rows), [r for r in rows if r[3] != "opened"]
    on_chain = _quotes_by_party_a(devnet)
    for t in traders:
        quote_ids = sorted(r[4] for r in rows if r[0] == t.account)
        assert sorted(on_chain.get(t.account, [])) == quote_ids, t.account
        for q in quote_ids:
            assert chain_quote(devnet, q)["quoteStatus"] == QuoteStatus.OPENED


class Phases:
    """Where a test's time goes, printed with its figures."""

    def __init__(self) -> None:
        self._last = time.monotonic()
        self.spent: dict[str, float] = {}

    def done(self, name: str) -> None:
        now = time.monotonic()
        self.spent[name] = round(now - self._last, 1)
        self._last = now


def trader(stack: Stack, devnet: DevnetInfo, http: httpx.AsyncClient, account: str) -> Trader:
    return Trader(http, account, stack.token(account, devnet.demo_accounts[0].owner))


def eth_body(*, quantity: str, price: str) -> dict[str, Any]:
    body = open_body(quantity=quantity, price=price)
    body["symbolId"] = 2  # ETHUSDT: same maintenance ratio as BTCUSDT in config/local.toml
    return body


def login_body(devnet: DevnetInfo, account: str, nonce: str) -> dict[str, Any]:
    """A SIWE login signed by the account's owner (demo owner 0)."""
    owner = devnet.demo_accounts[0]
    return signed_login(account=account, owner=owner.owner, key=owner.owner_private_key, nonce=nonce).body


async def login(http: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await http.post("/login", json=body, headers=ORIGIN)


async def new_nonce(http: httpx.AsyncClient, account: str) -> str:
    r = await http.get(f"/nonce/{account}")
    assert r.status_code == 200, r.text
    return str(r.json()["nonce"])


# --- Redis ------------------------------------------------------------------------------------


async def test_redis_flushed_and_restarted_in_the_middle_of_a_run_of_opens(
    e2e_devnet: DevnetInfo, private_redis: PrivateRedis, fault_db: str, binance: FakeBinance, log_dir: Path
) -> None:
    """40 opens (8 accounts x 5, concurrently, paced 0.15 s) on a private redis-server. Once 13
    are answered 200, Redis is FLUSHALLed and SIGKILLed, stays down about 1.5 s and comes back empty
    on the same port. Proves:

    - during the outage every open is refused with a clear 503 and the spec error body (1005
      `UNAVAILABLE`, or 1203 `PRICE_UNAVAILABLE` right after the restart until the engine has
      republished the marks), within MAX_REFUSAL_S; the nonce endpoint too;
    - no temp id is handed out twice: the 40 ids of the 200 answers are unique, the database
      holds exactly those 40 (one per Idempotency-Key, each with its SEND_QUOTE intent), and
      every open sent after the restart got an id below every id handed out before the flush
      (the counter is re-seeded below the smallest id stored in PostgreSQL);
    - every open answered 200 (before, across and after the flush) ends `opened`, one quote on
      chain per instant open;
    - no login nonce is accepted twice: a nonce issued before the flush (never used) and a nonce
      already used before it are both refused (401, 1110) after it; a fresh nonce works;
    - a liquidation flag the engine holds is back in Redis within a health poll (0.2 s; asserted
      under FLAG_BACK_S) of the restart, without restarting the engine, same episode, and an open
      of that account is refused 403 (1309);
    - api, worker, engine and oracle survive: nothing exits, nothing is restarted.
    """
    phases = Phases()
    accounts = [new_account(e2e_devnet) for _ in range(8)]
    weak_account = new_account(e2e_devnet, allocate=400)
    with running_stack(e2e_devnet, fault_db, private_redis.url, binance, log_dir) as stack:
        phases.done("accounts and stack")
        prefix = stack.settings.redis_prefix
        redis = aioredis.from_url(private_redis.url)
        http = httpx.AsyncClient(base_url=stack.base_url, timeout=30)
        try:
            async with Supervisor(stack) as supervisor:
                await until("a fresh price", lambda: fresh_price(redis, prefix), timeout=20)

                # A flagged account: LONG 1 ETH at 10x on 400, then ETH falls to 2500 (health < 0).
                weak = trader(stack, e2e_devnet, http, weak_account)
                r = await weak.open(eth_body(quantity="1", price="3030"))
                assert r.status_code == 200, r.text
                assert (await weak.wait_open(r.json()["temp_quote_id"]))["status"] == "opened"
                binance.set("ETHUSDT", "2500")
                flag = reduce_only_key(prefix, weak_account)
                await until("the weak account flagged", lambda: redis.exists(flag), timeout=20)
                flags = ReduceOnlyFlags(redis, prefix)
                reason = await flags.reason(weak_account)
                assert reason is not None
                phases.done("flagged account")

                # Nonces: one issued and never used, one used; both before the flush.
                unused = login_body(e2e_devnet, accounts[0], await new_nonce(http, accounts[0]))
                used = login_body(e2e_devnet, accounts[0], await new_nonce(http, accounts[0]))
                assert (await login(http, used)).status_code == 200

                run = Run([trader(stack, e2e_devnet, http, a) for a in accounts], per_account=5)
                marks: dict[str, float] = {}
                during: list[Refusal] = []

                async def outage() -> None:
                    await run.wait_acked(run.total // 3)
                    marks["flush"] = time.monotonic()
                    await asyncio.to_thread(private_redis.flushall)
                    await asyncio.to_thread(private_redis.stop)
                    marks["down"] = time.monotonic()
                    during.extend(
                        await asyncio.gather(
                            probe("nonce", http.get(f"/nonce/{accounts[1]}")),
                            probe("open", weak.open(open_body(quantity="0.002"))),
                        )
                    )
                    await asyncio.sleep(max(0.0, 1.5 - (time.monotonic() - marks["down"])))
                    await asyncio.to_thread(private_redis.start)
                    marks["up"] = time.monotonic()
                    await until("the flag back", lambda: redis.exists(flag), timeout=10, every=0.01)
                    marks["flag"] = time.monotonic()

                try:
                    await asyncio.gather(run.run(), outage())
                finally:  # the refusals, even when the run itself failed
                    print(f"\nredis: refusals {figures(run.refusals + during)}")
                phases.done("run with the outage")
                up, down = marks["up"], marks["down"]
                first_after = min(a.answered for a in run.acks if a.answered > up)
                await until("a fresh price", lambda: fresh_price(redis, prefix), timeout=10)

                # Nonces after the flush: neither login signed before it is accepted; a new one is.
                for body in (unused, used):
                    r = await login(http, body)
                    assert (r.status_code, r.json()["error_code"]) == (401, ErrorCode.INVALID_NONCE.code), r.text
                fresh = login_body(e2e_devnet, accounts[0], await new_nonce(http, accounts[0]))
                assert (await login(http, fresh)).status_code == 200

                # The flag: back within a poll, same episode, and in force.
                again = await flags.reason(weak_account)
                assert again is not None and again.episode == reason.episode
                r = await weak.open(open_body(quantity="0.002"))
                assert (r.status_code, r.json()["error_code"]) == (403, ErrorCode.REDUCE_ONLY.code), r.text

                # Temp ids after the restart are below every id handed out before the flush.
                before = [a.temp_id for a in run.acks if a.answered < marks["flush"]]
                after = [a.temp_id for a in run.acks if a.sent > up]
                assert before and after
                assert max(after) < min(before), (sorted(before), sorted(after))

                await assert_settled_one_to_one(run, e2e_devnet, fault_db, extra=[weak])
                binance.set_many(MARKS)
                phases.done("settled and checked")

            outage_refusals = [f for f in run.refusals if f.at >= marks["flush"]]
            probes = [p for p in during if p.status != 200]
            print(
                f"\nredis: {run.total} opens, {len(before)} answered before the flush, {len(after)} sent after"
                f" the restart; refusals during the outage: {figures(outage_refusals + probes)}"
                f"\nredis: down {up - down:.2f} s; first 200 {first_after - up:.2f} s after the restart,"
                f" flag back {marks['flag'] - up:.2f} s after it; temp ids before {min(before)}..{max(before)},"
                f" after {min(after)}..{max(after)}; restarts {supervisor.restarts}; time spent {phases.spent}"
            )
            assert len(probes) == len(during), during  # nothing answered 200 while Redis was down
            assert marks["flag"] - up < FLAG_BACK_S
            assert_clear_503s(run.refusals + probes)
            assert supervisor.restarts == []
            for p in supervisor.procs:
                assert p.alive() and p.starts == 1, p.name
        finally:
            await http.aclose()
            await redis.aclose()


# --- PostgreSQL -------------------------------------------------------------------------------


async def test_postgres_restarted_in_the_middle_of_a_run_of_opens(
    e2e_devnet: DevnetInfo,
    private_redis: PrivateRedis,
    private_pg: PrivatePostgres,
    fault_db: str,
    binance: FakeBinance,
    log_dir: Path,
) -> None:
    """30 opens (5 accounts x 6, concurrently, paced 0.15 s) on a private PostgreSQL, after one
    warm-up open went through to the chain (the worker is at work). Once 10 are answered 200,
    PostgreSQL is stopped with an immediate shutdown (every session cut, no checkpoint, like a
    crash), stays down 3 s, and is started again on the same data directory and socket (crash
    recovery: it accepts connections only once that is done). Proves:

    - requests while it is down or recovering (opens, the list of a trader's opens) get a clear
      503 with the spec error body (1005) within MAX_REFUSAL_S, never a 500 or a hang; the nonce
      endpoint, which needs only Redis, keeps answering 200;
    - nothing is half-written: the database holds exactly the 30 acknowledged opens, each with
      its SEND_QUOTE intent; every open answered 200 (before or after the outage) ends `opened`,
      one quote on chain per instant open;
    - worker and engine ride out the outage (they log, back off and retry) and the worker moves
      opens again within seconds of the restart. A supervisor task would restart any process
      that exits, as systemd or Kubernetes would; the test asserts it never had to.
    """
    phases = Phases()
    accounts = [new_account(e2e_devnet) for _ in range(5)]
    with running_stack(e2e_devnet, fault_db, private_redis.url, binance, log_dir) as stack:
        phases.done("accounts and stack")
        redis = aioredis.from_url(private_redis.url)
        http = httpx.AsyncClient(base_url=stack.base_url, timeout=30)
        try:
            async with Supervisor(stack) as supervisor:
                await until("a fresh price", lambda: fresh_price(redis, stack.settings.redis_prefix), timeout=20)
                run = Run([trader(stack, e2e_devnet, http, a) for a in accounts], per_account=6)
                # One open through to the chain first: the worker is at work before the outage.
                r = await run.traders[0].open(open_body(quantity="0.002"), key="warm-up")
                assert r.status_code == 200, r.text
                assert (await run.traders[0].wait_open(r.json()["temp_quote_id"]))["status"] == "opened"
                phases.done("warm-up open")
                marks: dict[str, float] = {}
                during: list[Refusal] = []

                async def progressed() -> int:
                    rows = await sql(fault_db, "SELECT count(*) FROM tx_intent WHERE status IN ('done', 'in_tx')")
                    return int(rows[0][0])

                async def outage() -> None:
                    await run.wait_acked(run.total // 3)
                    before = await progressed()
                    marks["stop"] = time.monotonic()
                    await asyncio.to_thread(private_pg.stop, "immediate")
                    marks["down"] = time.monotonic()
                    t = run.traders[0]
                    while time.monotonic() - marks["down"] < 3.0:
                        during.extend(
                            await asyncio.gather(
                                probe("open", t.open(open_body(quantity="0.002"))),
                                probe("list", http.get(f"/instant_open/{t.account}")),
                                probe("nonce", http.get(f"/nonce/{t.account}")),
                            )
                        )
                        await asyncio.sleep(0.3)
                    marks["start"] = time.monotonic()
                    await asyncio.to_thread(private_pg.start)
                    marks["up"] = time.monotonic()
                    after = before
                    while after <= before:  # the worker moved an intent forward again
                        with contextlib.suppress(Exception):
                            after = await progressed()
                        await asyncio.sleep(0.05)
                    marks["worker"] = time.monotonic()

                await asyncio.gather(run.run(), outage())
                phases.done("run with the outage")
                up = marks["up"]
                first_after = min(a.answered for a in run.acks if a.answered > up)
                await assert_settled_one_to_one(run, e2e_devnet, fault_db)
                settled = time.monotonic()
                phases.done("settled and checked")
                logs = {p.name: p.tail(100_000) for p in supervisor.procs}

            outage_refusals = [f for f in run.refusals if f.at >= marks["stop"]]
            refused = [p for p in during if p.status != 200]
            answered = [p for p in during if p.status == 200]
            errors = {name: log.count('"level": "ERROR"') for name, log in logs.items()}
            print(
                f"\npostgres: {run.total} opens, {len(run.refusals)} refusals in all; while it was down or"
                f" recovering: {figures(outage_refusals + refused)}; 200s: {Counter(p.what for p in answered)}"
                f"\npostgres: stopped in {marks['down'] - marks['stop']:.2f} s, down"
                f" {marks['start'] - marks['down']:.2f} s, start to accepting (crash recovery)"
                f" {up - marks['start']:.2f} s; after that: first 200 {first_after - up:.2f} s, worker moving"
                f" again {marks['worker'] - up:.2f} s, all {run.total} opens settled {settled - up:.2f} s;"
                f" ERROR lines logged {errors}; restarts {supervisor.restarts}; time spent {phases.spent}"
            )
            assert {p.what for p in answered} == {"nonce"}, answered  # Redis only: unaffected
            assert {p.what for p in refused} == {"open", "list"}, refused
            assert_clear_503s(run.refusals + refused)
            assert all(f.code == ErrorCode.UNAVAILABLE.code for f in outage_refusals + refused), refused
            assert supervisor.restarts == []
            for p in supervisor.procs:
                assert p.alive() and p.starts == 1, p.name
        finally:
            await http.aclose()
            await redis.aclose()


# --- the health loop re-asserts its flags (in process) ---------------------------------------


async def test_health_loop_rewrites_its_flags_within_a_poll_after_a_flush(
    private_redis: PrivateRedis, fault_db: str
) -> None:
    """A HealthEngine (in process, fake chain) holds a flag; Redis is FLUSHALLed: the next poll
    (`poll_once`, what the loop runs every health.poll_interval_s) writes the same flag back,
    same episode. Before the fix the flag stayed gone until the account's state changed or the
    engine restarted."""
    prefix = f"fault:{uuid.uuid4().hex[:8]}:"
    settings = load_settings(
        env="test",
        database_url=fault_db,
        redis_url=private_redis.url,
        redis_prefix=prefix,
        auth={"jwt_secret": "fault-test-secret-0123456789abcdef0123"},
        health={"poll_interval_s": 0.05},
    )
    redis = aioredis.from_url(private_redis.url)
    db = create_engine(fault_db)
    try:
        sessions = session_factory(db)
        account = new_address()
        await insert_quote(sessions, account)  # LONG 1 BTC @ 60000, cva 400 + lf 200
        chain = FakeChain()
        chain.allocated[account] = Decimal(100)  # below zero at any price near 60000
        now = time.time()
        await PriceCache(redis, prefix).set(PricePoint("BTCUSDT", Decimal(60000), now))
        engine = HealthEngine(
            settings=settings,
            redis=redis,
            stream=PriceStream(redis, prefix),
            sessions=sessions,
            chain=cast(ChainReader, chain),
            clock=FixedClock(now),
            consumer="fault-test",
        )
        await engine.start()
        flags = ReduceOnlyFlags(redis, prefix)
        reason = await flags.reason(account)
        assert reason is not None

        await redis.flushall()
        assert not await flags.is_flagged(account)
        await engine.poll_once()
        again = await flags.reason(account)
        assert again is not None and again.episode == reason.episode
        assert await engine.reassert_flags() == []  # present: nothing to write
    finally:
        await redis.aclose()
        await db.dispose()
