"""Per-symbol price freshness for health-like reporting (trading-rules.md §5). Pure.

The age is `now - ts` with `ts` the *source* time of the latest price; a price is stale when
its age exceeds `max_age_s` (settings.risk.max_price_age_s, the same limit MarkPrices enforces).
A missing or unusable price is never fresh and never reads as 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from solver.pricing.cache import PricePoint


class PriceState(StrEnum):
    FRESH = "fresh"
    STALE = "stale"  # older than max_age_s
    MISSING = "missing"  # never published (or expired)
    INVALID = "invalid"  # stored but not usable (non-finite or non-positive)


@dataclass(frozen=True, slots=True)
class PriceStatus:
    symbol: str
    state: PriceState
    price: Decimal | None
    ts: float | None  # source time of the latest price
    age_s: float | None  # now - ts; negative when the source clock runs ahead of ours

    @property
    def fresh(self) -> bool:
        return self.state is PriceState.FRESH

    def as_dict(self) -> dict[str, object]:
        return {
            "symbol": self.symbol,
            "state": self.state.value,
            "fresh": self.fresh,
            "price": None if self.price is None else str(self.price),
            "ts": self.ts,
            "age_s": None if self.age_s is None else round(self.age_s, 3),
        }


def price_status(
    symbols: Iterable[str], latest: Mapping[str, PricePoint], *, now: float, max_age_s: Decimal | float
) -> dict[str, PriceStatus]:
    """Status of each symbol (upper-cased market name) given the latest points by name."""
    limit = float(max_age_s)
    out: dict[str, PriceStatus] = {}
    for raw in symbols:
        name = raw.upper()
        point = latest.get(name)
        if point is None:
            out[name] = PriceStatus(name, PriceState.MISSING, None, None, None)
            continue
        age = point.age(now)
        if not point.price.is_finite() or point.price <= 0 or not math.isfinite(point.ts):
            state = PriceState.INVALID
        elif age > limit:
            state = PriceState.STALE
        else:
            state = PriceState.FRESH
        out[name] = PriceStatus(name, state, point.price, point.ts, age)
    return out


def all_fresh(statuses: Mapping[str, PriceStatus]) -> bool:
    return all(s.fresh for s in statuses.values())


def not_fresh(statuses: Mapping[str, PriceStatus]) -> list[str]:
    """Symbols that cannot be traded on right now, sorted."""
    return sorted(name for name, s in statuses.items() if not s.fresh)
