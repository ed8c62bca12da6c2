"""OracleClient in-process: uPnL from the chain's open positions and the solver's fresh marks.

uPnL of a partyA = Σ side × (mark − openedPrice) × (quantity − closedAmount) over its open
positions (LONG +1, SHORT −1), in 18-decimal ints: the products are summed exactly (36 decimals)
and divided by 10**18 once, truncating toward zero. PartyB's uPnL against that partyA is minus
the same sum over the positions it is the counterparty of, so with a single partyB the two are
exact opposites. The signed price is the fresh mark, the same one used for the uPnL.

A stale price, or a position in a symbol the solver does not price, is a refusal (ORACLE_REFUSED),
never a signature on a zero. A missing price is ORACLE_UNAVAILABLE, like a chain or Redis failure:
no price key for a configured symbol is the solver's own state being incomplete (Redis flushed or
restarted empty, the engine not publishing yet), not a judgement on the market, and the engine puts
it back within a tick; the worker retries until the request's deadline instead of failing an open
it already accepted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from typing import TypeVar

from eth_utils.address import is_address, to_checksum_address

from solver.chain.reader import ChainReader
from solver.chain.types import OnChainQuote, PositionType, QuoteStatus
from solver.core.errors import ErrorCode, SolverError
from solver.core.units import WAD, to_wei
from solver.market.marks import MarkPrices
from solver.oracle.client import OracleError
from solver.oracle.signer import OracleSigner, PairUpnlAndPriceSig, SingleUpnlAndPriceSig, SingleUpnlSig
from solver.settings import Settings

log = logging.getLogger("solver.oracle.local")
T = TypeVar("T")

# Statuses in which a quote is a position whose uPnL counts (getPartyAOpenPositions returns these).
OPEN_STATUSES = frozenset(
    {QuoteStatus.OPENED, QuoteStatus.CLOSE_PENDING, QuoteStatus.CANCEL_CLOSE_PENDING, QuoteStatus.LIQUIDATED_PENDING}
)
_REFUSED_PRICE_CODES = (ErrorCode.PRICE_STALE,)  # PRICE_UNAVAILABLE: retry (see the module docstring)


def side(position_type: int) -> int:
    if position_type == PositionType.LONG:
        return 1
    if position_type == PositionType.SHORT:
        return -1
    raise OracleError(ErrorCode.ORACLE_REFUSED, f"A position has an unknown position type {position_type}.")


def upnl_numerator(positions: Iterable[OnChainQuote], marks_wei: dict[int, int]) -> int:
    """Σ side × (mark − opened) × openQty, all in wei: 36 decimals, not yet scaled back."""
    return sum(side(q.position_type) * (marks_wei[q.symbol_id] - q.opened_price) * q.open_quantity for q in positions)


def to_wad_toward_zero(numerator: int) -> int:
    """numerator / 10**18 truncated toward zero (Python's // floors, which would bias losses)."""
    q = abs(numerator) // WAD
    return q if numerator >= 0 else -q


class LocalOracle:
    def __init__(self, signer: OracleSigner, chain: ChainReader, marks: MarkPrices, settings: Settings) -> None:
        self._signer = signer
        self._chain = chain
        self._marks = marks
        self._settings = settings
        self.diamond = settings.chain.symmio_address
        self.chain_id = settings.chain.chain_id

    async def close(self) -> None:
        """Nothing to release: the chain reader and the marks belong to whoever built them."""

    async def party_a_upnl_and_price(self, *, party_a: str, symbol_id: int) -> SingleUpnlAndPriceSig:
        party_a = _checksum(party_a, "partyA")
        positions = await self._positions(party_a)
        marks = await self._marks_wei({q.symbol_id for q in positions}, symbol_id)
        upnl = to_wad_toward_zero(upnl_numerator(positions, marks))
        nonce_a = await _read(self._chain.nonce_of_party_a(party_a))
        return self._signer.single_upnl_and_price(
            diamond=self.diamond,
            chain_id=self.chain_id,
            party_a=party_a,
            nonce_a=nonce_a,
            upnl=upnl,
            symbol_id=symbol_id,
            price=marks[symbol_id],
        )

    async def party_a_upnl(self, *, party_a: str) -> SingleUpnlSig:
        party_a = _checksum(party_a, "partyA")
        positions = await self._positions(party_a)
        marks = await self._marks_wei({q.symbol_id for q in positions})
        upnl = to_wad_toward_zero(upnl_numerator(positions, marks))
        nonce_a = await _read(self._chain.nonce_of_party_a(party_a))
        return self._signer.party_a_upnl(
            diamond=self.diamond, chain_id=self.chain_id, party_a=party_a, nonce_a=nonce_a, upnl=upnl
        )

    async def party_b_upnl(self, *, party_b: str, party_a: str) -> SingleUpnlSig:
        party_a, party_b = _checksum(party_a, "partyA"), _checksum(party_b, "partyB")
        positions = [q for q in await self._positions(party_a) if _same(q.party_b, party_b)]
        marks = await self._marks_wei({q.symbol_id for q in positions})
        upnl = -to_wad_toward_zero(upnl_numerator(positions, marks))
        nonce_b = await _read(self._chain.nonce_of_party_b(party_b, party_a))
        return self._signer.party_b_upnl(
            diamond=self.diamond,
            chain_id=self.chain_id,
            party_b=party_b,
            party_a=party_a,
            nonce_b=nonce_b,
            upnl=upnl,
        )

    async def pair_upnl_and_price(self, *, party_b: str, party_a: str, symbol_id: int) -> PairUpnlAndPriceSig:
        party_a, party_b = _checksum(party_a, "partyA"), _checksum(party_b, "partyB")
        positions = await self._positions(party_a)
        marks = await self._marks_wei({q.symbol_id for q in positions}, symbol_id)
        upnl_a = to_wad_toward_zero(upnl_numerator(positions, marks))
        upnl_b = -to_wad_toward_zero(upnl_numerator((q for q in positions if _same(q.party_b, party_b)), marks))
        nonce_a, nonce_b = await asyncio.gather(
            _read(self._chain.nonce_of_party_a(party_a)), _read(self._chain.nonce_of_party_b(party_b, party_a))
        )
        return self._signer.pair_upnl_and_price(
            diamond=self.diamond,
            chain_id=self.chain_id,
            party_b=party_b,
            party_a=party_a,
            nonce_b=nonce_b,
            nonce_a=nonce_a,
            upnl_party_b=upnl_b,
            upnl_party_a=upnl_a,
            symbol_id=symbol_id,
            price=marks[symbol_id],
        )

    async def _positions(self, party_a: str) -> list[OnChainQuote]:
        quotes = await _read(self._chain.open_positions(party_a))
        return [q for q in quotes if q.status in OPEN_STATUSES and q.open_quantity > 0]

    async def _marks_wei(self, position_symbols: set[int], signed_symbol: int | None = None) -> dict[int, int]:
        """Fresh marks in wei for the positions' symbols and the symbol whose price is signed."""
        ids = set(position_symbols)
        if signed_symbol is not None:
            if self._settings.symbol(signed_symbol) is None:
                raise OracleError(ErrorCode.ORACLE_REFUSED, f"Symbol id {signed_symbol} is not priced by this oracle.")
            ids.add(signed_symbol)
        unpriced = sorted(sid for sid in ids if self._settings.symbol(sid) is None)
        if unpriced:  # permanent, unlike a price that is missing right now
            raise OracleError(
                ErrorCode.ORACLE_REFUSED,
                f"There is a position in symbol id {unpriced[0]}, which this solver does not price, "
                "so its uPnL cannot be computed.",
            )
        try:
            marks = await self._marks.fresh_marks(ids)
        except SolverError as exc:
            if exc.code in _REFUSED_PRICE_CODES:
                raise OracleError(ErrorCode.ORACLE_REFUSED, exc.message) from exc
            if exc.code is ErrorCode.PRICE_UNAVAILABLE:
                raise OracleError(ErrorCode.ORACLE_UNAVAILABLE, exc.message) from exc
            raise OracleError(ErrorCode.ORACLE_UNAVAILABLE) from exc
        except Exception as exc:
            log.warning("price read failed: %r", exc)
            raise OracleError(ErrorCode.ORACLE_UNAVAILABLE) from exc
        out = {sid: to_wei(mark) for sid, mark in marks.items()}
        if any(v <= 0 for v in out.values()):
            raise OracleError(ErrorCode.ORACLE_REFUSED, "A mark price rounds to zero at 18 decimals.")
        return out


def _checksum(address: str, name: str) -> str:
    if not (isinstance(address, str) and address.startswith("0x") and is_address(address.lower())):
        raise OracleError(ErrorCode.ORACLE_REFUSED, f"{name} is not an address.")
    return str(to_checksum_address(address.lower()))


def _same(a: str, b: str) -> bool:
    return a.lower() == b.lower()


async def _read(call: Awaitable[T]) -> T:
    """A chain read; a node failure is ORACLE_UNAVAILABLE (retry), not a refusal."""
    try:
        return await call
    except SolverError:
        raise
    except Exception as exc:
        log.warning("chain read failed: %r", exc)
        raise OracleError(ErrorCode.ORACLE_UNAVAILABLE) from exc
