"""What the strategy loop does to one order or sub-order, each in one database transaction
(trading-rules.md §3). The loop (solver.strategy.strategy_engine) decides when; this says how.

- `decide`: lock the order row (`SELECT … FOR UPDATE`, as the API's cancel does), ask the rules
  on a fresh mark, then finish the order or write a `sending` sub-order with its counters (its
  margin leaves `current_input_amount`, it consumes an invocation).
- `submit`: hand a `sending` sub-order to the instant open service (the same gate, temp ids and
  outbox as a trader's own open) under the Idempotency-Key `strategy:{order}:{invocation}`, in
  one transaction holding an advisory lock on the sub-order, and record the answer in it.
- `settle_one`: a sub-order whose instant open ended is counted opened or failed.
- `cut_off`: sub-orders a crash left `sending`, to submit again (the same key returns the open
  already stored, never a second one).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from solver.core.clock import Clock
from solver.core.errors import ErrorCode, SolverError
from solver.db.engine import SessionFactory, session_scope
from solver.db.models import (
    INSTANT_OPEN_TERMINAL,
    STRATEGY_LIVE,
    InstantOpen,
    InstantOpenStatus,
    Quote,
    StrategyOrder,
    StrategyStatus,
    StrategySubOrder,
    SubOrderStatus,
)
from solver.market.marks import MarkPrices
from solver.quotes.schemas import InstantOpenBody
from solver.settings import Settings
from solver.strategy import notes, rules
from solver.strategy.suborders import apply_progress, market_of, open_body, progress_of, terms_of, unix

RESEND_AFTER = timedelta(seconds=5)  # a `sending` sub-order this old was cut off by a crash
SUBMIT_LOCK = 0x5354  # advisory lock namespace of sub-order submissions ("ST")
# Refusals that end the order rather than consume a retry (trading-rules.md §3).
SYSTEM_CANCEL = {
    ErrorCode.NOT_DELEGATED: "The account no longer delegates opening positions to the solver.",
    ErrorCode.REDUCE_ONLY: "The account is flagged for liquidation.",
    ErrorCode.SYMBOL_NOT_TRADABLE: "The symbol is no longer open for trading.",
}


class Opens(Protocol):
    async def open(self, account: str, body: InstantOpenBody, key: str | None) -> InstantOpen: ...


class StrategyActions:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: SessionFactory,
        opens: Opens,
        marks: MarkPrices,
        clock: Clock,
        stats: Counter[str],
    ) -> None:
        self._settings = settings
        self._symbols = {s.symbol_id: s for s in settings.symbols}
        self._sessions = sessions
        self.opens = opens
        self._marks = marks
        self._clock = clock
        self.stats = stats

    async def decide(self, order_id: int, cancel_reason: str | None) -> tuple[int | None, StrategyOrder | None]:
        now = self._clock.now()
        async with session_scope(self._sessions) as s:
            row = await _locked(s, order_id)
            if row is None or row.status not in STRATEGY_LIVE:
                return None, row
            sym = self._symbols.get(row.symbol_id)
            if cancel_reason is None and (sym is None or not sym.is_valid or not sym.rfq_allowed):
                cancel_reason = SYSTEM_CANCEL[ErrorCode.SYMBOL_NOT_TRADABLE]
            if cancel_reason is not None:
                if row.status == StrategyStatus.ACTIVE and row.active_transactions == 0:
                    await self._finish(s, row, rules.Finish(StrategyStatus.CANCELLED_BY_SYSTEM, cancel_reason), now)
                return None, row
            assert sym is not None
            point = (await self._marks.latest([sym])).get(sym.name)
            mark = point.price if point is not None and self._marks.is_fresh(point) else None
            decision = rules.decide(terms_of(row), progress_of(row), market_of(sym), mark, _ts(now))
            if isinstance(decision, rules.Finish):
                await self._finish(s, row, decision, now)
                return None, row
            if isinstance(decision, rules.Wait):
                self.stats[f"wait:{decision.reason}"] += 1
                return None, row
            assert mark is not None and row.id is not None
            invocation = row.invocations_executed + 1
            deadline = int(self._clock.time()) + self._settings.strategy.suborder_deadline_s
            sub = StrategySubOrder(
                order_id=row.id,
                invocation=invocation,
                slots=decision.sizing.slots,
                margin=decision.sizing.margin,
                quantity=decision.sizing.quantity,
                price=decision.price,
                mark=mark,
                body=open_body(
                    row,
                    sym,
                    price=decision.price,
                    sizing=decision.sizing,
                    market_order=decision.market_order,
                    deadline=deadline,
                ),
                idempotency_key=f"strategy:{row.id}:{invocation}",
                create_time=now,
                modify_time=now,
            )
            s.add(sub)
            apply_progress(row, rules.sent(progress_of(row), decision.sizing))
            _touch(row, now)
            s.add(row)
            await s.flush()
            self.stats["sent"] += 1
            return sub.id, row

    async def submit(self, sub_id: int) -> StrategyOrder | None:
        """Hand a `sending` sub-order to the instant open flow and record the answer.

        The whole call runs in one transaction holding a transaction-level advisory lock on the
        sub-order: a second submitter (another engine re-sending what looks cut off) skips it,
        and a crash releases it with the connection. The answer is recorded in that same
        transaction, so a sub-order is never failed after its open was stored, or the reverse.
        """
        async with session_scope(self._sessions) as s:
            got = (await s.exec(select(func.pg_try_advisory_xact_lock(SUBMIT_LOCK, sub_id % 2**31)))).one()
            if not got:
                self.stats["submit_busy"] += 1
                return None
            sub = await s.get(StrategySubOrder, sub_id, populate_existing=True)
            order = None if sub is None else await s.get(StrategyOrder, sub.order_id)
            if sub is None or order is None or sub.status != SubOrderStatus.SENDING:
                return order
            account, order_id = order.account, sub.order_id
            try:
                opened = await self.opens.open(account, InstantOpenBody.model_validate(sub.body), sub.idempotency_key)
            except SolverError as e:
                refusal: SolverError | None = e
            else:
                refusal = None
            now = self._clock.now()
            order = await _locked(s, order_id)
            sub = await s.get(StrategySubOrder, sub_id, with_for_update=True, populate_existing=True)
            assert order is not None and sub is not None
            if sub.status != SubOrderStatus.SENDING:
                return order
            if refusal is not None:
                await self._settle_failed(s, order, sub, code=refusal.code.code, message=refusal.message, now=now)
                reason = SYSTEM_CANCEL.get(refusal.code)
                if reason and order.status == StrategyStatus.ACTIVE and order.active_transactions == 0:
                    await self._finish(s, order, rules.Finish(StrategyStatus.CANCELLED_BY_SYSTEM, reason), now)
                return order
            sub.status = SubOrderStatus.SENT
            sub.instant_open_id = opened.id
            sub.modify_time = now
            sub.version += 1
            s.add(sub)
            await notes.suborder(s, self._settings, order, sub, "sent", now=now, temp_quote_id=opened.temp_quote_id)
            return order

    async def _settle_failed(
        self,
        s: AsyncSession,
        order: StrategyOrder,
        sub: StrategySubOrder,
        *,
        code: int | None,
        message: str | None,
        now: datetime,
    ) -> None:
        sub.status = SubOrderStatus.FAILED
        sub.error_code = code
        sub.error_message = message
        sub.modify_time = now
        sub.version += 1
        s.add(sub)
        apply_progress(order, rules.failed(progress_of(order), margin=sub.margin, now=_ts(now)))
        order.error_code = code
        order.error_message = message
        _touch(order, now)
        s.add(order)
        await notes.suborder(s, self._settings, order, sub, "failed", now=now)
        self.stats["failed"] += 1
        await self._finish_if_done(s, order, now)

    async def _finish_if_done(self, s: AsyncSession, order: StrategyOrder, now: datetime) -> None:
        sym = self._symbols.get(order.symbol_id)
        if sym is None:
            return
        decision = rules.decide(terms_of(order), progress_of(order), market_of(sym), None, _ts(now))
        if isinstance(decision, rules.Finish):
            await self._finish(s, order, decision, now)

    async def _finish(self, s: AsyncSession, order: StrategyOrder, fin: rules.Finish, now: datetime) -> None:
        order.status = fin.status
        order.status_reason = fin.reason
        order.close_time = now
        _touch(order, now)
        s.add(order)
        await s.flush()
        await notes.status_changed(s, self._settings, order, now=now)
        self.stats[f"finished:{fin.status.value}"] += 1

    # --- settlement ---

    async def ended(self) -> list[int]:
        """Ids of sub-orders whose instant open ended (oldest first)."""
        async with self._sessions() as s:
            stmt = (
                select(StrategySubOrder.id)
                .join(InstantOpen, col(InstantOpen.id) == col(StrategySubOrder.instant_open_id))
                .where(
                    col(StrategySubOrder.status) == SubOrderStatus.SENT,
                    col(InstantOpen.status).in_(INSTANT_OPEN_TERMINAL),
                )
                .order_by(col(StrategySubOrder.id))
                .limit(500)
            )
            return [i for i in (await s.exec(stmt)).all() if i is not None]

    async def settle_one(self, sub_id: int) -> StrategyOrder | None:
        now = self._clock.now()
        async with session_scope(self._sessions) as s:
            sub = await s.get(StrategySubOrder, sub_id)
            if sub is None:
                return None
            order = await _locked(s, sub.order_id)
            sub = await s.get(StrategySubOrder, sub_id, with_for_update=True, populate_existing=True)
            assert order is not None and sub is not None and sub.instant_open_id is not None
            if sub.status != SubOrderStatus.SENT:
                return order
            io = await s.get(InstantOpen, sub.instant_open_id)
            assert io is not None
            if io.status == InstantOpenStatus.OPENED:
                quote = None if io.quote_id is None else await s.get(Quote, io.quote_id)
                sub.status = SubOrderStatus.OPENED
                sub.quote_id = io.quote_id
                sub.modify_time = now
                sub.version += 1
                s.add(sub)
                filled = quote.quantity if quote is not None else io.quantity
                apply_progress(
                    order,
                    rules.opened(
                        terms_of(order),
                        progress_of(order),
                        slots=sub.slots,
                        quantity=filled,
                        sent_at=_ts(sub.create_time),
                    ),
                )
                _touch(order, now)
                s.add(order)
                await notes.suborder(
                    s,
                    self._settings,
                    order,
                    sub,
                    "opened",
                    now=now,
                    temp_quote_id=io.temp_quote_id,
                    filled=filled,
                    avg_price=None if quote is None else quote.opened_price,
                )
                self.stats["opened"] += 1
                await self._finish_if_done(s, order, now)
            else:
                await self._settle_failed(
                    s, order, sub, code=io.error_code, message=io.error_message or io.status.value, now=now
                )
            return order

    async def cut_off(self) -> list[tuple[int, int]]:
        """(sub-order id, order id) of sub-orders left `sending` longer than RESEND_AFTER."""
        async with self._sessions() as s:
            cutoff = await _db_now(s) - RESEND_AFTER
            stmt = select(StrategySubOrder.id, StrategySubOrder.order_id).where(
                col(StrategySubOrder.status) == SubOrderStatus.SENDING, col(StrategySubOrder.modify_time) < cutoff
            )
            return [(sub_id, order_id) for sub_id, order_id in (await s.exec(stmt)).all() if sub_id is not None]

    async def read(self, order_id: int) -> StrategyOrder | None:
        async with self._sessions() as s:
            return await s.get(StrategyOrder, order_id)


# --- helpers -------------------------------------------------------------------------------


async def _locked(s: AsyncSession, order_id: int) -> StrategyOrder | None:
    return await s.get(StrategyOrder, order_id, with_for_update=True, populate_existing=True)


def _touch(row: StrategyOrder, now: datetime) -> None:
    row.modify_time = now
    row.version += 1


def _ts(dt: datetime) -> Decimal:
    value = unix(dt)
    assert value is not None
    return value


async def _db_now(s: AsyncSession) -> datetime:
    value = (await s.exec(select(func.now()))).one()
    assert isinstance(value, datetime)
    return value
