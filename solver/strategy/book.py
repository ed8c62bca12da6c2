"""Pure: the index of strategy orders waiting for their condition, so a price tick looks only at
the orders it can make eligible (work per tick grows with those, not with all orders).

- LIMIT, per (symbol, side), sorted by eligibility threshold `t` (trading-rules.md §3): a LONG is
  eligible when mark ≤ t = P × (1 − slippage), a SHORT when mark ≥ t = P × (1 + slippage). A
  tick bisects to the eligible end of the list.
- DCA, per symbol, a heap of due times; a due order stays in the symbol's `due` set (its price
  band is checked by the rules) until it is taken out.

Only orders that wait belong here: the engine takes an order out while one of its sub-orders is
in flight or it is being stepped, and puts it back (with its new due time) afterwards.
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass
from decimal import Decimal

LONG, SHORT = 0, 1


@dataclass(frozen=True, slots=True)
class Entry:
    order_id: int
    symbol_id: int
    side: int
    threshold: Decimal | None = None  # LIMIT
    due: Decimal | None = None  # DCA: unix seconds


class StrategyBook:
    def __init__(self) -> None:
        self._limit: dict[tuple[int, int], list[tuple[Decimal, int]]] = {}
        self._heap: dict[int, list[tuple[Decimal, int]]] = {}
        self._due: dict[int, set[int]] = {}
        self._entries: dict[int, Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._entries

    def add(self, entry: Entry) -> None:
        self.remove(entry.order_id)
        if entry.threshold is None and entry.due is None:
            entry = Entry(entry.order_id, entry.symbol_id, entry.side, due=Decimal(0))  # due at once
        self._entries[entry.order_id] = entry
        if entry.threshold is not None:
            bisect.insort(self._limit.setdefault((entry.symbol_id, entry.side), []), (entry.threshold, entry.order_id))
        else:
            assert entry.due is not None
            heapq.heappush(self._heap.setdefault(entry.symbol_id, []), (entry.due, entry.order_id))

    def remove(self, order_id: int) -> Entry | None:
        entry = self._entries.pop(order_id, None)
        if entry is None:
            return None
        if entry.threshold is not None:
            book = self._limit[(entry.symbol_id, entry.side)]
            i = bisect.bisect_left(book, (entry.threshold, order_id))
            if i < len(book) and book[i] == (entry.threshold, order_id):
                del book[i]
        else:
            # Heap entries are dropped lazily (checked against _entries when they surface).
            self._due.get(entry.symbol_id, set()).discard(order_id)
        return entry

    def candidates(self, symbol_id: int, mark: Decimal, now: Decimal) -> list[int]:
        """Orders of the symbol a step may send for now: LIMIT orders the mark makes eligible and
        DCA orders that are due. They stay in the book until `remove`."""
        out: list[int] = []
        longs = self._limit.get((symbol_id, LONG))
        if longs:  # eligible: threshold ≥ mark, the top of the list
            i = bisect.bisect_left(longs, (mark, -1))
            out.extend(oid for _, oid in longs[i:])
        shorts = self._limit.get((symbol_id, SHORT))
        if shorts:  # eligible: threshold ≤ mark, the bottom of the list
            j = bisect.bisect_right(shorts, (mark, 2**63))
            out.extend(oid for _, oid in shorts[:j])
        heap = self._heap.get(symbol_id)
        due = self._due.setdefault(symbol_id, set())
        while heap and heap[0][0] <= now:
            when, oid = heapq.heappop(heap)
            entry = self._entries.get(oid)
            # A stale heap item (removed, re-added with another due time or symbol) is dropped.
            if entry is not None and entry.threshold is None and entry.symbol_id == symbol_id and entry.due == when:
                due.add(oid)
        out.extend(sorted(due))
        return out

    def symbols(self) -> set[int]:
        return {e.symbol_id for e in self._entries.values()}


__all__ = ["LONG", "SHORT", "Entry", "StrategyBook"]
