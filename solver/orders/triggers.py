"""Pure stop loss / take profit logic (trading-rules.md §4): when a trigger fires, its close
price, and the sorted books that find the triggers a price tick crosses.

Two directions cover the four cases. A trigger fires *below* (the mark fell to its level) for a
LONG stop loss and a SHORT take profit, *above* (the mark rose to its level) for a LONG take
profit and a SHORT stop loss. Each symbol keeps one sorted list per direction, arranged so the
triggers a mark crosses are always a suffix: a tick costs a binary search plus the triggers it
crosses, however many orders rest in the book.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal

LONG, SHORT = 0, 1
STOP_LOSS, TAKE_PROFIT = "stop_loss", "take_profit"
KINDS = (STOP_LOSS, TAKE_PROFIT)
_CTX = Context(prec=120)
_ONE = Decimal(1)
_WEI = Decimal(1).scaleb(-18)


def fires_below(position_type: int, kind: str) -> bool:
    """True when the trigger fires as the mark falls to its level (LONG SL, SHORT TP)."""
    if position_type not in (LONG, SHORT):
        raise ValueError(f"unknown position type {position_type}")
    if kind not in KINDS:
        raise ValueError(f"unknown trigger kind {kind!r}")
    return (position_type == LONG) == (kind == STOP_LOSS)


def crosses(position_type: int, kind: str, level: Decimal, mark: Decimal) -> bool:
    """LONG SL: mark ≤ sl; LONG TP: mark ≥ tp; SHORT the reverse."""
    return mark <= level if fires_below(position_type, kind) else mark >= level


def placement_error(position_type: int, kind: str, level: Decimal, mark: Decimal) -> str | None:
    """Why a trigger cannot be placed at this mark (it would fire at once), or None.

    LONG: take profit above the mark, stop loss below it; SHORT: the reverse.
    """
    if not crosses(position_type, kind, level, mark):
        return None
    side = "LONG" if position_type == LONG else "SHORT"
    what = "stop loss" if kind == STOP_LOSS else "take profit"
    where = "below" if fires_below(position_type, kind) else "above"
    return f"The {what} of a {side} must be {where} the current mark price."


def close_price(mark: Decimal, position_type: int, slippage: Decimal, precision: int) -> Decimal:
    """The requested price of the MARKET close a trigger sends.

    LONG: mark × (1 − slippage) rounded down to the symbol's price precision; SHORT:
    mark × (1 + slippage) rounded up. Rounding away from the mark keeps the close fillable: the
    contract fills a LONG close at or above the requested price, a SHORT at or below. A LONG
    price too small for the precision falls back to 18 decimals (never 0).
    """
    if position_type == LONG:
        raw = _CTX.multiply(mark, _CTX.subtract(_ONE, slippage))
        price = raw.quantize(Decimal(1).scaleb(-precision), rounding=ROUND_FLOOR, context=_CTX)
        if price <= 0:
            price = max(raw.quantize(_WEI, rounding=ROUND_FLOOR, context=_CTX), _WEI)
        return price
    if position_type == SHORT:
        raw = _CTX.multiply(mark, _CTX.add(_ONE, slippage))
        return raw.quantize(Decimal(1).scaleb(-precision), rounding=ROUND_CEILING, context=_CTX)
    raise ValueError(f"unknown position type {position_type}")


@dataclass(frozen=True, slots=True)
class Trigger:
    """One armed order as the books hold it."""

    order_id: int
    quote_id: int
    symbol_id: int
    position_type: int
    kind: str
    level: Decimal

    @property
    def below(self) -> bool:
        return fires_below(self.position_type, self.kind)


class TriggerBooks:
    """Armed triggers per symbol, sorted so `pop_crossed` touches only the crossed ones.

    `below` lists hold (level, id) ascending: a mark m crosses every level ≥ m, a suffix.
    `above` lists hold (−level, id) ascending: m crosses every level ≤ m, i.e. −level ≥ −m, a
    suffix too. The id breaks ties, so equal levels coexist and removal finds the exact entry.
    """

    def __init__(self) -> None:
        self._below: dict[int, list[tuple[Decimal, int]]] = {}
        self._above: dict[int, list[tuple[Decimal, int]]] = {}
        self._orders: dict[int, Trigger] = {}

    def __len__(self) -> int:
        return len(self._orders)

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._orders

    def __iter__(self) -> Iterator[Trigger]:
        return iter(list(self._orders.values()))

    def get(self, order_id: int) -> Trigger | None:
        return self._orders.get(order_id)

    def _book(self, t: Trigger) -> tuple[list[tuple[Decimal, int]], tuple[Decimal, int]]:
        if t.below:
            return self._below.setdefault(t.symbol_id, []), (t.level, t.order_id)
        return self._above.setdefault(t.symbol_id, []), (-t.level, t.order_id)

    def add(self, t: Trigger) -> None:
        """Insert (or replace the entry with the same order id)."""
        if t.level <= 0 or t.order_id <= 0:
            raise ValueError("a trigger needs a positive level and order id")
        self.remove(t.order_id)
        book, key = self._book(t)
        insort(book, key)
        self._orders[t.order_id] = t

    def load(self, triggers: Iterable[Trigger]) -> None:
        """Add many at once: append, then sort each book once (a reload of 100,000 orders would
        otherwise pay an insort each)."""
        latest = {t.order_id: t for t in triggers}  # the last one of an id wins, as with add
        for t in latest.values():
            if t.level <= 0 or t.order_id <= 0:
                raise ValueError("a trigger needs a positive level and order id")
            self.remove(t.order_id)  # while every book is still sorted
        touched: set[int] = set()
        for t in latest.values():
            book, key = self._book(t)
            book.append(key)
            touched.add(id(book))
            self._orders[t.order_id] = t
        for books in (self._below, self._above):
            for book in books.values():
                if id(book) in touched:
                    book.sort()

    def remove(self, order_id: int) -> Trigger | None:
        t = self._orders.pop(order_id, None)
        if t is None:
            return None
        book, key = self._book(t)
        i = bisect_left(book, key)
        if i < len(book) and book[i] == key:
            del book[i]
        return t

    def crossed(self, symbol_id: int, mark: Decimal) -> list[Trigger]:
        """The triggers `mark` crosses in this symbol (left in the books)."""
        out: list[Trigger] = []
        for book, probe in self._suffixes(symbol_id, mark):
            i = bisect_left(book, probe)
            out.extend(self._orders[oid] for _, oid in book[i:])
        return out

    def pop_crossed(self, symbol_id: int, mark: Decimal) -> list[Trigger]:
        """Remove and return the triggers `mark` crosses in this symbol."""
        out: list[Trigger] = []
        for book, probe in self._suffixes(symbol_id, mark):
            i = bisect_left(book, probe)
            if i == len(book):
                continue
            out.extend(self._orders.pop(oid) for _, oid in book[i:])
            del book[i:]
        return out

    def _suffixes(self, symbol_id: int, mark: Decimal) -> list[tuple[list[tuple[Decimal, int]], tuple[Decimal, int]]]:
        # Order ids are positive, so (key, -1) sorts before every entry with that key: bisect_left
        # on it finds the first entry whose key is ≥ the probe.
        return [(self._below.get(symbol_id, []), (mark, -1)), (self._above.get(symbol_id, []), (-mark, -1))]
