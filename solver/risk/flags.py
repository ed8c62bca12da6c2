"""Liquidation flags and account health in Redis, written by the engine's health loop
(solver.risk.health_engine) and read by the API's pre-trade gate and WebSocket channels.

Keys (`{prefix}` is settings.redis_prefix, `{account}` the EIP-55 sub-account address):

- `{prefix}reduce_only:{account}`: exists while the account is flagged for liquidation
  (trading-rules.md §6: its health went below zero); only closes are allowed. The value is the
  reason as JSON: `{"episode", "health", "symbol", "price", "ts", "since", "message"}`. The
  engine deletes it when the account is healthy again on fresh prices (or holds no position).
- `{prefix}health:{account}`: hash of the account's health as the engine last computed it,
  see `HEALTH_FIELDS`. `upnl`/`available`/`health` are a snapshot at `mark_ts`; the linear form
  in `exposure` (`{symbol: [net quantity, cost]}`, upnl = Σ net × mark − cost) lets a reader
  recompute the uPnL at newer marks without the engine writing every account on every tick.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from redis.asyncio import Redis

from solver.db.types import checksum_address

HEALTH_FIELDS = (
    "allocated",  # from the chain (allocatedBalanceOfPartyA)
    "locked_cva",  # Σ cva of the open quotes (quote mirror)
    "locked_lf",
    "locked_party_amm",
    "pending_locked",  # Σ cva + lf + partyAmm of PENDING/LOCKED quotes (quote mirror)
    "upnl",
    "available",  # allocated + upnl − locked (cva + lf + partyAmm) − pending_locked
    "health",  # allocated + upnl − (cva + lf): liquidatable below zero
    "liquidation_prices",  # JSON {symbol name: price} at the other marks of mark_ts
    "exposure",  # JSON {symbol name: [net quantity, cost]}
    "flagged",  # "1" while reduce-only
    "mark_ts",  # oldest source time of the marks used ("" if none)
    "updated",  # engine time of the snapshot, unix seconds
)


def reduce_only_key(prefix: str, account: str) -> str:
    return f"{prefix}reduce_only:{checksum_address(account)}"


def health_key(prefix: str, account: str) -> str:
    return f"{prefix}health:{checksum_address(account)}"


@dataclass(frozen=True, slots=True)
class FlagReason:
    episode: str  # unique per account and flag episode (names its LiquidatePosition alert)
    health: str  # decimal string, < 0
    symbol: str | None  # the symbol whose tick flagged it (None: a balance or position change)
    price: str | None
    ts: float | None  # source time of that price
    since: float  # engine time the flag was set, unix seconds
    message: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> FlagReason | None:
        try:
            data: Any = json.loads(raw)
            return cls(
                episode=str(data["episode"]),
                health=str(data["health"]),
                symbol=data.get("symbol"),
                price=data.get("price"),
                ts=data.get("ts"),
                since=float(data["since"]),
                message=str(data.get("message", "")),
            )
        except (ValueError, KeyError, TypeError):
            return None


class ReduceOnlyFlags:
    """Reads the liquidation flags (the API's gate)."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    async def is_flagged(self, account: str) -> bool:
        return bool(await self._redis.exists(reduce_only_key(self._prefix, account)))

    async def reason(self, account: str) -> FlagReason | None:
        raw = await self._redis.get(reduce_only_key(self._prefix, account))
        return FlagReason.from_json(raw) if raw is not None else None

    async def all(self) -> dict[str, FlagReason | None]:
        """Every flagged account (SCAN; the engine's start). A value that cannot be decoded
        maps to None (the account is still flagged)."""
        prefix = f"{self._prefix}reduce_only:"
        keys: list[bytes | str] = [k async for k in self._redis.scan_iter(match=f"{prefix}*", count=1000)]
        if not keys:
            return {}
        values = await self._redis.mget(keys)
        out: dict[str, FlagReason | None] = {}
        for key, raw in zip(keys, values, strict=True):
            name = key.decode() if isinstance(key, bytes) else key
            if raw is not None:
                out[name[len(prefix) :]] = FlagReason.from_json(raw)
        return out
