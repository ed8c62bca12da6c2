"""PartyA balances and uPnL from the chain, fresh marks and the solver's own pending requests.

Math lives in solver.risk.account; this module gathers its inputs. Chain failures become a 503
with a readable message (never a 500), stale or missing marks a 503 (never a zero uPnL).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

from eth_utils.address import is_address, to_checksum_address

from solver.chain.reader import ChainReader
from solver.chain.types import LockedValues, OnChainQuote, PartyABalances
from solver.core.clock import Clock
from solver.core.errors import ErrorCode, SolverError
from solver.core.units import from_wei
from solver.market.marks import MarkPrices
from solver.market.repository import OPEN_STATUSES, MarketStats
from solver.risk.account import Locked, Position, available_balance, notional, upnl

log = logging.getLogger("solver.market")
T = TypeVar("T")

_CHAIN_CONCURRENCY = 8  # parallel RPC reads per request (an owner may have many sub-accounts)


@dataclass(frozen=True, slots=True)
class PartyABalance:
    allocated: Decimal
    available: Decimal
    locked: Locked
    pending: Locked
    notional: Decimal
    upnl: Decimal
    timestamp: int


@dataclass(frozen=True, slots=True)
class Upnl:
    upnl: Decimal
    timestamp: int


@dataclass(frozen=True, slots=True)
class _AccountState:
    balances: PartyABalances
    positions: list[OnChainQuote]
    unconfirmed: Locked


class AccountBalances:
    def __init__(self, *, chain: ChainReader, stats: MarketStats, marks: MarkPrices, clock: Clock) -> None:
        self._chain = chain
        self._stats = stats
        self._marks = marks
        self._clock = clock

    async def of_owner(self, owner: str) -> dict[str, PartyABalance]:
        """Every sub-account of a (checksummed) owner, keyed by its checksummed address."""
        accounts = await _read(self._chain.accounts_of(owner))
        gate = asyncio.Semaphore(_CHAIN_CONCURRENCY)

        async def one(address: str) -> _AccountState:
            async with gate:
                return await self._state(address)

        addresses = [str(to_checksum_address(a.address)) for a in accounts]
        states = await asyncio.gather(*(one(a) for a in addresses))
        marks = await self._marks.fresh_marks(q.symbol_id for s in states for q in s.positions)
        now = int(self._clock.time())
        return {addr: _balance(state, marks, now) for addr, state in zip(addresses, states, strict=True)}

    async def of_account(self, account: str) -> PartyABalance:
        """One (checksummed) account, as `of_owner` reports each of an owner's accounts."""
        state = await self._state(account)
        marks = await self._marks.fresh_marks(q.symbol_id for q in state.positions)
        return _balance(state, marks, int(self._clock.time()))

    async def upnl(self, account: str) -> Upnl:
        positions = _open(await _read(self._chain.open_positions(account)))
        marks = await self._marks.fresh_marks(q.symbol_id for q in positions)
        return Upnl(upnl=upnl(map(_position, positions), marks), timestamp=int(self._clock.time()))

    async def _state(self, account: str) -> _AccountState:
        balances, positions = await asyncio.gather(
            _read(self._chain.party_a_balances(account)),
            _read(self._chain.open_positions(account)),
        )
        extra = await self._stats.unconfirmed_instant_locked(account)
        return _AccountState(
            balances=balances,
            positions=_open(positions),
            unconfirmed=Locked(cva=extra.cva, lf=extra.lf, party_amm=extra.party_amm),
        )


def checksum(value: str, field: str) -> str:
    """EIP-55 form of an address from a path, or a 400 naming the field."""
    text = value.strip()
    if len(text) != 42 or not is_address(text.lower()):
        raise SolverError(
            ErrorCode.VALIDATION,
            f"{field} must be a 0x-prefixed 20-byte hex address, got {text[:50]!r}.",
            [f"{field}: not an address"],
        )
    return str(to_checksum_address(text.lower()))


async def _read(call: Awaitable[T]) -> T:
    """Await a chain read; a node failure becomes a 503 the trader can act on, not a 500."""
    try:
        return await call
    except SolverError:
        raise
    except Exception as exc:
        log.warning("chain read failed: %r", exc, exc_info=True)
        raise SolverError(
            ErrorCode.UNAVAILABLE, "The blockchain node could not be read right now. Please retry shortly."
        ) from exc


def _locked(v: LockedValues) -> Locked:
    return Locked(cva=from_wei(v.cva), lf=from_wei(v.lf), party_amm=from_wei(v.party_amm))


def _balance(state: _AccountState, marks: dict[int, Decimal], now: int) -> PartyABalance:
    b = state.balances
    locked = _locked(b.locked)
    # Pending = the chain's pending locked (PENDING/LOCKED quotes) + accepted instant opens the
    # chain does not know yet: the same sum the pre-trade gate subtracts (trading-rules.md §2).
    pending = _locked(b.pending_locked) + state.unconfirmed
    positions = [_position(q) for q in state.positions]
    pnl = upnl(positions, marks)
    allocated = from_wei(b.allocated)
    return PartyABalance(
        allocated=allocated,
        available=available_balance(allocated=allocated, upnl=pnl, locked=locked, pending=pending),
        locked=locked,
        pending=pending,
        notional=notional(positions, marks),
        upnl=pnl,
        timestamp=now,
    )


def _open(quotes: list[OnChainQuote]) -> list[OnChainQuote]:
    # getPartyAOpenPositions should only return open positions; anything else would carry no
    # opened price and poison the uPnL, so it is skipped.
    return [q for q in quotes if q.status in OPEN_STATUSES and q.open_quantity > 0]


def _position(q: OnChainQuote) -> Position:
    return Position(
        symbol_id=q.symbol_id,
        position_type=q.position_type,
        opened_price=from_wei(q.opened_price),
        open_quantity=from_wei(q.open_quantity),
    )
