"""What the health loop reads of the `quote` mirror (solver.db.models.quote): each account's open
positions with their locked values, its pending locked total, and which rows changed.

Open positions are the quotes OPENED, CLOSE_PENDING or CANCEL_CLOSE_PENDING (a close request
does not reduce the position until it is filled). A LIQUIDATED_PENDING quote means Symmio is
liquidating the account: it is kept reduce-only until that ends. The mirror holds the quotes
this solver is party to, so an account's positions with other PartyBs are not seen.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Context, Decimal
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from solver.chain.types import QuoteStatus
from solver.db.models import Quote
from solver.risk.health import HealthPosition

_CTX = Context(prec=120)
OPEN_STATUSES = (QuoteStatus.OPENED, QuoteStatus.CLOSE_PENDING, QuoteStatus.CANCEL_CLOSE_PENDING)
PENDING_STATUSES = (QuoteStatus.PENDING, QuoteStatus.LOCKED)
LIQUIDATING_STATUSES = (QuoteStatus.LIQUIDATED_PENDING,)
_READ_STATUSES = [int(s) for s in (*OPEN_STATUSES, *PENDING_STATUSES, *LIQUIDATING_STATUSES)]
_IN_CHUNK = 1000
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class OpenQuote:
    quote_id: int
    symbol_id: int
    open_quantity: Decimal
    party_b: str | None


@dataclass(frozen=True, slots=True)
class Holdings:
    """One account's quotes as the health loop uses them (equality = nothing changed)."""

    positions: tuple[HealthPosition, ...] = ()
    quotes: tuple[OpenQuote, ...] = ()  # the open positions, by quote id
    party_amm: Decimal = _ZERO  # Σ partyAmm of the open positions
    pending_locked: Decimal = _ZERO  # Σ cva + lf + partyAmm of PENDING/LOCKED quotes
    liquidating: bool = False  # a LIQUIDATED_PENDING quote exists

    @property
    def monitored(self) -> bool:
        """Has something health can be about (an open position, or a liquidation under way)."""
        return bool(self.positions) or self.liquidating


_COLUMNS: tuple[Any, ...] = (
    col(Quote.quote_id),
    col(Quote.party_a),
    col(Quote.party_b),
    col(Quote.symbol_id),
    col(Quote.position_type),
    col(Quote.status),
    col(Quote.opened_price),
    col(Quote.requested_open_price),
    col(Quote.quantity),
    col(Quote.closed_amount),
    col(Quote.cva),
    col(Quote.lf),
    col(Quote.party_amm),
)


def _group(rows: Iterable[Any]) -> dict[str, Holdings]:
    acc: dict[str, dict[str, Any]] = {}
    for r in rows:
        (quote_id, party_a, party_b, symbol_id, position_type, status, opened, requested, qty, closed, cva, lf, amm) = r
        a = acc.setdefault(party_a, {"positions": [], "quotes": [], "amm": _ZERO, "pending": _ZERO, "liq": False})
        if status in OPEN_STATUSES:
            open_qty = _CTX.subtract(qty, closed)
            if open_qty <= 0:
                continue
            price = opened if opened is not None else requested
            a["positions"].append(HealthPosition(symbol_id, position_type, price, open_qty, cva, lf))
            a["quotes"].append(OpenQuote(quote_id, symbol_id, open_qty, party_b))
            a["amm"] = _CTX.add(a["amm"], amm)
        elif status in PENDING_STATUSES:
            a["pending"] = _CTX.add(a["pending"], _CTX.add(_CTX.add(cva, lf), amm))
        elif status in LIQUIDATING_STATUSES:
            a["liq"] = True
    return {
        account: Holdings(
            positions=tuple(a["positions"]),
            quotes=tuple(a["quotes"]),
            party_amm=a["amm"],
            pending_locked=a["pending"],
            liquidating=a["liq"],
        )
        for account, a in acc.items()
    }


async def load_all(session: AsyncSession) -> dict[str, Holdings]:
    """Every account with a quote in a status health reads (ordered by quote id)."""
    stmt = select(*_COLUMNS).where(col(Quote.status).in_(_READ_STATUSES)).order_by(col(Quote.quote_id))
    return _group((await session.exec(stmt)).all())


async def load_accounts(session: AsyncSession, accounts: Collection[str]) -> dict[str, Holdings]:
    """Holdings of these accounts; an account with nothing open maps to an empty Holdings."""
    names = list(accounts)
    out: dict[str, Holdings] = dict.fromkeys(names, Holdings())
    for i in range(0, len(names), _IN_CHUNK):
        chunk = names[i : i + _IN_CHUNK]
        stmt = (
            select(*_COLUMNS)
            .where(col(Quote.party_a).in_(chunk), col(Quote.status).in_(_READ_STATUSES))
            .order_by(col(Quote.quote_id))
        )
        out.update(_group((await session.exec(stmt)).all()))
    return out


async def watermark(session: AsyncSession) -> datetime | None:
    """The newest modify_time of the mirror (None when it is empty)."""
    return (await session.exec(select(func.max(col(Quote.modify_time))))).one()


async def changed_since(session: AsyncSession, since: datetime | None) -> list[tuple[int, str, datetime]]:
    """(quote_id, party_a, modify_time) of rows modified after `since` (all rows if None)."""
    stmt = select(col(Quote.quote_id), col(Quote.party_a), col(Quote.modify_time))
    if since is not None:
        stmt = stmt.where(col(Quote.modify_time) > since)
    return [(int(q), str(a), t) for q, a, t in (await session.exec(stmt)).all()]
