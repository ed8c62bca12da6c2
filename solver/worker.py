"""Composition root of the chain worker (`solver worker`): the only holder of signer keys.

Wires one Lane per signer key (each key must be one of chain.lanes, the PartyB addresses), the
oracle client, and the event follower, then runs them until stopped. On start every lane
re-seeds its nonce from the chain and its own records and picks its open transactions back up
(rebroadcast, receipts, settle), which is the same path as normal operation.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field

from eth_account import Account
from eth_account.signers.local import LocalAccount
from redis.asyncio import Redis

from solver.chain.calls import Calls
from solver.chain.reader import ChainReader
from solver.chain.tx.node import TxNode
from solver.core.clock import Clock, SystemClock
from solver.core.errors import ConfigError
from solver.db.engine import create_engine, session_factory
from solver.notify.publish import NotificationPublisher, enable_publishing
from solver.observability.heartbeat import Heartbeats
from solver.observability.logs import settings_summary
from solver.observability.states import heartbeats_for, lane_state
from solver.oracle.client import OracleClient
from solver.quotes.lane import Lane
from solver.quotes.steps import StepContext
from solver.settings import Settings

log = logging.getLogger("solver.worker")


@dataclass
class Worker:
    lanes: list[Lane]
    ctx: StepContext
    closers: list[object] = field(default_factory=list)
    heartbeats: Heartbeats | None = None  # loop beats and lane nonces for GET /metrics


def signers_by_lane(settings: Settings, only: Sequence[int] | None = None) -> dict[int, LocalAccount]:
    """Match each configured key to its lane by address; refuse keys that are no lane's."""
    lanes = [a.lower() for a in settings.chain.lanes]
    out: dict[int, LocalAccount] = {}
    for secret in settings.worker.signer_private_keys:
        acct: LocalAccount = Account.from_key(secret.get_secret_value())
        if acct.address.lower() not in lanes:
            raise ConfigError(f"signer {acct.address} is not one of chain.lanes (party_b_addresses/solver_address)")
        index = lanes.index(acct.address.lower())
        if only is None or index in only:
            out[index] = acct
    if not out:
        raise ConfigError("no signer key for any lane: set SOLVER_WORKER__SIGNER_PRIVATE_KEYS='[\"0x...\"]'")
    return out


async def build_worker(
    settings: Settings,
    *,
    oracle: OracleClient | None = None,
    chain: ChainReader | None = None,
    clock: Clock | None = None,
    only_lanes: Sequence[int] | None = None,
) -> Worker:
    signers = signers_by_lane(settings, only_lanes)
    node = TxNode.connect(settings.chain.rpc_urls[0])
    chain_id = await node.chain_id()
    if chain_id != settings.chain.chain_id:
        await node.close()
        raise ConfigError(f"RPC chain id {chain_id} differs from configured chain_id {settings.chain.chain_id}")
    closers: list[object] = [node]
    if chain is None:
        from solver.chain.web3_reader import Web3ChainReader

        chain = Web3ChainReader.from_settings(settings.chain)
        closers.append(chain)
    if oracle is None:
        from solver.oracle.muon import MuonClient

        oracle = MuonClient(
            settings.oracle.muon_urls, settings.oracle.app_name, settings.chain.chain_id, settings.chain.symmio_address
        )
        closers.append(oracle)
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    # Notifications the lanes and the follower commit are pushed to WebSocket clients (any API replica).
    publisher = NotificationPublisher(Redis.from_url(settings.redis_url), settings.redis_prefix, owns_redis=True)
    enable_publishing(sessions, publisher)
    ctx = StepContext(
        settings=settings,
        calls=Calls(symmio=settings.chain.symmio_address, multi_account=settings.chain.multi_account_address),
        node=node,
        chain=chain,
        oracle=oracle,
        sessions=sessions,
        clock=clock or SystemClock(),
    )
    closers.extend([engine, publisher])
    lanes = [Lane(index=i, signer=acct, ctx=ctx, chain_id=chain_id) for i, acct in sorted(signers.items())]
    heartbeats = heartbeats_for(settings)
    for lane in lanes:
        lane.beat = heartbeats.beat
        heartbeats.add_state("worker", str(lane.index), lane_state(lane))
    closers.append(heartbeats)
    return Worker(lanes=lanes, ctx=ctx, closers=closers, heartbeats=heartbeats)


async def run_worker(worker: Worker, stop: asyncio.Event, *, follow_events: bool = True) -> None:
    tasks = [asyncio.create_task(lane.run(stop), name=f"lane-{lane.index}") for lane in worker.lanes]
    if follow_events:
        tasks.append(asyncio.create_task(_follow(worker, stop), name="follower"))
    if worker.heartbeats is not None:
        tasks.append(asyncio.create_task(worker.heartbeats.run(stop), name="heartbeats"))
    try:
        await stop.wait()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await close_worker(worker)


async def close_worker(worker: Worker) -> None:
    """Close what the worker opened; each step bounded, so a stuck close never hangs a stop."""
    for c in worker.closers:
        close = getattr(c, "close", None) or getattr(c, "dispose", None)
        if close is None:
            continue
        try:
            await asyncio.wait_for(close(), timeout=10)
        except TimeoutError:
            log.warning("closing %s took over 10 s; moving on", type(c).__name__)
        except Exception:  # best effort at shutdown
            log.debug("close failed", exc_info=True)


def announce(worker: Worker) -> None:
    """The start-up line: lanes, signer addresses and where the worker connects (no secret)."""
    log.info(
        "worker started: lanes %s",
        [(lane.index, lane.address) for lane in worker.lanes],
        extra=settings_summary(worker.ctx.settings),
    )


async def _follow(worker: Worker, stop: asyncio.Event) -> None:
    from solver.chain.events.source import LogSource
    from solver.quotes.follower import EventFollower

    ctx = worker.ctx
    source = LogSource.connect(ctx.settings.chain.rpc_urls[0])
    worker.closers.append(source)
    follower = EventFollower("symmio", source, ctx.chain, ctx.sessions, ctx.settings, clock=ctx.clock)
    if worker.heartbeats is not None:
        follower.beat = worker.heartbeats.beat
    await follower.run(stop)


def main(settings: Settings, *, only_lanes: Sequence[int] | None = None) -> int:
    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        worker = await build_worker(settings, only_lanes=only_lanes)
        announce(worker)
        await run_worker(worker, stop)

    asyncio.run(_main())
    return 0
