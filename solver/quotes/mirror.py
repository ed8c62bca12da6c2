"""Applying decoded chain events to the quote mirror and the notification history.

The chain is the truth about a quote, so an event is never folded into the row field by field:
the row is re-read with `getQuote` and written whole. That makes re-applying an event (after a
restart or a reorg rewind) harmless, and notifications are keyed by `{tx_hash}:{log_index}`, so a
replay never writes one twice. Only quotes the solver is party to are kept (`is_ours`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from solver.chain.events.decoder import ChainEvent
from solver.chain.reader import ChainReader
from solver.chain.types import OnChainQuote
from solver.core.units import from_wei
from solver.db.models import ActionStatus, InstantOpen, Quote, StateType
from solver.notify import repository as notifications
from solver.notify.repository import NewNotification

ZERO = "0x" + "00" * 20
_FETCH_CONCURRENCY = 8


def lane_set(addresses: Iterable[str]) -> frozenset[str]:
    """The solver's PartyB addresses, lowercased for case-insensitive comparison."""
    return frozenset(a.lower() for a in addresses)


def is_ours(
    lanes: frozenset[str],
    *,
    party_bs: Iterable[str] = (),
    whitelist: Iterable[str] = (),
    instant_open: bool = False,
    mirrored: bool = False,
) -> bool:
    """The one rule for which quotes the solver mirrors and notifies about.

    Ours when one of our PartyB addresses is its partyB (on chain now, or named by one of its
    events) or on its SendQuote whitelist, when one of our instant opens produced it, or when it
    is mirrored already (the whitelist is only in the SendQuote event, and events such as
    AcceptCancelRequest name no party).
    """
    if instant_open or mirrored:
        return True
    return any(a.lower() in lanes for a in party_bs) or any(a.lower() in lanes for a in whitelist)


def dedupe(events: Sequence[ChainEvent]) -> list[ChainEvent]:
    """Drop the legacy twin of a doubly emitted event when its current form is in the same tx.

    The contracts emit e.g. FillCloseRequest with and without closeId (and ExpireQuote next to
    ExpireQuoteOpen/Close); both are one fact, so one notification. A tx holding only the legacy
    form (an older deployment) keeps it.
    """
    current = {(e.tx_hash, e.quote_id, e.family) for e in events if not e.is_legacy_form}
    return [e for e in events if not (e.is_legacy_form and (e.tx_hash, e.quote_id, e.family) in current)]


@dataclass(slots=True)
class QuoteTouch:
    """What one batch of events says about one quote id."""

    quote_id: int
    events: list[ChainEvent] = field(default_factory=list)
    party_bs: set[str] = field(default_factory=set)
    whitelist: set[str] = field(default_factory=set)

    @property
    def last_block(self) -> int:
        return max(e.block_number for e in self.events)


def touches(events: Iterable[ChainEvent]) -> dict[int, QuoteTouch]:
    """Group quote events by quote id, collecting the parties they name."""
    out: dict[int, QuoteTouch] = {}
    for e in events:
        quote_id = e.quote_id
        if quote_id is None or quote_id <= 0:
            continue
        t = out.setdefault(quote_id, QuoteTouch(quote_id))
        t.events.append(e)
        party_b = e.args.get("partyB")
        if isinstance(party_b, str) and party_b != ZERO:
            t.party_bs.add(party_b)
        t.whitelist.update(e.args.get("partyBsWhiteList", ()))
    return out


@dataclass(frozen=True, slots=True)
class Known:
    """What the DB already knows about some quote ids."""

    temp_ids: Mapping[int, int]  # quote id → temp id of the instant open that produced it
    mirrored: Mapping[int, str]  # quote id → partyA of its mirror row


async def known(session: AsyncSession, quote_ids: Collection[int]) -> Known:
    if not quote_ids:
        return Known({}, {})
    opens = await session.exec(
        select(InstantOpen.quote_id, InstantOpen.temp_quote_id).where(col(InstantOpen.quote_id).in_(quote_ids))
    )
    rows = await session.exec(select(Quote.quote_id, Quote.party_a).where(col(Quote.quote_id).in_(quote_ids)))
    return Known(
        temp_ids={int(q): int(t) for q, t in opens.all() if q is not None},
        mirrored={int(q): str(a) for q, a in rows.all()},
    )


async def fetch_quotes(reader: ChainReader, quote_ids: Iterable[int]) -> dict[int, OnChainQuote | None]:
    """getQuote for each id at the latest block, a few at a time."""
    gate = asyncio.Semaphore(_FETCH_CONCURRENCY)

    async def one(quote_id: int) -> tuple[int, OnChainQuote | None]:
        async with gate:
            return quote_id, await reader.quote(quote_id)

    return dict(await asyncio.gather(*(one(q) for q in quote_ids)))


def _money(wei: int) -> Decimal:
    return from_wei(wei)


def mirror_values(q: OnChainQuote, *, block_number: int, temp_quote_id: int | None) -> dict[str, Any]:
    """The `quote` row for an on-chain quote, amounts in human units."""
    return {
        "quote_id": q.id,
        "party_a": q.party_a,
        "party_b": None if int(q.party_b, 16) == 0 else q.party_b,
        "symbol_id": q.symbol_id,
        "position_type": q.position_type,
        "order_type": q.order_type,
        "status": q.status,
        "requested_open_price": _money(q.requested_open_price),
        "opened_price": _money(q.opened_price) if q.opened_price else None,
        "quantity": _money(q.quantity),
        "closed_amount": _money(q.closed_amount),
        "avg_closed_price": _money(q.avg_closed_price) if q.closed_amount else None,
        "cva": _money(q.locked.cva),
        "lf": _money(q.locked.lf),
        "party_amm": _money(q.locked.party_amm),
        "party_bmm": _money(q.locked.party_bmm),
        "trading_fee": _money(q.trading_fee),
        "deadline": q.deadline,
        "quantity_to_close": _money(q.quantity_to_close),
        "requested_close_price": _money(q.requested_close_price),
        "parent_id": q.parent_id,
        "temp_quote_id": temp_quote_id,
        "block_number": block_number,
    }


async def upsert_quote(session: AsyncSession, values: Mapping[str, Any], *, now: datetime) -> None:
    """Insert or overwrite the mirror row; a known temp id is never cleared."""
    stmt = insert(Quote).values(**values, create_time=now, modify_time=now)
    updates: dict[str, Any] = {k: stmt.excluded[k] for k in values if k not in ("quote_id", "temp_quote_id")}
    updates["temp_quote_id"] = func.coalesce(stmt.excluded.temp_quote_id, col(Quote.temp_quote_id))
    updates["modify_time"] = now
    await session.exec(stmt.on_conflict_do_update(index_elements=["quote_id"], set_=updates))


async def delete_quote(session: AsyncSession, quote_id: int) -> None:
    await session.exec(delete(Quote).where(col(Quote.quote_id) == quote_id))


def counterparty(q: OnChainQuote, lanes: Sequence[str], whitelist: Iterable[str] = ()) -> str:
    """The PartyB the user deals with: the quote's, else our whitelisted address, else our first."""
    if int(q.party_b, 16) != 0:
        return q.party_b
    ours = {a.lower(): a for a in lanes}
    for a in whitelist:
        if a.lower() in ours:
            return ours[a.lower()]
    return lanes[0]


def notification_for(e: ChainEvent, q: OnChainQuote, *, party_b: str, temp_quote_id: int | None) -> NewNotification:
    """A report of event `e` on quote `q` (http-api.md §6)."""
    filled_open = price_open = filled_close = price_close = None
    if e.name == "OpenPosition":
        filled_open, price_open = from_wei(int(e.args["filledAmount"])), from_wei(int(e.args["openedPrice"]))
    elif e.name == "FillCloseRequest":
        filled_close, price_close = from_wei(int(e.args["filledAmount"])), from_wei(int(e.args["closedPrice"]))
    return NewNotification(
        account=q.party_a,
        counterparty_address=party_b,
        last_seen_action=e.name,
        action_status=ActionStatus.SUCCESS,
        state_type=StateType.REPORT,
        event_key=e.key,
        order_type=q.order_type,
        quote_id=q.id,
        temp_quote_id=temp_quote_id,
        filled_amount_open=filled_open,
        avg_price_open=price_open,
        filled_amount_close=filled_close,
        avg_price_close=price_close,
    )


async def apply_touch(
    session: AsyncSession,
    touch: QuoteTouch,
    q: OnChainQuote | None,
    *,
    lanes: Sequence[str],
    temp_quote_id: int | None,
    now: datetime,
    stamp: Callable[[ChainEvent], datetime] | None = None,
) -> int:
    """Refresh one quote's mirror row and notify its events; returns the events notified.

    `q is None` means the quote does not exist at the latest block (its creation was reorged
    away after all): the mirror row goes and nothing is notified. `stamp` gives each
    notification its create time (default `now`).
    """
    if q is None:
        await delete_quote(session, touch.quote_id)
        return 0
    values = mirror_values(q, block_number=touch.last_block, temp_quote_id=temp_quote_id)
    await upsert_quote(session, values, now=now)
    party_b = counterparty(q, lanes, touch.whitelist)
    for e in touch.events:
        n = notification_for(e, q, party_b=party_b, temp_quote_id=temp_quote_id)
        await notifications.add(session, n, now=stamp(e) if stamp is not None else now)
    return len(touch.events)


__all__ = [
    "Known",
    "QuoteTouch",
    "apply_touch",
    "dedupe",
    "delete_quote",
    "fetch_quotes",
    "is_ours",
    "known",
    "lane_set",
    "mirror_values",
    "notification_for",
    "touches",
    "upsert_quote",
]
