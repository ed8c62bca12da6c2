"""POST /instant_open and DELETE /instant_open/{id} (http-api.md §3, trading-rules.md §2).

Accepting an open: the pure gate (solver.risk.gate) judges a snapshot gathered from a fresh
mark, the chain (balances, open positions, delegation) and the database. The chain parts are
read first, without locks; the database parts (unconfirmed instant opens, pending count) are
re-read inside the insert transaction under a per-account advisory lock, so two concurrent
requests of one account cannot both pass a balance or pending-limit check. Notional caps are
shared by all accounts and read without that lock: concurrent opens of different accounts may
overshoot a cap by the requests in flight (each bounded by the market's max notional).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from decimal import Context, Decimal

from sqlmodel.ext.asyncio.session import AsyncSession

from solver.chain.reader import ChainReader
from solver.chain.types import OnChainQuote
from solver.core.clock import Clock
from solver.core.errors import ErrorCode, SolverError
from solver.core.units import from_wei, round_to_wei
from solver.db.engine import SessionFactory, session_scope
from solver.db.models import ActionStatus, InstantOpen, IntentKind, IntentStatus
from solver.db.models import InstantOpenStatus as S
from solver.devnet.deploy import DELEGATED_SIGNATURES, selector
from solver.market.marks import MarkPrices
from solver.market.repository import OPEN_STATUSES, MarketStats
from solver.notify import repository as notify
from solver.notify.ordering import request_stamp
from solver.quotes import queries
from solver.quotes import repository as repo
from solver.quotes.outbox import cancel_if_queued, enqueue, intent_key, intents_of_open, lane_for
from solver.quotes.schemas import InstantOpenBody
from solver.quotes.service import chain_read, check_replay, parse_id, request_hash
from solver.quotes.temp_ids import TempIdAllocator
from solver.risk.account import Locked, Position, upnl
from solver.risk.flags import ReduceOnlyFlags
from solver.risk.gate import AccountSnapshot, Limits, OpenRequest, check_open
from solver.settings import Settings, SymbolConfig

_CTX = Context(prec=120)
SEND_QUOTE_SELECTOR = selector(DELEGATED_SIGNATURES[1])  # sendQuoteWithAffiliate
_TEMP_ID_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class _ChainView:
    """What the chain says about the account, read before the transaction."""

    allocated: Decimal
    upnl: Decimal
    locked: Locked
    pending: Locked  # PENDING/LOCKED quotes on chain
    open_positions: int
    delegated: bool


class InstantOpenService:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: SessionFactory,
        chain: ChainReader,
        marks: MarkPrices,
        stats: MarketStats,
        temp_ids: TempIdAllocator,
        clock: Clock,
        flags: ReduceOnlyFlags | None = None,  # liquidation flags set by the engine's health loop
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._chain = chain
        self._marks = marks
        self._stats = stats
        self._temp_ids = temp_ids
        self._clock = clock
        self._flags = flags

    # -- open -----------------------------------------------------------------------------------

    async def open(self, account: str, body: InstantOpenBody, key: str | None) -> InstantOpen:
        """Gate, persist (row + SEND_QUOTE intent + notification) and return the stored row.

        A replay (same Idempotency-Key and body) returns the stored row, whatever its status.
        """
        sym = self._symbol(body.symbolId)
        req = OpenRequest(
            position_type=body.positionType,
            order_type=body.orderType,
            price=round_to_wei(body.price),
            quantity=body.quantity,
            cva=round_to_wei(body.cva),
            lf=round_to_wei(body.lf),
            party_amm=round_to_wei(body.partyAmm),
            deadline=body.deadline,
        )
        max_funding = round_to_wei(body.maxFundingRate if body.maxFundingRate is not None else sym.max_funding_rate)
        digest = request_hash(
            {
                "symbolId": sym.symbol_id,
                "positionType": req.position_type,
                "orderType": req.order_type,
                "price": req.price,
                "quantity": req.quantity,
                "cva": req.cva,
                "lf": req.lf,
                "partyAmm": req.party_amm,
                "partyBmm": body.partyBmm,
                "maxFundingRate": max_funding,
                "deadline": req.deadline,
            }
        )
        if key is not None:
            async with self._sessions() as session:
                stored = await repo.get_instant_open_by_idempotency_key(session, account, key)
            if stored is not None:
                check_replay(stored.request_hash, digest)
                return stored

        mark = (await self._marks.fresh(sym)).price
        lanes = self._settings.chain.lanes
        lane = lane_for(account, len(lanes))
        view, used, reduce_only = await asyncio.gather(
            self._chain_view(account, lanes[lane]), self._stats.used_notional_by_symbol(), self._reduce_only(account)
        )
        notional = _CTX.multiply(req.quantity, req.price)
        party_bmm = round_to_wei(_CTX.divide(_CTX.multiply(notional, sym.party_bmm_percent), Decimal(100)))
        now = self._clock.now()

        async with session_scope(self._sessions) as session:
            await queries.lock_account(session, account)
            if key is not None:
                stored = await repo.get_instant_open_by_idempotency_key(session, account, key)
                if stored is not None:
                    check_replay(stored.request_hash, digest)
                    return stored
            unconfirmed = await queries.unconfirmed_locked(session, account)
            snapshot = AccountSnapshot(
                allocated=view.allocated,
                upnl=view.upnl,
                locked=view.locked,
                pending=view.pending + unconfirmed,
                pending_instant_opens=await queries.pending_open_count(session, account),
                open_positions=view.open_positions,
                delegated=view.delegated,
                reduce_only=reduce_only,
            )
            limits = Limits(
                max_pending_instant_opens=self._settings.risk.max_pending_instant_opens,
                max_open_positions=self._settings.risk.max_open_positions,
                total_notional_cap=self._settings.risk.total_notional_cap,
                used_notional_symbol=used.get(sym.symbol_id, Decimal(0)),
                used_notional_total=sum(used.values(), Decimal(0)),
            )
            violations = check_open(sym, req, mark=mark, now=int(self._clock.time()), account=snapshot, limits=limits)
            if violations:
                first = violations[0]
                raise SolverError(first.code, first.message, [v.message for v in violations])

            row = await self._insert(
                session,
                account=account,
                sym=sym,
                req=req,
                party_bmm=party_bmm,
                max_funding=max_funding,
                key=key,
                digest=digest,
            )
            assert row.id is not None
            await enqueue(
                session,
                key=intent_key("open", row.id, "send"),
                kind=IntentKind.SEND_QUOTE,
                account=account,
                lane=lane,
                now=now,
                instant_open_id=row.id,
            )
            await notify.add(
                session,
                notify.NewNotification(
                    account=account,
                    counterparty_address=lanes[lane],
                    last_seen_action="InstantRFQ",
                    action_status=ActionStatus.SEEN,
                    event_key=f"instant_open:{row.id}:accepted",
                    temp_quote_id=row.temp_quote_id,
                    order_type=row.order_type,
                ),
                now=request_stamp(now),
            )
        return row

    async def _insert(
        self,
        session: AsyncSession,
        *,
        account: str,
        sym: SymbolConfig,
        req: OpenRequest,
        party_bmm: Decimal,
        max_funding: Decimal,
        key: str | None,
        digest: str,
    ) -> InstantOpen:
        """Insert with a fresh temp id; a collision (Redis lost its counter) re-seeds and retries."""
        for attempt in range(_TEMP_ID_ATTEMPTS):
            temp_id = await self._temp_ids.allocate()
            try:
                return await repo.insert_instant_open(
                    session,
                    temp_quote_id=temp_id,
                    account=account,
                    symbol_id=sym.symbol_id,
                    position_type=req.position_type,
                    order_type=req.order_type,
                    requested_open_price=req.price,
                    quantity=req.quantity,
                    cva=req.cva,
                    lf=req.lf,
                    party_amm=req.party_amm,
                    party_bmm=party_bmm,
                    max_funding_rate=max_funding,
                    deadline=req.deadline,
                    now=self._clock.now(),
                    idempotency_key=key,
                    request_hash=digest if key is not None else None,
                )
            except repo.DuplicateTempQuoteId:
                if attempt == _TEMP_ID_ATTEMPTS - 1:
                    raise
                await self._temp_ids.resync()
        raise AssertionError("unreachable")

    async def _chain_view(self, account: str, signer: str) -> _ChainView:
        balances, positions, delegated = await asyncio.gather(
            chain_read(self._chain.party_a_balances(account)),
            chain_read(self._chain.open_positions(account)),
            chain_read(self._chain.is_delegated(account, signer, SEND_QUOTE_SELECTOR)),
        )
        open_ = [q for q in positions if q.status in OPEN_STATUSES and q.open_quantity > 0]
        marks = await self._marks.fresh_marks(q.symbol_id for q in open_)
        return _ChainView(
            allocated=from_wei(balances.allocated),
            upnl=upnl((_position(q) for q in open_), marks),
            locked=_locked(balances.locked.cva, balances.locked.lf, balances.locked.party_amm),
            pending=_locked(balances.pending_locked.cva, balances.pending_locked.lf, balances.pending_locked.party_amm),
            open_positions=len(open_),
            delegated=delegated,
        )

    async def _reduce_only(self, account: str) -> bool:
        return self._flags is not None and await self._flags.is_flagged(account)

    def _symbol(self, symbol_id: int) -> SymbolConfig:
        sym = self._settings.symbol(symbol_id)
        if sym is None:
            raise SolverError(ErrorCode.UNKNOWN_SYMBOL, f"Unknown symbolId {symbol_id}. See /contract-symbols.")
        return sym

    # -- cancel ---------------------------------------------------------------------------------

    async def cancel(self, account: str, raw_id: str) -> str:
        """Cancel by temp id (or on-chain id); the message for the 200 answer."""
        some_id = parse_id(raw_id, "temporary quote id", ErrorCode.INSTANT_NOT_FOUND)
        now = self._clock.now()
        async with session_scope(self._sessions) as session:
            row = await queries.open_by_any_id(session, some_id, lock=True)
            if row is None:
                raise SolverError(ErrorCode.INSTANT_NOT_FOUND, f"No instant open with id {some_id} exists.")
            if row.account != account:
                raise SolverError(ErrorCode.NOT_YOUR_QUOTE)
            assert row.id is not None
            intents = await intents_of_open(session, row.id)
            send = next((i for i in intents if i.kind == IntentKind.SEND_QUOTE), None)
            lane = send.lane if send is not None else lane_for(account, len(self._settings.chain.lanes))
            match row.status:
                case S.PENDING:
                    # The worker moves the row to SENT when it takes the intent, under this row
                    # lock: a PENDING row's intent is still queued, unless it is being taken now.
                    if send is not None and not await cancel_if_queued(session, send.id or 0, now=now):
                        raise SolverError(ErrorCode.CANCEL_RETRY)
                    await self._move(session, row.id, S.PENDING, S.CANCELLED, now)
                    await self._note(session, row, lane=lane, status=ActionStatus.SUCCESS, step="cancelled", now=now)
                    return "The instant open was cancelled before it reached the chain."
                case S.SENT:
                    opening = [i for i in intents if i.kind == IntentKind.OPEN_QUOTE]
                    if any(i.status in (IntentStatus.IN_TX, IntentStatus.DONE) for i in opening):
                        raise SolverError(ErrorCode.CANCEL_TOO_LATE, "The solver is already opening this position.")
                    for i in opening:
                        if i.status == IntentStatus.QUEUED:
                            await cancel_if_queued(session, i.id or 0, now=now)
                    await self._move(session, row.id, S.SENT, S.CANCEL_REQUESTED, now)
                    if row.quote_id is not None:  # else the worker cancels once the quote id is known
                        await enqueue(
                            session,
                            key=intent_key("open", row.id, "cancel"),
                            kind=IntentKind.CANCEL_QUOTE,
                            account=account,
                            lane=lane,
                            now=now,
                            instant_open_id=row.id,
                            quote_id=row.quote_id,
                        )
                    await self._note(
                        session, row, lane=lane, status=ActionStatus.SEEN, step="cancel_requested", now=now
                    )
                    return "Cancel requested: requestToCancelQuote will be sent on chain."
                case S.CANCEL_REQUESTED:
                    return "A cancel is already requested for this instant open."
                case S.CANCELLED:
                    return "This instant open is already cancelled."
                case S.OPENED:
                    raise SolverError(
                        ErrorCode.CANCEL_TOO_LATE, "The position is already opened: close it instead of cancelling."
                    )
                case S.FAILED:
                    raise SolverError(ErrorCode.ALREADY_FAILED)
        raise AssertionError(f"unhandled status {row.status}")

    @staticmethod
    async def _move(session: AsyncSession, row_id: int, old: S, new: S, now: datetime) -> None:
        # The row is locked FOR UPDATE: the compare-and-set cannot lose.
        moved = await repo.transition_instant_open(session, row_id, old, new, now=now, actor="api")
        if not moved:
            raise AssertionError(f"instant open {row_id} left {old} under a row lock")

    async def _note(
        self, session: AsyncSession, row: InstantOpen, *, lane: int, status: ActionStatus, step: str, now: datetime
    ) -> None:
        await notify.add(
            session,
            notify.NewNotification(
                account=row.account,
                counterparty_address=self._settings.chain.lanes[lane],
                last_seen_action="RequestToCancelQuote",
                action_status=status,
                event_key=f"instant_open:{row.id}:{step}",
                quote_id=row.quote_id,
                temp_quote_id=row.temp_quote_id,
                order_type=row.order_type,
            ),
            now=request_stamp(now),
        )


def _locked(cva: int, lf: int, amm: int) -> Locked:
    return Locked(cva=from_wei(cva), lf=from_wei(lf), party_amm=from_wei(amm))


def _position(q: OnChainQuote) -> Position:
    return Position(
        symbol_id=q.symbol_id,
        position_type=q.position_type,
        opened_price=from_wei(q.opened_price),
        open_quantity=from_wei(q.open_quantity),
    )
