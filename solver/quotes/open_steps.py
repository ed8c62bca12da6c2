"""Instant open on chain: sendQuote through the user's delegation, then lock-and-open as PartyB.

SEND_QUOTE (batch of one account's opens in one `_call`) -> receipt gives the quote ids ->
OPEN_QUOTE (lockAndOpenQuote at the fill price; ALLOCATE_FOR_PARTY_B first when the solver's
collateral for this partyA is short). A fill the price no longer allows, or a revert, ends in
CANCEL_QUOTE so the user's pending margin is released, and the open ends `failed` with why.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from solver.chain.calls import QuoteArgs, decode_locked_b, decode_uint, sent_quote_ids
from solver.chain.errors import Revert
from solver.chain.types import OnChainQuote, QuoteStatus
from solver.core.errors import ErrorCode
from solver.core.units import fmt, from_wei, to_wei
from solver.db.models import InstantOpen, InstantOpenStatus, IntentKind, IntentStatus, TxIntent
from solver.oracle.client import OracleError
from solver.quotes import repository as repo
from solver.quotes.steps import (
    AcceptStep,
    Outcome,
    Plan,
    StepContext,
    finish,
    follow_up,
    note,
    payload_reason,
    reason_payload,
    revert_code,
    set_open_quote_id,
)
from solver.risk.fills import open_fill_price

log = logging.getLogger("solver.worker")

S = InstantOpenStatus
_ON_CHAIN = (S.SENT, S.CANCEL_REQUESTED)


async def _row(session: AsyncSession, intent: TxIntent, *, lock: bool = False) -> InstantOpen:
    assert intent.instant_open_id is not None
    row = await session.get(InstantOpen, intent.instant_open_id, populate_existing=True, with_for_update=lock)
    assert row is not None, f"intent {intent.id} points at a missing instant open"
    return row


async def end_open(
    ctx: StepContext,
    session: AsyncSession,
    row: InstantOpen,
    new: InstantOpenStatus,
    *,
    code: ErrorCode | None = None,
    message: str | None = None,
    quote_id: int | None = None,
) -> bool:
    """Move an instant open to a terminal status from wherever it is, with its notification."""
    assert row.id is not None
    sources = [s for s in (S.PENDING, S.SENT, S.CANCEL_REQUESTED) if new in _targets(s)]
    fields: dict[str, Any] = {}
    if code is not None:
        fields.update(error_code=code.code, error_message=message or code.message)
    if quote_id is not None and row.quote_id is None:
        fields["quote_id"] = quote_id
    moved = await repo.transition_instant_open(session, row.id, sources, new, now=ctx.now(), actor="worker", **fields)
    if moved and new != S.OPENED:
        action = {S.CANCELLED: "RequestToCancelQuote", S.FAILED: "InstantOpenFailed"}[new]
        await note(
            ctx,
            session,
            account=row.account,
            action=action,
            key=f"instant_open:{row.id}:{new.value}",
            ok=new == S.CANCELLED,
            quote_id=row.quote_id or quote_id,
            temp_quote_id=row.temp_quote_id,
            code=code,
            message=message,
            order_type=row.order_type,
        )
    return moved


def _targets(status: InstantOpenStatus) -> frozenset[InstantOpenStatus]:
    from solver.quotes.fsm import OPEN_TRANSITIONS

    return OPEN_TRANSITIONS[status]


async def resolve_from_chain(
    ctx: StepContext, session: AsyncSession, row: InstantOpen, q: OnChainQuote | None, intent: TxIntent
) -> bool:
    """Settle an open whose quote reached a final state on chain; False if it has not."""
    reason = payload_reason(intent)
    if q is None:
        return False
    if q.status in (
        QuoteStatus.OPENED,
        QuoteStatus.CLOSE_PENDING,
        QuoteStatus.CANCEL_CLOSE_PENDING,
        QuoteStatus.CLOSED,
    ):
        return await end_open(ctx, session, row, S.OPENED, quote_id=q.id)
    if q.status == QuoteStatus.CANCELED:
        if reason is not None:
            return await end_open(ctx, session, row, S.FAILED, code=reason[0], message=reason[1])
        return await end_open(ctx, session, row, S.CANCELLED)
    if q.status == QuoteStatus.EXPIRED:
        return await end_open(ctx, session, row, S.FAILED, code=ErrorCode.REQUEST_EXPIRED, message=None)
    return False


class SendQuoteStep:
    async def plan(self, ctx: StepContext, lane_address: str, intents: list[TxIntent]) -> Plan | None:
        account = intents[0].account
        now_s = int(ctx.clock.time())
        keep: list[TxIntent] = []
        inner: list[str] = []
        async with ctx.sessions() as session:
            rows = [await _row(session, i) for i in intents]
            for intent, row in zip(intents, rows, strict=True):
                retry = row.status == S.SENT and row.quote_id is None  # its first send lost its nonce
                if row.status == S.CANCEL_REQUESTED and row.quote_id is None:
                    await finish(ctx, session, intent, IntentStatus.CANCELLED)
                    await end_open(ctx, session, row, S.CANCELLED)
                    continue
                if row.status != S.PENDING and not retry:
                    await finish(ctx, session, intent, IntentStatus.CANCELLED)
                    continue
                if row.deadline <= now_s:
                    await finish(ctx, session, intent, IntentStatus.FAILED, code=ErrorCode.REQUEST_EXPIRED)
                    await end_open(
                        ctx,
                        session,
                        row,
                        S.FAILED,
                        code=ErrorCode.REQUEST_EXPIRED,
                        message="The deadline passed before the request reached the chain.",
                    )
                    continue
                keep.append(intent)
            await session.commit()
        if not keep:
            return None
        rows_by_id = {}
        async with ctx.sessions() as session:
            for i in keep:
                rows_by_id[i.id] = await _row(session, i)
        sigs = {}
        try:
            for sid in sorted({rows_by_id[i.id].symbol_id for i in keep}):
                sigs[sid] = await ctx.oracle.party_a_upnl_and_price(party_a=account, symbol_id=sid)
        except OracleError as exc:
            if exc.refused:
                await self._fail_all(ctx, keep, ErrorCode.ORACLE_REFUSED, exc.message)
            else:
                log.warning("oracle unavailable for %s: %s; will retry", account, exc.message)
            return None
        for intent in keep:
            row = rows_by_id[intent.id]
            args = QuoteArgs(
                party_b_whitelist=[lane_address],
                symbol_id=row.symbol_id,
                position_type=row.position_type,
                order_type=row.order_type,
                price=to_wei(row.requested_open_price),
                quantity=to_wei(row.quantity),
                cva=to_wei(row.cva),
                lf=to_wei(row.lf),
                party_amm=to_wei(row.party_amm),
                party_bmm=to_wei(row.party_bmm),
                max_funding_rate=to_wei(row.max_funding_rate),
                deadline=row.deadline,
            )
            inner.append(ctx.calls.send_quote(args, sigs[row.symbol_id].as_tuple()))
        to = ctx.calls.multi_account
        data = ctx.calls.multi_call(account, inner)
        try:
            gas = await ctx.preflight(lane_address, to, data)
        except Revert as exc:
            if len(keep) == 1:
                code, message = revert_code(exc)
                await self._fail_all(ctx, keep, code, message)
                return None
            # One bad request must not block the others: send them one by one from now on.
            return await self.plan(ctx, lane_address, keep[:1])

        async def claim(session: AsyncSession, now: object) -> bool:
            for intent in keep:
                row = await _row(session, intent, lock=True)
                assert row.id is not None
                if row.status == S.SENT and row.quote_id is None:
                    continue  # a retry: already SENT by the first claim
                if not await repo.transition_instant_open(
                    session, row.id, S.PENDING, S.SENT, now=ctx.now(), actor="worker"
                ):
                    return False
            return True

        temp_ids = [rows_by_id[i.id].temp_quote_id for i in keep]  # log context of the send
        return Plan(intents=keep, to=to, data=data, gas_limit=gas, claim=claim, note={"temp_quote_ids": temp_ids})

    async def _fail_all(self, ctx: StepContext, intents: list[TxIntent], code: ErrorCode, message: str) -> None:
        async with ctx.sessions() as session:
            for intent in intents:
                row = await _row(session, intent, lock=True)
                await finish(ctx, session, intent, IntentStatus.FAILED, code=code, message=message)
                await end_open(ctx, session, row, S.FAILED, code=code, message=message)
            await session.commit()

    async def settle(self, ctx: StepContext, session: AsyncSession, intent: TxIntent, outcome: Outcome) -> None:
        row = await _row(session, intent, lock=True)
        if not outcome.ok:
            await finish(ctx, session, intent, IntentStatus.FAILED, code=outcome.code, message=outcome.message)
            await end_open(ctx, session, row, S.FAILED, code=outcome.code, message=outcome.message)
            return
        assert outcome.receipt is not None
        ids = sent_quote_ids(outcome.receipt.logs, symmio=ctx.calls.symmio, party_a=intent.account)
        position = intent.position_in_tx or 0
        if position >= len(ids):
            raise AssertionError(f"tx {outcome.receipt.tx_hash} has {len(ids)} SendQuote logs, need #{position}")
        quote_id = ids[position]
        await set_open_quote_id(session, row, quote_id, ctx.now())
        await finish(ctx, session, intent, IntentStatus.DONE)
        await note(
            ctx,
            session,
            account=row.account,
            action="SendQuoteTransaction",
            key=f"instant_open:{row.id}:sent",
            ok=True,
            at=outcome.at,
            quote_id=quote_id,
            temp_quote_id=row.temp_quote_id,
            order_type=row.order_type,
        )
        if row.status == S.CANCEL_REQUESTED:
            await follow_up(ctx, session, intent, IntentKind.CANCEL_QUOTE, "cancel", quote_id=quote_id)
        else:
            await follow_up(ctx, session, intent, IntentKind.OPEN_QUOTE, "open", quote_id=quote_id)


class OpenQuoteStep:
    """lockAndOpenQuote at the fill price, as PartyB."""

    async def plan(self, ctx: StepContext, lane_address: str, intents: list[TxIntent]) -> Plan | None:
        (intent,) = intents
        assert intent.quote_id is not None
        q = await ctx.chain.quote(intent.quote_id)
        async with ctx.sessions() as session:
            row = await _row(session, intent)
            if row.status != S.SENT or q is None or q.status != QuoteStatus.PENDING:
                await finish(ctx, session, intent, IntentStatus.CANCELLED)
                if not await resolve_from_chain(ctx, session, row, q, intent) and row.status == S.SENT:
                    await follow_up(
                        ctx,
                        session,
                        intent,
                        IntentKind.CANCEL_QUOTE,
                        "cancel",
                        payload=reason_payload(ErrorCode.TX_REVERTED, "The quote is not pending on chain."),
                    )
                await session.commit()
                return None
        sym = ctx.symbol(row.symbol_id)
        try:
            lock = await ctx.oracle.party_b_upnl(party_b=lane_address, party_a=row.account)
            pair = await ctx.oracle.pair_upnl_and_price(
                party_b=lane_address, party_a=row.account, symbol_id=row.symbol_id
            )
        except OracleError as exc:
            if exc.refused:
                await self._give_up(ctx, intent, ErrorCode.ORACLE_REFUSED, exc.message)
            return None
        mark = from_wei(pair.price)
        fill = open_fill_price(
            mark=mark,
            position_type=row.position_type,
            order_type=row.order_type,
            requested=row.requested_open_price,
            fee=sym.hedger_fee_open,
            precision=sym.price_precision,
        )
        if fill is None:
            await self._give_up(
                ctx,
                intent,
                ErrorCode.PRICE_MOVED,
                f"The mark moved to {fmt(mark)}, past your price {fmt(row.requested_open_price)}.",
            )
            return None
        short = await self._collateral_short(ctx, lane_address, q, lock.upnl)
        if short > 0:
            return await self._top_up(ctx, lane_address, intent, short)
        data = ctx.calls.lock_and_open(q.id, q.quantity, to_wei(fill), lock.as_tuple(), pair.as_tuple())
        try:
            gas = await ctx.preflight(lane_address, ctx.calls.symmio, data)
        except Revert as exc:
            code, message = revert_code(exc)
            await self._give_up(ctx, intent, code, message)
            return None
        return Plan(intents=[intent], to=ctx.calls.symmio, data=data, gas_limit=gas, note={"fill": str(fill)})

    async def _collateral_short(self, ctx: StepContext, party_b: str, q: OnChainQuote, upnl_b: int) -> int:
        alloc, locked, pending = ctx.calls.party_b_balance_calls(party_b, q.party_a)
        # One block for the three reads, read concurrently: a consistent balance, one round trip.
        block = await ctx.node.block_number()
        raw_alloc, raw_locked, raw_pending = await asyncio.gather(
            *(ctx.node.call(party_b, ctx.calls.symmio, data, block=block) for data in (alloc, locked, pending))
        )
        allocated = decode_uint(raw_alloc)
        used = decode_locked_b(raw_locked) + decode_locked_b(raw_pending)
        need = q.locked.cva + q.locked.lf + q.locked.party_bmm
        available = allocated + upnl_b - used
        return max(0, need - available)

    async def _top_up(self, ctx: StepContext, party_b: str, intent: TxIntent, short: int) -> Plan | None:
        amount = short + to_wei(ctx.settings.worker.solver_topup) + to_wei(Decimal(1))
        async with ctx.sessions() as session:
            alloc = await follow_up(
                ctx, session, intent, IntentKind.ALLOCATE_FOR_PARTY_B, "allocate", payload={"amount": str(amount)}
            )
            await session.commit()
        if alloc.status != IntentStatus.QUEUED:
            # Already topped up once for this open and still short: do not loop.
            await self._give_up(ctx, intent, ErrorCode.SOLVER_BALANCE_LOW, ErrorCode.SOLVER_BALANCE_LOW.message)
            return None
        data = ctx.calls.allocate_for_party_b(amount, intent.account)
        try:
            gas = await ctx.preflight(party_b, ctx.calls.symmio, data)
        except Revert as exc:
            log.error("allocateForPartyB of %s for %s would revert: %s", amount, intent.account, exc.reason)
            async with ctx.sessions() as session:
                await finish(
                    ctx, session, alloc, IntentStatus.FAILED, code=ErrorCode.SOLVER_BALANCE_LOW, message=exc.reason
                )
                await session.commit()
            await self._give_up(ctx, intent, ErrorCode.SOLVER_BALANCE_LOW, ErrorCode.SOLVER_BALANCE_LOW.message)
            return None
        return Plan(intents=[alloc], to=ctx.calls.symmio, data=data, gas_limit=gas)

    async def _give_up(self, ctx: StepContext, intent: TxIntent, code: ErrorCode, message: str) -> None:
        """Do not fill: cancel the quote on chain (releasing the user's margin), then fail."""
        async with ctx.sessions() as session:
            await finish(ctx, session, intent, IntentStatus.FAILED, code=code, message=message)
            await follow_up(
                ctx, session, intent, IntentKind.CANCEL_QUOTE, "cancel", payload=reason_payload(code, message)
            )
            await session.commit()

    async def settle(self, ctx: StepContext, session: AsyncSession, intent: TxIntent, outcome: Outcome) -> None:
        row = await _row(session, intent, lock=True)
        if outcome.ok:
            await finish(ctx, session, intent, IntentStatus.DONE)
            await end_open(ctx, session, row, S.OPENED)
            return
        code = outcome.code or ErrorCode.TX_REVERTED
        message = outcome.message or code.message
        await finish(ctx, session, intent, IntentStatus.FAILED, code=code, message=message)
        await follow_up(ctx, session, intent, IntentKind.CANCEL_QUOTE, "cancel", payload=reason_payload(code, message))


class AllocateStep:
    async def plan(self, ctx: StepContext, lane_address: str, intents: list[TxIntent]) -> Plan | None:
        (intent,) = intents
        amount = int(intent.payload["amount"])
        data = ctx.calls.allocate_for_party_b(amount, intent.account)
        try:
            gas = await ctx.preflight(lane_address, ctx.calls.symmio, data)
        except Revert as exc:
            async with ctx.sessions() as session:
                await finish(
                    ctx, session, intent, IntentStatus.FAILED, code=ErrorCode.SOLVER_BALANCE_LOW, message=exc.reason
                )
                await session.commit()
            return None
        return Plan(intents=[intent], to=ctx.calls.symmio, data=data, gas_limit=gas)

    async def settle(self, ctx: StepContext, session: AsyncSession, intent: TxIntent, outcome: Outcome) -> None:
        status = IntentStatus.DONE if outcome.ok else IntentStatus.FAILED
        await finish(ctx, session, intent, status, code=outcome.code, message=outcome.message)


class CancelQuoteStep:
    """requestToCancelQuote through the delegation (PENDING -> CANCELED; LOCKED -> CANCEL_PENDING)."""

    async def plan(self, ctx: StepContext, lane_address: str, intents: list[TxIntent]) -> Plan | None:
        (intent,) = intents
        assert intent.quote_id is not None
        q = await ctx.chain.quote(intent.quote_id)
        if q is not None and q.status in (QuoteStatus.PENDING, QuoteStatus.LOCKED):
            to = ctx.calls.multi_account
            data = ctx.calls.multi_call(intent.account, [ctx.calls.request_to_cancel_quote(q.id)])
            try:
                gas = await ctx.preflight(lane_address, to, data)
                return Plan(intents=[intent], to=to, data=data, gas_limit=gas)
            except Revert as exc:
                log.warning("cancel of quote %s would revert: %s", q.id, exc.reason)
                q = await ctx.chain.quote(intent.quote_id)
        async with ctx.sessions() as session:
            row = await _row(session, intent, lock=True)
            await finish(ctx, session, intent, IntentStatus.DONE)
            if q is not None and q.status == QuoteStatus.CANCEL_PENDING:
                await follow_up(ctx, session, intent, IntentKind.ACCEPT_CANCEL, "accept_cancel")
            elif not await resolve_from_chain(ctx, session, row, q, intent):
                log.error(
                    "instant open %s: quote %s in state %s cannot be cancelled",
                    row.id,
                    intent.quote_id,
                    None if q is None else q.status,
                )
            await session.commit()
        return None

    async def settle(self, ctx: StepContext, session: AsyncSession, intent: TxIntent, outcome: Outcome) -> None:
        row = await _row(session, intent, lock=True)
        await finish(
            ctx,
            session,
            intent,
            IntentStatus.DONE if outcome.ok else IntentStatus.FAILED,
            code=outcome.code,
            message=outcome.message,
        )
        assert intent.quote_id is not None
        q = await ctx.chain.quote(intent.quote_id)
        if q is not None and q.status == QuoteStatus.CANCEL_PENDING:
            await follow_up(ctx, session, intent, IntentKind.ACCEPT_CANCEL, "accept_cancel")
            return
        if not await resolve_from_chain(ctx, session, row, q, intent) and not outcome.ok:
            # The cancel failed and the quote is still pending: try again (same key is done, so a new step).
            await follow_up(
                ctx, session, intent, IntentKind.CANCEL_QUOTE, f"cancel-retry-{intent.id}", payload=intent.payload
            )


async def _locked_row(session: AsyncSession, intent: TxIntent) -> InstantOpen:
    return await _row(session, intent, lock=True)


AcceptCancelStep = AcceptStep(lambda calls, quote_id: calls.accept_cancel(quote_id), _locked_row, resolve_from_chain)
