"""Strategy order use cases of the API (http-api.md §5, trading-rules.md §3).

The API only stores: it checks a request (solver.strategy.validation, pure) and inserts the
order with its `created` notification in one transaction. The engine (the strategy loop) sends
the sub-orders; a DCA order is stored due at once, so its first sub-order goes on the engine's
next pass. A cancel is decided under the order's row lock, the lock the engine takes to send a
sub-order: with nothing in flight the order ends `cancelled_by_user` at once, else it becomes
`requested_cancellation` and the engine ends it when its sub-orders settle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from solver.auth.jwt import Principal
from solver.core.clock import Clock
from solver.core.errors import ErrorCode, SolverError
from solver.db.engine import SessionFactory, session_scope
from solver.db.models import STRATEGY_TERMINAL, StrategyOrder, StrategyStatus
from solver.db.types import checksum_address
from solver.market.locked_params import Violation
from solver.notify.ordering import request_stamp
from solver.quotes.service import check_replay, parse_id, request_hash
from solver.settings import Settings
from solver.strategy import notes
from solver.strategy import repository as repo
from solver.strategy.schemas import StrategyOrderItem, items
from solver.strategy.validation import check_list_query, check_order


def _reject(violations: tuple[Violation, ...]) -> SolverError:
    """The first violation answers (its code and sentence); error_detail lists them all."""
    first = violations[0]
    return SolverError(first.code, first.message, [v.message for v in violations])


class StrategyOrderService:
    def __init__(self, *, settings: Settings, sessions: SessionFactory, clock: Clock) -> None:
        self._settings = settings
        self._sessions = sessions
        self._clock = clock

    # --- POST /strategy-orders -------------------------------------------------------------------

    async def create(self, principal: Principal, raw: Mapping[str, Any], key: str | None) -> StrategyOrderItem:
        """Check and store a new order; a replay (same Idempotency-Key and body) answers the stored
        order as it is now, another body under the same key is a 409."""
        account = checksum_address(principal.account)
        checked = check_order(raw, self._settings.symbol)
        if checked.request is None:
            raise _reject(checked.violations)
        req = checked.request
        digest = request_hash(req.fingerprint())
        if key is not None:
            async with self._sessions() as s:
                stored = await repo.by_idempotency_key(s, account, key)
                if stored is not None:
                    check_replay(stored.request_hash, digest)
                    return await self._item(s, stored)
        now = self._clock.now()
        async with session_scope(self._sessions) as s:
            if key is not None:
                await repo.lock_account(s, account)
                stored = await repo.by_idempotency_key(s, account, key)
                if stored is not None:
                    check_replay(stored.request_hash, digest)
                    return await self._item(s, stored)
            row = await repo.insert(
                s,
                req,
                account=account,
                now=now,
                idempotency_key=key,
                request_hash=digest if key is not None else None,
            )
            await notes.created(s, self._settings, row, now=request_stamp(now))
            return StrategyOrderItem.of(row, self._name(row.symbol_id))

    # --- GET /strategy-orders/{id}, GET /strategy-orders -----------------------------------------

    async def get(self, principal: Principal, raw_id: str) -> StrategyOrderItem:
        order_id = _order_id(raw_id)
        async with self._sessions() as s:
            row = await repo.get(s, order_id, principal.account)
            if row is None:
                raise _not_found(order_id)
            return await self._item(s, row)

    async def of_account(
        self,
        principal: Principal,
        *,
        type: str | None,
        include_finished: str | None,
        size: str | None,
        before_id: str | None,
    ) -> list[StrategyOrderItem]:
        checked = check_list_query(type, include_finished, size, before_id)
        if checked.query is None:
            raise _reject(checked.violations)
        async with self._sessions() as s:
            rows = await repo.page(s, principal.account, checked.query)
            subs = await repo.suborders_of(s, [r.id for r in rows if r.id is not None])
        return items(rows, self._names(), subs)

    # --- DELETE /strategy-orders/{id} ------------------------------------------------------------

    async def cancel(self, principal: Principal, raw_id: str) -> StrategyOrderItem:
        order_id = _order_id(raw_id)
        now = self._clock.now()
        async with session_scope(self._sessions) as s:
            row = await repo.get(s, order_id, principal.account, lock=True)
            if row is None:
                raise _not_found(order_id)
            if row.status in STRATEGY_TERMINAL:
                raise SolverError(
                    ErrorCode.STRATEGY_ALREADY_CLOSED,
                    f"Strategy order {order_id} has already ended ({StrategyStatus(row.status).value}): "
                    "there is nothing to cancel.",
                )
            if row.status == StrategyStatus.ACTIVE:
                if row.active_transactions == 0:
                    await repo.set_status(s, row, StrategyStatus.CANCELLED_BY_USER, now=now, close=True)
                else:
                    await repo.set_status(s, row, StrategyStatus.REQUESTED_CANCELLATION, now=now)
                await notes.status_changed(s, self._settings, row, now=request_stamp(now))
            # REQUESTED_CANCELLATION: already asked; the answer is the order as it is.
            return await self._item(s, row)

    # --- helpers ---------------------------------------------------------------------------------

    async def _item(self, s: AsyncSession, row: StrategyOrder) -> StrategyOrderItem:
        assert row.id is not None
        subs = await repo.suborders_of(s, [row.id])
        return StrategyOrderItem.of(row, self._name(row.symbol_id), subs[row.id])

    def _name(self, symbol_id: int) -> str | None:
        sym = self._settings.symbol(symbol_id)
        return None if sym is None else sym.name

    def _names(self) -> dict[int, str]:
        return {s.symbol_id: s.name for s in self._settings.symbols}


def _order_id(raw: str) -> int:
    return parse_id(raw, "strategy order id", ErrorCode.STRATEGY_NOT_FOUND, positive=True)


def _not_found(order_id: int) -> SolverError:
    return SolverError(ErrorCode.STRATEGY_NOT_FOUND, f"No strategy order {order_id} exists for your account.")
