"""What the health loop writes, built from its state (pure): the flag reason, the
`LiquidatePosition` alert and the health hash fields (keys in solver.risk.flags)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Context, Decimal

from solver.core.units import fmt, round_to_wei
from solver.db.models import ActionStatus, StateType
from solver.notify.repository import NewNotification
from solver.quotes.outbox import lane_for
from solver.risk.flags import FlagReason
from solver.risk.health import HealthInputs
from solver.risk.health_book import Evaluation
from solver.risk.health_mirror import Holdings

_CTX = Context(prec=120)
ACTION = "LiquidatePosition"
_RULE = "(allocated + uPnL − locked cva − locked lf)"


@dataclass(frozen=True, slots=True)
class Cause:
    """The tick that moved an account below zero."""

    symbol: str
    price: Decimal
    ts: float


def money(value: Decimal) -> str:
    """18 decimals at most, no exponent, no trailing zeros."""
    return fmt(round_to_wei(value))


def flag_reason(*, health: Decimal, liquidating: bool, cause: Cause | None, now: float) -> FlagReason:
    if liquidating and health >= 0:
        message = "Symmio is liquidating this account: only closing is allowed until it ends."
    elif cause is not None:
        message = (
            f"The account's health {money(health)} {_RULE} went below zero at {cause.symbol} "
            f"{fmt(cause.price)}: only closing is allowed until it is above zero."
        )
    else:
        message = (
            f"The account's health {money(health)} {_RULE} is below zero: only closing is allowed "
            "until it is above zero."
        )
    return FlagReason(
        episode=uuid.uuid4().hex[:16],
        health=money(health),
        symbol=cause.symbol if cause else None,
        price=fmt(cause.price) if cause else None,
        ts=cause.ts if cause else None,
        since=now,
        message=message,
    )


def restored_reason(now: float) -> FlagReason:
    """For a flag found in Redis whose value cannot be read: the account stays flagged."""
    return FlagReason(
        episode=uuid.uuid4().hex[:16],
        health="",
        symbol=None,
        price=None,
        ts=None,
        since=now,
        message="The account is flagged for liquidation: only closing is allowed.",
    )


def alert(
    account: str, reason: FlagReason, holdings: Holdings, *, names: Mapping[int, str], lanes: Sequence[str]
) -> NewNotification:
    """The episode's `LiquidatePosition` alert, on the account's largest position in the symbol
    that flagged it (any position if none), idempotent by its event key."""
    quotes = holdings.quotes
    quote = max(
        (q for q in quotes if reason.symbol is None or names.get(q.symbol_id) == reason.symbol),
        key=lambda q: q.open_quantity,
        default=quotes[0] if quotes else None,
    )
    counterparty = (quote.party_b if quote else None) or lanes[lane_for(account, len(lanes))]
    return NewNotification(
        account=account,
        counterparty_address=counterparty,
        last_seen_action=ACTION,
        action_status=ActionStatus.SEEN,
        state_type=StateType.ALERT,
        event_key=f"liquidation:{account}:{reason.episode}",
        quote_id=quote.quote_id if quote else None,
        failure_type="health_below_zero",
        failure_message=reason.message,
    )


def hash_fields(
    e: Evaluation,
    inp: HealthInputs,
    holdings: Holdings,
    *,
    liquidation_prices: Mapping[int, Decimal],
    names: Mapping[int, str],
    flagged: bool,
    now: float,
) -> dict[str, str]:
    """The `{prefix}health:{account}` hash (solver.risk.flags.HEALTH_FIELDS); {} if unpriced."""
    if e.health is None or e.upnl is None:
        return {}
    locked = _CTX.add(_CTX.add(inp.cva, inp.lf), holdings.party_amm)
    available = _CTX.subtract(_CTX.subtract(_CTX.add(inp.allocated, e.upnl), locked), holdings.pending_locked)
    liq = {names.get(s, str(s)): money(p) for s, p in liquidation_prices.items()}
    exposure = {names.get(s, str(s)): [money(x.net_quantity), money(x.cost)] for s, x in sorted(inp.exposures.items())}
    return {
        "allocated": money(inp.allocated),
        "locked_cva": money(inp.cva),
        "locked_lf": money(inp.lf),
        "locked_party_amm": money(holdings.party_amm),
        "pending_locked": money(holdings.pending_locked),
        "upnl": money(e.upnl),
        "available": money(available),
        "health": money(e.health),
        "liquidation_prices": json.dumps(liq),
        "exposure": json.dumps(exposure),
        "flagged": "1" if flagged else "0",
        "mark_ts": repr(e.mark_ts) if e.mark_ts is not None else "",
        "updated": repr(now),
    }
