"""Account health and liquidation prices (trading-rules.md §6): pure, Decimal only, human units.

Symmio liquidates a partyA when

    health = allocated + upnl − (locked cva + locked lf) < 0

Per symbol s an account's positions collapse to a line in that symbol's mark m_s:

    upnl_s(m_s) = q_s × m_s − k_s      q_s = Σ side × openQty          (net quantity)
                                       k_s = Σ side × openedPrice × openQty (signed cost)
    health      = base + Σ_s upnl_s    base = allocated − cva − lf

so the price of symbol S at which health crosses zero, the other marks held fixed, solves a
linear equation:

    m*_S = (k_S − R_S) / q_S           R_S = base + Σ_{T≠S} upnl_T(m_T)
         = m_S − health / q_S

A net LONG (q_S > 0) is liquidated when the mark falls below m*_S, a net SHORT when it rises
above; a flat symbol (q_S = 0, e.g. a LONG hedged by an equal SHORT) has no liquidation price:
its uPnL does not move with the mark. For one LONG position this is
`entry − (allocated − cva − lf) / quantity` (SHORT: `entry + …`), the formula of the spec.

`guarded_key` is what the health book indexes: m*_S computed with every other mark at the
worst point of a band around a reference mark, so that while the other marks stay in their
bands, a mark of S on the safe side of the key proves the account healthy (see health_book).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Context, Decimal
from enum import IntEnum

from solver.risk.account import MissingMarkError, side

_CTX = Context(prec=120)  # sums and products of 18-decimal values: exact
_DIV = Context(prec=40, rounding=ROUND_HALF_EVEN)  # reported liquidation prices
_DIV_UP = Context(prec=40, rounding=ROUND_CEILING)
_DIV_DOWN = Context(prec=40, rounding=ROUND_FLOOR)
_ZERO = Decimal(0)


class Direction(IntEnum):
    """Which way a mark must move to liquidate: a net LONG falls BELOW, a net SHORT rises ABOVE."""

    BELOW = 1
    ABOVE = -1


@dataclass(frozen=True, slots=True)
class HealthPosition:
    """One open quote with the locked values that count for liquidation."""

    symbol_id: int
    position_type: int  # 0 LONG, 1 SHORT
    opened_price: Decimal
    open_quantity: Decimal  # quantity − closed amount
    cva: Decimal
    lf: Decimal


@dataclass(frozen=True, slots=True)
class Exposure:
    """An account's positions in one symbol as a line in its mark: upnl = q × mark − k."""

    net_quantity: Decimal  # q
    cost: Decimal  # k

    def upnl(self, mark: Decimal) -> Decimal:
        if not self.net_quantity:
            return -self.cost  # flat: the mark cancels out
        return _CTX.subtract(_CTX.multiply(self.net_quantity, mark), self.cost)


@dataclass(frozen=True, slots=True)
class HealthInputs:
    """Everything health depends on besides the marks."""

    allocated: Decimal
    cva: Decimal  # locked cva of the open positions
    lf: Decimal  # locked lf of the open positions
    exposures: Mapping[int, Exposure]  # symbol id -> exposure (flat symbols included)

    @property
    def base(self) -> Decimal:
        return _CTX.subtract(_CTX.subtract(self.allocated, self.cva), self.lf)

    def active_symbols(self) -> tuple[int, ...]:
        """Symbols whose mark moves health (non-zero net quantity), sorted."""
        return tuple(sorted(s for s, e in self.exposures.items() if e.net_quantity))


def exposures(positions: Iterable[HealthPosition]) -> dict[int, Exposure]:
    q: dict[int, Decimal] = {}
    k: dict[int, Decimal] = {}
    for p in positions:
        sgn = Decimal(side(p.position_type))
        signed_qty = _CTX.multiply(sgn, p.open_quantity)
        q[p.symbol_id] = _CTX.add(q.get(p.symbol_id, _ZERO), signed_qty)
        k[p.symbol_id] = _CTX.add(k.get(p.symbol_id, _ZERO), _CTX.multiply(signed_qty, p.opened_price))
    return {s: Exposure(q[s], k[s]) for s in q}


def inputs(allocated: Decimal, positions: Iterable[HealthPosition]) -> HealthInputs:
    items = list(positions)
    cva = _ZERO
    lf = _ZERO
    for p in items:
        cva = _CTX.add(cva, p.cva)
        lf = _CTX.add(lf, p.lf)
    return HealthInputs(allocated=allocated, cva=cva, lf=lf, exposures=exposures(items))


def health_of(*, allocated: Decimal, upnl: Decimal, cva: Decimal, lf: Decimal) -> Decimal:
    """allocated + upnl − (cva + lf): the account is liquidatable when this is below zero."""
    return _CTX.subtract(_CTX.add(allocated, upnl), _CTX.add(cva, lf))


def upnl(inp: HealthInputs, marks: Mapping[int, Decimal]) -> Decimal:
    """Σ upnl over symbols; MissingMarkError when an active symbol has no mark (flat ones need none)."""
    missing = [s for s, e in inp.exposures.items() if e.net_quantity and s not in marks]
    if missing:
        raise MissingMarkError(missing)
    total = _ZERO
    for s, e in inp.exposures.items():
        total = _CTX.add(total, e.upnl(marks[s]) if e.net_quantity else -e.cost)
    return total


def health(inp: HealthInputs, marks: Mapping[int, Decimal]) -> Decimal:
    return _CTX.add(inp.base, upnl(inp, marks))


def _rest(inp: HealthInputs, symbol_id: int, marks: Mapping[int, Decimal]) -> Decimal:
    """R_S: health without symbol S's uPnL (uses every mark but S's)."""
    total = inp.base
    missing: list[int] = []
    for s, e in inp.exposures.items():
        if s == symbol_id:
            continue
        if e.net_quantity and s not in marks:
            missing.append(s)
            continue
        total = _CTX.add(total, e.upnl(marks[s]) if e.net_quantity else -e.cost)
    if missing:
        raise MissingMarkError(missing)
    return total


def direction(net_quantity: Decimal) -> Direction | None:
    if net_quantity > 0:
        return Direction.BELOW
    if net_quantity < 0:
        return Direction.ABOVE
    return None


def liquidation_price(inp: HealthInputs, symbol_id: int, marks: Mapping[int, Decimal]) -> Decimal | None:
    """The mark of `symbol_id` at which health is zero, the other marks held at `marks`.

    None when the account is flat (or absent) in that symbol. The value may be ≤ 0: a net LONG
    whose liquidation price is ≤ 0 cannot be liquidated by this symbol; a net SHORT with one ≤ 0
    is below zero at any price. Rounded half-even to 40 significant digits.
    """
    e = inp.exposures.get(symbol_id)
    if e is None or not e.net_quantity:
        return None
    return _DIV.divide(_CTX.subtract(e.cost, _rest(inp, symbol_id, marks)), e.net_quantity)


def single_position_liquidation_price(
    *, position_type: int, entry: Decimal, quantity: Decimal, allocated: Decimal, cva: Decimal, lf: Decimal
) -> Decimal:
    """One position alone: LONG `entry − (allocated − cva − lf) / quantity`, SHORT `entry + …`."""
    if quantity <= 0:
        raise ValueError("quantity must be positive")
    cushion = _DIV.divide(_CTX.subtract(_CTX.subtract(allocated, cva), lf), quantity)
    return _CTX.subtract(entry, cushion) if side(position_type) > 0 else _CTX.add(entry, cushion)


def band_keys(
    inp: HealthInputs, symbol_id: int, refs: Mapping[int, Decimal], band: Decimal
) -> tuple[Direction, Decimal, Decimal] | None:
    """The range of the liquidation price of `symbol_id` while every other active mark m_T stays
    in `[refs[T] × (1 − band), refs[T] × (1 + band)]`: (direction, guarded, optimistic).

    `guarded` is the worst case (a net LONG's highest m*, a net SHORT's lowest), `optimistic`
    the best case, each rounded further outward. So, other marks in their bands: a mark on the
    safe side of `guarded` (at or above it for a LONG) proves health ≥ 0, and a mark strictly
    beyond `optimistic` (below it for a LONG) proves health < 0. None when flat.
    """
    e = inp.exposures.get(symbol_id)
    if e is None or not e.net_quantity:
        return None
    rest = _rest(inp, symbol_id, refs)
    slack = _ZERO
    for s, other in inp.exposures.items():
        if s != symbol_id and other.net_quantity:
            slack = _CTX.add(slack, _CTX.multiply(abs(other.net_quantity), refs[s]))
    slack = _CTX.multiply(band, slack)
    worst = _CTX.subtract(e.cost, _CTX.subtract(rest, slack))  # k − (R − W)
    best = _CTX.subtract(e.cost, _CTX.add(rest, slack))  # k − (R + W)
    if e.net_quantity > 0:
        return Direction.BELOW, _DIV_UP.divide(worst, e.net_quantity), _DIV_DOWN.divide(best, e.net_quantity)
    return Direction.ABOVE, _DIV_DOWN.divide(worst, e.net_quantity), _DIV_UP.divide(best, e.net_quantity)


def guarded_key(
    inp: HealthInputs, symbol_id: int, refs: Mapping[int, Decimal], band: Decimal
) -> tuple[Direction, Decimal] | None:
    """The worst-case liquidation price of `band_keys`: while each other mark m_T stays within
    `band` of `refs[T]`, a net LONG whose mark is at or above it, or a net SHORT whose mark is at
    or below it, has health ≥ 0. None when flat."""
    keys = band_keys(inp, symbol_id, refs, band)
    return None if keys is None else (keys[0], keys[1])


def is_liquidatable(value: Decimal) -> bool:
    """Symmio's test: strictly below zero."""
    return value < 0
