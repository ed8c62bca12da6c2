"""What the worker does for each kind of intent: plan the transaction, then settle its outcome.

A step's `plan` reads the request and the chain, fetches oracle signatures just before use and
pre-flights the call; it returns a Plan for the lane to sign and send, or None when it settled
the intent without a transaction (refused by the pre-flight, obsolete, price moved). `settle`
applies a mined (or reverted) transaction's effects inside the lane's DB transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from solver.chain.calls import Calls
from solver.chain.errors import Revert
from solver.chain.reader import ChainReader
from solver.chain.tx.node import Receipt, TxNode
from solver.chain.types import OnChainQuote
from solver.core.clock import Clock
from solver.core.errors import ErrorCode
from solver.db import audit
from solver.db.engine import SessionFactory
from solver.db.models import ActionStatus, InstantOpen, IntentKind, IntentStatus, TxIntent
from solver.notify import repository as notify
from solver.notify.ordering import chain_stamp
from solver.oracle.client import OracleClient
from solver.quotes import outbox, outbox_worker
from solver.settings import Settings, SymbolConfig

log = logging.getLogger("solver.worker")

Claim = Callable[[AsyncSession, datetime], Awaitable[bool]]
R = TypeVar("R")


@dataclass
class Plan:
    intents: list[TxIntent]  # carried by the transaction, in calldata order
    to: str
    data: str
    gas_limit: int
    # State changes made in the claim transaction (e.g. PENDING -> SENT); False aborts the claim.
    claim: Claim | None = None
    note: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """A settled transaction as a step sees it: a receipt with status 1, or a failure reason."""

    receipt: Receipt | None
    code: ErrorCode | None = None
    message: str | None = None
    block_time: int | None = None

    @property
    def ok(self) -> bool:
        return self.receipt is not None and self.receipt.status == 1

    @property
    def at(self) -> datetime | None:
        """When it happened, in the chain's time domain (solver.notify.ordering): just after the
        transaction's last log, so a report follows the events it reports on."""
        r = self.receipt
        if r is None or self.block_time is None:
            return None
        last = max((lg.log_index for lg in r.logs), default=-1)
        return chain_stamp(self.block_time, r.block_number, last + 1)


@dataclass
class StepContext:
    settings: Settings
    calls: Calls
    node: TxNode
    chain: ChainReader
    oracle: OracleClient
    sessions: SessionFactory
    clock: Clock

    def now(self) -> datetime:
        return self.clock.now()

    def symbol(self, symbol_id: int) -> SymbolConfig:
        sym = self.settings.symbol(symbol_id)
        if sym is None:
            raise LookupError(f"symbol {symbol_id} is not configured")
        return sym

    def lane_of(self, account: str) -> int:
        return outbox.lane_for(account, len(self.settings.chain.lanes))

    async def preflight(self, sender: str, to: str, data: str) -> int:
        """Gas for the call with the configured margin; Revert if it would fail."""
        gas = await self.node.estimate_gas(sender, to, data)
        return int(gas * self.settings.worker.gas_multiplier)


class Step(Protocol):
    async def plan(self, ctx: StepContext, lane_address: str, intents: list[TxIntent]) -> Plan | None: ...

    async def settle(self, ctx: StepContext, session: AsyncSession, intent: TxIntent, outcome: Outcome) -> None: ...


class AcceptStep(Generic[R]):
    """PartyB's answer to a user's cancel (acceptCancelRequest / acceptCancelCloseRequest).

    If the pre-flight refuses it, the request already ended some other way: settle the request
    from the quote's state on chain. The open and close flows differ only in the calldata, how
    their request row is loaded and how a quote state settles it.
    """

    def __init__(
        self,
        calldata: Callable[[Calls, int], str],
        load: Callable[[AsyncSession, TxIntent], Awaitable[R]],
        resolve: Callable[[StepContext, AsyncSession, R, OnChainQuote | None, TxIntent], Awaitable[bool]],
    ) -> None:
        self._calldata = calldata
        self._load = load
        self._resolve = resolve

    async def plan(self, ctx: StepContext, lane_address: str, intents: list[TxIntent]) -> Plan | None:
        (intent,) = intents
        assert intent.quote_id is not None
        data = self._calldata(ctx.calls, intent.quote_id)
        try:
            gas = await ctx.preflight(lane_address, ctx.calls.symmio, data)
        except Revert:
            q = await ctx.chain.quote(intent.quote_id)
            async with ctx.sessions() as session:
                row = await self._load(session, intent)
                await finish(ctx, session, intent, IntentStatus.DONE)
                await self._resolve(ctx, session, row, q, intent)
                await session.commit()
            return None
        return Plan(intents=[intent], to=ctx.calls.symmio, data=data, gas_limit=gas)

    async def settle(self, ctx: StepContext, session: AsyncSession, intent: TxIntent, outcome: Outcome) -> None:
        row = await self._load(session, intent)
        await finish(ctx, session, intent, IntentStatus.DONE if outcome.ok else IntentStatus.FAILED)
        assert intent.quote_id is not None
        await self._resolve(ctx, session, row, await ctx.chain.quote(intent.quote_id), intent)


# --- helpers shared by the open and close steps -------------------------------------------------


async def finish(
    ctx: StepContext,
    session: AsyncSession,
    intent: TxIntent,
    status: IntentStatus,
    *,
    code: ErrorCode | None = None,
    message: str | None = None,
) -> None:
    assert intent.id is not None
    await outbox_worker.finish_intent(
        session,
        intent.id,
        status,
        now=ctx.now(),
        error_code=code.code if code else None,
        error_message=message,
    )


async def follow_up(
    ctx: StepContext,
    session: AsyncSession,
    intent: TxIntent,
    kind: IntentKind,
    step: str,
    *,
    payload: dict[str, Any] | None = None,
    quote_id: int | None = None,
) -> TxIntent:
    """Enqueue the next step of the same request (idempotent by key)."""
    entity, entity_id = (
        ("open", intent.instant_open_id) if intent.instant_open_id is not None else ("close", intent.instant_close_id)
    )
    assert entity_id is not None
    return await outbox.enqueue(
        session,
        key=outbox.intent_key(entity, entity_id, step),
        kind=kind,
        account=intent.account,
        lane=intent.lane,
        now=ctx.now(),
        instant_open_id=intent.instant_open_id,
        instant_close_id=intent.instant_close_id,
        quote_id=quote_id if quote_id is not None else intent.quote_id,
        payload=payload,
    )


def reason_payload(code: ErrorCode, message: str) -> dict[str, Any]:
    return {"code": code.code, "message": message}


def payload_reason(intent: TxIntent) -> tuple[ErrorCode, str] | None:
    code = intent.payload.get("code") if intent.payload else None
    if code is None:
        return None
    found = ErrorCode.by_code(int(code))
    return (found or ErrorCode.TX_REVERTED, str(intent.payload.get("message") or ""))


async def set_open_quote_id(session: AsyncSession, row: InstantOpen, quote_id: int, now: datetime) -> None:
    """Record the on-chain id of an instant open (status unchanged), with its audit row."""
    await session.exec(
        update(InstantOpen)
        .where(col(InstantOpen.id) == row.id, col(InstantOpen.quote_id).is_(None))
        .values(quote_id=quote_id, modify_time=now, version=col(InstantOpen.version) + 1)
    )
    await audit.record(
        session,
        entity="instant_open",
        entity_id=str(row.id),
        from_status=row.status,
        to_status=row.status,
        actor="worker",
        data={"quote_id": quote_id},
        at=now,
    )


async def note(
    ctx: StepContext,
    session: AsyncSession,
    *,
    account: str,
    action: str,
    key: str,
    ok: bool,
    quote_id: int | None = None,
    temp_quote_id: int | None = None,
    code: ErrorCode | None = None,
    message: str | None = None,
    at: datetime | None = None,
    **fields: Any,
) -> None:
    await notify.add(
        session,
        notify.NewNotification(
            account=account,
            counterparty_address=ctx.settings.chain.lanes[ctx.lane_of(account)],
            last_seen_action=action,
            action_status=ActionStatus.SUCCESS if ok else ActionStatus.FAILED,
            event_key=key,
            quote_id=quote_id,
            temp_quote_id=temp_quote_id,
            failure_type=None if ok or code is None else code.name,
            failure_message=None if ok else message,
            error_code=None if ok or code is None else code.code,
            **fields,
        ),
        now=at or ctx.now(),
    )


def revert_code(exc: Revert) -> tuple[ErrorCode, str]:
    reason = exc.reason
    if "expired" in reason.lower() or "Low deadline" in reason:
        return ErrorCode.REQUEST_EXPIRED, f"The request expired on chain ({reason})."
    return ErrorCode.TX_REVERTED, f"The blockchain rejected the transaction: {reason}."
