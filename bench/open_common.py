"""Shared by instant_open_bench.py and worker_send_bench.py (not a benchmark itself).

- `Devnet`: a fresh anvil with the contracts deployed, a scratch migrated database and a unique
  Redis prefix; everything is removed again on exit (also on error or SIGTERM).
- `set_mining`: switch the running anvil between instant mining and N-second blocks.
- `NaiveOpener`: the baseline sender. One open = `_call(account, [sendQuoteWithAffiliate])` then
  `lockAndOpenQuote` as PartyB, sent with web3 one at a time: the nonce read from the node
  (`pending`) for every transaction, each pre-flighted (estimate × 1.5, as the worker) and each
  receipt awaited before the next transaction. Oracle signatures come from the devnet's
  OracleSigner in-process (uPnL 0, nonces read from the chain), like the integration tests.
- `PartyBSetup`: registers extra PartyBs (admin `registerPartyB`, ETH, mint/approve/deposit) and
  links sub-accounts to them (delegation of the six selectors + `allocateForPartyB`).
- `server_timings`: per-open timestamps the solver itself wrote (instant_open, tx_intent,
  chain_tx, tx_attempt), to see where time goes without polling.
- `CpuMeter`: CPU seconds of given process groups / pids / command lines from /proc, and of the
  whole machine (the rest is other jobs sharing it); `log_issues`: WARNING/ERROR log lines.

`tests` is imported lazily: it is importable only with the repository root on sys.path, which
this module adds (the benchmarks run as `python bench/<name>.py`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import redis  # noqa: E402
from eth_account import Account  # noqa: E402
from eth_utils.address import to_checksum_address  # noqa: E402
from web3 import Web3  # noqa: E402

from solver.chain.calls import Calls, QuoteArgs, sent_quote_ids  # noqa: E402
from solver.chain.tx.fees import GWEI, initial_fees  # noqa: E402
from solver.chain.tx.node import Log  # noqa: E402
from solver.core.units import to_wei  # noqa: E402
from solver.db.migrate import drop_database, upgrade  # noqa: E402
from solver.devnet.anvil import Anvil, rpc, set_interval_mining, start_anvil  # noqa: E402
from solver.devnet.artifacts import load_artifact  # noqa: E402
from solver.devnet.deploy import DevnetInfo, deploy  # noqa: E402
from solver.risk.fills import open_fill_price  # noqa: E402
from solver.settings import load_settings  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/0"
MARK = Decimal("60000")  # BTCUSDT mark the PriceKeeper publishes (tests.fixtures.trading.DEFAULT_MARKS)
OPEN_PRICE = "60600"  # requested price of every open: 1 % above the mark, 10x (tests.e2e.trader.open_body)
OPEN_QTY = "0.01"


def _sigterm(_sig: int, _frame: object) -> None:
    raise SystemExit(143)  # unwinds through the finally blocks


def install_sigterm() -> None:
    signal.signal(signal.SIGTERM, _sigterm)


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError("time budget (--max-seconds) exhausted")
        return left


# --- environment ---------------------------------------------------------------------------------


@dataclass
class Devnet:
    node: Anvil
    info: DevnetInfo
    db_url: str
    redis_prefix: str


@contextlib.contextmanager
def devnet(tag: str) -> Iterator[Devnet]:
    from tests.fixtures.db import scratch_database_url

    node = start_anvil()
    db_url = scratch_database_url("solver_bench")
    prefix = f"bench:{tag}:{secrets.token_hex(4)}:"
    db_touched = False
    try:
        info = deploy(node.url, load_settings().symbols)
        db_touched = True
        upgrade(db_url)
        yield Devnet(node, info, db_url, prefix)
    finally:
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


def set_mining(url: str, mode: str) -> None:
    """`instant` (one block per transaction) or `<n>s` (a block every n seconds, no automine)."""
    if mode == "instant":
        rpc(url, "evm_setIntervalMining", [0])
        rpc(url, "evm_setAutomine", [True])
    else:
        set_interval_mining(url, int(mode.removesuffix("s")))


def parse_mode(mode: str) -> str:
    if mode != "instant" and not (mode.endswith("s") and mode[:-1].isdigit() and int(mode[:-1]) >= 1):
        raise ValueError(f"mode must be 'instant' or '<n>s', not {mode!r}")
    return mode


# --- the naive baseline sender ---------------------------------------------------------------


def quote_args(party_b: str, deadline: int) -> QuoteArgs:
    """The arguments the worker sends for tests.e2e.trader.open_body(quantity=OPEN_QTY) (LONG MARKET)."""
    from tests.e2e.trader import open_body

    body = open_body(quantity=OPEN_QTY, price=OPEN_PRICE)
    return QuoteArgs(
        party_b_whitelist=[party_b],
        symbol_id=1,
        position_type=0,
        order_type=1,
        price=to_wei(Decimal(body["price"])),
        quantity=to_wei(Decimal(body["quantity"])),
        cva=to_wei(Decimal(body["cva"])),
        lf=to_wei(Decimal(body["lf"])),
        party_amm=to_wei(Decimal(body["partyAmm"])),
        party_bmm=0,
        max_funding_rate=to_wei(Decimal(200)),
        deadline=deadline,
    )


class NaiveOpener:
    """Sends one open's two transactions one by one; not thread-safe (one per thread)."""

    def __init__(self, info: DevnetInfo, private_key: str, *, poll_latency: float = 0.1) -> None:
        self.info = info
        self.w3 = Web3(Web3.HTTPProvider(info.rpc_url, request_kwargs={"timeout": 30}))
        self.signer = Account.from_key(private_key)
        self.address = str(self.signer.address)
        self.calls = Calls(symmio=info.symmio, multi_account=info.multi_account)
        self.oracle = info.oracle_signer()
        self.symmio = self.w3.eth.contract(
            address=to_checksum_address(info.symmio), abi=load_artifact("LocalSymmio").abi
        )
        self.poll_latency = poll_latency
        sym = load_settings().symbol(1)
        assert sym is not None
        self.fee = sym.hedger_fee_open
        self.precision = sym.price_precision
        self.txs = 0

    def _send(self, to: str, data: str) -> Any:
        w3 = self.w3
        nonce = w3.eth.get_transaction_count(self.signer.address, "pending")
        call = {"from": self.signer.address, "to": to_checksum_address(to), "data": data}
        gas = int(w3.eth.estimate_gas(call) * Decimal("1.5"))  # type: ignore[arg-type]
        base = int(w3.eth.get_block("latest").get("baseFeePerGas", 0) or 0)
        fees = initial_fees(base_fee=base, priority_fee=int(w3.eth.max_priority_fee), cap=500 * GWEI)
        tx = {
            "type": 2,
            "chainId": self.info.chain_id,
            "nonce": nonce,
            "to": to_checksum_address(to),
            "data": data,
            "value": 0,
            "gas": gas,
            "maxFeePerGas": fees.max_fee_per_gas,
            "maxPriorityFeePerGas": fees.max_priority_fee_per_gas,
        }
        signed = self.signer.sign_transaction(tx)
        tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120, poll_latency=self.poll_latency)
        if receipt["status"] != 1:
            raise RuntimeError(f"naive transaction {tx_hash.hex()} reverted")
        self.txs += 1
        return receipt

    def open(self, account: str) -> int:
        """sendQuote through the delegation, then lockAndOpenQuote; returns the quote id."""
        fn = self.symmio.functions
        mark = to_wei(MARK)
        nonce_a = fn.nonceOfPartyA(account).call()
        sig = self.oracle.single_upnl_and_price(
            diamond=self.info.symmio,
            chain_id=self.info.chain_id,
            party_a=account,
            nonce_a=nonce_a,
            upnl=0,
            symbol_id=1,
            price=mark,
        )
        args = quote_args(self.address, int(time.time()) + 600)
        inner = self.calls.send_quote(args, sig.as_tuple())
        receipt = self._send(self.calls.multi_account, self.calls.multi_call(account, [inner]))
        logs = [
            Log(
                address=str(to_checksum_address(lg["address"])),
                topics=tuple(bytes(t) for t in lg["topics"]),
                data=bytes(lg["data"]),
                log_index=int(lg["logIndex"]),
                raw={},
            )
            for lg in receipt["logs"]
        ]
        (quote_id,) = sent_quote_ids(logs, symmio=self.info.symmio, party_a=account)
        nonce_b = fn.nonceOfPartyB(self.address, account).call()
        nonce_a = fn.nonceOfPartyA(account).call()
        lock = self.oracle.party_b_upnl(
            diamond=self.info.symmio,
            chain_id=self.info.chain_id,
            party_b=self.address,
            party_a=account,
            nonce_b=nonce_b,
            upnl=0,
        )
        pair = self.oracle.pair_upnl_and_price(
            diamond=self.info.symmio,
            chain_id=self.info.chain_id,
            party_b=self.address,
            party_a=account,
            nonce_b=nonce_b,
            nonce_a=nonce_a,
            upnl_party_b=0,
            upnl_party_a=0,
            symbol_id=1,
            price=mark,
        )
        fill = open_fill_price(
            mark=MARK,
            position_type=0,
            order_type=1,
            requested=Decimal(OPEN_PRICE),
            fee=self.fee,
            precision=self.precision,
        )
        assert fill is not None
        data = self.calls.lock_and_open(quote_id, args.quantity, to_wei(fill), lock.as_tuple(), pair.as_tuple())
        self._send(self.calls.symmio, data)
        return int(quote_id)

    def quote_status(self, quote_id: int) -> int:
        abi = self.symmio.get_function_by_name("getQuote").abi
        names = [c["name"] for c in abi["outputs"][0]["components"]]
        return int(dict(zip(names, self.symmio.functions.getQuote(quote_id).call(), strict=True))["quoteStatus"])


# --- server-side timestamps ------------------------------------------------------------------

TIMINGS_SQL = """
SELECT io.id, io.account, io.temp_quote_id, io.status, io.quote_id, st.id AS send_tx, ot.id AS open_tx,
       extract(epoch FROM io.create_time)  AS accepted,
       extract(epoch FROM st.create_time)  AS send_signed,
       extract(epoch FROM sa.first_broadcast) AS send_broadcast,
       extract(epoch FROM st.modify_time)  AS send_settled,
       st.block_number                     AS send_block,
       (SELECT count(*) FROM tx_intent x WHERE x.tx_id = st.id) AS batch,
       extract(epoch FROM oi.create_time)  AS open_queued,
       extract(epoch FROM ot.create_time)  AS open_signed,
       extract(epoch FROM ot.modify_time)  AS open_settled,
       ot.block_number                     AS open_block,
       extract(epoch FROM io.modify_time)  AS final
FROM instant_open io
JOIN tx_intent si ON si.instant_open_id = io.id AND si.kind = 'send_quote'
LEFT JOIN chain_tx st ON st.id = si.tx_id
LEFT JOIN LATERAL (SELECT min(broadcast_time) AS first_broadcast FROM tx_attempt WHERE tx_id = st.id) sa ON true
LEFT JOIN tx_intent oi ON oi.instant_open_id = io.id AND oi.kind = 'open_quote'
LEFT JOIN chain_tx ot ON ot.id = oi.tx_id
WHERE io.account = ANY(:accounts)
ORDER BY io.id
"""

PHASES = (
    ("accepted -> sendQuote tx signed", "accepted", "send_signed"),
    ("sendQuote signed -> settled (quote id)", "send_signed", "send_settled"),
    ("quote id -> lockAndOpen signed", "send_settled", "open_signed"),
    ("lockAndOpen signed -> settled (opened)", "open_signed", "open_settled"),
    ("accepted -> opened", "accepted", "open_settled"),
)


async def server_timings(db_url: str, accounts: Sequence[str]) -> list[dict[str, Any]]:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(db_url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text(TIMINGS_SQL), {"accounts": list(accounts)})).mappings().all()
    finally:
        await engine.dispose()
    return [{k: (float(v) if isinstance(v, Decimal) else v) for k, v in r.items()} for r in rows]


def blocks_per_tx(rows: Sequence[dict[str, Any]]) -> list[float]:
    """Per account: blocks from its first to its last transaction / its transactions. With one
    transaction per account in flight, 1.0 means every block carried one of its transactions."""
    out = []
    for account in {r["account"] for r in rows}:
        mine = [r for r in rows if r["account"] == account and r["send_block"] and r["open_block"]]
        if not mine:
            continue
        txs = len({r["send_tx"] for r in mine}) + len({r["open_tx"] for r in mine})
        span = max(r["open_block"] for r in mine) - min(r["send_block"] for r in mine) + 1
        out.append(span / txs)
    return out


def phase_ms(rows: Sequence[dict[str, Any]], start: str, end: str) -> list[float]:
    return [(r[end] - r[start]) * 1000 for r in rows if r.get(start) is not None and r.get(end) is not None]


# --- statistics ---------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); nan for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-q * len(s) // 100)) - 1))
    return s[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --- extra registered PartyBs (lanes, the naive sender) ------------------------------------------


class PartyBSetup:
    """Registers PartyBs and links sub-accounts to them (delegation + allocateForPartyB).

    Everything is signed locally (deploy.Sender: local nonce, waits for each receipt); the
    sub-account owner is demo owner 0, an unlocked anvil account.
    """

    def __init__(self, info: DevnetInfo) -> None:
        from solver.devnet.deploy import Sender

        self.info = info
        self.w3 = Web3(Web3.HTTPProvider(info.rpc_url, request_kwargs={"timeout": 30}))
        self.admin = Sender(self.w3, info.admin_private_key, info.chain_id)
        self.symmio = self.w3.eth.contract(
            address=to_checksum_address(info.symmio), abi=load_artifact("LocalSymmio").abi
        )
        self.multi = self.w3.eth.contract(
            address=to_checksum_address(info.multi_account), abi=load_artifact("MultiAccount").abi
        )
        self.collateral = self.w3.eth.contract(
            address=to_checksum_address(info.collateral), abi=load_artifact("MockCollateral").abi
        )
        self.senders: dict[str, Any] = {}

    def register(self, private_key: str, deposit: int = 10**9) -> str:
        from solver.core.units import WAD
        from solver.devnet.deploy import Sender

        sender = Sender(self.w3, private_key, self.info.chain_id)
        if self.w3.eth.get_balance(sender.address) < 10**18:
            self.admin.send_eth(sender.address, 100 * 10**18)
        self.admin.send(self.symmio.functions.registerPartyB(sender.address), f"registerPartyB {sender.address}")
        amount = deposit * WAD
        sender.send(self.collateral.functions.mint(sender.address, amount), "mint")
        sender.send(self.collateral.functions.approve(self.symmio.address, amount), "approve")
        sender.send(self.symmio.functions.deposit(amount), "deposit")
        self.senders[str(sender.address)] = sender
        return str(sender.address)

    def link(self, account: str, party_b: str, allocation: int = 10_000) -> None:
        """The account delegates the six selectors to `party_b`, which allocates collateral for it."""
        from solver.core.units import WAD
        from solver.devnet.deploy import DELEGATED_SIGNATURES, selector

        owner = self.info.demo_accounts[0].owner
        selectors = [selector(s) for s in DELEGATED_SIGNATURES]
        tx = self.multi.functions.delegateAccesses(account, party_b, selectors, True).transact({"from": owner})
        if self.w3.eth.wait_for_transaction_receipt(tx, poll_latency=0.01)["status"] != 1:
            raise RuntimeError(f"delegateAccesses({account}, {party_b}) reverted")
        if allocation:
            sender = self.senders[party_b]
            sender.send(self.symmio.functions.allocateForPartyB(allocation * WAD, account), "allocateForPartyB")


# --- CPU accounting (/proc) ----------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()  # fields from `state` on (the name may hold spaces)


def group_cpu_s(pgid: int) -> float:
    """user + system CPU seconds of the live processes of process group `pgid` (our children)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        f = _stat_fields(int(entry.name))
        if f is not None and int(f[2]) == pgid:
            total += int(f[11]) + int(f[12])
    return total / _TICK


def cmdline_cpu_s(needle: str) -> float:
    """CPU seconds of the live processes whose command line contains `needle` (e.g. the
    Postgres backends serving one database: `postgres: ... <db name> ...`)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes()
        except OSError:
            continue
        if needle.encode() in cmd:
            f = _stat_fields(int(entry.name))
            if f is not None:
                total += int(f[11]) + int(f[12])
    return total / _TICK


def pid_cpu_s(pid: int) -> float:
    f = _stat_fields(pid)
    return 0.0 if f is None else (int(f[11]) + int(f[12])) / _TICK


def machine_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores (/proc/stat)."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]  # idle + iowait
    total = sum(parts[:8])
    return (total - idle) / _TICK, total / _TICK


class CpuMeter:
    """CPU seconds used by named processes (and the machine) between start() and stop()."""

    def __init__(self, groups: dict[str, int], pids: dict[str, int], cmdlines: dict[str, str] | None = None) -> None:
        self.groups, self.pids, self.cmdlines = groups, pids, cmdlines or {}
        self.used: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        out = {name: group_cpu_s(g) for name, g in self.groups.items()}
        out.update({name: pid_cpu_s(p) for name, p in self.pids.items()})
        out.update({name: cmdline_cpu_s(needle) for name, needle in self.cmdlines.items()})
        busy, _ = machine_cpu_s()
        out["machine (all processes)"] = busy
        return out

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._start = self._read()

    def stop(self) -> None:
        end = self._read()
        self.wall_s = time.monotonic() - self._t0
        self.used = {k: end[k] - self._start[k] for k in end}


def log_issues(proc: Any, since_start: int | None = None) -> list[str]:
    """WARNING/ERROR lines a tests.e2e.processes.Proc logged since its last (or a given) start."""
    try:
        text = proc.log_path.read_text(errors="replace")
    except OSError:
        return []
    parts = text.split("----- start #")
    parts = parts[since_start:] if since_start is not None else parts[-1:]
    lines = [ln for part in parts for ln in part.splitlines()]
    return [ln for ln in lines if ln.startswith(("WARNING", "ERROR", "CRITICAL")) or "Traceback" in ln]
