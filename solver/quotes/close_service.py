"""POST /instant_close and DELETE /instant_close/{quote_id} (http-api.md §3, trading-rules.md §2b).

The quote is read from the chain (the truth; the mirror may lag): it must be this account's,
held with one of our PartyB lanes, and OPENED. The amounts are checked as the contract checks
them (wei integers, locked values scaled down field by field), so an accepted close does not
revert for a reason the API could have seen.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import Context, Decimal

from sqlmodel.ext.asyncio.session import AsyncSession

from solver.chain.reader import ChainReader
from solver.chain.types import LockedValues, OnChainQuote, QuoteStatus
from solver.core.clock import Clock
from solver.core.errors import ErrorCode, SolverError
from solver.core.units import fmt, from_wei, has_at_most_decimals, round_to_wei, to_wei
from solver.db.engine import SessionFactory, session_scope
from solver.db.models import ActionStatus, InstantClose, IntentKind, IntentStatus
from solver.db.models import InstantCloseStatus as C
from solver.devnet.deploy import DELEGATED_SIGNATURES, selector
from solver.market.marks import MarkPrices
from solver.notify import repository as notify
from solver.notify.ordering import request_stamp
from solver.quotes import queries
from solver.quotes import repository as repo
from solver.quotes.outbox import cancel_if_queued, enqueue, intent_key, intents_of_close
from solver.quotes.schemas import InstantCloseBody
from solver.quotes.service import chain_read, check_replay, parse_id, request_hash
from solver.settings import Settings, SymbolConfig

_CTX = Context(prec=120)
CLOSE_SELECTOR = selector(DELEGATED_SIGNATURES[2])  # requestToClosePosition
LONG = 0


class InstantCloseService:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: SessionFactory,
        chain: ChainReader,
        marks: MarkPrices,
        clock: Clock,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._chain = chain
        self._marks = marks
        self._clock = clock

    async def close(self, account: str, body: InstantCloseBody, key: str | None) -> InstantClose:
        """Check, persist (row + CLOSE_REQUEST intent + notification), return the stored row."""
        price = round_to_wei(body.close_price)
        deadline = body.deadline
        digest = request_hash(
            {"quote_id": body.quote_id, "qty": body.quantity_to_close, "price": price, "deadline": deadline}
        )
        if key is not None:
            async with self._sessions() as session:
                stored = await queries.close_by_idempotency_key(session, account, key)
            if stored is not None:
                check_replay(stored.request_hash, digest)
                return stored

        q = await chain_read(self._chain.quote(body.quote_id))
        lanes = [a.lower() for a in self._settings.chain.lanes]
        if q is None:
            raise SolverError(ErrorCode.QUOTE_NOT_FOUND, f"No position with quote id {body.quote_id} exists on chain.")
        if q.party_a.lower() != account.lower():
            raise SolverError(ErrorCode.NOT_YOUR_QUOTE, f"Quote {q.id} belongs to another account.")
        if q.status != QuoteStatus.OPENED:
            raise SolverError(
                ErrorCode.QUOTE_NOT_OPEN, f"Quote {q.id} is {_status_name(q.status)} on chain, not OPENED."
            )
        if q.party_b.lower() not in lanes:
            raise SolverError(ErrorCode.QUOTE_NOT_WITH_SOLVER, f"Quote {q.id} is not held with this solver.")
        sym = self._settings.symbol(q.symbol_id)
        if sym is None:
            raise SolverError(ErrorCode.UNKNOWN_SYMBOL, f"This solver does not trade symbol id {q.symbol_id}.")
        _check_quantity(sym, q, body.quantity_to_close)
        if price <= 0:
            raise SolverError(ErrorCode.VALIDATION, "close_price must be greater than zero.")
        now_s = int(self._clock.time())
        if deadline is None:
            deadline = now_s + self._settings.worker.open_deadline_s
        elif deadline <= now_s:
            raise SolverError(ErrorCode.DEADLINE_PASSED, f"The deadline {deadline} is not after now ({now_s}).")
        lane = lanes.index(q.party_b.lower())
        signer = self._settings.chain.lanes[lane]
        point, delegated = await asyncio.gather(
            self._marks.fresh(sym), chain_read(self._chain.is_delegated(account, signer, CLOSE_SELECTOR))
        )
        _check_price(sym, q.position_type, price, point.price)
        if not delegated:
            raise SolverError(ErrorCode.NOT_DELEGATED, "Delegate requestToClosePosition to the solver first.")

        now = self._clock.now()
        async with session_scope(self._sessions) as session:
            await queries.lock_account(session, account)
            if key is not None:
                stored = await queries.close_by_idempotency_key(session, account, key)
                if stored is not None:
                    check_replay(stored.request_hash, digest)
                    return stored
            try:
                row = await repo.insert_instant_close(
                    session,
                    quote_id=q.id,
                    account=account,
                    quantity_to_close=body.quantity_to_close,
                    close_price=price,
                    deadline=deadline,
                    now=now,
                    idempotency_key=key,
                    request_hash=digest if key is not None else None,
                )
            except repo.CloseAlreadyPending as exc:
                raise SolverError(ErrorCode.CLOSE_ALREADY_PENDING) from exc
            assert row.id is not None
            await enqueue(
                session,
                key=intent_key("close", row.id, "request"),
                kind=IntentKind.CLOSE_REQUEST,
                account=account,
                lane=lane,
                now=now,
                instant_close_id=row.id,
                quote_id=q.id,
            )
            await self._note(
                session,
                row,
                lane=lane,
                action="InstantRequestToClosePosition",
                status=ActionStatus.SEEN,
                step="accepted",
                now=now,
            )
        return row

    async def cancel(self, account: str, raw_quote_id: str) -> str:
        """Cancel the close in progress for a quote; the message for the 200 answer."""
        quote_id = parse_id(raw_quote_id, "quote id", ErrorCode.CLOSE_NOT_FOUND, positive=True)
        now = self._clock.now()
        async with session_scope(self._sessions) as session:
            row = await queries.active_close(session, quote_id, lock=True)
            if row is None:
                raise SolverError(ErrorCode.CLOSE_NOT_FOUND)
            if row.account != account:
                raise SolverError(ErrorCode.NOT_YOUR_QUOTE)
            assert row.id is not None
            intents = await intents_of_close(session, row.id)
            request = next((i for i in intents if i.kind == IntentKind.CLOSE_REQUEST), None)
            lane = request.lane if request is not None else 0
            if row.status == C.PENDING:
                if request is not None and not await cancel_if_queued(session, request.id or 0, now=now):
                    raise SolverError(ErrorCode.CANCEL_RETRY)
                await _move(session, row.id, C.PENDING, C.CANCELLED, now)
                await self._note(
                    session,
                    row,
                    lane=lane,
                    action="RequestToCancelCloseRequest",
                    status=ActionStatus.SUCCESS,
                    step="cancelled",
                    now=now,
                )
                return "The close request was cancelled before it reached the chain."
            if row.status == C.SENT:
                fills = [i for i in intents if i.kind == IntentKind.FILL_CLOSE]
                if any(i.status in (IntentStatus.IN_TX, IntentStatus.DONE) for i in fills):
                    raise SolverError(ErrorCode.CANCEL_TOO_LATE, "The solver is already filling this close.")
                for i in fills:
                    if i.status == IntentStatus.QUEUED:
                        await cancel_if_queued(session, i.id or 0, now=now)
                await _move(session, row.id, C.SENT, C.CANCEL_REQUESTED, now)
                await enqueue(
                    session,
                    key=intent_key("close", row.id, "cancel"),
                    kind=IntentKind.CANCEL_CLOSE,
                    account=account,
                    lane=lane,
                    now=now,
                    instant_close_id=row.id,
                    quote_id=row.quote_id,
                )
                await self._note(
                    session,
                    row,
                    lane=lane,
                    action="RequestToCancelCloseRequest",
                    status=ActionStatus.SEEN,
                    step="cancel_requested",
                    now=now,
                )
                return "Cancel requested: requestToCancelCloseRequest will be sent on chain."
            return "A cancel is already requested for this close."  # CANCEL_REQUESTED

    async def _note(
        self,
        session: AsyncSession,
        row: InstantClose,
        *,
        lane: int,
        action: str,
        status: ActionStatus,
        step: str,
        now: datetime,
    ) -> None:
        await notify.add(
            session,
            notify.NewNotification(
                account=row.account,
                counterparty_address=self._settings.chain.lanes[lane],
                last_seen_action=action,
                action_status=status,
                event_key=f"instant_close:{row.id}:{step}",
                quote_id=row.quote_id,
            ),
            now=request_stamp(now),
        )


async def _move(session: AsyncSession, row_id: int, old: C, new: C, now: datetime) -> None:
    # The row is locked FOR UPDATE: the compare-and-set cannot lose.
    if not await repo.transition_instant_close(session, row_id, old, new, now=now, actor="api"):
        raise AssertionError(f"instant close {row_id} left {old} under a row lock")


def _status_name(status: int) -> str:
    try:
        return QuoteStatus(status).name
    except ValueError:
        return str(status)


def _check_quantity(sym: SymbolConfig, q: OnChainQuote, qty: Decimal) -> None:
    """0 < qty ≤ open amount, at the market's precision; the remainder as the contract sees it."""
    open_wei = q.open_quantity
    if qty <= 0 or not has_at_most_decimals(qty, sym.quantity_precision) or to_wei(qty) > open_wei:
        raise SolverError(
            ErrorCode.CLOSE_QUANTITY_INVALID,
            f"quantity_to_close must be more than 0 and at most the open quantity {fmt(from_wei(open_wei))}, "
            f"with at most {sym.quantity_precision} decimals; got {fmt(qty)}.",
        )
    qty_wei = to_wei(qty)
    remaining = _remaining_total(q.locked, qty_wei, open_wei)
    minimum = to_wei(sym.min_acceptable_quote_value)
    if remaining != 0 and remaining < minimum:
        raise SolverError(
            ErrorCode.REMAINDER_TOO_SMALL,
            f"After this close {fmt(from_wei(remaining))} of margin would stay locked, below the minimum "
            f"{fmt(sym.min_acceptable_quote_value)} of {sym.name}: close all {fmt(from_wei(open_wei))} or less.",
        )


def _remaining_total(v: LockedValues, qty: int, open_amount: int) -> int:
    """cva + lf + partyAmm left after closing `qty` of `open_amount` (contract rounding)."""
    return sum(x - x * qty // open_amount for x in (v.cva, v.lf, v.party_amm))


def _check_price(sym: SymbolConfig, position_type: int, price: Decimal, mark: Decimal) -> None:
    """Within max_price_deviation of the mark, and fillable now (trading-rules.md §2b): a LONG
    closes at mark × (1 − fee) which must be ≥ the requested price, a SHORT at mark × (1 + fee)."""
    deviation = abs(_CTX.divide(_CTX.subtract(price, mark), mark))
    if deviation > sym.max_price_deviation:
        raise SolverError(
            ErrorCode.PRICE_OUT_OF_RANGE,
            f"The close price {fmt(price)} is more than {fmt(sym.max_price_deviation * 100)} % "
            f"from the mark price {fmt(mark)}.",
        )
    fee = sym.hedger_fee_close
    if position_type == LONG:
        fill = _CTX.multiply(mark, 1 - fee)
        if price > fill:
            raise SolverError(
                ErrorCode.PRICE_OUT_OF_RANGE, f"Closing a LONG now fills at {fmt(fill)} (mark − fee): ask at most that."
            )
    else:
        fill = _CTX.multiply(mark, 1 + fee)
        if price < fill:
            raise SolverError(
                ErrorCode.PRICE_OUT_OF_RANGE,
                f"Closing a SHORT now fills at {fmt(fill)} (mark + fee): accept at least that.",
            )
