"""Account balance math (trading-rules.md §2): pure, Decimal only, human units.

```
upnl      = Σ side × (mark − openedPrice) × openQuantity      (LONG +1, SHORT −1)
available = allocated + upnl − locked − pending
```
A position whose mark is unknown is an error, never a zero: the caller decides what to answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Context, Decimal

_CTX = Context(prec=120)
LONG = 0
SHORT = 1
_ZERO = Decimal(0)


class MissingMarkError(LookupError):
    """No mark price for some positions' symbols; `symbol_ids` lists them."""

    def __init__(self, symbol_ids: Iterable[int]) -> None:
        self.symbol_ids = tuple(sorted(set(symbol_ids)))
        super().__init__(f"no mark price for symbol ids {list(self.symbol_ids)}")


@dataclass(frozen=True, slots=True)
class Position:
    symbol_id: int
    position_type: int  # 0 LONG, 1 SHORT (chain.md)
    opened_price: Decimal
    open_quantity: Decimal  # quantity − closed amount


@dataclass(frozen=True, slots=True)
class Locked:
    """cva, lf and partyAmm of a group of quotes."""

    cva: Decimal = _ZERO
    lf: Decimal = _ZERO
    party_amm: Decimal = _ZERO

    @property
    def total(self) -> Decimal:
        return _CTX.add(_CTX.add(self.cva, self.lf), self.party_amm)

    def __add__(self, other: Locked) -> Locked:
        return Locked(
            cva=_CTX.add(self.cva, other.cva),
            lf=_CTX.add(self.lf, other.lf),
            party_amm=_CTX.add(self.party_amm, other.party_amm),
        )


def side(position_type: int) -> int:
    if position_type == LONG:
        return 1
    if position_type == SHORT:
        return -1
    raise ValueError(f"unknown position type {position_type}")


def position_upnl(position: Position, mark: Decimal) -> Decimal:
    diff = _CTX.subtract(mark, position.opened_price)
    return _CTX.multiply(_CTX.multiply(Decimal(side(position.position_type)), diff), position.open_quantity)


def upnl(positions: Iterable[Position], marks: Mapping[int, Decimal]) -> Decimal:
    """Σ over positions; MissingMarkError (listing every unpriced symbol) if a mark is absent."""
    items = list(positions)
    missing = [p.symbol_id for p in items if p.symbol_id not in marks]
    if missing:
        raise MissingMarkError(missing)
    total = _ZERO
    for p in items:
        total = _CTX.add(total, position_upnl(p, marks[p.symbol_id]))
    return total


def notional(positions: Iterable[Position], marks: Mapping[int, Decimal]) -> Decimal:
    """Σ openQuantity × mark: the current size of the open positions."""
    items = list(positions)
    missing = [p.symbol_id for p in items if p.symbol_id not in marks]
    if missing:
        raise MissingMarkError(missing)
    total = _ZERO
    for p in items:
        total = _CTX.add(total, _CTX.multiply(p.open_quantity, marks[p.symbol_id]))
    return total


def available_balance(*, allocated: Decimal, upnl: Decimal, locked: Locked, pending: Locked) -> Decimal:
    """allocated + upnl − (locked cva+lf+partyAmm) − (pending cva+lf+partyAmm); may be negative."""
    return _CTX.subtract(_CTX.subtract(_CTX.add(allocated, upnl), locked.total), pending.total)
