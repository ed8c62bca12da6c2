"""Pure: what a strategy order does next (trading-rules.md §3). No I/O, no clock: the engine
passes the mark and the time in, and applies what comes out with a compare-and-set.

- `decide(order, market, mark, now)`: wait (and why), send a sub-order (price and size), or
  finish (the terminal status and why).
- `sized(...)`: sub-order size: margin `current_input / (max_suborders − executed)`, quantity
  `margin × leverage / price` rounded down to the quantity precision; a slice below the
  minimum quote value is merged with the next ones (`slots` > 1), the last takes the remainder.
- `sent` / `opened` / `failed`: the counters and amounts after each step (the table of §3):
  `current_input` goes down when a sub-order is sent and back up if it fails, `current_output`
  never decreases, every attempt consumes an invocation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal, localcontext

from solver.db.models import StrategyStatus, StrategyType

LONG, SHORT = 0, 1
RETRY_BACKOFF_S = 2  # a failed sub-order is retried no sooner than this (not a busy loop of refusals)
WEI = Decimal("1e-18")
_EXACT = Context(prec=80)  # amounts up to uint256 in 18 decimals, exactly


@dataclass(frozen=True, slots=True)
class Terms:
    """What the order was created with (never changes)."""

    type: StrategyType
    position_type: int
    leverage: Decimal
    initial_input: Decimal
    max_suborders: int
    max_invocations: int
    slippage: Decimal
    limit_price: Decimal | None = None  # LIMIT
    delay_s: int | None = None  # DCA
    band_from: Decimal | None = None  # DCA, optional
    band_to: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """What changes as it runs. `next_due` (unix seconds): DCA's next sub-order time, and for
    both types the earliest retry after a failure."""

    status: StrategyStatus = StrategyStatus.ACTIVE
    current_input: Decimal = Decimal(0)
    current_output: Decimal = Decimal(0)
    suborders_executed: int = 0
    invocations_executed: int = 0
    active_transactions: int = 0
    next_due: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Market:
    """The symbol's sizes, from its SymbolConfig."""

    price_precision: int
    quantity_precision: int
    min_quote_value: Decimal  # cva + lf + partyAmm = N / L must reach it


@dataclass(frozen=True, slots=True)
class Sizing:
    margin: Decimal  # N / L of the sub-order: what leaves current_input
    quantity: Decimal
    slots: int  # sub-orders it counts for (1, or more when small slices are merged)


@dataclass(frozen=True, slots=True)
class Wait:
    reason: str


@dataclass(frozen=True, slots=True)
class Send:
    price: Decimal  # the request price
    sizing: Sizing
    market_order: bool  # DCA sends MARKET, LIMIT sends LIMIT at the user's price


@dataclass(frozen=True, slots=True)
class Finish:
    status: StrategyStatus
    reason: str | None = None


Decision = Wait | Send | Finish


# -- conditions ---------------------------------------------------------------------------------


def limit_eligible(position_type: int, mark: Decimal, price: Decimal, slippage: Decimal) -> bool:
    """LONG when mark ≤ P × (1 − slippage); SHORT when mark ≥ P × (1 + slippage) (the seed's
    example: sell at ≥ 10 with slippage 0.001 fires at 10.01)."""
    if position_type == LONG:
        return mark <= price * (1 - slippage)
    return mark >= price * (1 + slippage)


def in_band(mark: Decimal, lo: Decimal | None, hi: Decimal | None) -> bool:
    return (lo is None or mark >= lo) and (hi is None or mark <= hi)


def dca_price(position_type: int, mark: Decimal, slippage: Decimal, price_precision: int) -> Decimal:
    """mark × (1 ± slippage), rounded to the price precision toward the mark (never past the
    slippage the user allowed), and never on the wrong side of the mark nor below one step."""
    step = Decimal(1).scaleb(-price_precision)
    if position_type == LONG:
        price = (mark * (1 + slippage)).quantize(step, rounding=ROUND_FLOOR)
        return max(price, mark.quantize(step, rounding=ROUND_CEILING))
    price = (mark * (1 - slippage)).quantize(step, rounding=ROUND_CEILING)
    return max(min(price, mark.quantize(step, rounding=ROUND_FLOOR)), step)


def _quantity(margin_num: Decimal, margin_den: int, leverage: Decimal, price: Decimal, step: Decimal) -> Decimal:
    """floor(margin_num / margin_den × leverage / price) to the step, in one exact division."""
    with localcontext(_EXACT):
        return (margin_num * leverage / (margin_den * price)).quantize(step, rounding=ROUND_FLOOR)


def _margin(quantity: Decimal, price: Decimal, leverage: Decimal) -> Decimal:
    """N / L at 18 decimals, rounded up: what leaves current_input, so the amounts stay exact
    at the database's scale and never exceed what the quantity needs by more than 1e-18."""
    with localcontext(_EXACT):
        return (quantity * price / leverage).quantize(WEI, rounding=ROUND_CEILING)


def sized(current_input: Decimal, remaining: int, leverage: Decimal, price: Decimal, market: Market) -> Sizing | None:
    """The next sub-order at `price`, or None when no slice of the remaining margin (up to all of
    it) reaches the minimum quote value with at least one quantity step. A slice that would
    leave a remainder too small to be a sub-order of its own takes that remainder as well."""
    if remaining < 1 or current_input <= 0 or price <= 0:
        return None
    step = Decimal(1).scaleb(-market.quantity_precision)
    for slots in range(1, remaining + 1):
        quantity = _quantity(current_input * slots, remaining, leverage, price, step)
        if quantity <= 0:
            continue
        used = _margin(quantity, price, leverage)
        if used < market.min_quote_value:
            continue
        if slots < remaining and current_input - used < market.min_quote_value:
            break  # the rest could never be sent on its own: this one is the last and takes it
        return Sizing(margin=used, quantity=quantity, slots=slots)
    else:
        return None
    quantity = _quantity(current_input, 1, leverage, price, step)
    return Sizing(margin=_margin(quantity, price, leverage), quantity=quantity, slots=remaining)


# -- the decision -------------------------------------------------------------------------------


def decide(terms: Terms, p: Progress, market: Market, mark: Decimal | None, now: Decimal) -> Decision:
    """The next step of a live order; `mark` is None when there is no fresh price."""
    if p.status == StrategyStatus.REQUESTED_CANCELLATION:
        return Finish(StrategyStatus.CANCELLED_BY_USER) if p.active_transactions == 0 else Wait("sub-order in flight")
    if p.status != StrategyStatus.ACTIVE:
        return Wait(f"order is {p.status.value}")
    if p.active_transactions > 0:
        return Wait("sub-order in flight")  # one at a time: each sizes from the previous outcome
    if p.suborders_executed >= terms.max_suborders:
        return Finish(StrategyStatus.EXECUTED)
    if p.invocations_executed >= terms.max_invocations:
        return Finish(
            StrategyStatus.MAX_RETRIES_EXCEEDED,
            f"All {terms.max_invocations} invocations used; {p.suborders_executed} of "
            f"{terms.max_suborders} sub-orders executed.",
        )
    if p.next_due is not None and now < p.next_due:
        return Wait("not due yet")
    if mark is None:
        return Wait("no fresh price")
    if terms.type == StrategyType.LIMIT:
        assert terms.limit_price is not None
        if not limit_eligible(terms.position_type, mark, terms.limit_price, terms.slippage):
            return Wait("limit price not reached")
        price, market_order = terms.limit_price, False
    else:
        if not in_band(mark, terms.band_from, terms.band_to):
            return Wait("mark outside the price range")
        price, market_order = dca_price(terms.position_type, mark, terms.slippage, market.price_precision), True
    sizing = sized(p.current_input, terms.max_suborders - p.suborders_executed, terms.leverage, price, market)
    if sizing is None and p.current_input >= market.min_quote_value:
        # Enough margin, but at this price it buys less than one quantity step: the price may move.
        return Wait("sub-order smaller than one quantity step at this price")
    if sizing is None:
        reason = (
            f"The remaining margin {p.current_input.normalize():f} is below the minimum quote value "
            f"{market.min_quote_value.normalize():f} at price {price.normalize():f}."
        )
        done = StrategyStatus.EXECUTED if p.suborders_executed > 0 else StrategyStatus.CANCELLED_BY_SYSTEM
        return Finish(done, reason)
    return Send(price=price, sizing=sizing, market_order=market_order)


# -- the steps ----------------------------------------------------------------------------------


def sent(p: Progress, sizing: Sizing) -> Progress:
    """A sub-order is handed to the instant open flow: its margin leaves current_input and it
    consumes an invocation, whatever its outcome."""
    return replace(
        p,
        current_input=p.current_input - sizing.margin,
        invocations_executed=p.invocations_executed + 1,
        active_transactions=p.active_transactions + 1,
    )


def opened(terms: Terms, p: Progress, *, slots: int, quantity: Decimal, sent_at: Decimal) -> Progress:
    """Its quote opened with `quantity`. DCA: sub-order k is due at creation + k × delay; one
    sent a whole delay or more late (it waited for the price range) restarts the grid from its
    send time, so a long wait never releases a burst of sub-orders at once."""
    next_due = p.next_due
    if terms.type == StrategyType.DCA:
        assert terms.delay_s is not None
        # On time: the grid from creation (due + delay). Late by a whole delay or more (it waited
        # for the price range): the next one comes a delay after this one, not at once.
        grid = (p.next_due if p.next_due is not None else sent_at) + terms.delay_s
        next_due = grid if grid > sent_at else sent_at + terms.delay_s
    return replace(
        p,
        current_output=p.current_output + quantity,
        suborders_executed=min(terms.max_suborders, p.suborders_executed + slots),
        active_transactions=p.active_transactions - 1,
        next_due=next_due,
    )


def failed(p: Progress, *, margin: Decimal, now: Decimal) -> Progress:
    """Refused or failed: the margin goes back; the retry waits RETRY_BACKOFF_S."""
    retry_at = now + RETRY_BACKOFF_S
    return replace(
        p,
        current_input=p.current_input + margin,
        active_transactions=p.active_transactions - 1,
        next_due=retry_at if p.next_due is None else max(p.next_due, retry_at),
    )


__all__ = [
    "LONG",
    "RETRY_BACKOFF_S",
    "SHORT",
    "Decision",
    "Finish",
    "Market",
    "Progress",
    "Send",
    "Sizing",
    "Terms",
    "Wait",
    "dca_price",
    "decide",
    "failed",
    "in_band",
    "limit_eligible",
    "opened",
    "sent",
    "sized",
]
