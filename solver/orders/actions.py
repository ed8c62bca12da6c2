"""What the trigger engine writes: fire, retry, settle, arm and drop trigger orders.

Every write runs in one DB transaction under the position's advisory lock
(`repository.lock_quote`) with the order row locked, and re-checks the order's status there:
whatever two engine replicas, a restart or a repeated tick do, an order fires at most once. A
fire is one unit of work: `armed -> triggered`, the instant close row, its CLOSE_REQUEST outbox
intent (the chain worker runs it exactly as an API close), the sibling's one-cancels-other and
the notification all commit together or not at all.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from solver.chain.reader import ChainReader
from solver.chain.types import OnChainQuote, QuoteStatus
from solver.core.clock import Clock
from solver.core.errors import ErrorCode, SolverError
from solver.core.units import fmt, from_wei
from solver.db.engine import SessionFactory, session_scope
from solver.db.models import InstantClose, InstantCloseStatus, IntentKind, TriggerOrder, TriggerStatus
from solver.market.marks import MarkPrices
from solver.orders import notes
from solver.orders import repository as repo
from solver.orders.triggers import Trigger, close_price
from solver.quotes import repository as quotes_repo
from solver.quotes.outbox import enqueue, intent_key
from solver.settings import Settings

log = logging.getLogger("solver.orders")
T = TriggerStatus

NOT_YET_OPEN = frozenset({QuoteStatus.PENDING, QuoteStatus.LOCKED, QuoteStatus.CANCEL_PENDING})
CLOSING = frozenset({QuoteStatus.CLOSE_PENDING, QuoteStatus.CANCEL_CLOSE_PENDING})
NEVER_OPENED = frozenset({QuoteStatus.CANCELED, QuoteStatus.EXPIRED})
CLOSED_OTHERWISE = frozenset({QuoteStatus.CLOSED, QuoteStatus.LIQUIDATED, QuoteStatus.LIQUIDATED_PENDING})
ENDED = NEVER_OPENED | CLOSED_OTHERWISE


class Outcome(StrEnum):
    FIRED = "fired"  # armed -> triggered with its close
    GONE = "gone"  # no longer armed (cancelled, replaced, fired elsewhere): forget it
    DEFER = "defer"  # cannot fire now (chain unreadable, a close in progress): try again later
    ENDED = "ended"  # the position ended: its orders were cancelled


class TriggerActions:
    def __init__(
        self, *, settings: Settings, sessions: SessionFactory, chain: ChainReader, marks: MarkPrices, clock: Clock
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._chain = chain
        self._marks = marks
        self._clock = clock

    async def _quote(self, quote_id: int) -> tuple[bool, OnChainQuote | None]:
        """(read ok, quote); a node failure is (False, None) and the caller tries again later."""
        try:
            return True, await self._chain.quote(quote_id)
        except Exception:
            log.warning("trigger engine: chain read of quote %s failed", quote_id, exc_info=True)
            return False, None

    def _lane(self, q: OnChainQuote) -> int | None:
        lanes = [a.lower() for a in self._settings.chain.lanes]
        party_b = q.party_b.lower()
        return lanes.index(party_b) if party_b in lanes else None

    # --- fire ------------------------------------------------------------------------------

    async def fire(self, trig: Trigger, mark: Decimal) -> Outcome:
        """The mark (fresh, checked by the caller) crossed `trig`: close the whole position."""
        ok, q = await self._quote(trig.quote_id)
        if not ok:
            return Outcome.DEFER
        if q is None or q.status in ENDED:
            await self.end_position(trig.quote_id, q)
            return Outcome.ENDED
        if q.status != QuoteStatus.OPENED:
            return Outcome.DEFER  # a close of this position is in progress (or it is not open yet)
        lane = self._lane(q)
        sym = self._settings.symbol(trig.symbol_id)
        if lane is None or sym is None or q.open_quantity <= 0:
            log.error(
                "trigger %s: quote %s cannot be closed by this solver",
                trig.order_id,
                q.id,
                extra={"trigger_id": trig.order_id, "quote_id": q.id},
            )
            return Outcome.DEFER
        quantity = from_wei(q.open_quantity)
        price = close_price(mark, trig.position_type, self._settings.risk.close_slippage, sym.price_precision)
        now = self._clock.now()
        async with session_scope(self._sessions) as s:
            await repo.lock_quote(s, trig.quote_id)
            row = await repo.get(s, trig.order_id, lock=True)
            if row is None or row.status != T.ARMED:
                return Outcome.GONE
            close = await self._new_close(s, row, quantity, price)
            if close is None:
                return Outcome.DEFER  # the user's own close is in progress
            assert row.id is not None and close.id is not None
            moved = await repo.transition(
                s,
                row.id,
                T.ARMED,
                T.TRIGGERED,
                now=now,
                actor="engine",
                quantity=quantity,
                close_price=price,
                fire_mark=mark,
                fire_time=now,
                instant_close_id=close.id,
                attempts=1,
            )
            assert moved, f"trigger order {row.id} left armed under a row lock"
            await self._enqueue_close(s, row, close, lane)
            for sibling in await repo.active_of_quote(s, row.quote_id):
                if sibling.id != row.id and sibling.status in repo.PENDING_STATUSES:
                    await self._drop(s, sibling, "oco", f"The {_what(row.kind)} of this position fired.")
            await notes.add(s, self._settings, row, "triggered", now=now)
        log.info(
            "trigger %s fired: quote %s at mark %s, close %s",
            trig.order_id,
            trig.quote_id,
            mark,
            close.id,
            extra={
                "trigger_id": trig.order_id,
                "quote_id": trig.quote_id,
                "account": row.account,
                "instant_close_id": close.id,
                "lane": lane,
            },
        )
        return Outcome.FIRED

    async def _new_close(
        self, s: AsyncSession, row: TriggerOrder, quantity: Decimal, price: Decimal
    ) -> InstantClose | None:
        try:
            return await quotes_repo.insert_instant_close(
                s,
                quote_id=row.quote_id,
                account=row.account,
                quantity_to_close=quantity,
                close_price=price,
                deadline=int(self._clock.time()) + self._settings.worker.open_deadline_s,
                now=self._clock.now(),
                actor="engine",
            )
        except quotes_repo.CloseAlreadyPending:
            return None

    async def _enqueue_close(self, s: AsyncSession, row: TriggerOrder, close: InstantClose, lane: int) -> None:
        assert close.id is not None
        await enqueue(
            s,
            key=intent_key("close", close.id, "request"),
            kind=IntentKind.CLOSE_REQUEST,
            account=row.account,
            lane=lane,
            now=self._clock.now(),
            instant_close_id=close.id,
            quote_id=row.quote_id,
        )

    # --- after the fire --------------------------------------------------------------------

    async def settle(self, order_id: int) -> T | None:
        """A triggered order whose close ended: filled, retried, failed or cancelled. Returns the
        order's status afterwards, None when nothing could be decided yet."""
        async with self._sessions() as s:
            row = await repo.get(s, order_id)
            close = None
            if row is not None and row.instant_close_id is not None:
                close = await s.get(InstantClose, row.instant_close_id, populate_existing=True)
        if row is None or row.status != T.TRIGGERED or close is None:
            return None if row is None else row.status
        assert row.id is not None and close.id is not None
        if close.status == InstantCloseStatus.FILLED:
            await self._finish(row, close.id, T.FILLED, "filled", filled=close.quantity_to_close)
            return T.FILLED
        if close.status == InstantCloseStatus.CANCELLED:
            await self._finish(row, close.id, T.CANCELLED, "dropped", reason="close_cancelled",
                               message="The close the trigger sent was cancelled.")  # fmt: skip
            return T.CANCELLED
        if close.status != InstantCloseStatus.FAILED:
            return None  # still running
        ok, q = await self._quote(row.quote_id)
        if not ok or (q is not None and q.status not in ENDED and q.status != QuoteStatus.OPENED):
            return None
        if q is None or q.status in ENDED:
            await self._finish(row, close.id, T.CANCELLED, "dropped", reason="position_closed",
                               message=_ended_message(q))  # fmt: skip
            return T.CANCELLED
        code = ErrorCode.by_code(close.error_code or 0) or ErrorCode.TRIGGER_CLOSE_FAILED
        if row.attempts >= self._settings.triggers.max_close_attempts:
            message = f"The close failed {row.attempts} times; last: {close.error_message or code.message}"
            await self._finish(row, close.id, T.FAILED, "failed", code=code, message=message)
            return T.FAILED
        return await self._retry(row, close, q)

    async def _retry(self, row: TriggerOrder, old: InstantClose, q: OnChainQuote) -> T | None:
        sym = self._settings.symbol(row.symbol_id)
        lane = self._lane(q)
        if sym is None or lane is None:
            return None
        try:
            point = await self._marks.fresh(sym)
        except SolverError:
            return None  # no fresh price: wait for one, without using up an attempt
        quantity = from_wei(q.open_quantity)
        price = close_price(point.price, row.position_type, self._settings.risk.close_slippage, sym.price_precision)
        now = self._clock.now()
        assert row.id is not None and old.id is not None
        async with session_scope(self._sessions) as s:
            await repo.lock_quote(s, row.quote_id)
            current = await repo.get(s, row.id, lock=True)
            if current is None or current.status != T.TRIGGERED or current.instant_close_id != old.id:
                return None  # another engine settled it
            close = await self._new_close(s, current, quantity, price)
            if close is None:
                return None
            attempt = current.attempts + 1
            moved = await repo.transition(
                s,
                row.id,
                T.TRIGGERED,
                T.TRIGGERED,
                now=now,
                actor="engine",
                close_id=old.id,
                quantity=quantity,
                close_price=price,
                fire_mark=point.price,
                instant_close_id=close.id,
                attempts=attempt,
                error_code=old.error_code,
                error_message=old.error_message,
            )
            assert moved, f"trigger order {row.id} changed under a row lock"
            await self._enqueue_close(s, current, close, lane)
            await notes.add(s, self._settings, current, "triggered", now=now, key=f"triggered:{attempt}")
        log.info(
            "trigger %s: close attempt %s at mark %s",
            row.id,
            attempt,
            point.price,
            extra={
                "trigger_id": row.id,
                "quote_id": row.quote_id,
                "account": row.account,
                "instant_close_id": close.id,
            },
        )
        return T.TRIGGERED

    async def _finish(
        self,
        row: TriggerOrder,
        close_id: int,
        new: T,
        step: str,
        *,
        code: ErrorCode | None = None,
        message: str | None = None,
        reason: str | None = None,
        filled: Decimal | None = None,
    ) -> None:
        assert row.id is not None
        now = self._clock.now()
        fields: dict[str, Any] = {}
        if reason is not None:
            fields["end_reason"] = reason
        if code is not None:
            fields.update(error_code=code.code, error_message=message)
        async with session_scope(self._sessions) as s:
            await repo.lock_quote(s, row.quote_id)
            if await repo.transition(s, row.id, T.TRIGGERED, new, now=now, actor="engine", close_id=close_id, **fields):
                await notes.add(s, self._settings, row, step, now=now, code=code, message=message, filled=filled)

    # --- before the fire -------------------------------------------------------------------

    async def check_quote(self, quote_id: int) -> bool | None:
        """Reconcile a position's waiting/armed orders with the chain: arm the waiting ones once
        the quote is OPENED (True), cancel them all if it ended (False); None while it is not
        open yet or the chain cannot be read."""
        ok, q = await self._quote(quote_id)
        if not ok:
            return None
        if q is None or q.status in ENDED:
            await self.end_position(quote_id, q)
            return False
        if q.status in NOT_YET_OPEN:
            return None
        now = self._clock.now()
        async with session_scope(self._sessions) as s:
            await repo.lock_quote(s, quote_id)
            for row in await repo.active_of_quote(s, quote_id, lock=True):
                if row.status == T.WAITING:
                    assert row.id is not None
                    await repo.transition(s, row.id, T.WAITING, T.ARMED, now=now, actor="engine")
        return True

    async def end_position(self, quote_id: int, q: OnChainQuote | None) -> int:
        """The quote ended without this solver's trigger closing it: cancel its waiting and
        armed orders, with a notification. Returns how many were cancelled."""
        reason = "not_opened" if q is not None and q.status in NEVER_OPENED else "position_closed"
        message = _ended_message(q)
        n = 0
        async with session_scope(self._sessions) as s:
            await repo.lock_quote(s, quote_id)
            for row in await repo.active_of_quote(s, quote_id, lock=True):
                if row.status in repo.PENDING_STATUSES:
                    n += await self._drop(s, row, reason, message)
        return n

    async def _drop(self, s: AsyncSession, row: TriggerOrder, reason: str, message: str) -> int:
        assert row.id is not None
        now = self._clock.now()
        if not await repo.transition(
            s, row.id, repo.PENDING_STATUSES, T.CANCELLED, now=now, actor="engine", end_reason=reason,
            error_message=message,
        ):  # fmt: skip
            return 0
        await notes.add(s, self._settings, row, "dropped", now=now, code=ErrorCode.CANCELLED_BY_SOLVER, message=message)
        return 1


def _what(kind: str) -> str:
    return "stop loss" if kind == "stop_loss" else "take profit"


def _ended_message(q: OnChainQuote | None) -> str:
    if q is None:
        return "The quote no longer exists on chain."
    if q.status in NEVER_OPENED:
        return f"Quote {q.id} ended without opening ({QuoteStatus(q.status).name})."
    closed = f" at {fmt(from_wei(q.avg_closed_price))}" if q.status == QuoteStatus.CLOSED else ""
    return f"Position {q.id} was {QuoteStatus(q.status).name.lower().replace('_', ' ')}{closed} another way."
