"""Instant close on chain: requestToClosePosition through the delegation, then fillCloseRequest.

CLOSE_REQUEST -> FILL_CLOSE at the close fill price. A price that moved past the user's close
price or a revert ends in CANCEL_CLOSE (+ ACCEPT_CANCEL_CLOSE as PartyB), so the position is
back to OPENED and the close ends `failed` with why; a user cancel ends it `cancelled`.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from solver.chain.errors import Revert
from solver.chain.types import OnChainQuote, QuoteStatus
from solver.core.errors import ErrorCode
from solver.core.units import fmt, from_wei, to_wei
from solver.db.models import InstantClose, InstantCloseStatus, IntentKind, IntentStatus, TxIntent
from solver.oracle.client import OracleError
from solver.quotes import repository as repo
from solver.quotes.fsm import CLOSE_TRANSITIONS
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
)
from solver.risk.fills import close_fill_price

log = logging.getLogger("solver.worker")
C = InstantCloseStatus


async def _row(session: AsyncSession, intent: TxIntent, *, lock: bool = False) -> InstantClose:
    assert intent.instant_close_id is not None
    row = await session.get(InstantClose, intent.instant_close_id, populate_existing=True, with_for_update=lock)
    assert row is not None, f"intent {intent.id} points at a missing instant close"
    return row


async def end_close(
    ctx: StepContext,
    session: AsyncSession,
    row: InstantClose,
    new: InstantCloseStatus,
    *,
    code: ErrorCode | None = None,
    message: str | None = None,
    **extra: Any,
) -> bool:
    assert row.id is not None
    sources = [s for s in (C.PENDING, C.SENT, C.CANCEL_REQUESTED) if new in CLOSE_TRANSITIONS[s]]
    fields: dict[str, Any] = {}
    if code is not None:
        fields.update(error_code=code.code, error_message=message or code.message)
    moved = await repo.transition_instant_close(session, row.id, sources, new, now=ctx.now(), actor="worker", **fields)
    if moved:
        action = {C.FILLED: "FillOrderInstantClose", C.CANCELLED: "RequestToCancelCloseRequest"}.get(
            new, "FillOrderInstantClose"
        )
        await note(
            ctx,
            session,
            account=row.account,
            action=action,
            key=f"instant_close:{row.id}:{new.value}",
            ok=new != C.FAILED,
            quote_id=row.quote_id,
            code=code,
            message=message,
            **extra,
        )
    return moved


async def resolve_close(
    ctx: StepContext, session: AsyncSession, row: InstantClose, q: OnChainQuote | None, intent: TxIntent
) -> bool:
    """Settle a close from the quote's state on chain; False while it is still in progress."""
    if q is None:
        return await end_close(ctx, session, row, C.FAILED, code=ErrorCode.TX_REVERTED, message="Unknown quote.")
    if q.status == QuoteStatus.CLOSED:
        return await end_close(ctx, session, row, C.FILLED, avg_price_close=from_wei(q.avg_closed_price))
    if q.status == QuoteStatus.OPENED:
        reason = payload_reason(intent)
        if reason is not None:
            return await end_close(ctx, session, row, C.FAILED, code=reason[0], message=reason[1])
        if row.status == C.CANCEL_REQUESTED:
            return await end_close(ctx, session, row, C.CANCELLED)
        return await end_close(ctx, session, row, C.FAILED, code=ErrorCode.REQUEST_EXPIRED)
    if q.status in (QuoteStatus.LIQUIDATED, QuoteStatus.LIQUIDATED_PENDING):
        return await end_close(
            ctx, session, row, C.FAILED, code=ErrorCode.TX_REVERTED, message="The position was liquidated."
        )
    return False


class CloseRequestStep:
    async def plan(self, ctx: StepContext, lane_address: str, intents: list[TxIntent]) -> Plan | None:
        (intent,) = intents
        async with ctx.sessions() as session:
            row = await _row(session, intent)
        retry = row.status == C.SENT  # the first request lost its nonce (the fill step is not queued yet)
        if row.status != C.PENDING and not retry:
            async with ctx.sessions() as session:
                await finish(ctx, session, intent, IntentStatus.CANCELLED)
                if row.status == C.CANCEL_REQUESTED:
                    await end_close(ctx, session, await _row(session, intent, lock=True), C.CANCELLED)
                await session.commit()
            return None
        to = ctx.calls.multi_account
        inner = ctx.calls.request_to_close(
            row.quote_id, to_wei(row.close_price), to_wei(row.quantity_to_close), row.deadline
        )
        data = ctx.calls.multi_call(row.account, [inner])
        try:
            gas = await ctx.preflight(lane_address, to, data)
        except Revert as exc:
            code, message = revert_code(exc)
            async with ctx.sessions() as session:
                row = await _row(session, intent, lock=True)
                await finish(ctx, session, intent, IntentStatus.FAILED, code=code, message=message)
                await end_close(ctx, session, row, C.FAILED, code=code, message=message)
                await session.commit()
            return None

        async def claim(session: AsyncSession, now: object) -> bool:
            assert row.id is not None
            current = await _row(session, intent, lock=True)
            if retry:
                return current.status == C.SENT
            return await repo.transition_instant_close(
                session, row.id, C.PENDING, C.SENT, now=ctx.now(), actor="worker"
            )

        return Plan(intents=[intent], to=to, data=data, gas_limit=gas, claim=claim)

    async def settle(self, ctx: StepContext, session: AsyncSession, intent: TxIntent, outcome: Outcome) -> None:
        row = await _row(session, intent, lock=True)
        if not outcome.ok:
            await finish(ctx, session, intent, IntentStatus.FAILED, code=outcome.code, message=outcome.message)
            await end_close(ctx, session, row, C.FAILED, code=outcome.code, message=outcome.message)
            return
        await finish(ctx, session, intent, IntentStatus.DONE)
        if row.status == C.CANCEL_REQUESTED:
            await follow_up(ctx, session, intent, IntentKind.CANCEL_CLOSE, "cancel")
        else:
            await follow_up(ctx, session, intent, IntentKind.FILL_CLOSE, "fill")


class FillCloseStep:
    async def plan(self, ctx: StepContext, lane_address: str, intents: list[TxIntent]) -> Plan | None:
        (intent,) = intents
        assert intent.quote_id is not None
        q = await ctx.chain.quote(intent.quote_id)
        async with ctx.sessions() as session:
            row = await _row(session, intent)
        if row.status != C.SENT or q is None or q.status != QuoteStatus.CLOSE_PENDING:
            async with ctx.sessions() as session:
                row = await _row(session, intent, lock=True)
                await finish(ctx, session, intent, IntentStatus.CANCELLED)
                if not await resolve_close(ctx, session, row, q, intent):
                    log.warning("instant close %s: quote %s is %s", row.id, intent.quote_id, q and q.status)
                await session.commit()
            return None
        sym = ctx.symbol(q.symbol_id)
        try:
            pair = await ctx.oracle.pair_upnl_and_price(
                party_b=lane_address, party_a=row.account, symbol_id=q.symbol_id
            )
        except OracleError as exc:
            if exc.refused:
                await self._give_up(ctx, intent, ErrorCode.ORACLE_REFUSED, exc.message)
            return None
        mark = from_wei(pair.price)
        fill = close_fill_price(
            mark=mark,
            position_type=q.position_type,
            requested=from_wei(q.requested_close_price),
            fee=sym.hedger_fee_close,
            precision=sym.price_precision,
        )
        if fill is None:
            await self._give_up(
                ctx,
                intent,
                ErrorCode.PRICE_MOVED,
                f"The mark moved to {fmt(mark)}, past your close price {fmt(from_wei(q.requested_close_price))}.",
            )
            return None
        data = ctx.calls.fill_close(q.id, q.quantity_to_close, to_wei(fill), pair.as_tuple())
        try:
            gas = await ctx.preflight(lane_address, ctx.calls.symmio, data)
        except Revert as exc:
            code, message = revert_code(exc)
            await self._give_up(ctx, intent, code, message)
            return None
        return Plan(intents=[intent], to=ctx.calls.symmio, data=data, gas_limit=gas, note={"fill": str(fill)})

    async def _give_up(self, ctx: StepContext, intent: TxIntent, code: ErrorCode, message: str) -> None:
        async with ctx.sessions() as session:
            await finish(ctx, session, intent, IntentStatus.FAILED, code=code, message=message)
            await follow_up(
                ctx, session, intent, IntentKind.CANCEL_CLOSE, "cancel", payload=reason_payload(code, message)
            )
            await session.commit()

    async def settle(self, ctx: StepContext, session: AsyncSession, intent: TxIntent, outcome: Outcome) -> None:
        row = await _row(session, intent, lock=True)
        if outcome.ok:
            await finish(ctx, session, intent, IntentStatus.DONE)
            assert intent.quote_id is not None
            q = await ctx.chain.quote(intent.quote_id)
            await end_close(
                ctx,
                session,
                row,
                C.FILLED,
                at=outcome.at,
                filled_amount_close=row.quantity_to_close,
                avg_price_close=None if q is None else from_wei(q.avg_closed_price),
            )
            return
        code = outcome.code or ErrorCode.TX_REVERTED
        message = outcome.message or code.message
        await finish(ctx, session, intent, IntentStatus.FAILED, code=code, message=message)
        await follow_up(ctx, session, intent, IntentKind.CANCEL_CLOSE, "cancel", payload=reason_payload(code, message))


class CancelCloseStep:
    async def plan(self, ctx: StepContext, lane_address: str, intents: list[TxIntent]) -> Plan | None:
        (intent,) = intents
        assert intent.quote_id is not None
        q = await ctx.chain.quote(intent.quote_id)
        if q is not None and q.status == QuoteStatus.CLOSE_PENDING:
            to = ctx.calls.multi_account
            data = ctx.calls.multi_call(intent.account, [ctx.calls.request_to_cancel_close(q.id)])
            try:
                gas = await ctx.preflight(lane_address, to, data)
                return Plan(intents=[intent], to=to, data=data, gas_limit=gas)
            except Revert as exc:
                log.warning("cancel of close on quote %s would revert: %s", q.id, exc.reason)
                q = await ctx.chain.quote(intent.quote_id)
        async with ctx.sessions() as session:
            row = await _row(session, intent, lock=True)
            await finish(ctx, session, intent, IntentStatus.DONE)
            if q is not None and q.status == QuoteStatus.CANCEL_CLOSE_PENDING:
                await follow_up(
                    ctx, session, intent, IntentKind.ACCEPT_CANCEL_CLOSE, "accept_cancel", payload=intent.payload
                )
            else:
                await resolve_close(ctx, session, row, q, intent)
            await session.commit()
        return None

    async def settle(self, ctx: StepContext, session: AsyncSession, intent: TxIntent, outcome: Outcome) -> None:
        row = await _row(session, intent, lock=True)
        await finish(ctx, session, intent, IntentStatus.DONE if outcome.ok else IntentStatus.FAILED)
        assert intent.quote_id is not None
        q = await ctx.chain.quote(intent.quote_id)
        if q is not None and q.status == QuoteStatus.CANCEL_CLOSE_PENDING:
            await follow_up(
                ctx, session, intent, IntentKind.ACCEPT_CANCEL_CLOSE, "accept_cancel", payload=intent.payload
            )
        elif not await resolve_close(ctx, session, row, q, intent) and not outcome.ok:
            await follow_up(
                ctx, session, intent, IntentKind.CANCEL_CLOSE, f"cancel-retry-{intent.id}", payload=intent.payload
            )


async def _locked_row(session: AsyncSession, intent: TxIntent) -> InstantClose:
    return await _row(session, intent, lock=True)


AcceptCancelCloseStep = AcceptStep(
    lambda calls, quote_id: calls.accept_cancel_close(quote_id), _locked_row, resolve_close
)
