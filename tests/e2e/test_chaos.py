"""Chaos: every long-running process SIGKILLed at random points of a mixed workload and
restarted; afterwards the database and the chain agree one to one.

The stack is `solver api`, `solver worker`, `solver oracle` and `solver engine` (real processes,
tests/e2e/processes.py) on the module's anvil, PostgreSQL and Redis; prices come only from the
local Binance-protocol feed (tests/fixtures/binance.py), which the test moves.

Workload (WORKLOAD_S = 55 s, from ACCOUNTS = 10 accounts created before the stack starts, once
the engine publishes fresh prices and the worker's lane is up):

- the BTCUSDT mark walks ±150 every 1-2.5 s between 59000 and 61000;
- each trader, every 1-3 s: an instant open (LONG or SHORT, 0.004-0.01 BTC at the mark ± 1 %,
  with an Idempotency-Key; 15 % cancelled at once), the close (all of it, or half) of one of its
  opened positions at the mark ∓ 1 % (20 % cancelled at once), a stop loss and/or take profit
  30-150 from the mark on one (the walk crosses many of them and the engine fires them), or the
  cancel of a position's triggers;
- a strategist creates, every 3-8 s on one of four accounts, a LIMIT order (eligible once the
  walk goes 180-330 past its price) or a DCA order (3 sub-orders 2 s apart), and cancels some.

Meanwhile the chaos task SIGKILLs (the whole process group) one of api / worker / engine /
oracle every 2.5-6.5 s, chosen at random among those that are up (so two are often down
together), starts it again 0-2 s later and waits until it is up (serving /health, or its
start-up line logged: 5-11 s on a loaded 2-CPU machine). A client that gets no answer (the API
was down, or died mid-request) retries for up to RETRY_FOR_S with the same Idempotency-Key where
the endpoint has one (instant open, instant close, strategy order); the other requests it
repeats are idempotent by their target (cancels; a new stop loss replaces the previous one). An
answer never received is `unknown`: the request may or may not have happened.

Then everything down is restarted, the live strategy orders are cancelled, and the test waits
until nothing is in flight (no instant open / close pending, sent or cancel_requested, no
trigger `triggered`, no sub-order sending / sent, no live strategy order, no queued or in_tx
intent, no `signed` chain_tx, the event follower at the chain head, no waiting / armed trigger
on a quote that ended). Asserted:

- no process died on its own (only our SIGKILLs), every restart came up;
- per account: the quotes on chain (every quote id up to the chain's counter, by partyA) are
  exactly the quote ids of its instant opens, one to one; getPartyAOpenPositions is exactly its
  opened positions not fully closed; nothing is pending on chain;
- per instant open: `opened` ↔ OPENED or CLOSED on chain with the DB's quantity, closedAmount =
  the quantities of its filled closes, CLOSED iff all of it; `failed` / `cancelled` with a quote
  id ↔ CANCELED / EXPIRED; every SendQuote transaction created exactly the quotes the DB
  attributes to the opens it carried (so a temp id has at most one quote);
- per instant close: at most one RequestToClosePosition transaction, `filled` ↔ exactly one
  FillCloseRequest of its quantity; every close request / fill on chain belongs to a DB close;
  a close the API cancelled (audit log) never filled, an open it cancelled never opened;
- every request answered 200 reached a terminal state (opens opened / failed / cancelled, closes
  filled / failed / cancelled, strategy orders ended, trigger orders not `triggered` and live only
  on OPENED quotes); every unanswered Idempotency-Key is stored at most once;
- triggers: each fired (armed → triggered) at most once, `attempts` = its close attempts, every
  close the engine created belongs to exactly one trigger attempt, at most one of them filled;
- strategy: every instant open keyed `strategy:…` belongs to exactly one sub-order and the other
  way round, their statuses agree, the orders' counters match their sub-orders;
- outbox: no (signer, nonce) recorded twice, no chain_tx left `signed`, none `lost`, every
  chain_tx `mined` (`reverted`) is on chain with one of its attempt hashes and status 1 (0), the
  signer's nonces from its first chain_tx on are all recorded, none skipped, up to its chain nonce;
- the quote mirror (event follower) has every quote with the chain's status and closed amount.

The seed is printed (`chaos seed: N`); CHAOS_SEED=N replays the same decisions (the processes'
timing still differs); CHAOS_WORKLOAD_S shortens or lengthens the workload, CHAOS_KILL=0 runs it
without kills. The timeline of kills and the counts are printed at the end (`-s`).

Typical run (seed 753338019, on a 2-CPU machine shared with other test runs, load ~9, where a
restart takes 5-11 s): 11 kills (engine 3, oracle 3, api 3, worker 2), each process down 15-28 s
in all; workload 57 s, settled 17 s after it, 115 s in pytest (130 s wall). Requests: 60 instant
opens (48 × 200, 12 × 503 1204: the price went stale while the engine restarted), 15 closes
(10 × 200, 5 × 503), 27 stop loss / take profit (15 × 200, 9 × 503, 2 × 400 1605 would fire at
once, 1 × 409 1609 already fired), 4 strategy orders, 11 cancels; 10 requests answered only after
re-sending (6 after an answer lost mid-request), none left unanswered. End state: 46 opens
opened, 3 cancelled; 10 closes filled (2 sent by triggers), 2 cancelled; on chain 38 OPENED and
8 CLOSED quotes from 37 SendQuote txs, 10 close request txs, 10 fills; 2 triggers fired (once
each) and filled, 10 still armed; 103 chain_tx, all mined. Other runs: 9-13 kills; 0-43 opens
`failed 1401` (ORACLE_REFUSED: the worker met a stale price while the engine was down for more
than risk.max_price_age_s, and a refusal is final), 0-10 closes filled, 0-4 triggers fired.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from eth_abi.abi import decode
from redis import Redis as SyncRedis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from web3 import Web3

from solver.chain.types import QuoteStatus
from solver.db.engine import create_engine
from solver.devnet.artifacts import load_artifact
from solver.devnet.deploy import DevnetInfo
from solver.pricing.cache import PriceCache
from tests.e2e.processes import Proc, Stack, stack_settings
from tests.e2e.trader import open_body
from tests.fixtures.binance import FakeBinance, now_ms, pumped_binance
from tests.fixtures.redis import REDIS_URL
from tests.fixtures.trading import new_account

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480)]

MARKS = {"BTCUSDT": "60000", "ETHUSDT": "3000", "XRPUSDT": "0.5123"}
ACCOUNTS = 10
STRATEGISTS = 4  # accounts 0..3 also place strategy orders
WORKLOAD_S = float(os.environ.get("CHAOS_WORKLOAD_S") or 55)
SETTLE_S = 120.0
RETRY_FOR_S = 20.0
MAX_PRICE_AGE_S = 5
LOW, HIGH = Decimal(59000), Decimal(61000)
TICK = Decimal("0.1")
WAD = 10**18
PROCS = ("api", "worker", "engine", "oracle")
OPEN_TERMINAL = {"opened", "failed", "cancelled"}
CLOSE_TERMINAL = {"filled", "failed", "cancelled"}
STRATEGY_TERMINAL = {"cancelled_by_user", "cancelled_by_system", "executed", "max_retries_exceeded"}


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def binance() -> Iterator[FakeBinance]:
    with pumped_binance(MARKS, interval=0.25) as fake:
        yield fake


@pytest.fixture(scope="module")
def accounts(e2e_devnet: DevnetInfo) -> list[str]:
    return [new_account(e2e_devnet) for _ in range(ACCOUNTS)]


@pytest.fixture(scope="module")
def stack(
    e2e_devnet: DevnetInfo,
    e2e_database_url: str,
    binance: FakeBinance,
    accounts: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    settings = stack_settings(
        e2e_devnet,
        e2e_database_url,
        prefix,
        risk={"max_pending_instant_opens": 50, "max_price_age_s": MAX_PRICE_AGE_S},
        pricing={
            "source": "binance",
            "binance_ws_url": f"ws://127.0.0.1:{binance.port}/stream?streams=!markPrice@arr@1s",
            "silence_timeout_s": 1.0,
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 0.5,
        },
        triggers={"poll_interval_s": 0.1},
        strategy={"poll_interval_s": 0.1},
        health={"poll_interval_s": 0.2},
    )
    s = Stack(settings, tmp_path_factory.mktemp("chaos-e2e"), engine=True)
    try:
        yield s.start()
    finally:
        s.stop()
        with SyncRedis.from_url(REDIS_URL) as client:
            for key in client.scan_iter(match=f"{prefix}*", count=500):
                client.delete(key)


@pytest.fixture
async def db(e2e_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(e2e_database_url)
    yield engine
    await engine.dispose()


# --- the clients ------------------------------------------------------------------------------


@dataclass
class Book:
    """What the clients sent and what they were answered, for the end-state checks."""

    outcomes: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    retried: Counter[str] = field(default_factory=Counter)  # requests answered only after re-sending
    acked_opens: dict[int, str] = field(default_factory=dict)  # temp id -> account
    open_keys: dict[str, str] = field(default_factory=dict)  # every open's key -> account
    cancelled_opens: set[int] = field(default_factory=set)  # temp ids a DELETE answered 200 for
    acked_closes: dict[str, str] = field(default_factory=dict)  # key -> account
    close_keys: dict[str, str] = field(default_factory=dict)
    acked_triggers: set[int] = field(default_factory=set)
    acked_strategies: dict[int, str] = field(default_factory=dict)  # order id -> account
    strategy_keys: dict[str, str] = field(default_factory=dict)


class Market:
    """The BTCUSDT mark the test makes the feed send."""

    def __init__(self, binance: FakeBinance) -> None:
        self.binance = binance
        self.mark = Decimal(MARKS["BTCUSDT"])
        self.moves = 0

    def set(self, price: Decimal) -> None:
        self.mark = price
        self.binance.set("BTCUSDT", str(price))
        self.moves += 1

    async def walk(self, rng: random.Random, end: float) -> None:
        while time.monotonic() < end:
            await asyncio.sleep(rng.uniform(1.0, 2.5))
            self.set(min(max(self.mark + Decimal(rng.randint(-150, 150)), LOW), HIGH))


class Client:
    """One account's trader (and, for some, strategist) over plain HTTP, retrying what got no answer."""

    def __init__(
        self, http: httpx.AsyncClient, stack: Stack, devnet: DevnetInfo, account: str, index: int, seed: int
    ) -> None:
        self.http = http
        self.devnet = devnet
        self.account = account
        self.owner = devnet.demo_accounts[0].owner
        self.index = index
        self.seed = seed
        self.headers = {"Authorization": f"Bearer {stack.token(account, self.owner)}"}
        self.positions: dict[int, int] = {}  # opened quote id -> position type
        self.protected: set[int] = set()  # quote ids we set triggers on
        self.strategies: list[int] = []
        self._n = 0

    def key(self, kind: str) -> str:
        self._n += 1
        return f"chaos-{self.seed}-{self.index}-{kind}-{self._n}"

    async def call(
        self, book: Book, kind: str, method: str, url: str, *, body: Any = None, key: str | None = None
    ) -> httpx.Response | None:
        """The answer, or None when none came within RETRY_FOR_S (the outcome is unknown)."""
        headers = dict(self.headers)
        if key is not None:
            headers["Idempotency-Key"] = key
        give_up = time.monotonic() + RETRY_FOR_S
        tries, lost = 0, False
        while True:
            tries += 1
            try:
                r = await self.http.request(method, url, json=body, headers=headers)
            except httpx.TransportError as exc:
                # Not connected: the request never reached the API. Anything else: it may have.
                lost = lost or not isinstance(exc, httpx.ConnectError)
                if time.monotonic() > give_up:
                    book.outcomes[kind]["unknown"] += 1
                    return None
                await asyncio.sleep(0.25)
                continue
            if tries > 1:
                book.retried[f"{kind}{' (an answer lost)' if lost else ''}"] += 1
            code = ""
            if r.status_code != 200:
                with contextlib.suppress(Exception):
                    code = f" {r.json().get('error_code')}"
            book.outcomes[kind][f"{r.status_code}{code}"] += 1
            return r

    async def refresh(self, book: Book) -> None:
        r = await self.call(book, "list", "GET", f"/instant_open/{self.account}")
        if r is not None and r.status_code == 200:
            for item in r.json():
                if item["status"] == "opened" and item["quote_id"] > 0:
                    self.positions.setdefault(item["quote_id"], item["position_type"])

    async def open_quantity(self, quote_id: int) -> Decimal | None:
        """Still open on chain: how much; else None (and forget the position)."""
        q = await asyncio.to_thread(_chain_quote, self.devnet, quote_id)
        if q["quoteStatus"] != QuoteStatus.OPENED:
            if q["quoteStatus"] not in (QuoteStatus.CLOSE_PENDING, QuoteStatus.CANCEL_CLOSE_PENDING):
                self.positions.pop(quote_id, None)
            return None
        return Decimal(q["quantity"] - q["closedAmount"]) / WAD

    async def open(self, book: Book, market: Market, rng: random.Random) -> None:
        side = rng.choice((0, 1))
        qty = rng.choice(("0.004", "0.006", "0.01"))
        price = _away(market.mark, Decimal("0.01"), side)
        key = self.key("open")
        book.open_keys[key] = self.account
        body = open_body(quantity=qty, price=str(price), side=side)
        r = await self.call(book, "open", "POST", "/instant_open", body=body, key=key)
        if r is None or r.status_code != 200:
            return
        temp = int(r.json()["temp_quote_id"])
        book.acked_opens[temp] = self.account
        if rng.random() < 0.15:
            await asyncio.sleep(rng.uniform(0, 0.4))
            d = await self.call(book, "cancel_open", "DELETE", f"/instant_open/{temp}")
            if d is not None and d.status_code == 200:
                book.cancelled_opens.add(temp)

    async def close(self, book: Book, market: Market, rng: random.Random) -> None:
        qid = rng.choice(sorted(self.positions))
        open_qty = await self.open_quantity(qid)
        if open_qty is None or open_qty <= 0:
            return
        qty = open_qty
        if open_qty >= Decimal("0.004") and rng.random() < 0.3:
            qty = (open_qty / 2).quantize(Decimal("0.001"), ROUND_FLOOR)
        side = self.positions[qid]
        price = _away(market.mark, Decimal("0.01"), 1 - side)  # a LONG sells below the mark
        key = self.key("close")
        book.close_keys[key] = self.account
        body = {"quote_id": qid, "quantity_to_close": str(qty), "close_price": str(price)}
        r = await self.call(book, "close", "POST", "/instant_close", body=body, key=key)
        if r is None or r.status_code != 200:
            return
        book.acked_closes[key] = self.account
        if rng.random() < 0.2:
            await asyncio.sleep(rng.uniform(0, 0.4))
            await self.call(book, "cancel_close", "DELETE", f"/instant_close/{qid}")

    async def protect(self, book: Book, market: Market, rng: random.Random) -> None:
        qid = rng.choice(sorted(self.positions))
        if await self.open_quantity(qid) is None:
            return
        side = self.positions[qid]
        below = market.mark - Decimal(rng.randint(30, 150))
        above = market.mark + Decimal(rng.randint(30, 150))
        sl, tp = (below, above) if side == 0 else (above, below)
        which = rng.random()
        body = {
            "userAddress": self.owner,
            "accountAddress": self.account,
            "positionSide": side,
            "symbolId": 1,
            "requestedPrice": str(market.mark),
            "quoteId": qid,
            "slPrice": str(sl) if which < 0.7 else "",
            "tpPrice": str(tp) if which > 0.3 else "",
            "timestamp": now_ms(),
        }
        r = await self.call(book, "set_trigger", "POST", "/stop-loss", body=body)
        if r is not None and r.status_code == 200:
            book.acked_triggers.update(o["id"] for o in r.json()["orders"])
            self.protected.add(qid)

    async def unprotect(self, book: Book, rng: random.Random) -> None:
        if self.protected:
            qid = rng.choice(sorted(self.protected))
            self.protected.discard(qid)
            await self.call(book, "cancel_trigger", "DELETE", f"/stop-loss/{qid}")

    async def strategy(self, book: Book, market: Market, rng: random.Random) -> None:
        side = rng.choice((0, 1))
        body: dict[str, Any] = {
            "symbol_id": 1, "position_type": side, "leverage": "10", "input_amount": "300",
            "max_suborders": 3, "max_invocations": 5,
        }  # fmt: skip
        if rng.random() < 0.5:  # eligible once the mark moves 180-330 past the price
            offset = Decimal(rng.randint(0, 150))
            price = market.mark - offset if side == 0 else market.mark + offset
            body.update(type="limit", slippage="0.003", settings={"price": str(price)})
        else:
            body.update(type="dca", slippage="0.01", settings={"delay": 2})
        key = self.key("strategy")
        book.strategy_keys[key] = self.account
        r = await self.call(book, "strategy", "POST", "/strategy-orders", body=body, key=key)
        if r is not None and r.status_code == 200:
            oid = int(r.json()["id"])
            book.acked_strategies[oid] = self.account
            self.strategies.append(oid)

    async def cancel_strategy(self, book: Book, order_id: int) -> None:
        await self.call(book, "cancel_strategy", "DELETE", f"/strategy-orders/{order_id}")

    async def trade(self, book: Book, market: Market, end: float) -> None:
        rng = random.Random(f"{self.seed}:trader:{self.index}")
        while time.monotonic() < end:
            await asyncio.sleep(rng.uniform(1.0, 3.0))
            await self.refresh(book)
            roll = rng.random()
            if roll < 0.3 or not self.positions:
                await self.open(book, market, rng)
            elif roll < 0.6:
                await self.close(book, market, rng)
            elif roll < 0.95:
                await self.protect(book, market, rng)
            else:
                await self.unprotect(book, rng)


def _away(mark: Decimal, by: Decimal, side: int) -> Decimal:
    """A price `by` worse than the mark for the side that pays it: above for 0, below for 1."""
    if side == 0:
        return (mark * (1 + by)).quantize(TICK, ROUND_FLOOR)
    return (mark * (1 - by)).quantize(TICK, ROUND_CEILING)


# --- chaos ------------------------------------------------------------------------------------


READY_LINE = {"worker": "next nonce", "engine": "engine started"}  # logged once the process is up


@dataclass
class Chaos:
    """Every 2.5-6.5 s, SIGKILLs one of the processes that are up (chosen at random; others may
    still be restarting), starts it again 0-2 s later and waits until it is up."""

    stack: Stack
    rng: random.Random
    t0: float = field(default_factory=time.monotonic)
    kills: Counter[str] = field(default_factory=Counter)
    timeline: list[str] = field(default_factory=list)
    crashes: Counter[str] = field(default_factory=Counter)
    crash_logs: list[str] = field(default_factory=list)
    downtime: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # kill -> up again, s
    cycling: set[str] = field(default_factory=set)  # killed and not up again yet
    not_up: Counter[str] = field(default_factory=Counter)  # restarts that did not come up in time

    def procs(self) -> list[Proc]:
        return [getattr(self.stack, name) for name in PROCS]

    def note(self, what: str, at: float | None = None) -> None:
        at = time.monotonic() if at is None else at
        wall = time.strftime("%H:%M:%S", time.localtime(time.time() - (time.monotonic() - at)))
        self.timeline.append(f"{at - self.t0:6.1f} s {wall} {what}")

    def revive(self) -> None:
        """Restart what died by itself (a crash: counted, its log kept)."""
        for p in self.procs():
            if p.name not in self.cycling and not p.alive():
                self.note(f"{p.name} found dead: restarted")
                self.crashes[p.name] += 1
                self.crash_logs.append(f"===== {p.name} died on its own =====\n{p.tail(80)}")
                p.start()

    async def up(self, proc: Proc, timeout: float = 60.0) -> bool:
        """Until the (re)started process serves HTTP or logged its ready line."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                if not proc.alive():
                    return False
                if proc.name in READY_LINE:
                    since = proc.log_path.read_text(errors="replace").rsplit(f"----- start #{proc.starts} -----", 1)
                    if READY_LINE[proc.name] in since[-1]:
                        return True
                else:
                    url = self.stack.base_url if proc.name == "api" else self.stack.oracle_url
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(f"{url}/health")).status_code == 200:
                            return True
                await asyncio.sleep(0.1)
        return False

    async def run(self, end: float) -> None:
        cycles: list[asyncio.Task[None]] = []
        while True:
            await asyncio.sleep(self.rng.uniform(2.5, 6.5))
            self.revive()
            if time.monotonic() >= end - 5:  # the last restart is up about when the workload ends
                break
            up = [name for name in PROCS if name not in self.cycling]
            if up and os.environ.get("CHAOS_KILL") != "0":
                name = self.rng.choice(up)
                self.cycling.add(name)
                cycles.append(asyncio.create_task(self.cycle(getattr(self.stack, name), self.rng.uniform(0.0, 2.0))))
        await asyncio.gather(*cycles)

    async def cycle(self, proc: Proc, down: float) -> None:
        """SIGKILL, `down` s later start again, until it is up."""
        killed = time.monotonic()
        also = self.cycling - {proc.name}
        proc.kill()
        self.kills[proc.name] += 1
        try:
            await asyncio.sleep(down)
            proc.start()
            up = await self.up(proc)
        finally:
            self.cycling.discard(proc.name)
        self.downtime[proc.name] += time.monotonic() - killed
        others = sorted(also | self.cycling)
        if not up:
            self.not_up[proc.name] += 1
        self.note(
            f"{proc.name} killed, restarted {down:.1f} s later, "
            f"{'up' if up else 'NOT up'} after {time.monotonic() - killed:.1f} s"
            + (f" (also down meanwhile: {', '.join(others)})" if others else ""),
            at=killed,
        )


# --- chain reads ------------------------------------------------------------------------------


def _symmio(devnet: DevnetInfo) -> Any:
    w3 = Web3(Web3.HTTPProvider(devnet.rpc_url, request_kwargs={"timeout": 30}))
    return w3.eth.contract(address=Web3.to_checksum_address(devnet.symmio), abi=load_artifact("LocalSymmio").abi)


@functools.cache
def _quote_fields() -> list[str]:
    get_quote = next(f for f in load_artifact("LocalSymmio").abi if f.get("name") == "getQuote")
    return [c["name"] for c in get_quote["outputs"][0]["components"]]


def _as_quote(raw: Any) -> dict[str, Any]:
    return dict(zip(_quote_fields(), raw, strict=True))


def _chain_quote(devnet: DevnetInfo, quote_id: int) -> dict[str, Any]:
    return _as_quote(_symmio(devnet).functions.getQuote(quote_id).call())


@functools.cache
def _topic(name: str, n_inputs: int) -> str:
    """topic0 of the Symmio event `name` with `n_inputs` inputs (several are overloaded)."""
    for e in load_artifact("LocalSymmio").abi:
        if e["type"] == "event" and e["name"] == name and len(e["inputs"]) == n_inputs:
            return Web3.to_hex(Web3.keccak(text=f"{name}({','.join(_abi_type(i) for i in e['inputs'])})"))
    raise KeyError(name)


def _abi_type(item: dict[str, Any]) -> str:
    if item["type"].startswith("tuple"):
        return f"({','.join(_abi_type(c) for c in item['components'])}){item['type'][5:]}"
    return str(item["type"])


# The close events are overloaded: the variants with the close id (one of each is emitted per request / fill).
EVENTS = {"send": ("SendQuote", 15), "request": ("RequestToClosePosition", 9), "fill": ("FillCloseRequest", 7)}


@dataclass
class ChainState:
    quotes: dict[int, dict[str, Any]]  # every quote id of the deployment
    open_positions: dict[str, list[int]]
    pending: dict[str, list[int]]
    sends: dict[str, list[tuple[int, str]]]  # tx hash -> [(quote id, partyA)] (SendQuote)
    close_requests: dict[str, list[int]]  # tx hash -> [quote id] (RequestToClosePosition)
    fills: dict[str, list[tuple[int, int]]]  # tx hash -> [(quote id, filled amount)] (FillCloseRequest)


def read_chain(devnet: DevnetInfo, accounts: list[str]) -> ChainState:
    symmio = _symmio(devnet)
    w3 = symmio.w3
    send, request, fill = (_topic(*EVENTS[k]) for k in ("send", "request", "fill"))
    last = symmio.functions.getNextQuoteId().call()
    quotes = {qid: _as_quote(symmio.functions.getQuote(qid).call()) for qid in range(1, last + 1)}
    quotes = {qid: q for qid, q in quotes.items() if q["id"] == qid}  # ids past the last are empty
    open_positions = {
        a: sorted(int(q[0]) for q in symmio.functions.getPartyAOpenPositions(a, 0, 500).call()) for a in accounts
    }
    pending = {a: sorted(int(q[0]) for q in symmio.functions.getPartyAPendingQuotes(a).call()) for a in accounts}
    logs = w3.eth.get_logs(
        {
            "address": symmio.address,
            "fromBlock": 0,
            "toBlock": "latest",
            "topics": [[send, request, fill]],
        }
    )
    sends: dict[str, list[tuple[int, str]]] = defaultdict(list)
    close_requests: dict[str, list[int]] = defaultdict(list)
    fills: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for log in sorted(logs, key=lambda x: (x["blockNumber"], x["logIndex"])):
        tx = Web3.to_hex(log["transactionHash"]).lower()
        data = bytes(log["data"])
        topic = Web3.to_hex(log["topics"][0])
        if topic == send:
            party_a, quote_id = decode(["address", "uint256"], data[:64])
            sends[tx].append((int(quote_id), Web3.to_checksum_address(party_a)))
        elif topic == request:
            close_requests[tx].append(int(decode(["uint256"], data[64:96])[0]))
        else:
            quote_id, _, _, filled = decode(["uint256", "address", "address", "uint256"], data[:128])
            fills[tx].append((int(quote_id), int(filled)))
    return ChainState(quotes, open_positions, pending, dict(sends), dict(close_requests), dict(fills))


def chain_tx_on_chain(devnet: DevnetInfo, hashes: list[str]) -> dict[str, int | None]:
    """Receipt status of each hash on chain (None: not mined)."""
    w3 = _symmio(devnet).w3
    out: dict[str, int | None] = {}
    for h in hashes:
        try:
            out[h] = int(w3.eth.get_transaction_receipt(h)["status"])
        except Exception:
            out[h] = None
    return out


def nonce_on_chain(devnet: DevnetInfo, sender: str) -> int:
    return int(_symmio(devnet).w3.eth.get_transaction_count(Web3.to_checksum_address(sender), "latest"))


# --- database reads ---------------------------------------------------------------------------


async def rows(db: AsyncEngine, query: str, **params: Any) -> list[dict[str, Any]]:
    async with db.connect() as conn:
        return [dict(r) for r in (await conn.execute(text(query), params)).mappings().all()]


IN_FLIGHT = {
    "instant opens": "SELECT id, status FROM instant_open WHERE status IN ('pending', 'sent', 'cancel_requested')",
    "instant closes": "SELECT id, status FROM instant_close WHERE status IN ('pending', 'sent', 'cancel_requested')",
    "fired triggers": "SELECT id, quote_id FROM trigger_order WHERE status = 'triggered'",
    "sub-orders": "SELECT id, status FROM strategy_suborder WHERE status IN ('sending', 'sent')",
    "strategy orders": "SELECT id, status FROM strategy_order WHERE status IN ('active', 'requested_cancellation')",
    "intents": "SELECT id, kind, status FROM tx_intent WHERE status IN ('queued', 'in_tx')",
    "unconfirmed txs": "SELECT id, nonce FROM chain_tx WHERE status = 'signed'",
}


async def in_flight(db: AsyncEngine, devnet: DevnetInfo) -> dict[str, list[Any]]:
    left = {name: await rows(db, q) for name, q in IN_FLIGHT.items()}
    left = {k: v for k, v in left.items() if v}
    if left:
        return left
    head = await asyncio.to_thread(lambda: _symmio(devnet).w3.eth.block_number)
    cursor = await rows(db, "SELECT block_number FROM follower_cursor")
    if not cursor or max(r["block_number"] for r in cursor) < head:
        return {"follower behind": [cursor, head]}
    live = await rows(db, "SELECT id, quote_id, status FROM trigger_order WHERE status IN ('waiting', 'armed')")
    ended = []
    for r in live:
        q = await asyncio.to_thread(_chain_quote, devnet, r["quote_id"])
        if q["quoteStatus"] != QuoteStatus.OPENED:
            ended.append({**r, "chain": QuoteStatus(q["quoteStatus"]).name})
    return {"live triggers on ended quotes": ended} if ended else {}


async def settle(db: AsyncEngine, devnet: DevnetInfo, chaos: Chaos, timeout: float) -> float:
    started = time.monotonic()
    left: dict[str, list[Any]] = {}
    while time.monotonic() - started < timeout:
        chaos.revive()
        left = await in_flight(db, devnet)
        if not left:
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    raise AssertionError(f"still in flight after {timeout} s: { {k: v[:10] for k, v in left.items()} }")


# --- the test ---------------------------------------------------------------------------------


async def test_processes_sigkilled_at_random_during_a_mixed_workload_leave_db_and_chain_one_to_one(
    stack: Stack, e2e_devnet: DevnetInfo, binance: FakeBinance, accounts: list[str], db: AsyncEngine,
) -> None:  # fmt: skip
    seed = int(os.environ.get("CHAOS_SEED") or random.randrange(2**32))
    print(f"\nchaos seed: {seed} (logs in {stack.api.log_path.parent})")
    market = Market(binance)
    book = Book()
    chaos = Chaos(stack, random.Random(f"{seed}:chaos"))
    http = httpx.AsyncClient(base_url=stack.base_url, timeout=10)
    clients = [Client(http, stack, e2e_devnet, a, i, seed) for i, a in enumerate(accounts)]
    failed = True
    try:
        assert stack.engine is not None
        for proc in (stack.engine, stack.worker):  # the stack only waits for the HTTP servers
            assert await chaos.up(proc), proc.tail()
        await fresh_price(stack, market.mark)
        t0 = chaos.t0 = time.monotonic()
        end = t0 + WORKLOAD_S

        async def strategist() -> None:
            srng = random.Random(f"{seed}:strategist")
            while time.monotonic() < end - 10:
                await asyncio.sleep(srng.uniform(3, 8))
                c = clients[srng.randrange(STRATEGISTS)]
                await c.strategy(book, market, srng)
                if c.strategies and srng.random() < 0.3:
                    await asyncio.sleep(srng.uniform(0.5, 3))
                    await c.cancel_strategy(book, srng.choice(c.strategies))

        await asyncio.gather(
            market.walk(random.Random(f"{seed}:market"), end),
            chaos.run(end),
            strategist(),
            *(c.trade(book, market, end) for c in clients),
        )
        workload = time.monotonic() - t0
        for c in clients[:STRATEGISTS]:  # leave nothing live that could send more sub-orders
            r = await c.call(book, "list", "GET", "/strategy-orders")
            for item in r.json() if r is not None and r.status_code == 200 else []:
                await c.cancel_strategy(book, int(item["id"]))
        settled_in = await settle(db, e2e_devnet, chaos, SETTLE_S)
        summary = await check_end_state(db, e2e_devnet, accounts, book)
        print("\n".join(sorted(chaos.timeline)))
        print(
            f"chaos seed {seed}: workload {workload:.0f} s, settled in {settled_in:.1f} s, "
            f"{market.moves} price moves, crashes {dict(chaos.crashes)}"
        )
        down = {k: f"{v:.0f} s" for k, v in chaos.downtime.items()}
        print(f"  kills {dict(chaos.kills.most_common())}, down (kill to up again) {down}")
        for kind in sorted(book.outcomes):
            print(f"  {kind:16} {dict(book.outcomes[kind].most_common())}")
        print(f"  answered after re-sending: {dict(book.retried.most_common())}")
        for line in summary:
            print(f"  {line}")
        assert not chaos.crashes, "\n".join(chaos.crash_logs)
        assert not chaos.not_up, chaos.not_up
        failed = False
    finally:
        await http.aclose()
        if failed:
            print(f"chaos seed {seed}: kills {dict(chaos.kills)}, crashes {dict(chaos.crashes)}")
            print({k: dict(v) for k, v in book.outcomes.items()})
            print("\n".join(sorted(chaos.timeline)))
            print("\n".join(chaos.crash_logs))
            print(stack.logs())


async def fresh_price(stack: Stack, price: Decimal, timeout: float = 30.0) -> None:
    """Until the engine published `price` for BTCUSDT with a fresh source time."""
    redis = aioredis.from_url(REDIS_URL)
    cache = PriceCache(redis, stack.settings.redis_prefix)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            p = await cache.get("BTCUSDT")
            if p is not None and p.price == price and time.time() - p.ts < 1.0:
                return
            await asyncio.sleep(0.1)
    finally:
        await redis.aclose()
    raise AssertionError(f"no fresh BTCUSDT price of {price} within {timeout} s")


async def check_end_state(db: AsyncEngine, devnet: DevnetInfo, accounts: list[str], book: Book) -> list[str]:
    """Every assertion of the module docstring; the figures for the summary."""
    ours = {a.lower(): a for a in accounts}
    chain = await asyncio.to_thread(read_chain, devnet, accounts)
    opens = await rows(
        db,
        "SELECT id, temp_quote_id, account, status, quote_id, quantity, idempotency_key, error_code FROM instant_open",
    )
    closes = await rows(
        db, "SELECT id, quote_id, account, status, quantity_to_close, idempotency_key, error_code FROM instant_close"
    )
    triggers = await rows(
        db, "SELECT id, quote_id, kind, status, attempts, instant_close_id, end_reason FROM trigger_order"
    )
    intents = await rows(
        db, "SELECT id, kind, status, instant_open_id, instant_close_id, quote_id, tx_id FROM tx_intent"
    )
    txs = await rows(db, "SELECT id, sender, nonce, status, mined_hash FROM chain_tx")
    attempts = await rows(db, "SELECT tx_id, tx_hash FROM tx_attempt")
    audit = await rows(
        db,
        "SELECT entity, entity_id, from_status, to_status, actor, data FROM audit_log"
        " WHERE entity IN ('instant_open', 'instant_close', 'trigger_order') ORDER BY id",
    )
    orders = await rows(db, "SELECT * FROM strategy_order")
    subs = await rows(db, "SELECT * FROM strategy_suborder")
    mirror = {r["quote_id"]: r for r in await rows(db, "SELECT quote_id, status, closed_amount, quantity FROM quote")}

    # --- quotes: chain <-> instant opens, one to one ------------------------------------------
    chain_mine = {qid: q for qid, q in chain.quotes.items() if q["partyA"].lower() in ours}
    for a in accounts:
        on_chain = sorted(qid for qid, q in chain_mine.items() if q["partyA"] == a)
        in_db = sorted(o["quote_id"] for o in opens if o["account"] == a and o["quote_id"] is not None)
        assert on_chain == in_db, (a, sorted(set(on_chain) ^ set(in_db)))
        assert chain.pending[a] == [], (a, chain.pending[a])
    filled_qty: dict[int, Decimal] = defaultdict(Decimal)
    for c in closes:
        if c["status"] == "filled":
            filled_qty[c["quote_id"]] += c["quantity_to_close"]
    for o in opens:
        assert o["status"] in OPEN_TERMINAL, o
        if o["quote_id"] is None:
            continue
        q = chain_mine[o["quote_id"]]
        status = QuoteStatus(q["quoteStatus"])
        if o["status"] == "opened":
            assert q["quantity"] == int(o["quantity"] * WAD), (o, q)
            assert q["closedAmount"] == int(filled_qty[o["quote_id"]] * WAD), (o, q, filled_qty[o["quote_id"]])
            want = QuoteStatus.CLOSED if q["closedAmount"] == q["quantity"] else QuoteStatus.OPENED
            assert status == want, (o, status.name)
        else:
            assert status in (QuoteStatus.CANCELED, QuoteStatus.EXPIRED), (o, status.name)
            assert o["quote_id"] not in filled_qty, o
    for a in accounts:
        held = {qid: q for qid, q in chain_mine.items() if q["partyA"] == a}
        still_open = sorted(qid for qid, q in held.items() if q["quoteStatus"] == QuoteStatus.OPENED)
        assert chain.open_positions[a] == still_open, (a, chain.open_positions[a], still_open)

    # --- transactions: each on-chain event belongs to exactly the DB rows that sent it --------
    tx_of_hash = {r["tx_hash"].lower(): r["tx_id"] for r in attempts}
    tx_by_id = {t["id"]: t for t in txs}
    intents_of_tx: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for i in intents:
        if i["tx_id"] is not None:
            intents_of_tx[i["tx_id"]].append(i)
    open_by_id = {o["id"]: o for o in opens}
    close_by_id = {c["id"]: c for c in closes}

    def carried(tx_hash: str, kind: str) -> list[dict[str, Any]]:
        tx_id = tx_of_hash.get(tx_hash)
        assert tx_id is not None, f"{kind} transaction {tx_hash} on chain that the solver never recorded"
        assert tx_by_id[tx_id]["status"] == "mined", (tx_hash, tx_by_id[tx_id])
        return [i for i in intents_of_tx[tx_id] if i["kind"] == kind]

    for tx_hash, sent in chain.sends.items():
        carriers = carried(tx_hash, "send_quote")
        attributed = sorted(open_by_id[i["instant_open_id"]]["quote_id"] or 0 for i in carriers)
        assert attributed == sorted(qid for qid, _ in sent), (tx_hash, attributed, sent)
    requests_of_close: Counter[int] = Counter()
    for tx_hash, quote_ids in chain.close_requests.items():
        (carrier,) = carried(tx_hash, "close_request")
        assert quote_ids == [close_by_id[carrier["instant_close_id"]]["quote_id"]], (tx_hash, quote_ids, carrier)
        requests_of_close[carrier["instant_close_id"]] += 1
    fills_of_close: dict[int, list[int]] = defaultdict(list)
    for tx_hash, filled in chain.fills.items():
        (carrier,) = carried(tx_hash, "fill_close")
        close = close_by_id[carrier["instant_close_id"]]
        assert [qid for qid, _ in filled] == [close["quote_id"]], (tx_hash, filled, close)
        fills_of_close[close["id"]].extend(amount for _, amount in filled)
    assert max(requests_of_close.values(), default=0) <= 1, requests_of_close.most_common(3)
    for c in closes:
        assert c["status"] in CLOSE_TERMINAL, c
        fill = [int(c["quantity_to_close"] * WAD)] if c["status"] == "filled" else []
        assert fills_of_close.get(c["id"], []) == fill, (c, fills_of_close.get(c["id"]))
        if c["status"] == "filled":
            assert requests_of_close[c["id"]] == 1, c

    # --- what the API cancelled never happened -------------------------------------------------
    api_cancelled = defaultdict(set)
    for r in audit:
        if r["actor"] == "api" and r["to_status"] in ("cancelled", "cancel_requested"):
            api_cancelled[r["entity"]].add(int(r["entity_id"]))
    for oid in api_cancelled["instant_open"]:
        assert open_by_id[oid]["status"] != "opened", open_by_id[oid]
    for cid in api_cancelled["instant_close"]:
        assert close_by_id[cid]["status"] != "filled", close_by_id[cid]
    by_temp = {o["temp_quote_id"]: o for o in opens}
    for temp in book.cancelled_opens:
        assert by_temp[temp]["status"] != "opened", by_temp[temp]

    # --- every 200 reached a terminal state; unanswered keys stored at most once ------------------
    for temp, account in book.acked_opens.items():
        assert by_temp[temp]["account"] == account and by_temp[temp]["status"] in OPEN_TERMINAL, by_temp[temp]
    open_by_key = Counter((o["account"], o["idempotency_key"]) for o in opens if o["idempotency_key"])
    close_by_key = {(c["account"], c["idempotency_key"]): c for c in closes if c["idempotency_key"]}
    assert max(open_by_key.values(), default=0) <= 1
    for key, account in book.acked_closes.items():
        assert close_by_key[(account, key)]["status"] in CLOSE_TERMINAL, close_by_key[(account, key)]
    unknown_stored = sum((a, k) in open_by_key for k, a in book.open_keys.items()) - len(book.acked_opens)
    trig_by_id = {t["id"]: t for t in triggers}
    for tid in book.acked_triggers:
        assert trig_by_id[tid]["status"] != "triggered", trig_by_id[tid]
    order_by_id = {o["id"]: o for o in orders}
    for oid in book.acked_strategies:
        assert order_by_id[oid]["status"] in STRATEGY_TERMINAL, order_by_id[oid]
    strategy_by_key = Counter((o["account"], o["idempotency_key"]) for o in orders if o["idempotency_key"])
    assert max(strategy_by_key.values(), default=0) <= 1

    # --- triggers: fired at most once, every engine close is one attempt of one trigger -------------
    fired: Counter[int] = Counter()
    attempts_of: Counter[int] = Counter()
    closes_of_trigger: dict[int, list[int]] = defaultdict(list)
    for r in audit:
        if r["entity"] == "trigger_order" and r["to_status"] == "triggered":
            tid = int(r["entity_id"])
            attempts_of[tid] += 1
            fired[tid] += r["from_status"] != "triggered"
            closes_of_trigger[tid].append(int(r["data"]["instant_close_id"]))
    engine_closes = sorted(
        int(r["entity_id"])
        for r in audit
        if r["entity"] == "instant_close" and r["from_status"] is None and r["actor"] == "engine"
    )
    assert sorted(c for cs in closes_of_trigger.values() for c in cs) == engine_closes
    for t in triggers:
        tid = t["id"]
        assert fired[tid] <= 1, t
        assert t["attempts"] == attempts_of[tid], (t, attempts_of[tid])
        assert t["status"] != "triggered", t
        outcome = [close_by_id[c]["status"] for c in closes_of_trigger[tid]]
        assert outcome.count("filled") <= 1, (t, outcome)
        assert (t["status"] == "filled") == ("filled" in outcome), (t, outcome)
        if t["status"] in ("waiting", "armed"):
            assert chain_mine[t["quote_id"]]["quoteStatus"] == QuoteStatus.OPENED, t

    # --- strategy: sub-orders <-> instant opens, one to one -----------------------------------
    strategy_opens = {o["id"]: o for o in opens if (o["idempotency_key"] or "").startswith("strategy:")}
    sub_by_open = Counter(s["instant_open_id"] for s in subs if s["instant_open_id"] is not None)
    assert set(sub_by_open) == set(strategy_opens), sorted(set(sub_by_open) ^ set(strategy_opens))
    assert max(sub_by_open.values(), default=0) <= 1
    subs_of: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for s in subs:
        subs_of[s["order_id"]].append(s)
        assert s["status"] in ("opened", "failed"), s
        if s["instant_open_id"] is not None:
            o = strategy_opens[s["instant_open_id"]]
            assert o["idempotency_key"] == s["idempotency_key"], (s, o)
            assert (s["status"] == "opened") == (o["status"] == "opened"), (s, o)
            if s["status"] == "opened":
                assert s["quote_id"] == o["quote_id"], (s, o)
    for o in orders:
        assert o["status"] in STRATEGY_TERMINAL and o["active_transactions"] == 0, o
        mine = subs_of[o["id"]]
        assert o["invocations_executed"] == len(mine), (o, mine)
        assert o["suborders_executed"] == sum(s["slots"] for s in mine if s["status"] == "opened"), (o, mine)

    # --- outbox -------------------------------------------------------------------------------
    nonces = Counter((t["sender"].lower(), t["nonce"]) for t in txs)
    assert max(nonces.values(), default=0) == 1, nonces.most_common(3)
    statuses = Counter(t["status"] for t in txs)
    assert statuses["signed"] == 0 and statuses["lost"] == 0, statuses
    settled = [t for t in txs if t["status"] in ("mined", "reverted")]
    receipts = await asyncio.to_thread(chain_tx_on_chain, devnet, [t["mined_hash"] for t in settled])
    for t in settled:
        assert receipts[t["mined_hash"]] == (1 if t["status"] == "mined" else 0), (t, receipts[t["mined_hash"]])
        assert tx_of_hash.get(t["mined_hash"].lower()) == t["id"], t
    for sender in {t["sender"] for t in txs}:  # every nonce from the first one on: used once, by a recorded tx
        used = sorted(t["nonce"] for t in txs if t["sender"] == sender)
        assert used == list(range(used[0], used[-1] + 1)), (sender, used)
        assert await asyncio.to_thread(nonce_on_chain, devnet, sender) == used[-1] + 1, sender

    # --- the quote mirror ---------------------------------------------------------------------
    for qid, q in chain_mine.items():
        m = mirror.get(qid)
        assert m is not None, f"quote {qid} missing from the mirror"
        assert (m["status"], int(m["closed_amount"] * WAD)) == (q["quoteStatus"], q["closedAmount"]), (m, q)

    return [
        f"instant opens {dict(Counter(_outcome(o) for o in opens).most_common())}, "
        f"{len(strategy_opens)} of them strategy sub-orders, {unknown_stored} unanswered ones stored",
        f"instant closes {dict(Counter(_outcome(c) for c in closes).most_common())}, "
        f"{len(engine_closes)} sent by triggers, {len(api_cancelled['instant_close'])} cancelled by users",
        f"quotes on chain {dict(Counter(QuoteStatus(q['quoteStatus']).name for q in chain_mine.values()))}, "
        f"from {len(chain.sends)} SendQuote txs; {len(chain.close_requests)} close request txs, "
        f"{len(chain.fills)} fill txs",
        f"triggers {dict(Counter(_outcome(t) for t in triggers).most_common())}, fired {sum(fired.values())}, "
        f"close attempts {sum(attempts_of.values())}",
        f"strategy orders {dict(Counter(o['status'] for o in orders))}, "
        f"sub-orders {dict(Counter(s['status'] for s in subs))}",
        f"chain_tx {dict(statuses)}, intents {dict(Counter(i['status'] for i in intents))}",
    ]


def _outcome(row: dict[str, Any]) -> str:
    """status, with the error code of a failure or the end reason of a cancelled trigger."""
    why = row.get("error_code") if row["status"] == "failed" else row.get("end_reason")
    return f"{row['status']} {why}" if why else str(row["status"])
