"""Stop loss / take profit use cases of the API (http-api.md §4, trading-rules.md §4).

The API checks the request against the chain (the quote is the truth: this account's,
PENDING/LOCKED/OPENED with one of this solver's PartyB lanes, same side and symbol) and the
fresh mark (the trigger must not already hold), then stores the orders in one transaction under
the position's advisory lock: a new SL (TP) replaces the active SL (TP) of the position. The
engine (solver.orders.trigger_engine) arms and fires them; the API never closes anything itself.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from sqlmodel import col, select

from solver.auth.jwt import Principal
from solver.chain.reader import ChainReader
from solver.chain.types import OnChainQuote, QuoteStatus
from solver.core.clock import Clock
from solver.core.errors import ErrorCode, SolverError
from solver.core.units import fmt, round_to_wei
from solver.db.engine import SessionFactory, session_scope
from solver.db.models import InstantOpen, Quote, TriggerKind, TriggerOrder, TriggerStatus
from solver.db.types import checksum_address
from solver.devnet.deploy import DELEGATED_SIGNATURES, selector
from solver.market.balances import checksum
from solver.market.marks import MarkPrices
from solver.orders import notes
from solver.orders import repository as repo
from solver.orders.schemas import StopLossBody
from solver.orders.triggers import LONG, SHORT, placement_error
from solver.quotes.outbox import lane_for
from solver.quotes.service import chain_read
from solver.settings import Settings

CLOSE_SELECTOR = selector(DELEGATED_SIGNATURES[2])  # requestToClosePosition
ACCEPTED = frozenset(
    {
        QuoteStatus.PENDING,
        QuoteStatus.LOCKED,
        QuoteStatus.OPENED,
        # Still an open position (a close request in flight may be cancelled or only partial).
        QuoteStatus.CLOSE_PENDING,
        QuoteStatus.CANCEL_CLOSE_PENDING,
    }
)
NOT_OPEN_YET = frozenset({QuoteStatus.PENDING, QuoteStatus.LOCKED})
_ZERO_ADDRESS = "0x" + "0" * 40


def _what(kind: TriggerKind) -> str:
    return "stop loss" if kind == TriggerKind.STOP_LOSS else "take profit"


class TriggerOrderService:
    def __init__(
        self, *, settings: Settings, sessions: SessionFactory, chain: ChainReader, marks: MarkPrices, clock: Clock
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._chain = chain
        self._marks = marks
        self._clock = clock

    # --- POST /stop-loss ---------------------------------------------------------------------

    async def place(self, principal: Principal, body: StopLossBody) -> tuple[str, list[TriggerOrder]]:
        """Check and store the request's SL and/or TP; (message, the new rows)."""
        account = checksum_address(principal.account)
        self._check_identity(principal, body)
        self._check_timestamp(body.timestamp)
        if body.quoteId < 0:
            raise SolverError(
                ErrorCode.TRIGGER_TEMP_QUOTE_ID,
                f"{body.quoteId} is a temporary quote id: wait for the real quote id "
                f"(GET /instant_quote_id/{body.quoteId}) and set the stop loss with it.",
            )
        if body.quoteId == 0:
            raise SolverError(ErrorCode.VALIDATION, "quoteId must be a positive quote id.")
        if body.positionSide not in (LONG, SHORT):
            raise SolverError(ErrorCode.VALIDATION, "positionSide must be 0 (LONG) or 1 (SHORT).")
        wanted = self._wanted(body)

        q = await chain_read(self._chain.quote(body.quoteId))
        lane = await self._check_quote(account, body, q)
        assert q is not None
        sym = self._settings.symbol(q.symbol_id)
        if sym is None:
            raise SolverError(ErrorCode.UNKNOWN_SYMBOL, f"This solver does not trade symbol id {q.symbol_id}.")
        signer = self._settings.chain.lanes[lane]
        point, delegated = await asyncio.gather(
            self._marks.fresh(sym), chain_read(self._chain.is_delegated(account, signer, CLOSE_SELECTOR))
        )
        for kind, price in wanted.items():
            problem = placement_error(q.position_type, kind.value, price, point.price)
            if problem is not None:
                raise SolverError(
                    ErrorCode.TRIGGER_WOULD_FIRE_NOW,
                    f"{problem} The {sym.name} mark is {fmt(point.price)}; your {_what(kind)} is {fmt(price)}.",
                )
        if not delegated:
            raise SolverError(
                ErrorCode.NOT_DELEGATED,
                "Delegate requestToClosePosition to the solver first: it closes the position when the trigger fires.",
            )

        status = TriggerStatus.WAITING if q.status in NOT_OPEN_YET else TriggerStatus.ARMED
        requested = None if body.requestedPrice is None else round_to_wei(body.requestedPrice)
        now = self._clock.now()
        created: list[TriggerOrder] = []
        replaced: list[TriggerOrder] = []
        async with session_scope(self._sessions) as s:
            await repo.lock_quote(s, q.id)
            current = await repo.active_of_quote(s, q.id, lock=True)
            fired = [r for r in current if r.status == TriggerStatus.TRIGGERED]
            if fired:
                raise SolverError(
                    ErrorCode.TRIGGER_ALREADY_FIRED,
                    f"The {_what(fired[0].kind)} of quote {q.id} already fired: the position is being closed.",
                )
            for old in current:
                if old.kind in wanted and old.id is not None:
                    await repo.transition(
                        s, old.id, repo.PENDING_STATUSES, TriggerStatus.CANCELLED, now=now, actor="api",
                        end_reason="replaced", error_message="Replaced by a new request.",
                    )  # fmt: skip
                    await notes.add(s, self._settings, old, "cancel", now=now)
                    replaced.append(old)
            for kind, price in wanted.items():
                row = await repo.insert(
                    s,
                    account=account,
                    quote_id=q.id,
                    kind=kind,
                    position_type=q.position_type,
                    symbol_id=q.symbol_id,
                    trigger_price=price,
                    requested_price=requested,
                    status=status,
                    now=now,
                )
                await notes.add(s, self._settings, row, "set", now=now)
                created.append(row)
        return self._placed_message(q, created, replaced, status, point.price), created

    def _check_identity(self, principal: Principal, body: StopLossBody) -> None:
        if body.accountAddress.lower() != principal.account.lower():
            raise SolverError(
                ErrorCode.FORBIDDEN_ACCOUNT,
                f"accountAddress {body.accountAddress} is not the account this access token was issued for.",
            )
        if body.userAddress.lower() != principal.owner.lower():
            raise SolverError(ErrorCode.TRIGGER_OWNER_MISMATCH)

    def _check_timestamp(self, ms: int) -> None:
        now = self._clock.time()
        tolerance = self._settings.triggers.timestamp_tolerance_s
        if abs(ms / 1000 - now) > tolerance:
            raise SolverError(
                ErrorCode.TRIGGER_TIMESTAMP,
                f"The timestamp {ms} (milliseconds) is more than {tolerance} s from the server time "
                f"{int(now * 1000)}: send the current time in milliseconds.",
            )

    def _wanted(self, body: StopLossBody) -> dict[TriggerKind, Decimal]:
        out: dict[TriggerKind, Decimal] = {}
        for kind, raw in ((TriggerKind.TAKE_PROFIT, body.tpPrice), (TriggerKind.STOP_LOSS, body.slPrice)):
            if raw is not None and not raw.is_zero():
                price = round_to_wei(raw)
                if price <= 0:
                    raise SolverError(ErrorCode.VALIDATION, f"The {_what(kind)} price is too small.")
                out[kind] = price
        if not out:
            raise SolverError(ErrorCode.TRIGGER_PRICE_MISSING)
        if len(set(out.values())) < len(out):
            raise SolverError(ErrorCode.TRIGGER_PRICES_EQUAL)
        return out

    async def _check_quote(self, account: str, body: StopLossBody, q: OnChainQuote | None) -> int:
        """The checks of the quote itself; returns the lane that will close it."""
        if q is None:
            raise SolverError(ErrorCode.QUOTE_NOT_FOUND, f"No position with quote id {body.quoteId} exists on chain.")
        if q.party_a.lower() != account.lower():
            raise SolverError(ErrorCode.NOT_YOUR_QUOTE, f"Quote {q.id} belongs to another account.")
        if q.status not in ACCEPTED:
            raise SolverError(
                ErrorCode.TRIGGER_QUOTE_NOT_ACTIVE,
                f"Quote {q.id} is {QuoteStatus(q.status).name} on chain: a stop loss or take profit needs a "
                "position that is pending, locked or opened.",
            )
        lane = await self._lane(account, q)
        if lane is None:
            raise SolverError(ErrorCode.QUOTE_NOT_WITH_SOLVER, f"Quote {q.id} is not held with this solver.")
        if body.positionSide != q.position_type or body.symbolId != q.symbol_id:
            side = "LONG" if q.position_type == LONG else "SHORT"
            raise SolverError(
                ErrorCode.TRIGGER_QUOTE_MISMATCH,
                f"Quote {q.id} is a {side} of symbol id {q.symbol_id}; the request says positionSide "
                f"{body.positionSide} and symbolId {body.symbolId}.",
            )
        return lane

    async def _lane(self, account: str, q: OnChainQuote) -> int | None:
        lanes = [a.lower() for a in self._settings.chain.lanes]
        if q.party_b.lower() in lanes:
            return lanes.index(q.party_b.lower())
        if q.status == QuoteStatus.PENDING and q.party_b.lower() == _ZERO_ADDRESS:
            # Not locked yet: ours if it came from one of our instant opens of this account, or
            # the event follower mirrors it (it mirrors the quotes whitelisting our lanes).
            async with self._sessions() as s:
                ours = select(InstantOpen.id).where(
                    col(InstantOpen.quote_id) == q.id, col(InstantOpen.account) == account
                )
                mirrored = select(Quote.quote_id).where(col(Quote.quote_id) == q.id)
                found = (await s.exec(ours)).first() or (await s.exec(mirrored)).first()
            if found is not None:
                return lane_for(account, len(lanes))
        return None

    @staticmethod
    def _placed_message(
        q: OnChainQuote, created: list[TriggerOrder], replaced: list[TriggerOrder], status: TriggerStatus, mark: Decimal
    ) -> str:
        parts = [f"{_what(r.kind).capitalize()} at {fmt(r.trigger_price)}" for r in created]
        text = " and ".join(parts) + f" set for quote {q.id} (mark {fmt(mark)})."
        for old in replaced:
            text += f" It replaces the previous {_what(old.kind)} at {fmt(old.trigger_price)}."
        if status == TriggerStatus.WAITING:
            text += " It will be armed once the position is opened."
        return text

    # --- GET /stop-loss/{account}, DELETE /stop-loss/{quoteId} -------------------------------

    async def of_account(self, principal: Principal, raw_account: str) -> list[TriggerOrder]:
        account = checksum(raw_account, "account")
        if account.lower() != principal.account.lower():
            raise SolverError(ErrorCode.FORBIDDEN_ACCOUNT)
        async with self._sessions() as s:
            return await repo.of_account(s, account)

    async def cancel(self, principal: Principal, raw_quote_id: str, kind: str | None) -> tuple[str, list[TriggerOrder]]:
        quote_id = _parse_quote_id(raw_quote_id)
        only: TriggerKind | None = None
        if kind:
            try:
                only = TriggerKind(kind.replace("-", "_").lower())
            except ValueError as exc:
                raise SolverError(ErrorCode.VALIDATION, "kind must be stop_loss or take_profit.") from exc
        account = checksum_address(principal.account)
        now = self._clock.now()
        cancelled: list[TriggerOrder] = []
        async with session_scope(self._sessions) as s:
            await repo.lock_quote(s, quote_id)
            rows = [r for r in await repo.active_of_quote(s, quote_id, lock=True) if only is None or r.kind == only]
            if not rows:
                raise SolverError(
                    ErrorCode.TRIGGER_NOT_FOUND, f"Quote {quote_id} has no active stop loss or take profit."
                )
            if any(r.account != account for r in rows):
                raise SolverError(ErrorCode.NOT_YOUR_QUOTE)
            for row in rows:
                assert row.id is not None
                if row.status in repo.PENDING_STATUSES and await repo.transition(
                    s, row.id, repo.PENDING_STATUSES, TriggerStatus.CANCELLED, now=now, actor="api", end_reason="user"
                ):
                    await notes.add(s, self._settings, row, "cancel", now=now)
                    cancelled.append(row)
            if not cancelled:
                raise SolverError(
                    ErrorCode.TRIGGER_ALREADY_FIRED,
                    f"The trigger of quote {quote_id} already fired: cancel its close with "
                    f"DELETE /instant_close/{quote_id} instead.",
                )
            ids = [r.id for r in cancelled]
            stmt = select(TriggerOrder).where(col(TriggerOrder.id).in_(ids)).order_by(col(TriggerOrder.id))
            fresh = (await s.exec(stmt.execution_options(populate_existing=True))).all()
        names = " and ".join(_what(r.kind) for r in cancelled)
        return f"The {names} of quote {quote_id} {'was' if len(cancelled) == 1 else 'were'} cancelled.", list(fresh)


def _parse_quote_id(raw: str) -> int:
    text = raw.strip()
    digits = text[1:] if text.startswith("-") else text
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 18 or int(text) == 0:
        raise SolverError(ErrorCode.TRIGGER_NOT_FOUND, f"{text[:40]!r} is not a valid quote id.")
    value = int(text)
    if value < 0:
        raise SolverError(
            ErrorCode.TRIGGER_TEMP_QUOTE_ID,
            f"{value} is a temporary quote id: stop losses are kept under the real quote id.",
        )
    return value
