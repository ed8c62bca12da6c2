"""Read-only SQL for market statistics over the `quote` mirror and `instant_open` requests.

Plain SQL (`text()`) on table and column names, so this module does not depend on the ORM
models' Python names. Every query tolerates empty tables (aggregates come back as no rows).

What counts as *used notional* (open interest), per symbol:
- open positions (quote status OPENED 4, CLOSE_PENDING 5, CANCEL_CLOSE_PENDING 6,
  LIQUIDATED_PENDING 10): open quantity × opened price;
- quotes that may still open (PENDING 0, LOCKED 1, CANCEL_PENDING 2, which the solver can still
  fill): quantity × requested price;
- instant opens accepted but not yet mirrored as a quote (status pending / sent /
  cancel_requested whose `quote_id` is unknown or not yet in `quote`): quantity × requested
  price. The NOT EXISTS avoids counting a request twice once its quote is mirrored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import TextClause, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from solver.db.engine import SessionFactory

OPEN_STATUSES = (4, 5, 6, 10)
MAY_OPEN_STATUSES = (0, 1, 2)
UNCONFIRMED_INSTANT = ("pending", "sent", "cancel_requested")

_UNCONFIRMED_INSTANT_WHERE = """
    io.status IN :instant_statuses
    AND (io.quote_id IS NULL OR NOT EXISTS (SELECT 1 FROM quote q WHERE q.quote_id = io.quote_id))
"""

_USED_NOTIONAL = text(
    f"""
    SELECT symbol_id, SUM(v) AS used FROM (
        SELECT symbol_id, (quantity - COALESCE(closed_amount, 0)) * COALESCE(opened_price, requested_open_price) AS v
          FROM quote WHERE status IN :open_statuses
        UNION ALL
        SELECT symbol_id, quantity * requested_open_price AS v
          FROM quote WHERE status IN :may_open_statuses
        UNION ALL
        SELECT io.symbol_id, io.quantity * io.requested_open_price AS v
          FROM instant_open io WHERE {_UNCONFIRMED_INSTANT_WHERE}
    ) AS t
    GROUP BY symbol_id
    """  # noqa: S608 - constant SQL fragments, values are bound parameters
).bindparams(
    bindparam("open_statuses", expanding=True),
    bindparam("may_open_statuses", expanding=True),
    bindparam("instant_statuses", expanding=True),
)

# Open-side volume: quotes created since `since` that were filled (opened_price is set, also
# when they have been closed or liquidated since).
_VOLUME = text(
    """
    SELECT symbol_id, SUM(quantity * opened_price) AS volume
      FROM quote
     WHERE opened_price IS NOT NULL AND create_time >= :since
     GROUP BY symbol_id
    """
)

_UNCONFIRMED_LOCKED = text(
    f"""
    SELECT COALESCE(SUM(io.cva), 0), COALESCE(SUM(io.lf), 0), COALESCE(SUM(io.party_amm), 0)
      FROM instant_open io
     WHERE io.account = :account AND {_UNCONFIRMED_INSTANT_WHERE}
    """  # noqa: S608 - constant SQL fragments, values are bound parameters
).bindparams(bindparam("instant_statuses", expanding=True))


@dataclass(frozen=True, slots=True)
class LockedSums:
    cva: Decimal
    lf: Decimal
    party_amm: Decimal


class MarketStats:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    async def _rows(self, stmt: TextClause, params: dict[str, object]) -> list[tuple[object, ...]]:
        async with self._sessions() as session:
            conn: AsyncConnection = await session.connection()
            result = await conn.execute(stmt, params)
            return [tuple(r) for r in result.all()]

    async def used_notional_by_symbol(self) -> dict[int, Decimal]:
        """Used notional (USD) per symbol id; symbols without exposure are absent."""
        rows = await self._rows(
            _USED_NOTIONAL,
            {
                "open_statuses": list(OPEN_STATUSES),
                "may_open_statuses": list(MAY_OPEN_STATUSES),
                "instant_statuses": list(UNCONFIRMED_INSTANT),
            },
        )
        return {int(str(sym)): _dec(used) for sym, used in rows if used is not None}

    async def trade_volume_by_symbol(self, since: datetime) -> dict[int, Decimal]:
        rows = await self._rows(_VOLUME, {"since": since})
        return {int(str(sym)): _dec(vol) for sym, vol in rows if vol is not None}

    async def unconfirmed_instant_locked(self, account: str) -> LockedSums:
        """cva/lf/partyAmm of the account's accepted instant opens not yet mirrored as quotes.

        `account` must be EIP-55 checksummed (the column stores that form).
        """
        rows = await self._rows(
            _UNCONFIRMED_LOCKED, {"account": account, "instant_statuses": list(UNCONFIRMED_INSTANT)}
        )
        cva, lf, amm = rows[0]
        return LockedSums(cva=_dec(cva), lf=_dec(lf), party_amm=_dec(amm))


def _dec(value: object) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))
